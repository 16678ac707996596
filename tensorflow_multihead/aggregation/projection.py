"""Gradient surgery: each head's gradient corrected against the others'.

`PCGrad` removes from each head's gradient its component against every
other head it conflicts with; `GradVac` moves each pair's cosine towards a
target that it learns over the steps. Both visit, for each head, the other
heads one after another, in an order drawn at random at every step (as in
their papers), or in head order with `shuffle=False`. The corrections are
carried out on the Gramian: `g_i^PC = sum_k C[i, k] g_k`, so that
`g_i^PC . g_j = (C G)[i, j]`, and the direction is `sum_k (sum_i C[i, k])
g_k`. All heads are corrected at once, one visited head per step of a
`tf.while_loop` compiled by XLA, so that the graph does not grow with the
number of heads.

>>> import tensorflow as tf
>>> conflicting = tf.constant([[1., 0.], [-1., 1.]])
>>> PCGrad().aggregate(conflicting).numpy()
array([0.5, 1.5], dtype=float32)
"""
import numpy as np
import tensorflow as tf

from tensorflow_multihead.aggregation import base
from tensorflow_multihead.aggregation import graph_state
from tensorflow_multihead.aggregation import small_linalg
from tensorflow_multihead.aggregation import step_randomness


def visiting_order(num_heads, seed=None):
  """The `[K, K - 1]` int32 order in which each head visits the others.

  Row `i` holds every head but `i`: in head order with `seed=None`, else in
  an order drawn (independently for each row) from the stateless `seed`, an
  int `[2]` tensor.

  >>> visiting_order(3).numpy()
  array([[1, 2],
         [0, 2],
         [0, 1]], dtype=int32)
  """
  if seed is None:
    keys = tf.tile(tf.range(num_heads, dtype=tf.float64)[tf.newaxis, :],
                   [num_heads, 1])
  else:
    keys = tf.random.stateless_uniform([num_heads, num_heads], seed,
                                       dtype=tf.float64)
  # A key above every other one sends a head's own index to its row's end.
  last = tf.fill([num_heads], tf.cast(num_heads, tf.float64) + 1.)
  order = tf.argsort(tf.linalg.set_diag(keys, last), axis=1, stable=True)
  return order[:, :num_heads - 1]


def _visit(order, body, state):
  """Runs `state = body(visited, pairs, *state)` for each column of `order`.

  `visited` holds the head each row visits in turn, `pairs` the `[K, 2]`
  indices `(i, visited[i])`. One `tf.while_loop` step a column, a fixed
  number of ops whatever K, each on at most `K x K` entries.
  """
  num_visits = tf.shape(order)[1]
  # A row of zeros past the last column: XLA compiles the body's slice even
  # when the loop never runs (one head, no column), and wants it in range.
  columns = tf.pad(tf.transpose(order), [[0, 1], [0, 0]])
  rows = tf.broadcast_to(tf.range(tf.shape(order)[0]), tf.shape(columns))
  all_pairs = tf.stack([rows, columns], axis=2)

  def step(column, *state):
    return (column + 1,) + tuple(body(columns[column], all_pairs[column],
                                      *state))

  return tf.while_loop(lambda column, *_: column < num_visits,
                       step, (tf.constant(0),) + tuple(state))[1:]


# The visits run compiled by XLA: one fused kernel for the whole loop
# instead of some 20 TensorFlow ops per step, each costing more to launch
# than its K-entry work (at K = 128, about 0.1 ms instead of 6 ms a step).
_compiled = tf.function(jit_compile=True, autograph=False)


@_compiled
def pcgrad_coefficients(gramian64, order):
  """PCGrad's `[K, K]` `C`: the corrected rows are `g_i^PC = sum_k C[i, k] g_k`.

  Args:
    gramian64: The float64 `[K, K]` Gramian.
    order: The `[K, K - 1]` visiting order (see `visiting_order`).
  """
  squared_norms = tf.linalg.diag_part(gramian64)

  def project(visited, pairs, coefficients, products):
    # products = C G: g_i^PC . g_j for the head j that row i visits.
    inner = tf.gather_nd(products, pairs)
    # Only a conflict (a negative inner product) is projected away; a zero
    # row never conflicts, so the division by 0 is never taken.
    correction = tf.math.divide_no_nan(-tf.minimum(inner, 0.),
                                       tf.gather(squared_norms, visited))
    return (tf.tensor_scatter_nd_add(coefficients, pairs, correction),
            products + correction[:, tf.newaxis] * tf.gather(gramian64,
                                                             visited))

  num_heads = tf.shape(gramian64)[0]
  coefficients, _ = _visit(order, project,
                           (tf.eye(num_heads, dtype=tf.float64), gramian64))
  return coefficients


@_compiled
def gradvac_coefficients(gramian64, order, targets, beta, eps):
  """GradVac's `[K, K]` `C` (`g_i^PC = sum_k C[i, k] g_k`), new targets.

  Args:
    gramian64: The float64 `[K, K]` Gramian.
    order: The `[K, K - 1]` visiting order (see `visiting_order`).
    targets: The float64 `[K, K]` EMA targets `phi_hat[i, j]` of the
      cosines between corrected `g_i` and original `g_j`.
    beta: The EMA rate.
    eps: Added to the denominators.

  Returns:
    `(coefficients, new_targets)`.
  """
  norms = small_linalg.row_norms(gramian64)

  def vaccinate(visited, pairs, coefficients, products, targets):
    # products = C G: products[i, j] = g_i^PC . g_j.
    dot = tf.gather_nd(products, pairs)
    # ||g_i^PC||^2 = C[i] G C[i]^T, summed afresh: kept up to date instead,
    # it would lose to cancellation what the correction removes.
    norm_i = tf.sqrt(tf.maximum(tf.reduce_sum(products * coefficients, 1),
                                0.))
    norm_j = tf.gather(norms, visited)
    cosine = tf.math.divide_no_nan(dot, norm_i * norm_j + eps)
    target = tf.gather_nd(targets, pairs)
    sine = tf.sqrt(tf.maximum(1. - tf.square(cosine), 0.))
    target_sine = tf.sqrt(tf.maximum(1. - tf.square(target), 0.))
    weight = tf.math.divide_no_nan(
        norm_i * (target * sine - cosine * target_sine),
        norm_j * target_sine + eps)
    # A zero g_j moves nothing: leave its weight at 0 rather than eps-large.
    weight = tf.where((cosine < target) & (norm_j > 0.), weight,
                      tf.zeros_like(weight))
    new_target = (1. - beta) * target + beta * cosine
    return (tf.tensor_scatter_nd_add(coefficients, pairs, weight),
            products + weight[:, tf.newaxis] * tf.gather(gramian64, visited),
            tf.tensor_scatter_nd_update(targets, pairs, new_target))

  num_heads = tf.shape(gramian64)[0]
  coefficients, _, targets = _visit(
      order, vaccinate,
      (tf.eye(num_heads, dtype=tf.float64), gramian64, targets))
  return coefficients, targets


class _Surgery(base.Aggregator):
  """What `PCGrad` and `GradVac` share: the order, seeded by the step."""

  def __init__(self, shuffle, seed, scope, shared_variables,
               shared_representation):
    super().__init__(shared_variables=shared_variables,
                     shared_representation=shared_representation)
    if not isinstance(shuffle, bool):
      raise TypeError(f'{type(self).__name__} shuffle must be True or '
                      f'False; given {shuffle!r}.')
    self.shuffle = shuffle
    self.seed = step_randomness.checked_seed(seed, type(self).__name__)
    self._seeds = step_randomness.StepSeeds(self.seed, scope)

  def _order(self, num_heads):
    """`(order, updates)`: this step's visiting order, ops to run with it."""
    if not self.shuffle:
      return visiting_order(num_heads), []
    seed, updates = self._seeds.next()
    return visiting_order(num_heads, seed), updates


class PCGrad(_Surgery):
  """Projecting conflicting gradients (PCGrad).

  For each head `i`, starting from `g_i^PC = g_i`, and for each other head
  `j` in random order: if `g_i^PC . g_j < 0`,
  `g_i^PC <- g_i^PC - (g_i^PC . g_j / ||g_j||^2) g_j`. The direction is
  `d = sum_i g_i^PC`.

  Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020,
  Algorithm 1. Values as TorchJD 0.18's `PCGrad`.

  Args:
    shuffle: Visit the other heads in an order drawn at each step (as the
      paper), else in head order.
    seed: The seed of the orders: a step's order is drawn from `[seed,
      step]` (see `step_randomness`), the same on every replica.
    shared_variables, shared_representation: See `Aggregator`.

  >>> import tensorflow as tf
  >>> jacobian = tf.constant([[1., 0.], [-1., 1.]])
  >>> PCGrad(shuffle=False).aggregate(jacobian).numpy()  # g_1 . g_2 < 0
  array([0.5, 1.5], dtype=float32)
  >>> PCGrad(shuffle=False).aggregate(tf.abs(jacobian)).numpy()  # no conflict
  array([2., 1.], dtype=float32)
  """

  def __init__(self, *, shuffle=True, seed=0, shared_variables=None,
               shared_representation=None):
    super().__init__(shuffle, seed, 'pcgrad', shared_variables,
                     shared_representation)

  takes_layer_jacobian = True

  def aggregate(self, jacobian):
    jacobian = small_linalg.checked_jacobian(jacobian, 'PCGrad')
    with tf.name_scope('pcgrad'):
      gramian64 = small_linalg.gramian(jacobian)
      order, updates = self._order(tf.shape(gramian64)[0])
      weights = tf.reduce_sum(pcgrad_coefficients(gramian64, order), 0)
      direction = small_linalg.combine(weights, jacobian)
      with tf.control_dependencies(updates):
        return tf.identity(direction)

  def __repr__(self):
    return f'PCGrad(shuffle={self.shuffle}, seed={self.seed})'


class GradVac(_Surgery):
  """Gradient vaccine (GradVac): pairwise cosines pulled to learned targets.

  For each head `i`, starting from `g_i^PC = g_i`, and for each other head
  `j` in random order, with `phi = g_i^PC . g_j / (||g_i^PC|| ||g_j|| +
  eps)` and the target `phi_hat[i, j]`: if `phi < phi_hat[i, j]`,

      g_i^PC <- g_i^PC + ||g_i^PC|| (phi_hat sqrt(1 - phi^2)
                                     - phi sqrt(1 - phi_hat^2))
                         / (||g_j|| sqrt(1 - phi_hat^2) + eps) g_j,

  which turns the cosine to `phi_hat`; then `phi_hat[i, j] <- (1 - beta)
  phi_hat[i, j] + beta phi`. The direction is `d = sum_i g_i^PC`. The
  targets start at 0 (the first step is PCGrad's) and carry over steps:
  eagerly in a variable this object owns, in a graph in the variable
  `<name>/cosine_targets` (checkpointed, made on first use), updated
  whenever the direction is computed.

  Wang et al., "Gradient Vaccine: Investigating and Improving Multi-task
  Optimization in Massively Multilingual Models", ICLR 2021, its update
  rule. Values as TorchJD 0.18's `GradVac`.

  Args:
    beta: The EMA rate of the targets, in `[0, 1]`.
    eps: A non-negative constant added to the denominators.
    shuffle: Visit the other heads in an order drawn at each step (as the
      paper), else in head order.
    seed: The seed of the orders: a step's order is drawn from `[seed,
      step]` (see `step_randomness`), the same on every replica.
    name: The name scope of the state variables in a graph.
    shared_variables, shared_representation: See `Aggregator`.

  >>> import tensorflow as tf
  >>> gradvac = GradVac(shuffle=False)
  >>> jacobian = tf.constant([[1., 0.], [-1., 1.]])
  >>> gradvac.aggregate(jacobian).numpy()  # targets 0: PCGrad's step
  array([0.5, 1.5], dtype=float32)
  >>> gradvac.targets().numpy().round(3)  # beta * cosine
  array([[ 0.   , -0.354],
         [-0.354,  0.   ]])
  """

  def __init__(self, beta=0.5, eps=1e-8, *, shuffle=True, seed=0,
               name='gradvac', shared_variables=None,
               shared_representation=None):
    super().__init__(shuffle, seed, name, shared_variables,
                     shared_representation)
    self.beta = small_linalg.non_negative_number(beta, 'GradVac beta',
                                                 at_most=1.)
    self.eps = small_linalg.non_negative_number(eps, 'GradVac eps')
    self.name = name
    self._targets = graph_state.PerGraph(self._new_targets)

  def _new_targets(self, num_heads):
    if num_heads is None:
      raise ValueError('GradVac.targets: this graph has no cosine targets '
                       'yet; give num_heads, or call aggregate first.')
    with tf.compat.v1.name_scope(f'{self.name}/'):
      return graph_state.state_variable(
          'cosine_targets', np.zeros([num_heads, num_heads], np.float64))

  def targets(self, num_heads=None):
    """The cosine-target variable of this graph (or eager).

    Made on first use, for `num_heads` heads, by `aggregate` or here.
    """
    return self._targets.get(num_heads)

  def reset(self):
    """Starts the eager targets afresh (at 0), as for new heads."""
    self._targets.forget_eager()

  takes_layer_jacobian = True

  def aggregate(self, jacobian):
    jacobian = small_linalg.checked_jacobian(jacobian, 'GradVac')
    num_heads = small_linalg.static_rows(jacobian, 'GradVac',
                                         'its cosine-target variable')
    with tf.name_scope('gradvac'):
      targets = self._targets_for(num_heads)
      gramian64 = small_linalg.gramian(jacobian)
      order, updates = self._order(num_heads)
      coefficients, new_targets = gradvac_coefficients(
          gramian64, order, tf.convert_to_tensor(targets), self.beta,
          self.eps)
      direction = small_linalg.combine(tf.reduce_sum(coefficients, 0),
                                       jacobian)
      with tf.control_dependencies([new_targets]):
        update = targets.assign(new_targets, read_value=False)
      with tf.control_dependencies(
          updates + ([update] if update is not None else [])):
        return tf.identity(direction)

  def _targets_for(self, num_heads):
    targets = self._targets.get(num_heads)
    if targets.shape[0] != num_heads:
      raise ValueError(
          f'GradVac: its cosine targets are for {targets.shape[0]} heads, '
          f'but the Jacobian has {num_heads} rows. Use a GradVac for each '
          f'set of heads, or reset() it (eager state only).')
    return targets

  def __repr__(self):
    return (f'GradVac(beta={self.beta}, eps={self.eps}, '
            f'shuffle={self.shuffle}, seed={self.seed})')
