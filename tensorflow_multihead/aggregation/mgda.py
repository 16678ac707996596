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
is `x / sum(x)`: one problem for the finite active-set method of
`quadratic`, well posed even when `d = 0`. `G` is normalized by its trace
and `c` is its smallest diagonal entry, a bound on `||d||^2` of the same
order, which keeps the two terms commensurate when rows differ in norm.

J.-A. Désidéri, "Multiple-gradient descent algorithm (MGDA) for
multiobjective optimization", Comptes Rendus Mathematique 350, 2012;
O. Sener and V. Koltun, "Multi-Task Learning as Multi-Objective
Optimization", NeurIPS 2018.
"""
import tensorflow as tf

from tensorflow_multihead.aggregation import gramian as gramians
from tensorflow_multihead.aggregation import quadratic

# The least `c` relative to the largest diagonal entry: with a zero row, the
# smallest entry is 0 and `c` must stay positive.
_MIN_SUM_WEIGHT = 1e-12


def min_norm_weights(gramian_matrix):
  """The `[K]` convex weights of the minimum-norm point of the rows' hull.

  Args:
    gramian_matrix: `G = J J^T`, `[K, K]` float64.

  Returns:
    `w >= 0`, summing to 1, minimizing `w^T G w`; `1 / K` each when `G` is 0.
  """
  normalized = gramians.normalize_by_trace(gramian_matrix, 0.)
  diagonal = tf.linalg.diag_part(normalized)
  sum_weight = tf.maximum(tf.reduce_min(diagonal),
                          _MIN_SUM_WEIGHT * tf.reduce_max(diagonal))
  size = tf.shape(normalized)[0]
  scaled = quadratic.nonnegative_quadratic_minimum(
      normalized + sum_weight, tf.fill([1, size], sum_weight)).x[0]
  total = tf.reduce_sum(scaled)
  uniform = tf.fill([size], 1. / tf.cast(size, tf.float64))
  return tf.where(total > 0., scaled / tf.where(total > 0., total, 1.),
                  uniform)


class MGDA(gramians.GramianWeighted):
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

  def weights(self, gramian_matrix):
    return min_norm_weights(gramian_matrix)
