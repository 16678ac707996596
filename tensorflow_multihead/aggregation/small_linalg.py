"""The small `K x K` linear algebra of the closed-form aggregators, in float64.

The aggregators of `projection`, `balancing` and `stochastic` work on the
Jacobian's Gramian `G = J J^T` (`G[i, j] = g_i . g_j`), whose entries span
the square of the heads' gradient-norm ratio (10^8 for norms 10^4 apart). A
float32 decomposition, accurate to 1e-7 of the largest entry, would lose the
small heads: `G` and everything derived from it is float64, and only the
final weights go back to the Jacobian's dtype, to combine its rows.

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
# `gramian` and `by_column_blocks` work on blocks of about this many entries
# of the Jacobian (2 MB in float64).
BLOCK_ENTRIES = 2**18


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


def gramian(jacobian):
  """`G = J J^T` in float64, made exactly symmetric (eigh reads a triangle).

  A Jacobian of another dtype is cast a block of columns at a time: each
  block's float64 copy stays in cache, where a float64 copy of the whole
  Jacobian (64 MB at 128 heads and 65,536 parameters) made the product
  about three times slower.
  """
  if jacobian.dtype == tf.float64:
    return _symmetric(tf.matmul(jacobian, jacobian, transpose_b=True))
  num_heads, width = tf.shape(jacobian)[0], tf.shape(jacobian)[1]
  columns = _block_columns(num_heads)
  full_blocks = width // columns

  def add_block(start, stop, total):
    block = tf.cast(jacobian[:, start:stop], tf.float64)
    return total + tf.matmul(block, block, transpose_b=True)

  _, total = tf.while_loop(
      lambda index, _: index < full_blocks,
      lambda index, total: (index + 1, add_block(
          index * columns, (index + 1) * columns, total)),
      (tf.constant(0), tf.zeros([num_heads, num_heads], tf.float64)))
  return _symmetric(add_block(full_blocks * columns, width, total))


def _symmetric(product):
  return 0.5 * (product + tf.transpose(product))


def _block_columns(num_heads):
  return tf.maximum(BLOCK_ENTRIES // num_heads, 256)


def by_column_blocks(function, jacobian, *columns):
  """`function` of the Jacobian's blocks of columns, the results joined.

  `function(block, *column_blocks)` maps a `[K, c]` block of `jacobian`
  (and the same `c` entries of each `[n]` tensor in `columns`) to its `[c]`
  result; the `[n]` result joins them. Elementwise work over the whole
  `[K, n]` Jacobian would allocate (and fault in) `[K, n]` temporaries at
  every op, some ten times slower than blocks that stay in cache.
  """
  width = tf.shape(jacobian)[1]
  size = _block_columns(tf.shape(jacobian)[0])
  num_blocks = (width + size - 1) // size

  def add_block(index, results):
    part = slice(index * size, (index + 1) * size)
    return index + 1, results.write(index, function(
        jacobian[:, part], *(column[part] for column in columns)))

  _, results = tf.while_loop(
      lambda index, _: index < num_blocks, add_block,
      (tf.constant(0), tf.TensorArray(jacobian.dtype, size=num_blocks,
                                      infer_shape=False)))
  return tf.reshape(results.concat(), [width])


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


def combine(weights64, jacobian):
  """`sum_i w_i g_i`, summed in float64, in the Jacobian's own dtype.

  In float64 since the heads may cancel out (a conflict PCGrad removes): a
  float32 sum would leave rounding noise of the gradients' size. Cast a
  block at a time, as in `gramian`.
  """
  if jacobian.dtype == tf.float64:
    return tf.linalg.matvec(jacobian, weights64, transpose_a=True)
  return by_column_blocks(
      lambda block: tf.cast(tf.linalg.matvec(
          tf.cast(block, tf.float64), weights64, transpose_a=True),
                            jacobian.dtype), jacobian)
