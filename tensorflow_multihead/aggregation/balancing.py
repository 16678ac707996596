"""Closed-form balancing: one linear solve makes every head count alike.

`IMTLG` gives a direction with the same projection on every head's unit
gradient, `ConFIG` one with the same cosine with every head's gradient, and
`AlignedMTL` aligns the gradients into a system whose singular values are all
equal before weighting them. Each is a function of the Gramian (`G = J J^T`)
or of its eigendecomposition, in float64 (see `small_linalg`).

>>> import tensorflow as tf
>>> jacobian = tf.constant([[2., 0.], [0., 1.]])
>>> IMTLG().aggregate(jacobian).numpy()  # projections 2/3 on both axes
array([0.6666667, 0.6666667], dtype=float32)
"""
import tensorflow as tf

from tensorflow_multihead.aggregation import base
from tensorflow_multihead.aggregation import small_linalg

# `IMTLG` gives the zero direction when its weights' sum, made dimensionless
# by the largest gradient norm, is below this: the heads then cancel out.
IMTLG_ZERO_SUM = 1e-12
# ConFIG normalizes its direction by at least this, as TorchJD does.
CONFIG_MIN_NORM = 1e-12
SCALE_MODES = ('min', 'median', 'rmse')


def imtlg_weights(gramian64):
  """IMTL-G's weights: `v = G^+ sqrt(diag G)`, then `v / sum(v)`."""
  norms = small_linalg.row_norms(gramian64)
  unnormalized = tf.linalg.matvec(small_linalg.pseudo_inverse(gramian64),
                                  norms)
  total = tf.reduce_sum(unnormalized)
  # v scales as 1 / ||g||: compared at the heads' own scale, not absolutely.
  cancelled = tf.abs(total) * tf.reduce_max(norms) < IMTLG_ZERO_SUM
  return tf.where(cancelled, tf.zeros_like(unnormalized),
                  unnormalized / tf.where(cancelled, tf.ones_like(total),
                                          total))


def balance_transformation(gramian64, scale_mode='min'):
  """Aligned-MTL's `B = sqrt(s) V_r Sigma_r^-1 V_r^T`, from `G = V Sigma^2 V^T`.

  `V_r`, `Sigma_r`: the eigenvectors and the square roots of the eigenvalues
  above the rank tolerance; `s` their smallest (`'min'`), lower median
  (`'median'`) or mean (`'rmse'`). `B G B^T` has all its non-zero eigenvalues
  equal to `s`. The identity when `G` is 0.
  """
  eigenvalues, eigenvectors, kept = small_linalg.eigen(gramian64)
  rank = tf.reduce_sum(tf.cast(kept, tf.int32))
  scale = _scale(tf.boolean_mask(eigenvalues, kept), rank, scale_mode)
  inverse_roots = small_linalg.on_kept(tf.math.rsqrt, eigenvalues, kept)
  transformation = tf.sqrt(scale) * small_linalg.spectral(eigenvectors,
                                                          inverse_roots)
  num_heads = tf.shape(gramian64)[0]
  return tf.where(rank > 0, transformation,
                  tf.eye(num_heads, dtype=tf.float64))


def _scale(kept_eigenvalues, rank, scale_mode):
  """The target eigenvalue `s` of the kept eigenvalues; 1 if none is kept."""
  # A trailing 1 keeps the indexing valid at rank 0 (the result unused then).
  ascending = tf.concat(
      [tf.sort(kept_eigenvalues), tf.ones([1], tf.float64)], 0)
  if scale_mode == 'min':
    scale = ascending[0]
  elif scale_mode == 'median':
    # The lower of the two middle values for an even rank, as torch.median.
    scale = ascending[tf.maximum(rank - 1, 0) // 2]
  else:
    scale = tf.math.divide_no_nan(tf.reduce_sum(kept_eigenvalues),
                                  tf.cast(rank, tf.float64))
  return tf.where(rank > 0, scale, tf.ones_like(scale))


def config_weights(gramian64, preferences):
  """ConFIG's weights of the original rows.

  With `u_i = g_i / ||g_i||` (0 for a zero row) and `U` their matrix,
  `b = U^+ w = U^T (U U^T)^+ w`, `b_hat = b / max(||b||, 1e-12)` and
  `d = (sum_i g_i . b_hat) b_hat`: all of it from the Gramian.
  """
  norms = small_linalg.row_norms(gramian64)
  inverse_norms = tf.math.divide_no_nan(tf.ones_like(norms), norms)
  cosines = gramian64 * inverse_norms[:, tf.newaxis] * inverse_norms
  unit_weights = tf.linalg.matvec(small_linalg.pseudo_inverse(cosines),
                                  preferences)
  # b = sum_i a_i g_i.
  weights = unit_weights * inverse_norms
  products = tf.linalg.matvec(gramian64, weights)  # g_i . b
  norm = tf.maximum(tf.sqrt(tf.maximum(tf.tensordot(weights, products, 1),
                                       0.)), CONFIG_MIN_NORM)
  return weights * tf.reduce_sum(products) / tf.square(norm)


class _Gramian(base.Aggregator):
  """An aggregator whose weights are a function of the Gramian alone."""

  def _weights(self, gramian64, num_heads):
    raise NotImplementedError

  def aggregate(self, jacobian):
    name = type(self).__name__
    jacobian = small_linalg.checked_jacobian(jacobian, name)
    with tf.name_scope(name.lower()):
      weights = self._weights(small_linalg.gramian(jacobian),
                              jacobian.shape[0])
      return small_linalg.combine(weights, jacobian)


def _preferences(pref_vector, default, num_heads, aggregator):
  """The `[K]` float64 preference weights: `pref_vector`, else `default`."""
  if pref_vector is None:
    return default
  small_linalg.check_length(pref_vector, 'pref_vector', num_heads,
                            aggregator)
  return tf.constant(pref_vector, tf.float64)


class IMTLG(_Gramian):
  """The gradient part of impartial multi-task learning (IMTL-G).

  `d = J^T a`, with `a = v / sum(v)`, `v = G^+ sqrt(diag G)` (0 when `sum(v)`
  vanishes): with linearly independent rows, the direction whose
  projections on the unit gradients `g_i / ||g_i||` are all equal, among the
  combinations of weights summing to 1. The pseudo-inverse extends it to
  linearly dependent rows.

  Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021, its
  gradient balance in closed form; generalized to dependent rows by Quinton
  and Rey, "Jacobian Descent for Multi-Objective Optimization", 2024.
  Values as TorchJD 0.18's `IMTLG`.

  Args:
    shared_variables, shared_representation: See `Aggregator`.

  >>> import tensorflow as tf
  >>> IMTLG().aggregate(tf.constant([[1., 0.], [1., 1.]])).numpy()
  array([1.      , 0.414...], dtype=float32)
  """

  def _weights(self, gramian64, num_heads):
    del num_heads
    return imtlg_weights(gramian64)


class AlignedMTL(_Gramian):
  """Aligned-MTL: the gradients aligned to one condition number, then weighted.

  With `G = V Sigma^2 V^T` (the rank-`r` part), `B = sqrt(s) V Sigma^-1 V^T`
  turns `J` into `B J`, whose singular values all equal `sqrt(s)`; the
  direction is `d = (B J)^T w = J^T (B w)` for the preference weights `w`
  (`1 / K` each by default). `s` is the smallest eigenvalue kept (`'min'`,
  the paper's), their lower median (`'median'`) or their mean (`'rmse'`).

  Senushkin et al., "Independent Component Alignment for Multi-Task
  Learning", CVPR 2023, Algorithm 1. Values as TorchJD 0.18's
  `AlignedMTL`.

  Args:
    pref_vector: The `K` preference weights `w`; `None`: `1 / K` each.
    scale_mode: `'min'`, `'median'` or `'rmse'`.
    shared_variables, shared_representation: See `Aggregator`.

  >>> import tensorflow as tf
  >>> AlignedMTL().aggregate(tf.constant([[3., 0.], [0., 1.]])).numpy()
  array([0.5, 0.5], dtype=float32)
  """

  def __init__(self, pref_vector=None, scale_mode='min', *,
               shared_variables=None, shared_representation=None):
    super().__init__(shared_variables=shared_variables,
                     shared_representation=shared_representation)
    if pref_vector is not None:
      pref_vector = small_linalg.checked_vector(pref_vector, 'pref_vector',
                                                'AlignedMTL')
    if scale_mode not in SCALE_MODES:
      raise ValueError(f'AlignedMTL: scale_mode must be one of '
                       f'{SCALE_MODES}; given {scale_mode!r}.')
    self.pref_vector = pref_vector
    self.scale_mode = scale_mode

  def _weights(self, gramian64, num_heads):
    num_rows = tf.shape(gramian64)[0]
    mean = tf.fill([num_rows], 1. / tf.cast(num_rows, tf.float64))
    preferences = _preferences(self.pref_vector, mean, num_heads,
                               'AlignedMTL')
    return tf.linalg.matvec(balance_transformation(gramian64,
                                                   self.scale_mode),
                            preferences)

  def __repr__(self):
    pref = None if self.pref_vector is None else self.pref_vector.tolist()
    return f'AlignedMTL(pref_vector={pref}, scale_mode={self.scale_mode!r})'


class ConFIG(_Gramian):
  """Conflict-free inverse gradients (ConFIG): equal cosine with every head.

  With the unit gradients `u_i = g_i / ||g_i||` as the rows of `U`,
  `b = U^+ w` (for linearly independent rows: `u_i . b = w_i`, so with the
  default `w = 1` the same cosine with every gradient) and `d = (sum_i g_i .
  b_hat) b_hat`, `b_hat = b / ||b||`: every head's loss decreases along it
  while their gradients are independent.

  Liu et al., "ConFIG: Towards Conflict-free Training of Physics Informed
  Neural Networks", ICLR 2025, Equation 2. Values as TorchJD 0.18's
  `ConFIG`, but `U^+` is `U^T (U U^T)^+`, through the Gramian: unit rows
  dependent to within about 1e-7 (float32 rounding, say) count as
  dependent, where an SVD of `U` would keep a near-null direction and point
  `d` along it.

  Args:
    pref_vector: The `K` preference weights `w`; `None`: 1 each.
    shared_variables, shared_representation: See `Aggregator`.

  >>> import tensorflow as tf
  >>> ConFIG().aggregate(tf.constant([[2., 0.], [0., 1.]])).numpy()
  array([1.5, 1.5], dtype=float32)
  """

  def __init__(self, pref_vector=None, *, shared_variables=None,
               shared_representation=None):
    super().__init__(shared_variables=shared_variables,
                     shared_representation=shared_representation)
    if pref_vector is not None:
      pref_vector = small_linalg.checked_vector(pref_vector, 'pref_vector',
                                                'ConFIG')
    self.pref_vector = pref_vector

  def _weights(self, gramian64, num_heads):
    ones = tf.ones([tf.shape(gramian64)[0]], tf.float64)
    return config_weights(
        gramian64, _preferences(self.pref_vector, ones, num_heads, 'ConFIG'))

  def __repr__(self):
    pref = None if self.pref_vector is None else self.pref_vector.tolist()
    return f'ConFIG(pref_vector={pref})'
