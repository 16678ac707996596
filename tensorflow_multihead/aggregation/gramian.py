"""The `K x K` Gramian of a Jacobian, in float64, and rows combined by weights.

The aggregators built on small quadratic programs read the Jacobian `J`
only through its Gramian `G = J J^T` (`G_ij` is the inner product of head
`i`'s and head `j`'s gradients) and return `J^T w` for weights `w` they
solve for. Both products are taken in float64: with rows whose norms differ
by 10^4, `G`'s entries differ by 10^8, beyond what float32 resolves.

>>> import tensorflow as tf
>>> jacobian = tf.constant([[3., 4.], [1., 0.]])
>>> gramian(jacobian, 'Example').numpy()
array([[25.,  3.],
       [ 3.,  1.]])
>>> combine(tf.constant([1., -2.], tf.float64), jacobian).numpy()
array([1., 4.], dtype=float32)
"""
import abc
import numbers

import numpy as np
import tensorflow as tf

from tensorflow_multihead.aggregation import base


def as_jacobian(jacobian, aggregator_name):
  """`jacobian` as a floating `[K, n]` tensor, checked while the graph is built.

  Raises:
    TypeError: Not a floating-point tensor.
    ValueError: Not of rank 2, or with no row.
  """
  jacobian = tf.convert_to_tensor(jacobian)
  if not jacobian.dtype.is_floating:
    raise TypeError(
        f'{aggregator_name}.aggregate needs a floating-point Jacobian; given '
        f'dtype {jacobian.dtype.name}.')
  if jacobian.shape.rank is not None and jacobian.shape.rank != 2:
    raise ValueError(
        f'{aggregator_name}.aggregate needs a [K, n] Jacobian, one row per '
        f'head; given shape {jacobian.shape}.')
  if jacobian.shape.rank == 2 and jacobian.shape[0] == 0:
    raise ValueError(
        f'{aggregator_name}.aggregate needs at least one row (head); given '
        f'shape {jacobian.shape}.')
  return jacobian


def gramian(jacobian, aggregator_name):
  """`J J^T` in float64: the `[K, K]` inner products of the rows.

  The Jacobian is a constant to these methods: nothing differentiates
  through the solvers (as in TorchJD, where they are non-differentiable).
  """
  rows = tf.cast(tf.stop_gradient(as_jacobian(jacobian, aggregator_name)),
                 tf.float64)
  product = tf.matmul(rows, rows, transpose_b=True)
  # Symmetric to the last bit, so that the solvers see one matrix.
  return 0.5 * (product + tf.transpose(product))


def normalize_by_trace(gramian_matrix, norm_eps):
  """`G / trace(G)`, or zeros where `trace(G) < norm_eps` or is 0.

  `trace(G)` is the squared Frobenius norm of `J`: the normalized Gramian is
  that of `J / ||J||_F`, as TorchJD normalizes it before its solvers.
  """
  trace = tf.linalg.trace(gramian_matrix)
  tiny = tf.logical_or(trace < norm_eps, tf.equal(trace, 0.))
  safe_trace = tf.where(tiny, tf.ones_like(trace), trace)
  return tf.where(tiny, tf.zeros_like(gramian_matrix),
                  gramian_matrix / safe_trace)


def combine(weights, jacobian):
  """`J^T w`, the weighted sum of the rows, in the Jacobian's dtype.

  Taken in float64: weights from a badly scaled Gramian span many orders of
  magnitude, and the rows they weight cancel.
  """
  jacobian = tf.stop_gradient(tf.convert_to_tensor(jacobian))
  rows = tf.cast(jacobian, tf.float64)
  weights = tf.cast(weights, tf.float64)
  return tf.cast(tf.linalg.matvec(rows, weights, transpose_a=True),
                 jacobian.dtype)


def all_finite(matrix):
  """Whether every entry is finite: a NaN in the Jacobian gives NaN out."""
  return tf.reduce_all(tf.math.is_finite(matrix))


def nan_unless(finite, weights):
  """`weights`, or NaN everywhere when the Gramian was not finite."""
  return tf.where(finite, weights,
                  tf.fill(tf.shape(weights),
                          tf.constant(float('nan'), weights.dtype)))


def pref_weights(pref_vector, size, aggregator_name):
  """The preference vector as float64 `[K]`, `1 / K` each when None.

  Raises:
    ValueError: A `pref_vector` that is not a vector of `K` finite entries,
      told while the graph is built when `K` is known then.
  """
  if pref_vector is None:
    return tf.fill([size], 1. / tf.cast(size, tf.float64))
  weights = tf.cast(pref_vector, tf.float64)
  static_size = tf.get_static_value(size)
  if static_size is not None:
    if weights.shape[0] != static_size:
      raise ValueError(
          f'{aggregator_name} pref_vector has {weights.shape[0]} entries; '
          f'the Jacobian has {static_size} rows (heads).')
    return weights
  with tf.control_dependencies([tf.debugging.assert_equal(
      tf.size(weights), size,
      message=f'{aggregator_name} pref_vector and the Jacobian differ in '
      'length')]):
    return tf.identity(weights)


def checked_pref_vector(pref_vector, aggregator_name):
  """`pref_vector` as a float64 NumPy vector, or None; checked at once."""
  if pref_vector is None:
    return None
  if isinstance(pref_vector, (tf.Tensor, tf.Variable)):
    pref_vector = tf.get_static_value(pref_vector)
    if pref_vector is None:
      raise TypeError(f'{aggregator_name} pref_vector must be a constant '
                      'vector of numbers.')
  try:
    vector = np.asarray(pref_vector, np.float64)
  except (TypeError, ValueError) as error:
    raise TypeError(f'{aggregator_name} pref_vector must be a vector of '
                    f'numbers; given {pref_vector!r}.') from error
  if vector.ndim != 1 or vector.size == 0:
    raise ValueError(f'{aggregator_name} pref_vector must be a non-empty '
                     f'vector; given shape {vector.shape}.')
  if not np.all(np.isfinite(vector)):
    raise ValueError(f'{aggregator_name} pref_vector must be finite; given '
                     f'{vector!r}.')
  return vector


def non_negative_number(value, what):
  """`value` as a float, checked to be a number `>= 0`."""
  if isinstance(value, bool) or not isinstance(value, (numbers.Real,
                                                       np.number)):
    raise TypeError(f'{what} must be a number; given {value!r} of type '
                    f'{type(value).__name__}.')
  if not value >= 0:
    raise ValueError(f'{what} must be >= 0; given {value!r}.')
  return float(value)


class GramianWeighted(base.Aggregator):
  """An aggregator `J^T w` whose weights `w` depend on `J` through `J J^T`.

  A subclass implements `weights(gramian)`; `aggregate(J)` computes the
  Gramian in float64, the weights from it, and their combination of the
  rows in the Jacobian's dtype. A Jacobian with a NaN or an infinity gives
  NaN everywhere.
  """

  @abc.abstractmethod
  def weights(self, gramian_matrix):
    """The `[K]` float64 weights of the rows, from the `[K, K]` Gramian."""

  def aggregate(self, jacobian):
    jacobian = as_jacobian(jacobian, type(self).__name__)
    gramian_matrix = gramian(jacobian, type(self).__name__)
    finite = all_finite(gramian_matrix)
    safe = tf.where(finite, gramian_matrix, tf.zeros_like(gramian_matrix))
    return combine(nan_unless(finite, self.weights(safe)), jacobian)
