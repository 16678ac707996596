"""The small `K x K` linear algebra of the closed-form aggregators, in float64.

The aggregators of `projection`, `balancing` and `stochastic` work on the
Jacobian's Gramian `G = J J^T` (`G[i, j] = g_i . g_j`), whose entries span
the square of the heads' gradient-norm ratio (10^8 for norms 10^4 apart):
float32 would round the small heads away, so `G` and everything derived from
it is float64, and only the direction goes back to the Jacobian's dtype.

>>> import tensorflow as tf
>>> jacobian = tf.constant([[1., 0.], [1., 0.]], tf.float64)  # rank 1
>>> pseudo_inverse(gramian(jacobian)).numpy()
array([[0.25, 0.25],
       [0.25, 0.25]])
"""
import numpy as np
import tensorflow as tf

# An eigenvalue of a Gramian at most this many `K * epsilon` times its
# largest counts as zero. The eigenvalues of an exactly singular float64
# Gramian come out at about `K * epsilon * largest` (TorchJD's threshold,
# that of `torch.linalg.pinv`), on either side of it; ten times more keeps
# that rounding out of the inverses, where it would be divided by itself.
RANK_TOLERANCE_EPSILONS = 10.


def checked_jacobian(jacobian, aggregator):
  """The `[K, n]` Jacobian as a float tensor, checked while the graph is built.

  Args:
    jacobian: The heads' gradients, one row a head.
    aggregator: The aggregator's name, for the errors.

  Raises:
    TypeError: `jacobian` is not of a floating-point dtype.
    ValueError: `jacobian` is not a matrix, or has no row.
  """
  jacobian = tf.convert_to_tensor(jacobian)
  if not jacobian.dtype.is_floating:
    raise TypeError(f'{aggregator}.aggregate needs a floating-point '
                    f'Jacobian; given dtype {jacobian.dtype.name}.')
  if jacobian.shape.rank != 2:
    raise ValueError(f'{aggregator}.aggregate needs a [K, n] Jacobian, one '
                     f'row a head; given shape {jacobian.shape}.')
  if jacobian.shape[0] == 0:
    raise ValueError(f'{aggregator}.aggregate needs at least one head (one '
                     f'row); given shape {jacobian.shape}.')
  return jacobian


def static_rows(jacobian, aggregator, what):
  """`K`, the Jacobian's number of rows, which `what` needs known."""
  rows = jacobian.shape[0]
  if rows is None:
    raise ValueError(f'{aggregator} needs the number of heads (the '
                     f'Jacobian\'s rows) known while the graph is built, for '
                     f'{what}; given shape {jacobian.shape}.')
  return rows


def checked_vector(values, name, aggregator):
  """A 1-D float64 NumPy copy of `values` (a sequence of numbers)."""
  vector = np.asarray(values, dtype=np.float64)
  if vector.ndim != 1:
    raise ValueError(f'{aggregator}: {name} must be a vector, one number a '
                     f'head; given shape {vector.shape}.')
  if not np.all(np.isfinite(vector)):
    raise ValueError(f'{aggregator}: {name} must be finite; given {vector}.')
  return vector


def check_length(vector, name, rows, aggregator):
  """Raises unless `vector` has one entry for each of the `rows` heads."""
  if rows is not None and len(vector) != rows:
    raise ValueError(f'{aggregator}: {name} has {len(vector)} entries but '
                     f'the Jacobian has {rows} rows (heads).')


def gramian(jacobian64):
  """`G = J J^T`, made exactly symmetric (eigensolvers read one triangle)."""
  product = tf.matmul(jacobian64, jacobian64, transpose_b=True)
  return 0.5 * (product + tf.transpose(product))


def row_norms(gramian64):
  """`||g_i||`, from the Gramian's diagonal (never below 0 from rounding)."""
  return tf.sqrt(tf.maximum(tf.linalg.diag_part(gramian64), 0.))


def eigen(gramian64):
  """`(eigenvalues, eigenvectors, kept)` of a symmetric PSD matrix.

  `kept` marks the eigenvalues above `RANK_TOLERANCE_EPSILONS * K * eps *
  largest`: the others are the null space's, rounded.
  """
  eigenvalues, eigenvectors = tf.linalg.eigh(gramian64)
  rows = tf.cast(tf.shape(gramian64)[0], tf.float64)
  tolerance = (RANK_TOLERANCE_EPSILONS * rows * np.finfo(np.float64).eps *
               tf.reduce_max(eigenvalues))
  return eigenvalues, eigenvectors, eigenvalues > tolerance


def spectral(eigenvectors, values):
  """`V diag(values) V^T`."""
  return tf.matmul(eigenvectors * values[tf.newaxis, :], eigenvectors,
                   transpose_b=True)


def on_kept(function, values, kept):
  """`function(values)` where `kept`, else 0; never evaluated at the others.

  (Not even in the branch `tf.where` drops, whose NaNs would reach the
  gradients.)
  """
  safe = tf.where(kept, values, tf.ones_like(values))
  return tf.where(kept, function(safe), tf.zeros_like(values))


def pseudo_inverse(gramian64):
  """The Moore-Penrose pseudo-inverse of a symmetric PSD matrix."""
  eigenvalues, eigenvectors, kept = eigen(gramian64)
  return spectral(eigenvectors,
                  on_kept(tf.math.reciprocal, eigenvalues, kept))


def combine(weights64, jacobian64, dtype):
  """`sum_i w_i g_i`, in the Jacobian's own dtype."""
  return tf.cast(tf.linalg.matvec(jacobian64, weights64, transpose_a=True),
                 dtype)
