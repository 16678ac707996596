"""The heads' Jacobian over a linear layer's input, kept as its two factors.

When every head's logits are a linear layer of one representation `h`
(`[batch, d]`: head `k`'s logits `z_k = h W_k + b_k`, its columns of one
kernel `W`, `[d, C]`), head `k`'s row of the Jacobian over `h`, reshaped to
`[batch, d]`, is `D_k W_k^T`, where `D_k` (`[batch, C_k]`) is the gradient
of head `k`'s loss with respect to its logits. With `D` the `[batch, C]`
logits gradients side by side, the `[K, batch * d]` matrix is never needed:

    G[k, l] = sum over head k's columns c and head l's columns c' of
              (D^T D)[c, c'] * (W^T W)[c, c']
    J^T w   = (D diag(w_c)) W^T, flattened,  w_c = the weight of c's head

`C^2 * (batch + d)` multiply-adds for the Gramian instead of `K^2 * batch *
d`, all of them in float64 on small factors: the same Gramian, at least as
accurate (`head_jacobian` factors only where that is fewer: not beside a
head of thousands of classes). The aggregators that only read `J` through its Gramian and their
combination of its rows (`takes_layer_jacobian`) take a `LayerJacobian` as
they take a matrix; the others get `dense()`.

>>> import numpy as np
>>> import tensorflow as tf
>>> gradients = tf.constant([[1., 2.], [0., -1.]])   # D: 2 rows, 2 heads
>>> kernel = tf.constant([[1., 1.], [1., 3.]])       # W: d = 2
>>> jacobian = LayerJacobian(gradients, kernel, widths=[1, 1])
>>> dense = jacobian.dense().numpy()
>>> dense  # row k: D[:, k:k+1] W[:, k]^T, flattened
array([[ 1.,  1.,  0.,  0.],
       [ 2.,  6., -1., -3.]], dtype=float32)
>>> np.allclose(jacobian.gramian64().numpy(), dense @ dense.T)
True
>>> jacobian.combine(tf.constant([1., 0.5], tf.float64)).numpy()
array([ 2. ,  4. , -0.5, -1.5], dtype=float32)
"""
import functools

import numpy as np
import tensorflow as tf


class LayerJacobian:
  """`J[k] = flatten(D_k W_k^T)`: the Jacobian over `h` of `K` linear heads.

  Attributes:
    gradients: `D`, the `[batch, C]` logits gradients, head after head.
    kernel: `W`, the `[d, C]` kernel, the same columns.
    widths: Each head's number of logits columns (`sum(widths) = C`).
  """

  def __init__(self, gradients, kernel, widths):
    self.gradients = tf.stop_gradient(tf.convert_to_tensor(gradients))
    self.kernel = tf.stop_gradient(
        tf.cast(tf.convert_to_tensor(kernel), self.gradients.dtype))
    self.widths = tuple(int(width) for width in widths)
    # Column c of D and W belongs to head `column_heads[c]`.
    self._column_heads = np.repeat(np.arange(len(self.widths)), self.widths)

  @property
  def dtype(self):
    return self.gradients.dtype

  @property
  def shape(self):
    """`[K, batch * d]`, as far as it is known while the graph is built."""
    batch, width = self.gradients.shape[0], self.kernel.shape[0]
    columns = None if batch is None or width is None else batch * width
    return tf.TensorShape([len(self.widths), columns])

  @functools.cached_property
  def _factors64(self):
    # Cast once: an aggregator reads both the Gramian and the combination.
    return (tf.cast(self.gradients, tf.float64),
            tf.cast(self.kernel, tf.float64))

  def gramian64(self):
    """`G = J J^T` in float64, from the factors, exactly symmetric."""
    gradients, kernel = self._factors64
    by_column = (tf.matmul(gradients, gradients, transpose_a=True) *
                 tf.matmul(kernel, kernel, transpose_a=True))
    if len(set(self.widths)) == 1 and self.widths[0] == 1:
      gramian = by_column
    else:
      # Summed over each head's columns: S^T by_column S.
      heads = tf.constant(
          np.eye(len(self.widths))[self._column_heads], tf.float64)
      gramian = tf.matmul(heads, tf.matmul(by_column, heads), transpose_a=True)
    return 0.5 * (gramian + tf.transpose(gramian))

  def combine(self, weights64):
    """`J^T w = sum_k w_k J[k]`, summed in float64, in the factors' dtype."""
    column_weights = tf.gather(tf.cast(weights64, tf.float64),
                               self._column_heads)
    gradients, kernel = self._factors64
    rows = tf.matmul(gradients * column_weights[tf.newaxis, :], kernel,
                     transpose_b=True)
    return tf.cast(tf.reshape(rows, [-1]), self.dtype)

  def dense(self):
    """The `[K, batch * d]` matrix itself, for aggregators that read it."""
    rows = [tf.matmul(gradient, kernel, transpose_b=True)
            for gradient, kernel in zip(
                tf.split(self.gradients, self.widths, axis=1),
                tf.split(self.kernel, self.widths, axis=1))]
    return tf.reshape(tf.stack(rows), [len(self.widths), -1])

  def with_rows(self, gradients):
    """The Jacobian of other batch rows `gradients` through the same layer.

    Replicas' rows side by side are their matrices' columns side by side.
    """
    return LayerJacobian(gradients, self.kernel, self.widths)
