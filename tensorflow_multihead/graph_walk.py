"""Walks over a graph's data edges: what an op is computed from, and what
is computed from a tensor.

The Jacobian's layer search, the shared-parameter checks and the layer
finder behind representation mode all ask these two questions of a graph.

>>> graph = tf.Graph()
>>> with graph.as_default():
...   x = tf.compat.v1.placeholder(tf.float32, name='x')
...   y = tf.square(x, name='y')
...   z = tf.add(y, 1., name='z')
>>> sorted(op.name for op in ancestors([z.op]))
['x', 'y', 'z', 'z/y']
>>> sorted(op.name for op in descendants([y]))
['z']
"""

import tensorflow as tf  # pylint: disable=unused-import (the doctest's)


def ancestors(ops):
  """`ops` and every op they are computed from."""
  return _closure(ops, lambda op: (tensor.op for tensor in op.inputs))


def descendants(tensors):
  """The ops computed from `tensors` (not the tensors' own ops)."""
  return _closure(
      [consumer for tensor in tensors for consumer in tensor.consumers()],
      lambda op: (consumer for tensor in op.outputs
                  for consumer in tensor.consumers()))


def _closure(start, neighbours):
  # Iterative, not recursive: a model's graph can be deeper than Python's
  # recursion limit.
  seen, pending = set(), list(start)
  while pending:
    op = pending.pop()
    if op not in seen:
      seen.add(op)
      pending.extend(neighbours(op))
  return seen
