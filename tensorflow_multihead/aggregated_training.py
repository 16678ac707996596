"""Training on aggregated gradients: a loss whose gradient is the aggregate.

`MultiHead(heads, gradient_aggregation=aggregator)` trains, in TRAIN, on

    surrogate = loss + (s - stop_gradient(s)),
    s = sum(stop_gradient(d - J^T 1) * theta)

where `loss` is the merged loss (the heads' weighted losses plus
regularization), `theta` the shared variables, flattened and concatenated
(or the shared representation), `J` the `[K, n]` Jacobian of the heads'
weighted losses with respect to `theta`, one row a head
(`head_jacobian.jacobian`: no backward pass a head) and `d` the
aggregator's direction for it. The surrogate's value is `loss`'s, exactly
(`s - s` is 0); its gradient with respect to `theta` is the plain one plus
`d - J^T 1`, that is `d` plus the regularization's gradient; every other
variable's gradient is the plain one. Being a loss, it trains with
`optimizer=`, `train_op_fn=` and the canned estimators alike. With a
representation, its gradient `d` then goes back through the layers below it
in the one backward pass of the trained loss.

The rows' weights. Row `i` is the gradient of `c_i * loss_i`, where
`c_i = d loss / d loss_i`: the head's weight in `head_weights` (times its
learned weight, with a `loss_weighting`), whatever the merged loss does
with it. So `J^T 1` is exactly the heads' part of the plain gradient.

Replicas. Under a distribution strategy every replica aggregates the same
matrix, the one a single device would compute on the global batch: over
variables the mean of the replicas' Jacobians (the sum, for a `SUM` loss
reduction), over a representation, whose entries are each replica's own
rows, their columns side by side; each replica then trains on its share of
the direction.

>>> import tensorflow as tf
>>> from tensorflow_multihead import aggregation
>>> AggregatedTraining(aggregation.Mean())
Traceback (most recent call last):
...
ValueError: gradient_aggregation Mean() needs shared_variables=[...] or \
shared_representation=...: the parameters whose gradients it aggregates.
"""
import tensorflow as tf

from tensorflow_multihead import head_jacobian
from tensorflow_multihead import shared_parameters
from tensorflow_multihead.aggregation import base as aggregation_base
from tensorflow_multihead.aggregation import layer_jacobian

_SUM_OVER_BATCH_SIZE = tf.losses.Reduction.SUM_OVER_BATCH_SIZE


def _owner(aggregator):
  return f'gradient_aggregation {aggregator!r}'


def check_aggregator(aggregator):
  """Raises unless `aggregator` is an `aggregation.Aggregator` instance."""
  if isinstance(aggregator, type):
    raise TypeError(
        'gradient_aggregation must be an aggregator; given the class '
        f'{aggregator.__name__}; give an instance, such as '
        f'{aggregator.__name__}(shared_variables=[...]).')
  if not isinstance(aggregator, aggregation_base.Aggregator):
    raise TypeError(
        'gradient_aggregation must be a tensorflow_multihead.aggregation '
        f'Aggregator (such as aggregation.UPGrad(shared_variables=[...])); '
        f'given {aggregator!r} of type {type(aggregator).__name__}.')


def for_heads(aggregator, group):
  """The `AggregatedTraining` of a merged head, or `None` without one.

  Args:
    aggregator: The `gradient_aggregation` given, or `None`.
    group: The merged head's `head_group.HeadGroup`.

  Raises:
    ValueError: One of the heads is a merged head aggregating gradients
      itself (only the outermost head trains); see `AggregatedTraining`.
  """
  for head in group.heads:
    if getattr(head, 'gradient_aggregation', None) is not None:
      raise ValueError(
          f'Head {head.name!r} is a merged head with a gradient_aggregation, '
          'inside another merged head, which trains on its own loss: give '
          'the gradient_aggregation to the outermost MultiHead.')
  return None if aggregator is None else AggregatedTraining(aggregator)


def trained_loss(training, loss_weighting, loss, head_losses, logits_by_head,
                 loss_reduction):
  """What a TRAIN spec differentiates: `loss`, or its aggregated surrogate.

  Also checks that a `loss_weighting`'s `shared_variables` (`GradNorm`'s)
  feed every head's logits.

  Args:
    training: The merged head's `AggregatedTraining`, or `None`.
    loss_weighting: Its `weighting` method, or `None`.
    loss, head_losses, logits_by_head, loss_reduction: As
      `AggregatedTraining.training_loss` takes them.
  """
  shared_parameters.check_loss_weighting_reads(loss_weighting, logits_by_head)
  if training is None:
    return loss
  return training.training_loss(loss, head_losses, logits_by_head,
                                loss_reduction)


class AggregatedTraining:
  """Builds the surrogate loss of one TRAIN spec for `aggregator`.

  Args:
    aggregator: An `aggregation.Aggregator` configured with
      `shared_variables` or `shared_representation`, not both.
    jacobian_fn: Optional `(losses, sources) -> [K, n]` computing the
      Jacobian instead of `head_jacobian.jacobian` (for measurements:
      `jacobian.jacobian_by_rows`, one backward pass a head).

  Raises:
    TypeError: `aggregator` is not an `Aggregator`; a shared variable that
      is neither a variable nor a name; a representation that is neither a
      tensor nor a name.
    ValueError: Neither or both of `shared_variables` and
      `shared_representation`.
  """

  def __init__(self, aggregator, jacobian_fn=None):
    check_aggregator(aggregator)
    self.aggregator = aggregator
    self._owner = _owner(aggregator)
    self._variables = shared_parameters.as_tuple(
        getattr(aggregator, 'shared_variables', None))
    self._representation = getattr(aggregator, 'shared_representation', None)
    self._jacobian = jacobian_fn
    if not self._variables and self._representation is None:
      raise ValueError(
          f'{self._owner} needs shared_variables=[...] or '
          'shared_representation=...: the parameters whose gradients it '
          'aggregates.')
    if self._variables and self._representation is not None:
      raise ValueError(
          f'{self._owner} was given both shared_variables and '
          'shared_representation; give one: the variables whose gradients '
          'it aggregates, or the tensor every head reads.')
    shared_parameters.check_variable_types(self._variables, self._owner)
    if self._representation is not None:
      shared_parameters.check_representation_type(self._representation,
                                                  self._owner)

  @property
  def over_representation(self):
    """Whether the gradients aggregated are the representation's."""
    return self._representation is not None

  def training_loss(self, loss, head_losses, logits_by_head, loss_reduction):
    """Returns the surrogate of `loss` for this graph (and replica).

    Args:
      loss: The merged scalar loss, regularization included.
      head_losses: Each head's loss, in head order, as summed into `loss`.
      logits_by_head: Each head's logits, keyed by head name, in order.
      loss_reduction: The heads' `tf.losses.Reduction`.

    Raises:
      ValueError: Shared parameters not found in the graph, or a head whose
        logits do not depend on them; a direction of the wrong shape.
    """
    with tf.name_scope('gradient_aggregation'):
      logits = [tf.convert_to_tensor(piece)
                for piece in logits_by_head.values()]
      sources = self._sources(logits)
      shared_parameters.check_heads_depend_on(
          sources, logits_by_head, self._owner,
          'shared_representation' if self.over_representation
          else 'shared_variables')
      losses = tf.stack(head_losses)
      weighted = losses * tf.stop_gradient(
          _row_weights(loss, head_losses, losses.dtype))
      if self._jacobian is None:
        local, heads_part = head_jacobian.jacobian_and_sum(
            weighted, logits, sources,
            factored=self.aggregator.takes_layer_jacobian)
      else:
        local = self._jacobian(weighted, sources)
        heads_part = tf.reduce_sum(local, axis=0)
      replicas = _Replicas(loss_reduction, self.over_representation)
      direction = self._direction(replicas.global_matrix(local))
      correction = tf.stop_gradient(
          replicas.share(direction, local) - heads_part)
      pull = _inner_product(correction, sources)
      return loss + (pull - tf.stop_gradient(pull))

  def _sources(self, logits):
    if self.over_representation:
      return [shared_parameters.find_representation(
          self._representation, logits, self._owner)]
    return shared_parameters.resolve_variables(self._variables, self._owner)

  def _direction(self, matrix):
    """The aggregator's direction for `matrix`, checked to be `[n]`."""
    direction = tf.convert_to_tensor(self.aggregator.aggregate(matrix))
    expected = tf.TensorShape([matrix.shape[1]])
    if not direction.shape.is_compatible_with(expected):
      raise ValueError(
          f'{self._owner}.aggregate returned shape {direction.shape} for a '
          f'Jacobian of shape {matrix.shape}; it must return one entry a '
          f'column: {expected}.')
    return tf.cast(direction, matrix.dtype)


def _row_weights(loss, head_losses, dtype):
  """`d loss / d loss_i` for each head: what its loss counts for in `loss`."""
  weights = tf.compat.v1.gradients(
      loss, head_losses, unconnected_gradients=tf.UnconnectedGradients.ZERO)
  return tf.cast(tf.stack(weights), dtype)


def _inner_product(correction, sources):
  """`sum(correction * sources)`, `sources` flattened and concatenated."""
  sizes = [_size(source) for source in sources]
  parts = tf.split(correction, sizes) if len(sources) > 1 else [correction]
  return tf.math.add_n([
      tf.reduce_sum(part * tf.reshape(tf.cast(source, part.dtype), [-1]))
      for part, source in zip(parts, sources)])


def _size(source):
  size = source.shape.num_elements()
  return tf.size(source) if size is None else size


class _Replicas:
  """The replicas in sync, and what each trains on of one direction.

  With `R` replicas the trained gradients are summed over them, each
  replica's loss first divided by `R` for `SUM_OVER_BATCH_SIZE` (see
  `base_head.create_estimator_spec_train_op`): a replica's gradient counts
  `scale / R` times, `scale` being 1, or `R` for the other reductions. A
  single device on the global batch would see the Jacobian those weights
  give: over variables `scale / R` times the sum of the replicas' matrices,
  over a representation (a replica's entries are its own rows) their columns
  side by side, each times `scale / R`. Every replica aggregates that one
  matrix, and trains on its share of the direction divided by `scale / R`:
  over variables `1 / R` of it, over a representation its own columns.

  Args:
    loss_reduction: The heads' `tf.losses.Reduction`.
    side_by_side: Whether the columns are each replica's own (a
      representation's) rather than the same parameters'.
  """

  def __init__(self, loss_reduction, side_by_side):
    self._context = tf.distribute.get_replica_context()
    self._count = 1 if self._context is None else (
        self._context.num_replicas_in_sync)
    self._weight = (1. if loss_reduction == _SUM_OVER_BATCH_SIZE
                    else float(self._count)) / self._count
    self._side_by_side = side_by_side
    self._columns = None  # Each replica's column count, side by side.

  def global_matrix(self, matrix):
    """The Jacobian of the global batch, the same on every replica."""
    if self._count == 1:
      return matrix
    if isinstance(matrix, layer_jacobian.LayerJacobian):
      # Its columns are its batch rows' (`h`'s entries, row after row): the
      # replicas' columns side by side are their logits gradients' rows.
      rows, self._columns = self._merge(_concat_on_one_device,
                                        tf.transpose(matrix.gradients))
      self._columns *= tf.shape(matrix.kernel)[0]
      return matrix.with_rows(tf.transpose(rows) * self._weight)
    if self._side_by_side:
      combined, self._columns = self._merge(_concat_on_one_device, matrix)
    else:
      # The mean on one device, as `weighting._replica_mean` explains.
      (combined,) = self._merge(_sum_on_one_device, matrix)
    return combined * self._weight

  def share(self, direction, matrix):
    """What this replica's `matrix` trains on, of the global `direction`."""
    if self._count == 1:
      return direction
    if not self._side_by_side:
      return direction / (self._weight * self._count)
    index = self._context.replica_id_in_sync_group
    start = tf.math.cumsum(self._columns, exclusive=True)[index]
    own = tf.slice(direction, [start], [self._columns[index]])
    return own / self._weight

  def _merge(self, function, matrix):
    strategy = tf.distribute.get_strategy()
    if isinstance(strategy, (tf.distribute.MirroredStrategy,
                             tf.compat.v1.distribute.MirroredStrategy)):
      return self._context.merge_call(function, args=(matrix,))
    if function is _sum_on_one_device:
      return (self._context.all_reduce(tf.distribute.ReduceOp.SUM, matrix),)
    columns = self._context.all_gather(tf.shape(matrix)[1:], axis=0)
    return self._context.all_gather(matrix, axis=1), columns


def _sum_on_one_device(strategy, per_replica):
  values = strategy.experimental_local_results(per_replica)
  with tf.device(values[0].device):
    return (tf.math.add_n(values),)


def _concat_on_one_device(strategy, per_replica):
  values = strategy.experimental_local_results(per_replica)
  with tf.device(values[0].device):
    return (tf.concat(values, axis=1),
            tf.stack([tf.shape(value)[1] for value in values]))
