"""`CAGrad`: the best worst-head improvement near the mean gradient.

Conflict-Averse Gradient descent looks, within a ball around the mean
gradient `g_0 = J^T u` (`u_i = 1 / K`), for the direction that most
improves the head improved least:

    max_d min_i g_i . d   subject to   ||d - g_0|| <= c ||g_0||

Its dual is a problem over the simplex (Liu et al., equation 3, as TorchJD
writes it with `G` normalized by its trace):

    w = argmin_{w >= 0, sum w = 1}  w^T G u + c ||g_0|| sqrt(w^T G w)
    d = J^T (u + c ||g_0|| / ||J^T w|| * w)

which is not a quadratic program. At its minimum, `x = c ||g_0|| w /
||J^T w||` satisfies the optimality conditions of

    x(k) = argmin_{x >= 0}  1/2 x^T G x - (k 1 - G u)^T x

for `k` the minimum's value, with `x^T G x = c^2 ||g_0||^2`; and `x^T G x`
grows along `x(k)`. So `x` is where the path `x(k)` first reaches that
norm, found exactly by following its pieces (`quadratic_path`), and
`d = J^T (u + x)`. Where the path is unbounded before reaching that norm,
some convex combination of the rows is 0 and the minimum has `J^T w = 0`:
`d` is 0, as TorchJD makes it for `||J^T w|| < norm_eps`.

B. Liu, X. Liu, X. Jin, P. Stone and Q. Liu, "Conflict-Averse Gradient
Descent for Multi-task Learning", NeurIPS 2021.
"""
import tensorflow as tf

from tensorflow_multihead.aggregation import gramian as gramians
from tensorflow_multihead.aggregation import quadratic_path


def conflict_averse_weights(gramian_matrix, c, norm_eps):
  """The `[K]` weights of `CAGrad`'s direction, from `G = J J^T`.

  Zeros where the best `w` has `||J^T w|| < norm_eps` (with `J` scaled to
  unit Frobenius norm): the heads are then about Pareto-stationary, and
  TorchJD returns 0 there too.
  """
  normalized = gramians.normalize_by_trace(gramian_matrix, norm_eps)
  size = tf.shape(normalized)[0]
  mean = tf.fill([size], 1. / tf.cast(size, tf.float64))
  towards_mean = tf.linalg.matvec(normalized, mean)
  radius = c * tf.sqrt(tf.maximum(tf.reduce_sum(mean * towards_mean), 0.))
  end = quadratic_path.point_at_norm(
      normalized, towards_mean, tf.where(radius > 0., radius, 1.))
  total = tf.reduce_sum(end.x)
  simplex = end.x / tf.where(total > 0., total, 1.)
  norm = tf.sqrt(tf.maximum(
      tf.reduce_sum(simplex * tf.linalg.matvec(normalized, simplex)), 0.))
  moved = mean + radius / tf.where(norm > 0., norm, 1.) * simplex
  found = tf.logical_and(end.reached, norm >= norm_eps)
  # With radius 0 (c = 0, or a zero mean), d is the mean, as the problem's
  # minimum over the simplex then is the row least aligned with it.
  least_aligned = tf.argmin(towards_mean, output_type=tf.int32)
  mean_found = tf.sqrt(tf.gather(tf.linalg.diag_part(normalized),
                                 least_aligned)) >= norm_eps
  return tf.where(radius > 0.,
                  tf.where(found, moved, tf.zeros_like(moved)),
                  tf.where(mean_found, mean, tf.zeros_like(mean)))


class CAGrad(gramians.GramianWeighted):
  """Conflict-Averse Gradient descent: the worst head's best improvement.

      d = argmax_d min_i g_i . d   subject to   ||d - g_0|| <= c ||g_0||

  with `g_0` the mean of the rows, solved through its dual over the simplex,

      w = argmin_{w >= 0, sum w = 1}  g_w . g_0 + c ||g_0|| ||g_w||,
      d = g_0 + c ||g_0|| g_w / ||g_w||,      g_w = J^T w,

  exactly (a finite path-following method, see the module). `c = 0` gives
  the mean; a larger `c` trades the mean's progress for the worst head's.
  `d = 0` where `||g_w|| < norm_eps ||J||_F`, as in TorchJD.

  B. Liu, X. Liu, X. Jin, P. Stone and Q. Liu, "Conflict-Averse Gradient
  Descent for Multi-task Learning", NeurIPS 2021; TorchJD's `CAGrad`, which
  has no default for `c`.

  Args:
    c: The radius of the ball, relative to `||g_0||`: a number `>= 0`.
    norm_eps: See above; TorchJD's default.
    shared_variables: See `Aggregator`.
    shared_representation: See `Aggregator`.

  >>> import tensorflow as tf
  >>> jacobian = tf.constant([[1., 0.], [-0.5, 1.]])
  >>> # The mean [0.25, 0.5] improves the first head by 0.25, the second by
  >>> # 0.375. Within 0.5 ||g_0|| of it, CAGrad improves both by 0.4579.
  >>> direction = CAGrad(c=0.5).aggregate(jacobian)
  >>> tf.linalg.matvec(jacobian, direction).numpy().round(4)
  array([0.4579, 0.4579], dtype=float32)
  """

  def __init__(self, c=0.5, norm_eps=0.0001, shared_variables=None,
               shared_representation=None):
    super().__init__(shared_variables=shared_variables,
                     shared_representation=shared_representation)
    self.c = gramians.non_negative_number(c, 'CAGrad c')
    self.norm_eps = gramians.non_negative_number(norm_eps, 'CAGrad norm_eps')

  def weights(self, gramian_matrix):
    return conflict_averse_weights(gramian_matrix, self.c, self.norm_eps)

  def __repr__(self):
    return f'CAGrad(c={self.c!r}, norm_eps={self.norm_eps!r})'
