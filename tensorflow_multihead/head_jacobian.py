"""The heads' loss Jacobian, using that each head's loss reads its logits only.

`jacobian.jacobian` differentiates the heads' losses `K` times at once: its
backward pass runs on `[K, ...]` tensors all the way, through every head's
part of the graph too, where row `k` is zero but for head `k`. When the
logits are a linear layer of one tensor `h` (one dense layer split among
the heads, as canned estimators build it, or one dense layer a head), the
heads' part needs no such pass:

* each head's loss reads its own logits `z_k` only, so one plain backward
  pass of `sum_k L_k` gives every `dL_k / dz_k` at once;
* through the layer `z_k = h W_k + b_k`, row `k` over `h` is
  `(dL_k / dz_k) W_k^T`: one batched product for all heads, `K * batch * d
  * width` multiply-adds, where the vectorized pass spends `K` times the
  whole layer's.

Below `h`, `jacobian.jacobian_from_rows` carries those rows down to the
shared variables in one vectorized pass; a representation that is `h`
itself needs none. Any other graph takes `jacobian.jacobian`'s way.

>>> import numpy as np
>>> import tensorflow as tf
>>> with tf.Graph().as_default():
...   h = tf.constant([[1., 2.]])
...   logits = tf.matmul(h, tf.constant([[1., 0.], [0., 3.]]))
...   pieces = tf.split(logits, [1, 1], axis=-1)
...   losses = tf.stack([tf.reduce_sum(pieces[0] ** 2),
...                      tf.reduce_sum(pieces[1])])
...   rows = jacobian(losses, pieces, [h])
...   with tf.compat.v1.Session() as session:
...     print(session.run(rows))  # d(z0^2)/dh = 2 z0 [1, 0]; dz1/dh = [0, 3].
[[2. 0.]
 [0. 3.]]
"""
import tensorflow as tf

from tensorflow_multihead import graph_walk
from tensorflow_multihead import jacobian as vectorized
from tensorflow_multihead.aggregation import layer_jacobian

# Ops between a dense layer's product and its logits that pass the output
# gradient on unchanged: a copy, or adding what does not depend on `h`.
_PASS_THROUGH = ('Identity', 'BiasAdd', 'Add', 'AddV2')


def jacobian(losses, logits, sources):
  """The `[K, n]` Jacobian of `losses` over `sources`.

  Args:
    losses: The `[K]` losses, `losses[k]` depending on `logits[k]` only
      (as each head's loss reads its own logits).
    logits: The heads' logits tensors, in the losses' order.
    sources: Variables or tensors, as `jacobian.jacobian` takes them.
  """
  return jacobian_and_sum(losses, logits, sources)[0]


def jacobian_and_sum(losses, logits, sources, factored=False):
  """`(J, J^T 1)`: the Jacobian, and the sum of its rows (`[n]`).

  Over `h` itself the sum comes from the backward pass that gives the
  logits' gradients, not from reading the `[K, n]` matrix once more; with
  `factored`, `J` is then a `LayerJacobian`, the matrix kept as its
  factors, where those cost less (`_LinearLogits.factoring_pays`).
  """
  layer = _LinearLogits.find(logits)
  if layer is None or not _only_through(sources, layer.input, losses):
    rows = vectorized.jacobian(losses, sources)
    return rows, tf.reduce_sum(rows, axis=0)
  gradients = tf.compat.v1.gradients(
      tf.reduce_sum(losses), list(logits) + [layer.input],
      unconnected_gradients=tf.UnconnectedGradients.ZERO)
  over_input = len(sources) == 1 and sources[0] is layer.input
  if over_input and factored and layer.factoring_pays():
    return layer.factored_rows(gradients[:-1]), tf.reshape(gradients[-1],
                                                           [-1])
  rows = layer.input_rows(gradients[:-1])
  if over_input:
    return tf.reshape(rows, [len(logits), -1]), tf.reshape(gradients[-1],
                                                           [-1])
  rows = vectorized.jacobian_from_rows(layer.input, rows, sources)
  return rows, tf.reduce_sum(rows, axis=0)


class _LinearLogits:
  """Every head's logits as `h W_k` plus terms not depending on `h`.

  Attributes:
    input: `h`, a `[batch, d]` tensor.
  """

  def __init__(self, inputs, weights, widths):
    """`weights`: `[d, sum(widths)]`, head `k`'s `widths[k]` columns next."""
    self.input = inputs
    self._weights = weights
    self._widths = widths

  @classmethod
  def find(cls, logits):
    """The layer all `logits` come from, or None if there is none."""
    return cls._split_layer(logits) or cls._layer_each(logits)

  @classmethod
  def _split_layer(cls, logits):
    """One layer's output split among the heads along its last axis."""
    split = logits[0].op
    if split.type != 'SplitV' or list(split.outputs) != list(logits):
      return None
    axis = tf.get_static_value(split.inputs[2])
    value = split.inputs[0]
    if axis is None or value.shape.rank is None or (
        axis % value.shape.rank != value.shape.rank - 1):
      return None
    product = _product_under(value)
    widths = [piece.shape[-1] for piece in logits]
    if product is None or None in widths:
      return None
    return cls(*product, widths)

  @classmethod
  def _layer_each(cls, logits):
    """A layer a head, all reading one `h`."""
    products = [_product_under(piece) for piece in logits]
    if any(product is None for product in products):
      return None
    inputs = products[0][0]
    widths = [weights.shape[1] for _, weights in products]
    if None in widths or any(product[0] is not inputs
                             for product in products):
      return None
    return cls(inputs, tf.concat([weights for _, weights in products], 1),
               widths)

  def factoring_pays(self):
    """Whether the factored Gramian costs less than the matrix's.

    `C^2 (batch + d)` multiply-adds (and two `[C, C]` matrices) against `K^2
    batch d`, for `C` logits columns: always so with one column a head, not
    for a head of thousands of classes. With the batch unknown, as for a
    large batch: `C^2 <= K^2 d`.
    """
    heads, columns = len(self._widths), sum(self._widths)
    batch, width = self.input.shape
    if width is None:
      return columns == heads
    if batch is None:
      return columns**2 <= heads**2 * width
    return columns**2 * (batch + width) <= heads**2 * batch * width

  def factored_rows(self, logits_gradients):
    """The rows of `input_rows`, flattened, as a `LayerJacobian`."""
    return layer_jacobian.LayerJacobian(
        tf.concat(logits_gradients, axis=1), self._weights, self._widths)

  def input_rows(self, logits_gradients):
    """`[K, batch, d]`: row `k`, head `k`'s logits gradient through `W_k`."""
    count = len(self._widths)
    if set(self._widths) != {self._widths[0]}:
      return tf.stack([
          tf.matmul(gradient, weights, transpose_b=True)
          for gradient, weights in zip(
              logits_gradients, tf.split(self._weights, self._widths, 1))])
    width = self._widths[0]
    gradients = tf.stack(logits_gradients)  # [K, batch, width]
    # [d, K * width] -> [K, width, d]: each head's columns, transposed.
    weights = tf.transpose(tf.reshape(self._weights, [-1, count, width]),
                           [1, 2, 0])
    if width == 1:  # An outer product a head: a broadcast product.
      return gradients * weights
    return tf.matmul(gradients, weights)


def _product_under(tensor):
  """`(h, W)` if `tensor` is `h W` plus terms not depending on `h`, else None.

  Walks down copies and additions to a `MatMul` of a rank-2 `h`.
  """
  added = []
  while tensor.op.type in _PASS_THROUGH:
    op = tensor.op
    if op.type == 'Identity':
      tensor = op.inputs[0]
      continue
    if op.type == 'BiasAdd':
      tensor, other = op.inputs[0], op.inputs[1]
    else:
      # Follow the operand that is a product; the other is added.
      first, second = op.inputs[0], op.inputs[1]
      tensor, other = (first, second) if _leads_to_product(first) else (
          second, first)
    added.append(other)
  op = tensor.op
  if op.type != 'MatMul' or op.get_attr('transpose_a'):
    return None
  inputs, weights = op.inputs
  if inputs.shape.rank != 2 or inputs.shape[0] != tensor.shape[0]:
    return None
  if op.get_attr('transpose_b'):
    weights = tf.transpose(weights)
  if any(inputs.op in graph_walk.ancestors([other.op]) for other in added):
    return None
  return inputs, weights


def _leads_to_product(tensor):
  while tensor.op.type == 'Identity':
    tensor = tensor.op.inputs[0]
  return tensor.op.type in ('MatMul',) + _PASS_THROUGH


def _only_through(sources, inputs, losses):
  """Whether `sources` reach `losses` through `inputs` alone.

  A source read past `inputs` (in the logits layer itself, or by a path
  around it) would miss part of its gradient in rows carried down from
  `inputs`.
  """
  if len(sources) == 1 and sources[0] is inputs:
    return True
  starts = []
  for source in sources:
    if isinstance(source, tf.Variable):
      starts += [component.op.outputs[0]
                 for component in getattr(source, 'values', (source,))]
    else:
      starts.append(source)
  seen, pending = set(), [consumer for tensor in starts
                          for consumer in tensor.consumers()]
  while pending:
    op = pending.pop()
    if op in seen or op is inputs.op:
      continue
    if op is losses.op:
      return False
    seen.add(op)
    pending.extend(consumer for tensor in op.outputs
                   for consumer in tensor.consumers())
  return True
