"""The learned loss weightings' formulas in NumPy, written from issue 9.

The weighting tests compute with these, apart from TensorFlow, what
`tensorflow_multihead.weighting` should give. `K` is the number of heads;
`losses` are the heads' losses, each already times its `head_weights` prior.
"""
import numpy as np

GRADNORM_MIN_WEIGHT = 1e-3


def weights_of_state(method, state, dwa_temperature):
  """The weights a method's state gives, `method` named as in the tests.

  Args:
    method: 'uncertainty', 'dynamic_weight_average' or 'gradnorm'.
    state: The method's state variables' values, by name.
    dwa_temperature: DynamicWeightAverage's `T`.
  """
  if method == 'uncertainty':
    return uncertainty_weights(state['log_variances'])
  if method == 'dynamic_weight_average':
    before, last = state['window_means']
    return dwa_weights(before, last, state['complete_windows'],
                       dwa_temperature)
  return np.asarray(state['weights'])


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
                  learning_rate):
  """GradNorm's weights after one step.

  Args:
    weights: `w_i` before the step.
    unweighted_norms: `||grad L_i||` over the shared variables, so that
      `G_i = w_i * unweighted_norms_i`.
    losses: `L_i(t)`.
    initial_losses: `L_i(0)`.
    alpha: GradNorm's `alpha`.
    learning_rate: The weights' step size.

  Returns:
    The weights after a descent step on `sum_i |G_i - target_i|` (the target
    constant), clipped to `GRADNORM_MIN_WEIGHT` and rescaled to sum to `K`.
  """
  weights = np.asarray(weights, np.float64)
  norms = weights * unweighted_norms
  targets = gradnorm_targets(norms, losses, initial_losses, alpha)
  gradient = np.sign(norms - targets) * unweighted_norms
  stepped = np.maximum(weights - learning_rate * gradient,
                       GRADNORM_MIN_WEIGHT)
  return len(weights) * stepped / stepped.sum()
