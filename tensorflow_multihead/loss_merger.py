"""`LossMerger`: the heads' losses into the one loss a merged head trains.

With fixed `head_weights` the merged loss is their weighted sum. With a
learned `weighting` method, `LossMerger` keeps the method's state in
variables (one set per graph) and gives a merged head, for each spec, the
few things it needs: the merged loss, the trainable variables to add to
`optimizer=`'s, the state update to run with the train op, the TRAIN
summaries and the EVAL metrics `loss_weight/<head>`.

>>> import tensorflow as tf
>>> from tensorflow_multihead import head_group, loss_merger, weighting
>>> group = head_group.HeadGroup([tf.estimator.RegressionHead(name='a'),
...                               tf.estimator.RegressionHead(name='b')],
...                              head_weights=[1., 2.])
>>> merger = loss_merger.LossMerger(group, weighting.Uncertainty())
>>> merged = merger.merge([tf.constant(3.), tf.constant(1.)])
>>> float(merged.loss)  # 0.5 * 3 + 0.5 * (2 * 1), every s_i still 0.
2.5
>>> {name: float(weight) for name, weight in merged.weights.items()}
{'a': 0.5, 'b': 0.5}
"""
import weakref

import tensorflow as tf

from tensorflow_multihead import head_group

LOSS_WEIGHT_KEY = 'loss_weight'
# What a merged head calls on its `loss_weighting`: a weighting.LossWeighting.
_LOSS_WEIGHTING_METHODS = ('initial_state', 'weights', 'merged_loss',
                           'next_state')


class LossMerger:
  """Merges the heads' losses into the trained loss, learned or fixed.

  What a merged head calls: `merge` gives a `MergedLoss` for the losses of
  one spec (or one `loss()` call). Without a `loss_weighting` it is the
  weighted sum of `group` (a `head_group.HeadGroup`). With one, its state
  is created once per graph (and once in eager mode), under the name scope
  `<scope>/loss_weighting/`, `<scope>` the merged head's (`group.scope`:
  its heads' names joined by `_` unless that is long, or its `name`).

  Raises:
    TypeError: `loss_weighting` is neither `None` nor a `LossWeighting`.
    ValueError: One of `group`'s heads is a merged head with a
      `loss_weighting` of its own.
  """

  def __init__(self, group, loss_weighting):
    _check_loss_weighting(loss_weighting)
    _check_not_nested(group)
    self.loss_weighting = loss_weighting
    self._group = group
    self._scope = group.scope
    self._graph_variables = weakref.WeakKeyDictionary()
    self._eager_variables = None

  def merge(self, losses, regularization_loss=None):
    """Returns the `MergedLoss` of the heads' losses (in head order)."""
    if self.loss_weighting is None:
      return MergedLoss(self._group.weighted_sum(losses, regularization_loss))
    with tf.name_scope('merge_losses'):
      losses = list(losses)
      if self._group.weights:
        losses = [tf.math.multiply(loss, prior)
                  for loss, prior in zip(losses, self._group.weights)]
      variables = self.variables()
      state = {name: tf.convert_to_tensor(variable)
               for name, variable in variables.items()}
      stacked = tf.stack(losses)
      state = {name: tf.cast(value, stacked.dtype)
               for name, value in state.items()}
      loss = self.loss_weighting.merged_loss(stacked, state)
      if regularization_loss is not None:
        loss += regularization_loss
      return MergedLoss(loss, _Learned(
          self.loss_weighting, self._group.names, variables, state, losses))

  def variables(self):
    """The weighting's state variables in this graph (or eager), by name.

    Created on first use; `None` without a `loss_weighting`.
    """
    if self.loss_weighting is None:
      return None
    if tf.executing_eagerly():
      if self._eager_variables is None:
        self._eager_variables = self._new_variables()
      return self._eager_variables
    graph = tf.compat.v1.get_default_graph()
    if graph not in self._graph_variables:
      self._graph_variables[graph] = self._new_variables()
    return self._graph_variables[graph]

  def _new_variables(self):
    """Creates the state; under a strategy, mirrored and assignable.

    Only the first replica creates them (later ones find them here), at an
    absolute name scope, so TRAIN and EVAL name them alike.
    """
    variables = {}
    with tf.compat.v1.name_scope(f'{self._scope}/loss_weighting/'):
      for name, (initial, trainable) in self.loss_weighting.initial_state(
          len(self._group.names)).items():
        # TF1's class, as a v2 `tf.Variable` would put the replicas' own
        # copies of a mirrored variable in the saved collection too.
        variables[name] = tf.compat.v1.Variable(
            initial, name=name, trainable=trainable, use_resource=True,
            synchronization=tf.VariableSynchronization.ON_WRITE,
            # Every replica computes the same new state and assigns it.
            aggregation=(tf.VariableAggregation.NONE if trainable else
                         tf.VariableAggregation.ONLY_FIRST_REPLICA))
    return variables


def _check_loss_weighting(loss_weighting):
  """Raises unless `loss_weighting` is `None` or acts as a `LossWeighting`.

  Checked by its methods rather than its class, so that a method written
  apart from `weighting.LossWeighting` works too.
  """
  if loss_weighting is None:
    return
  if isinstance(loss_weighting, type):
    raise TypeError(
        f'loss_weighting must be a weighting method; given the class '
        f'{loss_weighting.__name__}; give an instance, such as '
        f'{loss_weighting.__name__}().')
  missing = [name for name in _LOSS_WEIGHTING_METHODS
             if not callable(getattr(loss_weighting, name, None))]
  if missing:
    raise TypeError(
        'loss_weighting must be None or a tensorflow_multihead.weighting '
        'method (Uncertainty(), DynamicWeightAverage(...), GradNorm(...), '
        'RandomLossWeighting(...), FAMO(...)); '
        f'given {loss_weighting!r} of type {type(loss_weighting).__name__}, '
        f'which has no {missing}.')


def _check_not_nested(group):
  """Raises if a merged head among `group`'s heads learns its weights.

  The outer head trains only its own merged loss: an inner one's weighting
  would never be updated.
  """
  for head in group.heads:
    if getattr(head, 'loss_weighting', None) is not None:
      raise ValueError(
          f'Head {head.name!r} is a merged head with a loss_weighting, inside '
          'another merged head, which would never update it. Give the '
          'loss_weighting to the outermost MultiHead.')


# Op types that write a resource variable given as their first input.
_WRITING_OP_PREFIXES = ('ResourceApply', 'ResourceSparseApply',
                        'AssignVariableOp', 'AssignAddVariableOp',
                        'AssignSubVariableOp', 'ResourceScatter')


def _check_trained(train_op, variables):
  """Raises unless `train_op` writes every one of `variables`.

  A `train_op_fn` that minimizes over its own list of variables (as TF 1.x
  canned estimators do) would leave learned weights such as `Uncertainty`'s
  at their initial values, silently.
  """
  if not variables:
    return
  handles = {component.handle.op: variable for variable in variables
             for component in getattr(variable, 'values', (variable,))}
  written, seen = set(), set()
  pending = [train_op.op if tf.is_tensor(train_op) else train_op]
  while pending:
    op = pending.pop()
    if op in seen:
      continue
    seen.add(op)
    if op.type.startswith(_WRITING_OP_PREFIXES) and op.inputs and (
        op.inputs[0].op in handles):
      written.add(handles[op.inputs[0].op].name)
    pending.extend(tensor.op for tensor in op.inputs)
    pending.extend(op.control_inputs)
  untrained = sorted({variable.name for variable in variables} - written)
  if untrained:
    raise ValueError(
        f'The train op does not train the loss weighting\'s variables '
        f'{untrained}, so its weights would never be learned. A train_op_fn '
        'must minimize over tf.compat.v1.trainable_variables() (such as '
        '`optimizer.minimize(loss)`), or give the head optimizer= (the v2 '
        'canned estimators do). TF 1.x canned estimators minimize their own '
        'variables only: use a weighting that trains itself '
        '(DynamicWeightAverage, GradNorm, RandomLossWeighting, FAMO) there.')


class _Learned:
  """The learned side of one merged loss: weights, state and its update."""

  def __init__(self, loss_weighting, names, variables, state, losses):
    self.loss_weighting = loss_weighting
    self.names = names
    self.variables = variables
    self.state = state
    self.losses = losses
    self.weights = tf.unstack(loss_weighting.weights(state), len(names))
    self.keys = [f'{LOSS_WEIGHT_KEY}/{name}' for name in names]


class MergedLoss:
  """The trained loss of one spec, and what the learned weighting adds.

  Without a learned weighting, every method hands its argument back.

  Attributes:
    loss: The merged scalar loss, regularization included.
  """

  def __init__(self, loss, learned=None):
    self.loss = loss
    self._learned = learned

  @property
  def weights(self):
    """The learned weights by head name (without priors), or `None`."""
    if self._learned is None:
      return None
    return dict(zip(self._learned.names, self._learned.weights))

  def trainable_variables(self, variables):
    """`optimizer=`'s variables plus the weighting's trainable ones."""
    if self._learned is None or not isinstance(variables, (list, tuple)):
      return variables
    extra = [variable for variable in self._learned.variables.values()
             if variable.trainable and
             not any(variable is given for given in variables)]
    return type(variables)(list(variables) + extra)

  def train_op(self, train_op):
    """Returns `train_op` followed by the weighting's state update, if any.

    The update computes from this step's losses and state, as read before
    the step, and runs after `train_op` and after every read of the state.

    Raises:
      ValueError: `train_op` leaves a trainable state variable untrained.
    """
    learned = self._learned
    if learned is None:
      return train_op
    _check_trained(train_op, [variable for variable in
                              learned.variables.values() if variable.trainable])
    # After every read of the state too: an update whose value does not
    # depend on its variable's read (GradNorm's `has_initial_losses`, once
    # Grappler folds `ones_like`) could otherwise run before that read.
    with tf.name_scope('loss_weighting_update'), tf.control_dependencies(
        [train_op] + list(learned.state.values())):
      new_state = learned.loss_weighting.next_state(
          tf.stack(learned.losses), learned.state, learned.losses,
          learned.names)
      updates = [learned.variables[name].assign(
          tf.cast(value, learned.variables[name].dtype))
                 for name, value in sorted(new_state.items())]
      return tf.group(train_op, *updates) if updates else train_op

  def add_summaries(self):
    """Adds a scalar summary `loss_weight/<head>` per head (TRAIN)."""
    if self._learned is None:
      return
    with tf.compat.v1.name_scope(''):
      for key, weight in zip(self._learned.keys, self._learned.weights):
        tf.compat.v1.summary.scalar(key, weight)

  def eval_metrics(self, metrics):
    """Adds `loss_weight/<head>` metrics to a `(metric_fn, tensors)` pair."""
    if self._learned is None:
      return metrics
    metric_fn, tensors = metrics
    # Rank 1, as TPUEstimator moves metric tensors batch by batch.
    weight_tensors = {key: tf.reshape(weight, [1]) for key, weight in zip(
        self._learned.keys, self._learned.weights)}
    names = dict(zip(self._learned.keys, self._learned.names))

    def with_weights(**all_tensors):
      merged = metric_fn(**{key: value for key, value in all_tensors.items()
                            if key not in weight_tensors})
      for key in weight_tensors:
        mean = tf.keras.metrics.Mean(name=key)
        mean.update_state(all_tensors[key])
        head_group.merge_unique(merged, {key: mean}, names[key], 'metric')
      return merged

    return with_weights, dict(tensors, **weight_tensors)
