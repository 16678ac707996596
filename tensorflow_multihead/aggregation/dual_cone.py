"""`UPGrad` and `DualProj`: projections onto the dual cone of the rows.

The dual cone of the rows `g_1 .. g_K` of `J` is the set of directions that
work against no head: `{d : g_i . d >= 0 for every i}`. The projection of
`J^T u` onto it is `J^T v`, where `v` solves (Quinton and Rey, Proposition 1)

    minimize_v  v^T G v   subject to   v >= u          (G = J J^T)

a `K x K` problem solved exactly. As in TorchJD, `G` is first normalized by
its trace (or taken as 0 when `trace(G) < norm_eps`) and `reg_eps * I` is
added, so that it is positive definite: block principal pivoting
(`quadratic_pivoting`) then solves it in a few steps. With `reg_eps` below
`MIN_PIVOTING_REG_EPS` (0 included) `G` may be singular, and Lawson and
Hanson's method (`quadratic`), which allows that, solves it instead.

P. Quinton and V. Rey, "Jacobian Descent for Multi-Objective Optimization",
2024 (arXiv:2406.16232).
"""
import tensorflow as tf

from tensorflow_multihead.aggregation import gramian as gramians
from tensorflow_multihead.aggregation import quadratic
from tensorflow_multihead.aggregation import quadratic_pivoting

# With reg_eps at least this, the normalized G + reg_eps I has a condition
# number at most about 1 / reg_eps, which Cholesky factors in float64.
MIN_PIVOTING_REG_EPS = 1e-8


def dual_cone_weights(gramian_matrix, lower_bounds, norm_eps, reg_eps):
  """The `v` of each row `u` of `lower_bounds`: `argmin v^T G v, v >= u`.

  Args:
    gramian_matrix: `G`, `[K, K]` float64.
    lower_bounds: `[B, K]` float64, one problem per row.
    norm_eps: Below this trace, `G` counts as 0.
    reg_eps: Added to the normalized `G`'s diagonal.

  Returns:
    `[B, K]` float64: each problem's `v`.
  """
  size = tf.shape(gramian_matrix)[0]
  regularized = (gramians.normalize_by_trace(gramian_matrix, norm_eps) +
                 reg_eps * tf.eye(size, dtype=tf.float64))
  # With v = u + x: minimize 1/2 x^T A x + (A u)^T x over x >= 0.
  solve = (quadratic_pivoting.block_pivoting_minimum
           if reg_eps >= MIN_PIVOTING_REG_EPS else
           quadratic.nonnegative_quadratic_minimum)
  excess = solve(regularized, -tf.matmul(lower_bounds, regularized)).x
  return lower_bounds + excess


class _DualConeProjection(gramians.GramianWeighted):
  """What `UPGrad` and `DualProj` share: their parameters."""

  def __init__(self, pref_vector=None, norm_eps=0.0001, reg_eps=0.0001,
               shared_variables=None, shared_representation=None):
    super().__init__(shared_variables=shared_variables,
                     shared_representation=shared_representation)
    name = type(self).__name__
    self.pref_vector = gramians.checked_pref_vector(pref_vector, name)
    self.norm_eps = gramians.non_negative_number(norm_eps, f'{name} norm_eps')
    self.reg_eps = gramians.non_negative_number(reg_eps, f'{name} reg_eps')

  def _preferences(self, gramian_matrix):
    return gramians.pref_weights(self.pref_vector,
                                 tf.shape(gramian_matrix)[0],
                                 type(self).__name__)

  def __repr__(self):
    pref = None if self.pref_vector is None else self.pref_vector.tolist()
    return (f'{type(self).__name__}(pref_vector={pref!r}, '
            f'norm_eps={self.norm_eps!r}, reg_eps={self.reg_eps!r})')


class UPGrad(_DualConeProjection):
  """Each row projected onto the dual cone, the projections weighted.

      d = sum_i u_i * pi(g_i),   pi(g) = argmin_{d' : J d' >= 0} ||d' - g||

  computed as `d = J^T w` with `w = sum_i v_i`, where `v_i` minimizes
  `v^T G v` subject to `v >= u_i e_i`: `K` small problems, solved together.
  `d` works against no head (`g_j . d >= 0` for every `j`); where the rows do
  not conflict, `d = sum_i u_i g_i`.

  P. Quinton and V. Rey, "Jacobian Descent for Multi-Objective Optimization",
  2024 (arXiv:2406.16232); TorchJD's `UPGrad`.

  Args:
    pref_vector: The weights `u` of the projections: `K` numbers, `1 / K`
      each when None.
    norm_eps: Below this value of `trace(G) = ||J||_F^2`, `G` counts as 0
      and `d` is `sum_i u_i g_i`. TorchJD's default.
    reg_eps: Added to the diagonal of `G / trace(G)`. TorchJD's default.
    shared_variables: See `Aggregator`.
    shared_representation: See `Aggregator`.

  TorchJD 0.18 takes `norm_eps` and `reg_eps` on its projector
  (`QuadprogProjector(norm_eps=1e-4, reg_eps=1e-4)`) rather than on the
  aggregator; the defaults are the same.

  >>> import tensorflow as tf
  >>> # Two heads in conflict (their inner product is -1).
  >>> direction = UPGrad().aggregate(tf.constant([[1., 0.], [-1., 1.]]))
  >>> direction.numpy().round(3)  # Without reg_eps: [0.25, 0.75].
  array([0.25, 0.75], dtype=float32)
  >>> # Against neither head: both inner products are >= 0.
  >>> tf.linalg.matvec(tf.constant([[1., 0.], [-1., 1.]]),
  ...                  direction).numpy().round(3)
  array([0.25, 0.5 ], dtype=float32)
  """

  def weights(self, gramian_matrix):
    preferences = self._preferences(gramian_matrix)
    projections = dual_cone_weights(gramian_matrix, tf.linalg.diag(
        preferences), self.norm_eps, self.reg_eps)
    return tf.reduce_sum(projections, axis=0)


class DualProj(_DualConeProjection):
  """The weighted mean of the rows, projected onto the dual cone.

      d = pi(sum_i u_i g_i),   pi(g) = argmin_{d' : J d' >= 0} ||d' - g||

  computed as `d = J^T v` where `v` minimizes `v^T G v` subject to `v >= u`.
  This is the projection of Gradient Episodic Memory (D. Lopez-Paz and M.
  Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017,
  equation 11), used as an aggregator by P. Quinton and V. Rey, "Jacobian
  Descent for Multi-Objective Optimization", 2024 (arXiv:2406.16232);
  TorchJD's `DualProj`.

  Args: as `UPGrad`'s: `pref_vector` (`u`), `norm_eps`, `reg_eps`,
    `shared_variables`, `shared_representation`.

  >>> import tensorflow as tf
  >>> jacobian = tf.constant([[1., 0.], [-1., 1.]])
  >>> # The mean [0, 0.5] already works against neither head: it stays.
  >>> DualProj().aggregate(jacobian).numpy()
  array([0. , 0.5], dtype=float32)
  >>> # Weighted towards the first head, the mean [0.5, 0.25] conflicts
  >>> # with the second; projected, it is orthogonal to it.
  >>> DualProj(pref_vector=[0.75, 0.25]).aggregate(jacobian).numpy().round(3)
  array([0.375, 0.375], dtype=float32)
  """

  def weights(self, gramian_matrix):
    preferences = self._preferences(gramian_matrix)
    return dual_cone_weights(gramian_matrix, preferences[None],
                             self.norm_eps, self.reg_eps)[0]
