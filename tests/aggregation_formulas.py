"""The closed-form aggregators' formulas in float64 NumPy, from their papers.

The aggregation tests compute with these, apart from TensorFlow, what
`tensorflow_multihead.aggregation` should give. They work on the gradient
vectors themselves where the papers do (PCGrad, GradVac, GradDrop), not on
the Gramian as the aggregators do. A Jacobian `J` is `[K, n]`, one row a
head; `order[i]` lists the heads row `i` visits, in turn.

Pseudo-inverses drop singular values below `RCOND` times the largest: the
tests' Jacobians are either of full rank or exactly rank-deficient, far
from it on either side.
"""
import numpy as np

RCOND = 1e-10


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
  jacobian = np.asarray(jacobian, np.float64)
  gramian = jacobian @ jacobian.T
  norms = np.sqrt(np.diag(gramian))
  unnormalized = np.linalg.pinv(gramian, rcond=RCOND, hermitian=True) @ norms
  if abs(unnormalized.sum()) * norms.max() < 1e-12:
    return np.zeros_like(unnormalized)
  return unnormalized / unnormalized.sum()


def imtlg(jacobian):
  return imtlg_weights(jacobian) @ np.asarray(jacobian, np.float64)


def balance_transformation(jacobian, scale_mode='min'):
  """Aligned-MTL's `B = sqrt(s) V Sigma^-1 V^T` on the rank-r part."""
  jacobian = np.asarray(jacobian, np.float64)
  gramian = jacobian @ jacobian.T
  eigenvalues, eigenvectors = np.linalg.eigh(gramian)
  kept = eigenvalues > RCOND * eigenvalues.max()
  if not kept.any():
    return np.eye(len(gramian))
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
