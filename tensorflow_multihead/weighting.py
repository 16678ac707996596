"""Learned loss weighting: the weights of the heads' losses, learned.

`head_weights` are numbers tuned by hand, one training run per guess. Give
`MultiHead(heads, loss_weighting=...)` one of these instead, and the weights
are learned while the model trains:

* `Uncertainty()`: Kendall, Gal and Cipolla, CVPR 2018;
* `DynamicWeightAverage(temperature, window)`: Liu, Johns and Davison,
  CVPR 2019;
* `GradNorm(alpha, shared_variables, learning_rate, min_weight)`: Chen et
  al., ICML 2018;
* `RandomLossWeighting(seed)`: Lin et al., TMLR 2022 (RLW);
* `FAMO(learning_rate, weight_decay, min_losses)`: Liu et al., NeurIPS 2023.

RLW and FAMO cost O(1) ops per step in the number of heads (no per-head
gradient) and keep fused groups fused.

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
import sys

import numpy as np
import tensorflow as tf

from tensorflow_multihead import jacobian
from tensorflow_multihead import shared_parameters

# GradNorm's default floor (`min_weight`): no weight ends a step below it,
# so no head is ever dropped; a hundredth of the mean weight (1) still lets
# GradNorm balance losses whose gradients differ a hundredfold.
MIN_GRADNORM_WEIGHT = 0.01


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

  @abc.abstractmethod
  def initial_state(self, num_heads):
    """Returns `{name: (initial value, trainable)}` for `num_heads` heads.

    An initial value is a NumPy value or a tensor (computed once, when the
    variable is initialized).

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
  gradient descent step of `learning_rate` on the weights, giving `s_i`,
  then renormalizes them to `sum_i w_i = K` with a floor:
  `w_i = max(min_weight, lambda * s_i)`, `lambda` such that the sum is `K`
  (so `w = K * s / sum(s)` while no weight is at the floor).

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

  Choosing the numbers: the weights' gradient is `+-||grad L_i||` (the
  gradient norm of head `i`'s unweighted loss), so a step moves `w_i` by
  `learning_rate * ||grad L_i||`, up or down, however close it is to its
  target. Make that a small part of the mean weight 1, such as 0.01 to 0.05
  for the heads' typical gradient norms: larger steps make the weights
  oscillate or collapse. `alpha` (0.12 to 3 in the paper, 1.5 by default)
  says how far the heads whose losses fall slower are pulled up; with
  tasks of similar difficulty, 0 to 1 suffices. Watch `loss_weight/<head>`
  (TRAIN summaries, EVAL metrics): a weight near `min_weight` means the
  head hardly trains. When a weight reaches the floor, the step prints a
  warning naming the head to standard error.

  Args:
    alpha: How strongly heads that train slower are pulled up; a number
      `>= 0`. With 0, the weighted gradient norms are made equal.
    shared_variables: The variables that every head's loss depends on: a
      list of variables or of their names (`'dense/kernel'`), resolved in
      the graph being built (names work with canned estimators, which create
      their variables later).
    learning_rate: The positive step size of the weights' own descent. Their
      gradient is in units of the gradient norms `G_i / w_i`.
    min_weight: The floor of every weight, in `(0, 1)`: after each step no
      weight is below it.

  Raises:
    ValueError: No `shared_variables`; a negative `alpha`; a non-positive
      `learning_rate`; a `min_weight` outside `(0, 1)`.
    TypeError: A shared variable that is neither a variable nor a name.

  >>> gradnorm = GradNorm(alpha=1., shared_variables=['dense/kernel'])
  >>> # Head 0's loss fell to half its first value, head 1's not at all.
  >>> gradnorm.targets(norms=tf.constant([3., 1.]),
  ...                  losses=tf.constant([1., 4.]),
  ...                  initial_losses=tf.constant([2., 4.])).numpy()
  array([1.3333334, 2.6666667], dtype=float32)
  """

  def __init__(self, alpha=1.5, shared_variables=None, learning_rate=0.01,
               min_weight=MIN_GRADNORM_WEIGHT):
    if isinstance(alpha, bool) or not isinstance(alpha,
                                                 (numbers.Real, np.number)):
      raise TypeError(f'GradNorm alpha must be a number; given {alpha!r}.')
    if not alpha >= 0:
      raise ValueError(f'GradNorm alpha must be >= 0; given {alpha!r}.')
    self.alpha = alpha
    self.learning_rate = _positive_number(learning_rate,
                                          'GradNorm learning_rate')
    if not _positive_number(min_weight, 'GradNorm min_weight') < 1:
      raise ValueError('GradNorm min_weight must be below 1, the mean '
                       f'weight; given {min_weight!r}.')
    self.min_weight = min_weight
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
    floored = _renormalized_with_floor(
        weights - self.learning_rate * gradient, self.min_weight)
    return {
        'weights': _warn_on_reaching_floor(floored, weights, self.min_weight,
                                           head_names),
        'initial_losses': initial,
        'has_initial_losses': tf.ones_like(state['has_initial_losses']),
    }


def _renormalized_with_floor(stepped, floor):
  """`w_i = max(floor, lambda * s_i)`, `lambda` making `sum_i w_i = K`.

  With `s` sorted in decreasing order, the weights above the floor are the
  `m` largest, for the largest `m` whose `lambda_m = (K - (K - m) * floor) /
  sum_{j <= m} s_j` leaves `lambda_m * s_m` above the floor. If no `s_i` is
  positive, every weight is 1.

  >>> _renormalized_with_floor(tf.constant([3., 1., -2.]), 0.5).numpy()
  array([1.875, 0.625, 0.5  ], dtype=float32)
  """
  num_heads = tf.cast(tf.size(stepped), stepped.dtype)
  descending = tf.sort(stepped, direction='DESCENDING')
  sums = tf.cumsum(descending)
  counts = tf.range(1., num_heads + 1., dtype=stepped.dtype)
  scales = tf.math.divide_no_nan(num_heads - (num_heads - counts) * floor,
                                 sums)
  free = (sums > 0) & (scales * descending > floor)
  above_floor = tf.reduce_max(tf.where(free, counts, tf.zeros_like(counts)))
  scale = tf.gather(scales, tf.maximum(tf.cast(above_floor, tf.int32) - 1, 0))
  return tf.where(above_floor > 0, tf.maximum(floor, scale * stepped),
                  tf.ones_like(stepped))


def _warn_on_reaching_floor(new_weights, weights, floor, head_names):
  """`new_weights`, printing to stderr the heads that just reached `floor`.

  Printed once as a weight arrives at the floor, not at every step there.
  """
  at_floor = new_weights <= floor * (1. + 1e-5)
  arrived = at_floor & ~(weights <= floor * (1. + 1e-5))
  names = tf.boolean_mask(tf.constant(list(head_names)), arrived)

  def warn():
    with tf.control_dependencies([tf.print(
        'WARNING: GradNorm weights of heads', names, 'reached their floor '
        f'min_weight={floor}: those heads hardly train. Lower '
        'learning_rate or alpha, or raise min_weight.',
        output_stream=sys.stderr)]):
      return tf.constant(True)

  warned = tf.cond(tf.reduce_any(arrived), warn, lambda: tf.constant(False))
  with tf.control_dependencies([warned]):
    return tf.identity(new_weights)



class RandomLossWeighting(LossWeighting):
  """Weights drawn at random for every training step (Lin et al., RLW).

      w = softmax(lambda),  lambda ~ N(0, I_K), drawn anew each step

  and the model trains on `sum_i w_i * L_i`; the weights sum to 1 (their
  mean is `1 / K`, not 1 as with equal fixed weights). The draws are
  constants to the gradient.

  B. Lin, F. Ye, Y. Zhang and I. W. Tsang, "Reasonable Effectiveness of
  Random Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022 (its
  main variant: the softmax of standard normals).

  The draw for global step `t` is `tf.random.stateless_normal([K],
  seed=[seed, t])`: reproducible, and the same on every replica of a
  mirrored step. The state holds the weights of the next training step: the
  draw of step 0 at first, then, after every step, that of the global step
  the step ended at. A resumed run therefore continues the sequence, and
  EVAL reports the draw that the checkpoint's next step would train with.

  Args:
    seed: An integer; runs with one seed draw the same weights.

  Raises:
    TypeError: `seed` is not an integer.
    ValueError: Training in a graph without a global step.

  >>> rlw = RandomLossWeighting(seed=7)
  >>> weights = rlw.draw(num_heads=3, step=5)
  >>> print(f'{float(tf.reduce_sum(weights)):.4f}')  # A softmax: sums to 1.
  1.0000
  >>> bool(tf.reduce_all(weights == rlw.draw(3, step=5)))  # Reproducible.
  True
  >>> bool(tf.reduce_all(weights == rlw.draw(3, step=6)))
  False
  """

  def __init__(self, seed=0):
    if isinstance(seed, bool) or not isinstance(seed,
                                                (numbers.Integral, np.integer)):
      raise TypeError('RandomLossWeighting seed must be an integer; given '
                      f'{seed!r} of type {type(seed).__name__}.')
    self.seed = int(seed)

  def draw(self, num_heads, step):
    """The weights of global step `step`: a softmax of standard normals."""
    seed = tf.stack([tf.constant(self.seed, tf.int64),
                     tf.cast(step, tf.int64)])
    return tf.nn.softmax(tf.random.stateless_normal([num_heads], seed=seed))

  def initial_state(self, num_heads):
    # A tensor, not a NumPy value: the draw is TensorFlow's stateless one.
    return {'weights': (self.draw(num_heads, 0), False)}

  def weights(self, state):
    return tf.stop_gradient(state['weights'])

  def next_state(self, losses, state, head_losses, head_names):
    del losses, head_losses  # Drawn whatever the losses were.
    global_step = tf.compat.v1.train.get_global_step()
    if global_step is None:
      raise ValueError(
          f'RandomLossWeighting (heads {list(head_names)}) draws each step\'s '
          'weights from the global step, and this graph has none: create it '
          'with tf.compat.v1.train.get_or_create_global_step() (Estimator '
          'does) and increment it in the train op.')
    # Read after the train op (the update runs after it): the step's end.
    return {'weights': self.draw(tf.size(state['weights']),
                                 tf.convert_to_tensor(global_step))}


class FAMO(LossWeighting):
  """Fast adaptive multitask optimization (Liu, Feng, Stone and Liu).

  Logits `xi`, from 0, give the weights `z = softmax(xi)`. With
  `D_i = L_i - b_i + epsilon` (`b` the `min_losses`), the model descends

      d = c * sum_i z_i * grad(log D_i),   c = 1 / sum_i (z_i / D_i)

  a convex combination of the heads' gradients `grad L_i`, with weights
  `c * z_i / D_i`: the model trains on `sum_i (c * z_i / D_i) * L_i`, those
  weights held constant. Its value is `sum_i z_i L_i / D_i` over
  `sum_i z_i / D_i`, near the `z`-weighted harmonic mean of the losses.
  After a step, the logits move towards the heads whose log loss fell
  least:

      delta_i = log D_i(before) - log D_i(after)
      g = J_z(xi)^T delta + gamma * xi = z * (delta - z . delta) + gamma * xi

  and `xi` takes an Adam step on `g` (learning rate `learning_rate`,
  `beta_1 = 0.9`, `beta_2 = 0.999`, `epsilon = 1e-8`, bias-corrected), as in
  the paper's practical algorithm and code. Every step costs O(K): no
  per-head gradient is taken, and fused groups stay fused.

  B. Liu, Y. Feng, P. Stone and Q. Liu, "FAMO: Fast Adaptive Multitask
  Optimization", NeurIPS 2023.

  The paper measures `D(after)` on the step's own batch, with a second
  forward pass after the update. Here no extra pass is run: the "after"
  losses of step `t - 1` are the losses of step `t`, on the next batch. So
  the update made at the end of step `t` uses `delta = log D(step t - 1) -
  log D(step t)`, with the Jacobian at the logits step `t` trained with:
  the logits react one step later than in the paper, and `delta` also holds
  the difference between the two batches (noise that Adam's moving averages
  smooth). The first step only records its losses.

  Under `MirroredStrategy` the weights `c * z_i / D_i` and `delta` come from
  the losses averaged over the replicas, so a mirrored step is the
  single-device step on all the replicas' rows.

  The reported weights `loss_weight/<head>` are `z_i` (they sum to 1).

  Args:
    learning_rate: The positive learning rate of the logits' Adam (the
      paper's `beta`, `w_lr` in its code).
    weight_decay: `gamma`, a number `>= 0`: the logits' L2 decay towards
      equal weights.
    min_losses: `b`: a number, or one per head: lower bounds of the losses
      (0 suits losses that cannot be negative; a head whose loss can, such
      as a Poisson regression's, needs its own bound).
    epsilon: A positive number added to `L_i - b_i` before its logarithm.

  Raises:
    TypeError, ValueError: An argument of the wrong type or sign; a
      `min_losses` list whose length is not the number of heads.
    InvalidArgumentError: At run time, a loss below its `min_losses` entry.

  >>> famo = FAMO()
  >>> state = {'logits': tf.math.log([1., 3.])}  # z = [0.25, 0.75].
  >>> print(famo.weights(state).numpy().round(4))
  [0.25 0.75]
  >>> # c = 1 / (0.25 / 1 + 0.75 / 3) = 2: the losses weigh 0.5 and 0.5,
  >>> # and the loss is (0.25 * 1 / 1 + 0.75 * 3 / 3) / 0.5 = 2.
  >>> print(f'{famo.merged_loss(tf.constant([1., 3.]), state):.4f}')
  2.0000
  """

  ADAM_BETA_1 = 0.9
  ADAM_BETA_2 = 0.999
  ADAM_EPSILON = 1e-8

  def __init__(self, learning_rate=0.025, weight_decay=1e-3, min_losses=0.,
               epsilon=1e-8):
    self.learning_rate = _positive_number(learning_rate,
                                          'FAMO learning_rate')
    if isinstance(weight_decay, bool) or not isinstance(
        weight_decay, (numbers.Real, np.number)):
      raise TypeError(
          f'FAMO weight_decay must be a number; given {weight_decay!r}.')
    if not weight_decay >= 0:
      raise ValueError(
          f'FAMO weight_decay must be >= 0; given {weight_decay!r}.')
    self.weight_decay = weight_decay
    self.epsilon = _positive_number(epsilon, 'FAMO epsilon')
    self.min_losses = _min_losses(min_losses)

  def initial_state(self, num_heads):
    self._bounds(num_heads)  # Fails now on a list of the wrong length.
    zeros = np.zeros(num_heads, np.float32)
    return {
        'logits': (zeros, False),
        'adam_m': (zeros, False),
        'adam_v': (zeros, False),
        'adam_steps': (np.float32(0), False),
        'previous_losses': (zeros, False),
        'has_previous_losses': (np.float32(0), False),
    }

  def weights(self, state):
    return tf.nn.softmax(state['logits'])

  def _bounds(self, num_heads):
    """`b` as a `[num_heads]` NumPy vector."""
    bounds = np.asarray(self.min_losses, np.float64)
    if bounds.ndim == 0:
      return np.full(num_heads, bounds)
    if bounds.shape != (num_heads,):
      raise ValueError(
          f'FAMO min_losses has {bounds.size} entries for {num_heads} heads; '
          'give one number, or one per head.')
    return bounds

  def _distances(self, losses):
    """`D_i = L_i - b_i + epsilon`, after checking that `L_i >= b_i`."""
    bounds = tf.constant(self._bounds(losses.shape[0]), losses.dtype)
    check = tf.debugging.assert_greater_equal(
        losses, bounds, message=(
            'FAMO needs each head\'s loss to be at least its min_losses '
            'entry (log(L_i - b_i) is taken); give lower min_losses. The '
            'losses (in head order) and bounds:'))
    with tf.control_dependencies([check]):
      return losses - bounds + self.epsilon

  def merged_loss(self, losses, state):
    mean = tf.stop_gradient(_replica_mean(losses))
    weighted = self.weights(state) / self._distances(mean)
    # c * z_i / D_i: constants to the gradient, which is then FAMO's `d`.
    coefficients = tf.stop_gradient(weighted / tf.reduce_sum(weighted))
    return tf.reduce_sum(coefficients * losses)

  def next_state(self, losses, state, head_losses, head_names):
    del head_losses, head_names  # O(1): the stacked losses only.
    losses = _replica_mean(tf.stop_gradient(losses))
    ready = state['has_previous_losses'] > 0
    # At the first step there is no "before": delta is 0, and unused.
    previous = tf.where(ready, state['previous_losses'], losses)
    decrease = (tf.math.log(self._distances(previous)) -
                tf.math.log(self._distances(losses)))
    weights = self.weights(state)
    gradient = weights * (decrease - tf.reduce_sum(weights * decrease)) + (
        self.weight_decay * state['logits'])
    stepped = self._adam_step(state, gradient)
    new_state = {name: tf.where(ready, value, state[name])
                 for name, value in stepped.items()}
    new_state.update(previous_losses=losses,
                     has_previous_losses=tf.ones_like(
                         state['has_previous_losses']))
    return new_state

  def _adam_step(self, state, gradient):
    """The logits and Adam's moments after one Adam step on `gradient`."""
    steps = state['adam_steps'] + 1.
    m = self.ADAM_BETA_1 * state['adam_m'] + (1. - self.ADAM_BETA_1) * gradient
    v = self.ADAM_BETA_2 * state['adam_v'] + (
        1. - self.ADAM_BETA_2) * tf.square(gradient)
    m_hat = m / (1. - self.ADAM_BETA_1**steps)
    v_hat = v / (1. - self.ADAM_BETA_2**steps)
    logits = state['logits'] - self.learning_rate * m_hat / (
        tf.sqrt(v_hat) + self.ADAM_EPSILON)
    return {'logits': logits, 'adam_m': m, 'adam_v': v, 'adam_steps': steps}


def _min_losses(min_losses):
  """Checks FAMO's `min_losses`: a number or a list of numbers."""
  values = min_losses if isinstance(min_losses, (list, tuple, np.ndarray)) \
      else [min_losses]
  for value in np.asarray(values, dtype=object).ravel():
    if isinstance(value, bool) or not isinstance(value,
                                                 (numbers.Real, np.number)):
      raise TypeError('FAMO min_losses must be a number or a list of '
                      f'numbers; given {min_losses!r}.')
  return min_losses
