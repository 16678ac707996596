"""The quadratic-program aggregators' formulas in float64 NumPy, solved apart.

Written from the papers and TorchJD 0.18's definitions, independently of
`tensorflow_multihead.aggregation`: every small problem is solved by
enumerating its active sets (every subset of the `K <= 10` coordinates
that could be free), solving the equality-constrained problem of each by
least squares and keeping the best feasible one. That is exact (the
minimum sits on some face, where it is that face's equality-constrained
minimum) and shares nothing with the active-set and path methods under
test.
"""
import itertools

import numpy as np


def gramian(jacobian):
  jacobian = np.asarray(jacobian, np.float64)
  return jacobian @ jacobian.T


def normalized(gramian_matrix, norm_eps):
  """TorchJD's normalization: `G / trace(G)`, or 0 below `norm_eps`."""
  trace = np.trace(gramian_matrix)
  if trace < norm_eps or trace == 0.:
    return np.zeros_like(gramian_matrix)
  return gramian_matrix / trace


def _subsets(size):
  for count in range(size + 1):
    for subset in itertools.combinations(range(size), count):
      yield np.array(subset, dtype=int)


def dual_cone_weights(matrix, lower):
  """`argmin v^T A v` subject to `v >= lower`, `A` positive definite."""
  size = len(lower)
  best, best_value = None, np.inf
  for free in _subsets(size):
    fixed = np.setdiff1d(np.arange(size), free)
    v = lower.astype(np.float64).copy()
    if free.size:
      v[free] = np.linalg.lstsq(matrix[np.ix_(free, free)],
                                -matrix[np.ix_(free, fixed)] @ lower[fixed],
                                rcond=None)[0]
    if np.any(v < lower - 1e-12):
      continue
    value = v @ matrix @ v
    if value < best_value - 1e-15:
      best, best_value = v, value
  return best


def upgrad_weights(gramian_matrix, pref=None, norm_eps=1e-4, reg_eps=1e-4):
  size = len(gramian_matrix)
  pref = np.full(size, 1. / size) if pref is None else np.asarray(pref)
  matrix = normalized(gramian_matrix, norm_eps) + reg_eps * np.eye(size)
  return sum(dual_cone_weights(matrix, pref[i] * np.eye(size)[i])
             for i in range(size))


def dualproj_weights(gramian_matrix, pref=None, norm_eps=1e-4, reg_eps=1e-4):
  size = len(gramian_matrix)
  pref = np.full(size, 1. / size) if pref is None else np.asarray(pref)
  matrix = normalized(gramian_matrix, norm_eps) + reg_eps * np.eye(size)
  return dual_cone_weights(matrix, pref)


def _face_minimum(gramian_matrix, support):
  """The minimum of `w^T G w` with `sum w = 1`, `w` zero off `support`."""
  count = support.size
  system = np.zeros((count + 1, count + 1))
  system[:count, :count] = gramian_matrix[np.ix_(support, support)]
  system[:count, count] = 1.
  system[count, :count] = 1.
  rhs = np.zeros(count + 1)
  rhs[count] = 1.
  solution = np.linalg.lstsq(system, rhs, rcond=None)[0]
  weights = np.zeros(len(gramian_matrix))
  weights[support] = solution[:count]
  return weights


def mgda_weights(gramian_matrix):
  """The exact minimum-norm point of the hull, as convex weights."""
  size = len(gramian_matrix)
  scale = max(np.trace(gramian_matrix), 1e-300)
  matrix = gramian_matrix / scale
  best, best_value = None, np.inf
  for support in _subsets(size):
    if not support.size:
      continue
    weights = _face_minimum(matrix, support)
    if np.any(weights < -1e-12) or abs(weights.sum() - 1.) > 1e-9:
      continue
    value = weights @ matrix @ weights
    if value < best_value - 1e-15:
      best, best_value = weights, value
  return best


def cagrad_objective(matrix, weights, c):
  """`w^T G u + c ||g_0|| sqrt(w^T G w)`, Liu et al.'s dual objective."""
  size = len(matrix)
  mean = np.full(size, 1. / size)
  radius = c * np.sqrt(max(mean @ matrix @ mean, 0.))
  return (weights @ matrix @ mean +
          radius * np.sqrt(max(weights @ matrix @ weights, 0.)))


def cagrad_weights(gramian_matrix, c=0.5, norm_eps=1e-4):
  """CAGrad's weights `u + c ||g_0|| / ||g_w|| w`, as TorchJD defines them.

  The dual's minimum over the simplex sits on a face `S` where, with
  `x = c ||g_0|| w / ||g_w||`, `G_SS x_S = k 1 - a_S` and `x^T G x =
  radius^2`: a quadratic equation in `k` per face. Every face's roots are
  tried; the feasible `w` with the least objective wins.
  """
  size = len(gramian_matrix)
  matrix = normalized(gramian_matrix, norm_eps)
  mean = np.full(size, 1. / size)
  towards_mean = matrix @ mean
  radius = c * np.sqrt(max(mean @ towards_mean, 0.))
  candidates = [np.eye(size)[i] for i in range(size)]
  for support in _subsets(size):
    if not support.size:
      continue
    block = matrix[np.ix_(support, support)]
    slope = np.linalg.lstsq(block, np.ones(support.size), rcond=None)[0]
    intercept = np.linalg.lstsq(block, towards_mean[support], rcond=None)[0]
    # x = k slope - intercept; x^T G x = k^2 s.1 - 2 k s.a + a.i on S.
    quadratic = slope.sum()
    linear = -2. * intercept.sum()
    constant = towards_mean[support] @ intercept - radius**2
    if abs(quadratic) < 1e-14:
      continue
    discriminant = linear**2 - 4. * quadratic * constant
    if discriminant < 0.:
      continue
    for sign in (1., -1.):
      offset = (-linear + sign * np.sqrt(discriminant)) / (2. * quadratic)
      x = np.zeros(size)
      x[support] = offset * slope - intercept
      if np.all(x >= -1e-12) and x.sum() > 0.:
        candidates.append(np.maximum(x, 0.) / x.sum())
  weights = min(candidates,
                key=lambda w: cagrad_objective(matrix, w, c))
  norm = np.sqrt(max(weights @ matrix @ weights, 0.))
  if radius == 0.:
    return mean if norm >= norm_eps else np.zeros(size)
  if norm < norm_eps:
    return np.zeros(size)
  return mean + radius / norm * weights
