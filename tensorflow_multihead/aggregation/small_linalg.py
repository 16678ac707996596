"""What every aggregator shares: its checks, and the `K x K` algebra in float64.

An aggregator reads a `[K, n]` Jacobian `J` (row `i`: head `i`'s gradient),
most often through its Gramian `G = J J^T` (`G[i, j] = g_i . g_j`), and
returns `J^T w` for weights `w` computed from `G`. Both products are taken
in float64, and so is everything computed from `G`: with rows whose norms
differ by 10^4, `G`'s entries differ by 10^8, beyond what float32 resolves,
and weights from such a Gramian make rows cancel. Only the direction goes
back to the Jacobian's dtype.

>>> import tensorflow as tf
>>> jacobian = tf.constant([[3., 4.], [1., 0.]])
>>> gramian(jacobian).numpy()
array([[25.,  3.],
       [ 3.,  1.]])
>>> combine(tf.constant([1., -2.], tf.float64), jacobian).numpy()
array([1., 4.], dtype=float32)
>>> rank_one = tf.constant([[1., 0.], [1., 0.]], tf.float64)
>>> pseudo_inverse(gramian(rank_one)).numpy()
array([[0.25, 0.25],
       [0.25, 0.25]])
"""
import numbers

import numpy as np
import tensorflow as tf

from tensorflow_multihead.aggregation import layer_jacobian

# An eigenvalue of a Gramian at most this many `K * epsilon` times its
# largest counts as zero. The eigenvalues of an exactly singular float64
# Gramian come out at about `K * epsilon * largest` (TorchJD's threshold,
# that of `torch.linalg.pinv`), on either side of it; ten times more keeps
# that rounding out of the inverses, where it would be divided by itself.
RANK_TOLERANCE_EPSILONS = 10.
# `gramian`, `combine` and `by_column_blocks` work on blocks of about this
# many entries of the Jacobian (2 MB in float64).
BLOCK_ENTRIES = 2**18
# `gramian` and `combine` cast a Jacobian of at most this many entries (24 MB
# in float64) whole: on a 2-core AMD EPYC, faster than blocks up to 48 heads
# of 65,536 parameters, slower from 64 heads.
WHOLE_CAST_ENTRIES = 3 * 2**20
# `gramian` multiplies the halves of the rows apart from this many heads.
HALVES_MIN_HEADS = 96

# Checks, while the graph is built.


def checked_jacobian(jacobian, aggregator):
  """The `[K, n]` Jacobian as a float tensor, checked while the graph is built.

  Args:
    jacobian: The heads' gradients, one row a head.
    aggregator: The aggregator's name, for the errors.

  Raises:
    TypeError: `jacobian` is not of a floating-point dtype.
    ValueError: `jacobian` is not a matrix, or has no row.
  """
  if not isinstance(jacobian, layer_jacobian.LayerJacobian):
    jacobian = tf.convert_to_tensor(jacobian)
  if not jacobian.dtype.is_floating:
    raise TypeError(f'{aggregator}.aggregate needs a floating-point '
                    f'Jacobian; given dtype {jacobian.dtype.name}.')
  if jacobian.shape.rank is not None and jacobian.shape.rank != 2:
    raise ValueError(f'{aggregator}.aggregate needs a [K, n] Jacobian, one '
                     f'row a head; given shape {jacobian.shape}.')
  if jacobian.shape.rank == 2 and jacobian.shape[0] == 0:
    raise ValueError(f'{aggregator}.aggregate needs at least one row (head); '
                     f'given shape {jacobian.shape}.')
  return jacobian


def static_rows(jacobian, aggregator, what):
  """`K`, the Jacobian's number of rows, which `what` needs known."""
  rows = jacobian.shape[0] if jacobian.shape.rank is not None else None
  if rows is None:
    raise ValueError(f'{aggregator} needs the number of heads (the '
                     f'Jacobian\'s rows) known while the graph is built, for '
                     f'{what}; given shape {jacobian.shape}.')
  return rows


def checked_vector(values, name, aggregator):
  """A float64 NumPy vector of `values` (numbers, one a head), or None.

  Constant tensors are taken for their value.

  Raises:
    TypeError: Not numbers, or a tensor without a constant value.
    ValueError: Not a non-empty vector, or not finite.
  """
  if values is None:
    return None
  if isinstance(values, (tf.Tensor, tf.Variable)):
    constant = tf.get_static_value(values)
    if constant is None:
      raise TypeError(f'{aggregator} {name} must be a constant vector of '
                      'numbers.')
    values = constant
  try:
    vector = np.asarray(values, np.float64)
  except (TypeError, ValueError) as error:
    raise TypeError(f'{aggregator} {name} must be a vector of numbers; '
                    f'given {values!r}.') from error
  if vector.ndim != 1 or vector.size == 0:
    raise ValueError(f'{aggregator} {name} must be a vector, one number a '
                     f'head; given shape {vector.shape}.')
  if not np.all(np.isfinite(vector)):
    raise ValueError(f'{aggregator} {name} must be finite; given '
                     f'{vector!r}.')
  return vector


def non_negative_number(value, what, at_most=None):
  """`value` as a float, checked to be a number `>= 0` (and `<= at_most`)."""
  if isinstance(value, bool) or not isinstance(value, (numbers.Real,
                                                       np.number)):
    raise TypeError(f'{what} must be a number; given {value!r} of type '
                    f'{type(value).__name__}.')
  if at_most is not None and not 0 <= value <= at_most:
    raise ValueError(f'{what} must be in [0, {at_most:g}]; given {value!r}.')
  if not value >= 0:
    raise ValueError(f'{what} must be >= 0; given {value!r}.')
  return float(value)


def per_head(vector, num_heads, aggregator, name='pref_vector', default=None):
  """A checked vector (`checked_vector`) as a float64 `[K]` tensor.

  Args:
    vector: A float64 NumPy vector, or None.
    num_heads: `K`, a scalar int tensor (`tf.shape(...)[0]`).
    aggregator: The aggregator's name, for the errors.
    name: The vector's name, for the errors.
    default: The value of every entry when `vector` is None; `1 / K` if
      this is None too.

  Raises:
    ValueError: `vector` has not `K` entries, told while the graph is built
      when `K` is known then, else when it runs (`InvalidArgumentError`).
  """
  if vector is None:
    fill = (1. / tf.cast(num_heads, tf.float64) if default is None else
            tf.constant(default, tf.float64))
    return tf.fill([num_heads], fill)
  static_size = tf.get_static_value(num_heads)
  if static_size is not None:
    if len(vector) != static_size:
      raise ValueError(f'{aggregator} {name} has {len(vector)} entries; the '
                       f'Jacobian has {static_size} rows (heads).')
    return tf.constant(vector, tf.float64)
  with tf.control_dependencies([tf.debugging.assert_equal(
      len(vector), num_heads,
      message=f'{aggregator} {name} and the Jacobian differ in length')]):
    return tf.constant(vector, tf.float64)


# The Jacobian's products, a block of columns at a time.


def gramian(jacobian):
  """`G = J J^T` in float64, made exactly symmetric (eigh reads a triangle).

  The Jacobian is a constant to the aggregators: nothing differentiates
  through their solvers (as in TorchJD). A float32 (or narrower) Jacobian
  larger than `WHOLE_CAST_ENTRIES` is cast a block of columns at a time:
  each block's float64 copy stays in cache, where a float64 copy of the
  whole Jacobian (64 MB at 128 heads and 65,536 parameters) made the
  product 1.5 times slower; a smaller one is cast whole, which is faster
  than blocks up to about that size. A `LayerJacobian` gives its Gramian
  from its factors.
  """
  if isinstance(jacobian, layer_jacobian.LayerJacobian):
    return jacobian.gramian64()
  jacobian = tf.stop_gradient(jacobian)
  if _cast_whole(jacobian):
    return _symmetric(_product(tf.cast(jacobian, tf.float64)))
  num_heads, width = tf.shape(jacobian)[0], tf.shape(jacobian)[1]
  columns = _block_columns(num_heads)
  full_blocks = width // columns

  def add_block(start, stop, total):
    return total + _product(tf.cast(jacobian[:, start:stop], tf.float64))

  _, total = tf.while_loop(
      lambda index, _: index < full_blocks,
      lambda index, total: (index + 1, add_block(
          index * columns, (index + 1) * columns, total)),
      (tf.constant(0), tf.zeros([num_heads, num_heads], tf.float64)))
  return _symmetric(add_block(full_blocks * columns, width, total))


def _cast_whole(jacobian):
  """Whether to cast the Jacobian whole: float64 already, or small enough."""
  if jacobian.dtype == tf.float64:
    return True
  shape = jacobian.shape
  return (shape.rank == 2 and shape.is_fully_defined() and
          shape[0] * shape[1] <= WHOLE_CAST_ENTRIES)


def _product(rows):
  """`R R^T`; from three products of its halves of rows for many rows.

  The halves skip one of the four quarters, the transpose of another:
  3/4 of the multiply-adds, 5 to 10% faster from `HALVES_MIN_HEADS` rows
  (TensorFlow has no symmetric rank-k product), slower below.
  """
  num_heads = rows.shape[0]
  if num_heads is None or num_heads < HALVES_MIN_HEADS:
    return tf.matmul(rows, rows, transpose_b=True)
  half = num_heads // 2
  top, bottom = rows[:half], rows[half:]
  corner = tf.matmul(top, bottom, transpose_b=True)
  return tf.concat([
      tf.concat([tf.matmul(top, top, transpose_b=True), corner], 1),
      tf.concat([tf.transpose(corner),
                 tf.matmul(bottom, bottom, transpose_b=True)], 1)], 0)


def _symmetric(product):
  return 0.5 * (product + tf.transpose(product))


def _block_columns(num_heads):
  return tf.maximum(BLOCK_ENTRIES // num_heads, 256)


def combine(weights64, jacobian):
  """`J^T w = sum_i w_i g_i`, summed in float64, in the Jacobian's dtype.

  In float64 since the heads may cancel out (a conflict PCGrad removes, or
  weights from a badly scaled Gramian, many orders of magnitude apart): a
  float32 sum would leave rounding noise of the gradients' size. Cast as
  in `gramian`: whole when small, else a block at a time (four times
  faster than whole at 128 heads and 65,536 parameters). A `LayerJacobian`
  combines its factors.
  """
  if isinstance(jacobian, layer_jacobian.LayerJacobian):
    return jacobian.combine(weights64)
  jacobian = tf.stop_gradient(jacobian)
  weights64 = tf.cast(weights64, tf.float64)
  if _cast_whole(jacobian):
    return tf.cast(tf.linalg.matvec(tf.cast(jacobian, tf.float64), weights64,
                                    transpose_a=True), jacobian.dtype)
  return by_column_blocks(
      lambda block: tf.cast(tf.linalg.matvec(
          tf.cast(block, tf.float64), weights64, transpose_a=True),
                            jacobian.dtype), jacobian)


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


# Functions of the Gramian.


def all_finite(matrix):
  """Whether every entry is finite: a NaN in the Jacobian gives NaN out."""
  return tf.reduce_all(tf.math.is_finite(matrix))


def nan_unless(finite, weights):
  """`weights`, or NaN everywhere when the Gramian was not finite."""
  return tf.where(finite, weights,
                  tf.fill(tf.shape(weights),
                          tf.constant(float('nan'), weights.dtype)))


def normalize_by_trace(gramian64, norm_eps):
  """`G / trace(G)`, or zeros where `trace(G) < norm_eps` or is 0.

  `trace(G)` is the squared Frobenius norm of `J`: the normalized Gramian is
  that of `J / ||J||_F`, as TorchJD normalizes it before its solvers.
  """
  trace = tf.linalg.trace(gramian64)
  tiny = tf.logical_or(trace < norm_eps, tf.equal(trace, 0.))
  safe_trace = tf.where(tiny, tf.ones_like(trace), trace)
  return tf.where(tiny, tf.zeros_like(gramian64), gramian64 / safe_trace)


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
