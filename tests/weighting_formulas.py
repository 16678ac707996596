"""The learned loss weightings' formulas in NumPy, written from issue 9.

The weighting tests compute with these, apart from TensorFlow, what
`tensorflow_multihead.weighting` should give. `K` is the number of heads;
`losses` are the heads' losses, each already times its `head_weights` prior.
"""
import numpy as np

GRADNORM_MIN_WEIGHT = 0.01
ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-8


def weights_of_state(method, state, dwa_temperature):
  """The weights a method's state gives, `method` named as in the tests.

  Args:
    method: 'uncertainty', 'dynamic_weight_average', 'gradnorm', 'random'
      or 'famo'.
    state: The method's state variables' values, by name.
    dwa_temperature: DynamicWeightAverage's `T`.
  """
  if method == 'uncertainty':
    return uncertainty_weights(state['log_variances'])
  if method == 'dynamic_weight_average':
    before, last = state['window_means']
    return dwa_weights(before, last, state['complete_windows'],
                       dwa_temperature)
  if method == 'famo':
    return softmax(state['logits'])
  return np.asarray(state['weights'])  # GradNorm's and RLW's.


def uncertainty_weights(log_variances):
  """`0.5 * exp(-s_i)`."""
  return 0.5 * np.exp(-np.asarray(log_variances, np.float64))


def uncertainty_loss(losses, log_variances):
  """`sum_i 0.5 * exp(-s_i) * L_i + 0.5 * s_i`."""
  log_variances = np.asarray(log_variances, np.float64)
  return float(np.sum(uncertainty_weights(log_variances) * losses +
                      0.5 * log_variances))


def uncertainty_gradient(losses, log_variances):
  """d(merged loss)/d(s_i) = `0.5 - 0.5 * exp(-s_i) * L_i`."""
  return 0.5 - uncertainty_weights(log_variances) * losses


def dwa_weights(before, last, complete_windows, temperature):
  """`K * softmax(r / T)` with `r = last / before`; ones before 2 windows."""
  last = np.asarray(last, np.float64)
  if complete_windows < 2:
    return np.ones_like(last)
  exponentials = np.exp(last / np.asarray(before, np.float64) / temperature)
  return len(last) * exponentials / exponentials.sum()


def dwa_weights_by_step(losses_by_step, window, temperature):
  """The weights of every step from the losses of all steps before it.

  Args:
    losses_by_step: `[steps, K]` losses, one row a training step.
    window: Steps per window.
    temperature: `T`.

  Returns:
    `[steps, K]`: row `t` holds the weights step `t` trained with, from the
    windows complete before it.
  """
  losses_by_step = np.asarray(losses_by_step, np.float64)
  rows = []
  for step in range(len(losses_by_step)):
    complete = step // window
    means = [losses_by_step[index * window:(index + 1) * window].mean(axis=0)
             for index in range(complete)]
    if complete < 2:
      rows.append(np.ones(losses_by_step.shape[1]))
    else:
      rows.append(dwa_weights(means[-2], means[-1], complete, temperature))
  return np.array(rows)


def gradnorm_targets(norms, losses, initial_losses, alpha):
  """`mean_j(G_j) * r_i ** alpha`, `r_i` the relative inverse rate."""
  ratios = np.asarray(losses, np.float64) / initial_losses
  return np.mean(norms) * (ratios / ratios.mean())**alpha


def gradnorm_step(weights, unweighted_norms, losses, initial_losses, alpha,
                  learning_rate, min_weight=GRADNORM_MIN_WEIGHT):
  """GradNorm's weights after one step.

  Args:
    weights: `w_i` before the step.
    unweighted_norms: `||grad L_i||` over the shared variables, so that
      `G_i = w_i * unweighted_norms_i`.
    losses: `L_i(t)`.
    initial_losses: `L_i(0)`.
    alpha: GradNorm's `alpha`.
    learning_rate: The weights' step size.
    min_weight: The floor.

  Returns:
    The weights after a descent step on `sum_i |G_i - target_i|` (the target
    constant), rescaled to sum to `K` with none below `min_weight`.
  """
  weights = np.asarray(weights, np.float64)
  norms = weights * unweighted_norms
  targets = gradnorm_targets(norms, losses, initial_losses, alpha)
  gradient = np.sign(norms - targets) * unweighted_norms
  return renormalized_with_floor(weights - learning_rate * gradient,
                                 min_weight)


def renormalized_with_floor(stepped, floor):
  """Weights summing to `K`, none below `floor`, the others `~ stepped`.

  Found by raising to the floor, one at a time, the weights that fall below
  it once the others are rescaled to make up the sum (a different route
  from the library's, which sorts).
  """
  stepped = np.asarray(stepped, np.float64)
  num_heads = len(stepped)
  pinned = stepped <= 0  # At the floor whatever the (positive) scale.
  if pinned.all():
    return np.ones(num_heads)
  while True:
    free_sum = stepped[~pinned].sum()
    weights = np.where(pinned, floor, stepped * (
        num_heads - pinned.sum() * floor) / free_sum)
    below = ~pinned & (weights <= floor)
    if not below.any():
      return weights
    pinned |= below


def softmax(values):
  exponentials = np.exp(np.asarray(values, np.float64) - np.max(values))
  return exponentials / exponentials.sum()


def famo_coefficients(losses, logits, min_losses=0., epsilon=1e-8):
  """`c * z_i / D_i`: the weight of each `L_i` in the model's loss.

  `z = softmax(logits)`, `D_i = L_i - b_i + epsilon`,
  `c = 1 / sum_i (z_i / D_i)`.
  """
  distances = np.asarray(losses, np.float64) - min_losses + epsilon
  weighted = softmax(logits) / distances
  return weighted / weighted.sum()


def famo_loss(losses, logits, min_losses=0., epsilon=1e-8):
  """The model's loss: `sum_i c * z_i * L_i / D_i`."""
  return float(np.sum(famo_coefficients(losses, logits, min_losses, epsilon)
                      * np.asarray(losses, np.float64)))


def famo_step(state, losses, learning_rate, weight_decay, min_losses=0.,
              epsilon=1e-8):
  """FAMO's state after a training step whose losses are `losses`.

  With no previous losses, it only records them. Else, with
  `delta_i = log D_i(previous) - log D_i(losses)`, the logits take one Adam
  step on `dz/dxi^T delta + gamma * xi` (the softmax's Jacobian written
  out in full, `diag(z) - z z^T`, rather than in the library's closed form).
  """
  state = {name: np.asarray(value, np.float64)
           for name, value in state.items()}
  losses = np.asarray(losses, np.float64)
  after = dict(state, previous_losses=losses, has_previous_losses=1.)
  if not state['has_previous_losses']:
    return after
  z = softmax(state['logits'])
  delta = (np.log(state['previous_losses'] - min_losses + epsilon) -
           np.log(losses - min_losses + epsilon))
  jacobian = np.diag(z) - np.outer(z, z)  # d z_j / d xi_i, symmetric.
  gradient = jacobian.T @ delta + weight_decay * state['logits']
  steps = state['adam_steps'] + 1.
  m = ADAM_BETA_1 * state['adam_m'] + (1. - ADAM_BETA_1) * gradient
  v = ADAM_BETA_2 * state['adam_v'] + (1. - ADAM_BETA_2) * gradient**2
  step = learning_rate * (m / (1. - ADAM_BETA_1**steps)) / (
      np.sqrt(v / (1. - ADAM_BETA_2**steps)) + ADAM_EPSILON)
  after.update(logits=state['logits'] - step, adam_m=m, adam_v=v,
               adam_steps=steps)
  return after
