"""The Jacobian of a vector of losses, from one vectorized backward pass.

Row `i` of `jacobian(losses, sources)` is the gradient of `losses[i]` with
respect to `sources` (variables or tensors), each flattened, concatenated in
order: a `[K, n]` matrix. It differentiates once, with `K` one-hot output
gradients stacked on a new leading axis (`parallel_for.pfor` vectorizes the
backward graph over it), instead of building `K` backward graphs: the graph
grows by one backward pass whatever `K` is, and its ops run on `[K, ...]`
tensors. The forward ops are not repeated: they do not depend on the row,
so every row reads them as they are. A fused group's losses, one vector,
stay one computation.

`jacobian_by_rows` builds the same matrix from `K` separate gradients: the
slow way, kept to check the fast one against and to measure it by.

Graph mode only, as `tf.compat.v1.gradients` is.

>>> import tensorflow as tf
>>> with tf.Graph().as_default():
...   weights = tf.constant([1., 2.])
...   losses = tf.stack([tf.reduce_sum(weights ** 2), 3. * weights[0]])
...   rows = jacobian(losses, [weights])
...   with tf.compat.v1.Session() as session:
...     print(session.run(rows))
[[2. 4.]
 [3. 0.]]
"""
import tensorflow as tf
from tensorflow.python.ops.parallel_for import control_flow_ops

_ZERO = tf.UnconnectedGradients.ZERO


def _flat(gradient):
  """A gradient as a dense vector (an embedding's `IndexedSlices` too)."""
  return tf.reshape(tf.convert_to_tensor(gradient), [-1])


def jacobian(losses, sources):
  """Returns the `[K, n]` Jacobian of the `[K]` `losses` over `sources`.

  Args:
    losses: A rank-1 float tensor with a known length `K`.
    sources: A list of variables or tensors; a source no loss depends on
      contributes zero columns.

  Raises:
    ValueError: `losses` is not a vector of known length.
  """
  count = _row_count(losses)

  def row(index):
    one_hot = tf.one_hot(index, count, dtype=losses.dtype)
    gradients = tf.compat.v1.gradients(losses, sources, grad_ys=one_hot,
                                       unconnected_gradients=_ZERO)
    return tf.concat([_flat(gradient) for gradient in gradients], axis=0)

  return control_flow_ops.pfor(row, count)


def jacobian_by_rows(losses, sources):
  """`jacobian(losses, sources)`, built from `K` separate gradients."""
  count = _row_count(losses)
  rows = []
  for index in range(count):
    gradients = tf.compat.v1.gradients(losses[index], sources,
                                       unconnected_gradients=_ZERO)
    rows.append(tf.concat([_flat(gradient) for gradient in gradients],
                          axis=0))
  return tf.stack(rows)


def _row_count(losses):
  if losses.shape.rank != 1 or losses.shape[0] is None:
    raise ValueError(
        'The Jacobian needs a vector of losses of known length; given shape '
        f'{losses.shape}.')
  return losses.shape[0]
