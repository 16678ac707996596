"""`MGDA`: the minimum-norm point of the convex hull of the rows, exactly.

Désidéri's common descent direction is the point of smallest norm in the
convex hull of the heads' gradients:

    d = J^T w,   w = argmin_{w >= 0, sum_i w_i = 1} ||J^T w||^2

It makes the same, largest possible, first-order progress on every head it
does not leave behind: `g_i . d >= ||d||^2` for every `i`, with equality
where `w_i > 0`. `d = 0` exactly when some convex combination of the
gradients is 0 (the point is Pareto-stationary).

TorchJD, as Sener and Koltun, approximates `w` by Frank-Wolfe steps
(`epsilon=0.001, max_iters=100`). Here it is exact: with `x = s w`, the
non-negative least-squares problem

    minimize_{x >= 0}  x^T G x + c (1^T x - 1)^2

has its minimum at `x = w c / (c + ||J^T w||^2)` for any `c > 0` (for a
fixed sum `s`, the best `x` is `s w`; the best `s` follows), so that `w`
is `x / sum(x)`: one problem, well posed even when `d = 0`. `G` is
normalized by its trace and `c` is its smallest diagonal entry, a bound on
`||d||^2` of the same order, which keeps the two terms commensurate when
rows differ in norm. With the rows linearly independent, `G + c 1 1^T` is
positive definite and block pivoting (`quadratic_pivoting`) solves the
problem in a step or two (at 128 heads, 1 ms instead of 80); where it does
not end at a checked minimum, the finite active-set method of `quadratic`,
which allows a singular matrix, solves it.

J.-A. Désidéri, "Multiple-gradient descent algorithm (MGDA) for
multiobjective optimization", Comptes Rendus Mathematique 350, 2012;
O. Sener and V. Koltun, "Multi-Task Learning as Multi-Objective
Optimization", NeurIPS 2018.
"""
import tensorflow as tf

from tensorflow_multihead.aggregation import base
from tensorflow_multihead.aggregation import quadratic
from tensorflow_multihead.aggregation import quadratic_pivoting
from tensorflow_multihead.aggregation import small_linalg

# The least `c` relative to the largest diagonal entry: with a zero row, the
# smallest entry is 0 and `c` must stay positive.
_MIN_SUM_WEIGHT = 1e-12
# Block pivoting steps before the problem goes to Lawson and Hanson's method
# instead: where the matrix is positive definite it takes one or two.
_PIVOTING_STEPS = 16


def min_norm_weights(gramian64):
  """The `[K]` convex weights of the minimum-norm point of the rows' hull.

  Args:
    gramian64: `G = J J^T`, `[K, K]` float64.

  Returns:
    `w >= 0`, summing to 1, minimizing `w^T G w`; `1 / K` each when `G` is 0.
  """
  normalized = small_linalg.normalize_by_trace(gramian64, 0.)
  diagonal = tf.linalg.diag_part(normalized)
  sum_weight = tf.maximum(tf.reduce_min(diagonal),
                          _MIN_SUM_WEIGHT * tf.reduce_max(diagonal))
  size = tf.shape(normalized)[0]
  scaled = _nonnegative_minimum(normalized + sum_weight,
                                tf.fill([1, size], sum_weight))
  total = tf.reduce_sum(scaled)
  uniform = tf.fill([size], 1. / tf.cast(size, tf.float64))
  return tf.where(total > 0., scaled / tf.where(total > 0., total, 1.),
                  uniform)


def _nonnegative_minimum(gram, linear):
  """`argmin_{x >= 0} 1/2 x^T A x - b^T x` for `A = G + c 1 1^T`, `b = c 1`.

  Block pivoting (a step or two, each one Cholesky factorization of the
  free block) where it ends, within `_PIVOTING_STEPS`, at a point that meets
  the optimality conditions and has `sum(x) <= 1`, as the minimum has (it
  is `c / (c + ||J^T w||^2)` times `w`); Lawson and Hanson's method (about
  `K` steps), which allows a singular `A` (rows linearly dependent),
  otherwise. The bound on `sum(x)` keeps the check's rounding tolerance,
  which grows with `x`, from passing a large `x` that a nearly singular
  factor made.
  """
  pivoted = quadratic_pivoting.block_pivoting_minimum(
      gram, linear, max_iterations=_PIVOTING_STEPS).x
  accepted = tf.logical_and(
      quadratic.meets_optimality(gram, linear, pivoted)[0],
      tf.reduce_sum(pivoted) <= 1. + 1e-12)
  return tf.cond(
      accepted, lambda: pivoted[0],
      lambda: quadratic.nonnegative_quadratic_minimum(gram, linear).x[0])


class MGDA(base.GramianWeighted):
  """The exact minimum-norm point of the convex hull of the rows.

      d = J^T w,   w = argmin_{w >= 0, sum_i w_i = 1} ||J^T w||^2

  so that `g_i . d >= ||d||^2` for every head `i` (with equality where
  `w_i > 0`), and `d = 0` where the heads' gradients balance out.

  J.-A. Désidéri, "Multiple-gradient descent algorithm (MGDA) for
  multiobjective optimization", Comptes Rendus Mathematique 350, 2012;
  O. Sener and V. Koltun, "Multi-Task Learning as Multi-Objective
  Optimization", NeurIPS 2018.

  TorchJD's `MGDA(epsilon, max_iters)` approximates `w` by Frank-Wolfe
  steps; this one solves for it exactly (a finite active-set method) and so
  takes no such parameters.

  >>> import tensorflow as tf
  >>> # The closest point to 0 of the segment from [1, 0] to [0, 2].
  >>> MGDA().aggregate(tf.constant([[1., 0.], [0., 2.]])).numpy()
  array([0.8, 0.4], dtype=float32)
  >>> # Opposite gradients: the hull holds 0 (to rounding).
  >>> direction = MGDA().aggregate(tf.constant([[1., 1.], [-2., -2.]]))
  >>> float(tf.norm(direction)) < 1e-6
  True
  """

  def weights(self, gramian64):
    return min_norm_weights(gramian64)
