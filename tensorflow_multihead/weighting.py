"""Learned loss weighting: the weights of the heads' losses, learned.

`head_weights` are numbers tuned by hand, one training run per guess. Give
`MultiHead(heads, loss_weighting=...)` one of these instead, and the weights
are learned while the model trains:

* `Uncertainty()`: Kendall, Gal and Cipolla, CVPR 2018;
* `DynamicWeightAverage(temperature, window)`: Liu, Johns and Davison,
  CVPR 2019;
* `GradNorm(alpha, shared_variables, learning_rate)`: Chen et al., ICML 2018.

Below, `K` is the number of heads and `L_i` head `i`'s loss; with
`head_weights` too, `L_i` stands for `p_i * loss_i`: each fixed weight `p_i`
is a prior multiplying its head's loss before the learned weighting.

A method's state (log-variances, loss history, weights, first losses) lives
in variables that the merged head creates in the TRAIN and EVAL graphs, so
that Estimator saves them in its checkpoints and restores them when training
resumes; PREDICT creates none. TRAIN writes a summary `loss_weight/<head>`
per head and EVAL reports a metric `loss_weight/<head>`: the learned weight,
without the prior.

A method is a `LossWeighting`: a few formulas from tensors to tensors, which
`loss_merger.LossMerger` (what `MultiHead` calls) applies to the variables.

>>> import numpy as np
>>> import tensorflow as tf
>>> from tensorflow_multihead import MultiHead, weighting
>>> head = MultiHead([tf.estimator.RegressionHead(name='near'),
...                   tf.estimator.RegressionHead(name='far')],
...                  loss_weighting=weighting.DynamicWeightAverage(window=50))
>>> logits = {'near': np.array([[1.]], np.float32),
...           'far': np.array([[1.]], np.float32)}
>>> labels = {'near': np.array([[2.]], np.float32),
...           'far': np.array([[3.]], np.float32)}
>>> float(head.loss(labels, logits))  # Every weight is 1 at first: 1 + 4.
5.0
"""
import abc
import numbers

import numpy as np
import tensorflow as tf

from tensorflow_multihead import jacobian
from tensorflow_multihead import shared_parameters

# GradNorm clips a weight to this before renormalizing, so that no step of
# its own can make a weight zero or negative.
MIN_GRADNORM_WEIGHT = 1e-3


def _positive_number(value, what, integer=False):
  kinds = (numbers.Integral, np.integer) if integer else (
      numbers.Real, np.number)
  if isinstance(value, bool) or not isinstance(value, kinds):
    kind = 'an integer' if integer else 'a number'
    raise TypeError(f'{what} must be {kind}; given {value!r} of type '
                    f'{type(value).__name__}.')
  if not value > 0:
    raise ValueError(f'{what} must be positive; given {value!r}.')
  return value


def _replica_mean(value):
  """The mean of a nest of tensors over the replicas in sync.

  Every replica then computes the same new state, so that it can assign it
  in replica context. In one process the mean is taken on one device: the
  strategy's own collective reduction, launched in no fixed order relative
  to those Estimator adds (such as its loss's), can deadlock the step.
  """
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return value
  strategy = tf.distribute.get_strategy()
  if not isinstance(strategy, (tf.distribute.MirroredStrategy,
                               tf.compat.v1.distribute.MirroredStrategy)):
    return context.all_reduce(tf.distribute.ReduceOp.MEAN, value)

  def mean_on_one_device(unused_strategy, *per_replica):
    reduction = tf.distribute.ReductionToOneDevice()
    return [reduction.reduce(tf.distribute.ReduceOp.MEAN, tensor,
                             destinations=tensor) for tensor in per_replica]

  flat = tf.nest.flatten(value)
  return tf.nest.pack_sequence_as(
      value, list(context.merge_call(mean_on_one_device, args=tuple(flat))))


class LossWeighting(abc.ABC):
  """A way of learning the weights of `K` heads' losses.

  A subclass names its state, computes the weights from it and, for a
  training step, the state after the step. Each function takes the state as
  a dict of tensors (the variables, read once per step) and the heads'
  losses as a `[K]` tensor.
  """

  # Whether `next_state` differentiates each head's loss on its own: such a
  # method needs every head computed apart (no fused groups), since a fused
  # group's losses come from one batched op that ties every head's loss to
  # every head's logits, and a missing dependency could not be told.
  differentiates_each_head = False

  @abc.abstractmethod
  def initial_state(self, num_heads):
    """Returns `{name: (initial value, trainable)}` for `num_heads` heads.

    A trainable variable is trained by the merged loss with the model: it is
    added to `optimizer=`'s variables and sits in `TRAINABLE_VARIABLES`.
    """

  @abc.abstractmethod
  def weights(self, state):
    """Returns the `[K]` learned weights."""

  def merged_loss(self, losses, state):
    """Returns the loss the model trains on: `sum_i w_i * L_i` by default."""
    return tf.reduce_sum(self.weights(state) * losses)

  def next_state(self, losses, state, head_losses, head_names):
    """Returns `{name: value}`: the state after a training step.

    Args:
      losses: The `[K]` losses of this step.
      state: The state before the step.
      head_losses: The same losses, one scalar tensor per head, as the
        model's graph computed them (to take gradients of).
      head_names: The heads' names, in order, for error messages.
    """
    del losses, state, head_losses, head_names  # No state changes by default.
    return {}


class Uncertainty(LossWeighting):
  """Weights learned as homoscedastic uncertainty (Kendall, Gal and Cipolla).

  One learned scalar per head, `s_i = log sigma_i^2`, starting at 0, trained
  with the model on the merged loss

      sum_i 0.5 * exp(-s_i) * L_i + 0.5 * s_i

  so head `i`'s loss counts with weight `0.5 * exp(-s_i)`; minimizing over
  `s_i` drives `exp(s_i)` towards `L_i`: a noisier head is weighted lower.

  A. Kendall, Y. Gal and R. Cipolla, "Multi-Task Learning Using Uncertainty
  to Weigh Losses for Scene Geometry and Semantics", CVPR 2018.

  The `s_i` are trainable variables: `optimizer=` trains them with the
  model, and a `train_op_fn` minimizing over `TRAINABLE_VARIABLES` (e.g.
  `optimizer.minimize(loss)`) does too.

  >>> uncertainty = Uncertainty()
  >>> state = {'log_variances': tf.math.log([1., 4.])}  # s = [0, log 4].
  >>> uncertainty.weights(state).numpy()  # 0.5 * exp(-s)
  array([0.5  , 0.125], dtype=float32)
  >>> # 0.5 * 2 + 0.5 * 0 + 0.125 * 8 + 0.5 * log(4) = 2 + 0.6931
  >>> print(f'{uncertainty.merged_loss(tf.constant([2., 8.]), state):.4f}')
  2.6931
  """

  def initial_state(self, num_heads):
    return {'log_variances': (np.zeros(num_heads, np.float32), True)}

  def weights(self, state):
    return 0.5 * tf.exp(-state['log_variances'])

  def merged_loss(self, losses, state):
    return tf.reduce_sum(self.weights(state) * losses +
                         0.5 * state['log_variances'])


class DynamicWeightAverage(LossWeighting):
  """Weights following how fast each loss falls (Liu, Johns and Davison).

      w_i = K * exp(r_i / T) / sum_j exp(r_j / T)

  where `T` is the `temperature` and `r_i` is head `i`'s mean loss over the
  last complete window of `window` training steps divided by its mean over
  the window before: a loss that falls slower than the others gets more
  weight. Every `w_i` is 1 until two windows are complete. The weights are
  constants to the gradient; the model trains on `sum_i w_i * L_i`.

  S. Liu, E. Johns and A. J. Davison, "End-to-End Multi-Task Learning with
  Attention", CVPR 2019. The paper's windows are epochs; an Estimator counts
  steps, so make `window` your steps per epoch.

  Args:
    temperature: `T`, a positive number; higher is smoother.
    window: The steps per window, a positive integer.

  Raises:
    ValueError: A non-positive `temperature` or `window`.
    TypeError: Either is not a number (`window`: an integer).

  >>> # The windows' mean losses: the one before, then the last one.
  >>> state = {'window_means': tf.constant([[2., 2.], [1., 2.]]),
  ...          'complete_windows': tf.constant(2.)}
  >>> # r = [0.5, 1]: the second loss stopped falling, it gets more weight.
  >>> DynamicWeightAverage(temperature=2.).weights(state).numpy()
  array([0.8756..., 1.1243...], dtype=float32)
  """

  def __init__(self, temperature=2.0, window=100):
    self.temperature = _positive_number(temperature, 'temperature')
    self.window = _positive_number(window, 'window', integer=True)

  def initial_state(self, num_heads):
    return {
        'window_sums': (np.zeros(num_heads, np.float32), False),
        'window_steps': (np.float32(0), False),
        # The means of the last two complete windows: before, last.
        'window_means': (np.ones((2, num_heads), np.float32), False),
        'complete_windows': (np.float32(0), False),
    }

  def weights(self, state):
    before, last = tf.unstack(state['window_means'])
    ratios = tf.math.divide_no_nan(last, before)
    num_heads = tf.cast(tf.size(ratios), ratios.dtype)
    weights = num_heads * tf.nn.softmax(ratios / self.temperature)
    return tf.stop_gradient(tf.where(
        state['complete_windows'] >= 2, weights, tf.ones_like(weights)))

  def next_state(self, losses, state, head_losses, head_names):
    del head_losses, head_names  # The stacked losses say it all.
    sums = state['window_sums'] + _replica_mean(tf.stop_gradient(losses))
    steps = state['window_steps'] + 1.
    full = steps >= self.window
    shifted = tf.stack([state['window_means'][1], sums / steps])
    return {
        'window_sums': tf.where(full, tf.zeros_like(sums), sums),
        'window_steps': tf.where(full, 0., steps),
        'window_means': tf.where(full, shifted, state['window_means']),
        'complete_windows': state['complete_windows'] + tf.cast(
            full, sums.dtype),
    }


class GradNorm(LossWeighting):
  """Weights that balance the heads' gradient norms (Chen et al.).

  Learned weights `w_i`, starting at 1; the model trains on
  `sum_i w_i * L_i`, and the weights on their own loss

      sum_i |G_i - mean_j(G_j) * r_i ** alpha|

  where `G_i` is the L2 norm of the gradient of `w_i * L_i` with respect to
  the `shared_variables` (typically the last shared layer) and
  `r_i = (L_i(t) / L_i(0)) / mean_j(L_j(t) / L_j(0))` is head `i`'s relative
  inverse training rate, `L_i(0)` its loss at the first step. The target
  term `mean_j(G_j) * r_i ** alpha` is held constant. Each step takes one
  gradient descent step of `learning_rate` on the weights, clips them to at
  least `MIN_GRADNORM_WEIGHT` and renormalizes them to `sum_i w_i = K`.

  Z. Chen, V. Badrinarayanan, C.-Y. Lee and A. Rabinovich, "GradNorm:
  Gradient Normalization for Adaptive Loss Balancing in Deep Multitask
  Networks", ICML 2018.

  The weights are not trainable variables: the model's loss, which would
  drive them to zero, never trains them; their own update runs with every
  training step, with `optimizer=` and with `train_op_fn=` alike.

  The heads' gradients come from one vectorized Jacobian
  (`tensorflow_multihead.jacobian`), so fused groups stay fused; the merged
  head checks, from the graph, that every head's logits depend on the
  shared variables.

  Args:
    alpha: How strongly heads that train slower are pulled up; a number
      `>= 0`. With 0, the weighted gradient norms are made equal.
    shared_variables: The variables that every head's loss depends on: a
      list of variables or of their names (`'dense/kernel'`), resolved in
      the graph being built (names work with canned estimators, which create
      their variables later).
    learning_rate: The positive step size of the weights' own descent. Their
      gradient is in units of the gradient norms `G_i / w_i`.

  Raises:
    ValueError: No `shared_variables`; a negative `alpha`; a non-positive
      `learning_rate`.
    TypeError: A shared variable that is neither a variable nor a name.

  >>> gradnorm = GradNorm(alpha=1., shared_variables=['dense/kernel'])
  >>> # Head 0's loss fell to half its first value, head 1's not at all.
  >>> gradnorm.targets(norms=tf.constant([3., 1.]),
  ...                  losses=tf.constant([1., 4.]),
  ...                  initial_losses=tf.constant([2., 4.])).numpy()
  array([1.3333334, 2.6666667], dtype=float32)
  """

  def __init__(self, alpha=1.5, shared_variables=None, learning_rate=0.01):
    if isinstance(alpha, bool) or not isinstance(alpha,
                                                 (numbers.Real, np.number)):
      raise TypeError(f'GradNorm alpha must be a number; given {alpha!r}.')
    if not alpha >= 0:
      raise ValueError(f'GradNorm alpha must be >= 0; given {alpha!r}.')
    self.alpha = alpha
    self.learning_rate = _positive_number(learning_rate,
                                          'GradNorm learning_rate')
    shared_variables = shared_parameters.as_tuple(shared_variables)
    if not shared_variables:
      raise ValueError(
          'GradNorm needs shared_variables: the variables (or their names) '
          "that every head's loss depends on, such as the last shared "
          f'layer\'s kernel. Given: {shared_variables!r}.')
    shared_parameters.check_variable_types(shared_variables, 'GradNorm')
    self.shared_variables = shared_variables

  def initial_state(self, num_heads):
    return {
        'weights': (np.ones(num_heads, np.float32), False),
        'initial_losses': (np.zeros(num_heads, np.float32), False),
        'has_initial_losses': (np.float32(0), False),
    }

  def weights(self, state):
    return state['weights']

  def targets(self, norms, losses, initial_losses):
    """The gradient norms aimed at: `mean_j(G_j) * r_i ** alpha`."""
    ratios = tf.math.divide_no_nan(losses, initial_losses)
    rates = tf.math.divide_no_nan(ratios, tf.reduce_mean(ratios))
    return tf.reduce_mean(norms) * rates**self.alpha

  def head_gradients(self, head_losses):
    """The `[K, n]` gradients of the `[K]` losses over the shared variables.

    One vectorized Jacobian (`tensorflow_multihead.jacobian`), in graph
    mode: a fused group's losses stay one computation.
    """
    return jacobian.jacobian(head_losses, shared_parameters.resolve_variables(
        self.shared_variables, 'GradNorm'))

  def next_state(self, losses, state, head_losses, head_names):
    del head_names  # The merged head checked that every head reads them.
    rows = self.head_gradients(tf.stack(head_losses))
    # One reduction over the replicas, as the model's own gradients get.
    rows, losses = _replica_mean((rows, tf.stop_gradient(losses)))
    initial = tf.where(state['has_initial_losses'] > 0,
                       state['initial_losses'], losses)
    weights = state['weights']
    norms = weights * tf.cast(tf.norm(rows, axis=1), weights.dtype)
    targets = tf.stop_gradient(self.targets(norms, losses, initial))
    own_loss = tf.reduce_sum(tf.abs(norms - targets))
    (gradient,) = tf.compat.v1.gradients(own_loss, [weights])
    stepped = tf.maximum(weights - self.learning_rate * gradient,
                         MIN_GRADNORM_WEIGHT)
    num_heads = tf.cast(tf.size(stepped), stepped.dtype)
    return {
        'weights': num_heads * stepped / tf.reduce_sum(stepped),
        'initial_losses': initial,
        'has_initial_losses': tf.ones_like(state['has_initial_losses']),
    }
