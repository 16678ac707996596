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

from tensorflow_multihead import graph_walk

_ZERO = tf.UnconnectedGradients.ZERO


def _flat(gradient):
  """A gradient as a dense vector (an embedding's `IndexedSlices` too)."""
  return tf.reshape(tf.convert_to_tensor(gradient), [-1])


def jacobian(losses, sources):
  """Returns the `[K, n]` Jacobian of the `[K]` `losses` over `sources`.

  A variable read only as the weights of dense layers (`MatMul`'s second
  operand, `BiasAdd`'s bias) on the way to the losses, as in
  `tf.compat.v1.layers.dense` and Keras' `Dense`, is differentiated through
  the layer's output instead: the vectorized backward pass stops there,
  and the weights' rows come from one batched matrix product with the
  layer's input, `x^T dy` for every row at once (what the backward pass
  would compute one row at a time, laid out for a batched kernel).

  Args:
    losses: A rank-1 float tensor with a known length `K`.
    sources: A list of variables or tensors; a source no loss depends on
      contributes zero columns.

  Raises:
    ValueError: `losses` is not a vector of known length.
  """
  count = _row_count(losses)
  return _vectorized(
      losses, lambda index: tf.one_hot(index, count, dtype=losses.dtype),
      count, sources)


def jacobian_from_rows(outputs, rows, sources):
  """`[K, n]`: row `k` the gradient of `sum(rows[k] * outputs)` over sources.

  The vectorized backward pass from `outputs` given `K` output gradients,
  `rows` (`[K, *outputs.shape]`), at once: the second half of a Jacobian
  whose rows over `outputs` are known.

  Raises:
    ValueError: `rows` has no known leading dimension.
  """
  count = rows.shape[0]
  if count is None:
    raise ValueError(f'The rows need a known count; given shape {rows.shape}.')
  return _vectorized(outputs, lambda index: tf.gather(rows, index), count,
                     sources)


def _vectorized(outputs, output_gradient, count, sources):
  """The `count` rows of `output_gradient(index)`'s backward pass, stacked."""
  on_path = graph_walk.ancestors([outputs.op])
  layers = [_dense_uses(source, on_path) for source in sources]
  differentiated = [source for source, uses in zip(sources, layers)
                    if uses is None]
  differentiated += [use.output for uses in layers if uses
                     for use in uses]

  def row(index):
    gradients = tf.compat.v1.gradients(outputs, differentiated,
                                       grad_ys=output_gradient(index),
                                       unconnected_gradients=_ZERO)
    return [tf.convert_to_tensor(gradient) for gradient in gradients]

  rows = iter(control_flow_ops.pfor(row, count))
  by_source = {id(source): next(rows) for source, uses in zip(sources, layers)
               if uses is None}
  columns = []
  for source, uses in zip(sources, layers):
    if uses is None:
      columns.append(tf.reshape(by_source[id(source)], [count, -1]))
    else:
      columns.append(tf.reshape(tf.math.add_n(
          [use.weight_rows(next(rows)) for use in uses]), [count, -1]))
  return tf.concat(columns, axis=1)


class _DenseUse:
  """A variable read as a dense layer's weights: `MatMul` or `BiasAdd`."""

  def __init__(self, op):
    self.op = op
    self.output = op.outputs[0]

  def weight_rows(self, output_rows):
    """`[K, *weights]` from the rows' gradients over the layer's output."""
    op = self.op
    if op.type == 'BiasAdd':
      return tf.reduce_sum(output_rows, axis=list(range(
          1, output_rows.shape.rank - 1)))
    inputs = op.inputs[0]
    if op.get_attr('transpose_a'):
      inputs = tf.transpose(inputs)
    # d(x W)/dW for each row: x^T dy, batched over the rows.
    products = tf.matmul(tf.transpose(inputs)[tf.newaxis], output_rows)
    if op.get_attr('transpose_b'):
      products = tf.transpose(products, [0, 2, 1])
    return products


def _dense_uses(source, on_path):
  """The dense layers reading variable `source`, or None to differentiate it.

  None unless `source` is a variable whose every read on the way to the
  losses (`on_path`: their ancestors) is a `MatMul`'s second operand or a
  `BiasAdd`'s bias (NHWC), and there is at least one.
  """
  if not isinstance(source, tf.Variable):
    return None
  uses = []
  for component in getattr(source, 'values', (source,)):
    for reader in component.op.outputs[0].consumers():
      if reader not in on_path:
        continue
      if reader.type != 'ReadVariableOp':
        return None
      for use in reader.outputs[0].consumers():
        if use not in on_path:
          continue
        if not _reads_as_weights(use, reader.outputs[0]):
          return None
        uses.append(_DenseUse(use))
  return uses or None


def _reads_as_weights(op, read):
  if op.type == 'MatMul':
    return op.inputs[1] is read and op.inputs[0] is not read
  if op.type == 'BiasAdd':
    return (op.inputs[1] is read and op.inputs[0] is not read and
            op.get_attr('data_format') in (b'NHWC', 'NHWC'))
  return False


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
