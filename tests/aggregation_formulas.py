"""The aggregators' formulas in float64 NumPy, from their papers, apart.

The aggregation tests compute with these, apart from TensorFlow, what
`tensorflow_multihead.aggregation` should give. A Jacobian `J` is `[K, n]`,
one row a head.

The closed-form methods are written on the gradient vectors where the papers
do (PCGrad, GradVac, GradDrop), not on the Gramian as the aggregators do;
`order[i]` lists the heads row `i` visits, in turn. Pseudo-inverses drop
singular values below `RCOND` times the largest: the tests' Jacobians are
either of full rank or exactly rank-deficient, far from it on either side.

The quadratic-program methods (UPGrad, DualProj, MGDA, CAGrad), written from
the papers and TorchJD 0.18's definitions, have every small problem solved
by enumerating its active sets (every subset of the `K <= 10` coordinates
that could be free), solving the equality-constrained problem of each by
least squares and keeping the best feasible one. That is exact (the
minimum sits on some face, where it is that face's equality-constrained
minimum) and shares nothing with the active-set and path methods under
test.
"""
import itertools

import numpy as np

RCOND = 1e-10


def gramian(jacobian):
  jacobian = np.asarray(jacobian, np.float64)
  return jacobian @ jacobian.T


def head_order(num_heads):
  return [[j for j in range(num_heads) if j != i] for i in range(num_heads)]


def pcgrad_rows(jacobian, order):
  """Algorithm 1 of Yu et al. 2020: the `[K, n]` projected gradients."""
  jacobian = np.asarray(jacobian, np.float64)
  projected = jacobian.copy()
  for i, visits in enumerate(order):
    for j in visits:
      inner = projected[i] @ jacobian[j]
      if inner < 0.:
        projected[i] -= inner / (jacobian[j] @ jacobian[j]) * jacobian[j]
  return projected


def pcgrad(jacobian, order):
  return pcgrad_rows(jacobian, order).sum(0)


def gradvac_rows(jacobian, order, targets, beta, eps=1e-8):
  """The update rule of Wang et al. 2021: `(corrected rows, new targets)`."""
  jacobian = np.asarray(jacobian, np.float64)
  corrected = jacobian.copy()
  targets = np.array(targets, np.float64)
  for i, visits in enumerate(order):
    for j in visits:
      norm_i = np.linalg.norm(corrected[i])
      norm_j = np.linalg.norm(jacobian[j])
      cosine = corrected[i] @ jacobian[j] / (norm_i * norm_j + eps)
      target = targets[i, j]
      if cosine < target and norm_j > 0.:
        weight = norm_i * (target * np.sqrt(max(1. - cosine**2, 0.)) -
                           cosine * np.sqrt(max(1. - target**2, 0.))) / (
                               norm_j * np.sqrt(max(1. - target**2, 0.)) +
                               eps)
        corrected[i] = corrected[i] + weight * jacobian[j]
      targets[i, j] = (1. - beta) * target + beta * cosine
  return corrected, targets


def gradvac(jacobian, order, targets, beta, eps=1e-8):
  """`(direction, new targets)`."""
  corrected, targets = gradvac_rows(jacobian, order, targets, beta, eps)
  return corrected.sum(0), targets


def imtlg_weights(jacobian):
  """`v = G^+ sqrt(diag G)`, normalized to sum 1 (0 if the heads cancel)."""
  matrix = gramian(jacobian)
  norms = np.sqrt(np.diag(matrix))
  unnormalized = np.linalg.pinv(matrix, rcond=RCOND, hermitian=True) @ norms
  if abs(unnormalized.sum()) * norms.max() < 1e-12:
    return np.zeros_like(unnormalized)
  return unnormalized / unnormalized.sum()


def imtlg(jacobian):
  return imtlg_weights(jacobian) @ np.asarray(jacobian, np.float64)


def balance_transformation(jacobian, scale_mode='min'):
  """Aligned-MTL's `B = sqrt(s) V Sigma^-1 V^T` on the rank-r part."""
  matrix = gramian(jacobian)
  eigenvalues, eigenvectors = np.linalg.eigh(matrix)
  kept = eigenvalues > RCOND * eigenvalues.max()
  if not kept.any():
    return np.eye(len(matrix))
  values, vectors = eigenvalues[kept], eigenvectors[:, kept]
  scale = {'min': values.min(),
           # The lower middle value, as torch.median.
           'median': np.sort(values)[(len(values) - 1) // 2],
           'rmse': values.mean()}[scale_mode]
  return np.sqrt(scale) * (vectors / np.sqrt(values)) @ vectors.T


def aligned_mtl(jacobian, pref_vector=None, scale_mode='min'):
  jacobian = np.asarray(jacobian, np.float64)
  if pref_vector is None:
    pref_vector = np.full(len(jacobian), 1. / len(jacobian))
  return (balance_transformation(jacobian, scale_mode) @ pref_vector
          ) @ jacobian


def config(jacobian, pref_vector=None):
  """Equation 2 of Liu et al. 2025, with `U^+` from NumPy's SVD."""
  jacobian = np.asarray(jacobian, np.float64)
  if pref_vector is None:
    pref_vector = np.ones(len(jacobian))
  norms = np.linalg.norm(jacobian, axis=1, keepdims=True)
  units = np.divide(jacobian, norms, out=np.zeros_like(jacobian),
                    where=norms > 0)
  best = np.linalg.pinv(units, rcond=RCOND) @ pref_vector
  unit = best / max(np.linalg.norm(best), 1e-12)
  return (jacobian @ unit).sum() * unit


def graddrop(jacobian, thresholds, f=lambda purity: purity, leak=None):
  """Lines 10 to 15 of Algorithm 1 of Chen et al. 2020, coordinate-wise."""
  jacobian = np.asarray(jacobian, np.float64)
  num_heads, width = jacobian.shape
  leak = np.zeros(num_heads) if leak is None else np.asarray(leak)
  direction = np.zeros(width)
  for c in range(width):
    column = jacobian[:, c]
    absolute = np.abs(column).sum()
    purity = f(0.5 * (1. + (column.sum() / absolute if absolute else 0.)))
    for i in range(num_heads):
      kept = ((purity > thresholds[c] and column[i] > 0) or
              (purity < thresholds[c] and column[i] < 0))
      direction[c] += (leak[i] + (1. - leak[i]) * kept) * column[i]
  return direction


def softmax(values):
  shifted = np.exp(values - np.max(values))
  return shifted / shifted.sum()



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
