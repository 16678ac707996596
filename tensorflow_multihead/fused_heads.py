"""Batched losses, predictions and metrics of a fused group of heads.

A group of H heads of one `tf.estimator` class (see `fusion`) stacks its
heads' logits into one `[D0, ..., DN, H, width]` tensor, their processed
labels and weights alike, and computes each head's loss, predictions and
metrics with a few ops over those, instead of a dozen ops per head. Each
head then gets its own tensors back, split off in one op.

Reductions run over *rows* (`[H, N]`, one head's values in order per row),
the way the head's own reductions run, so that losses and metrics agree
with the per-head computation to the last bit or nearly.

This module holds what every type shares (`FusedGroup`, the `Batch` its
spec hands to its metric function, the row layout); `fused_classifiers` and
`fused_regressions` hold one subclass per head type, and `fusion.build_group`
picks it.
"""
import dataclasses
import typing

import tensorflow as tf
from tensorflow_estimator.python.estimator.canned import metric_keys

from tensorflow_multihead import base_head
from tensorflow_multihead import fused_masks
from tensorflow_multihead import fused_metrics
from tensorflow_multihead import head_group
from tensorflow_multihead import narrow_outputs

_SUM_OVER_BATCH_SIZE = tf.losses.Reduction.SUM_OVER_BATCH_SIZE


@dataclasses.dataclass
class Batch:
  """One batch of a group, every tensor `[D0, ..., DN, H, ...]`.

  `weights` is None when no head has a weight column; its head axis has
  size 1 when all heads share one. `losses` is each head's training loss,
  `[1, H]`; `loss_weights`, `[1, H]`, how much the batch counts in each
  head's `loss/<head>` (None: 1 each; see `fused_masks`). These are the
  tensors the EVAL spec hands to its metric function, batch first as
  `TPUEstimator` wants them.
  """
  logits: tf.Tensor
  labels: tf.Tensor
  unweighted_loss: tf.Tensor
  losses: tf.Tensor
  weights: typing.Optional[tf.Tensor] = None
  loss_weights: typing.Optional[tf.Tensor] = None

  def as_tensors(self):
    return {field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if getattr(self, field.name) is not None}


@dataclasses.dataclass(frozen=True)
class Reading:
  """Where one metric key's value lives: a state's result, one column."""
  key: str
  state: str
  part: str
  column: int


def rows(tensor):
  """`[D0, ..., DN, H, K]` -> `[H, D0 * ... * DN * K]`, each head a row."""
  rank = tensor.shape.rank
  moved = tf.transpose(tensor, [rank - 2] + list(range(rank - 2)) + [rank - 1])
  return tf.reshape(moved, [tensor.shape[-2], -1])


def stack(pieces):
  return tf.stack(pieces, axis=-2)


def expand_flat(labels, logits):
  if labels.shape.rank == logits.shape.rank - 1:
    return tf.expand_dims(labels, -1)
  return labels


def dense_shape_fits(labels, logits, width):
  """Whether dense labels statically fit `[D0, ..., DN, width]`."""
  return (labels.shape.rank == logits.shape.rank and
          labels.shape[-1] == width and
          labels.shape[:-1].is_compatible_with(logits.shape[:-1]))


def _check_leading_dims(stacked, logits, names):
  """`stacked`, checked at run time to have the logits' leading dims."""
  if stacked.shape[:-2].is_fully_defined() and (
      stacked.shape[:-2] == logits.shape[:-2]):
    return stacked
  message = (f'labels of heads {list(names)} must have the leading '
             'dimensions [D0, ..., DN] of their logits')
  check = tf.debugging.assert_equal(tf.shape(stacked)[:-2],
                                    tf.shape(logits)[:-2], message=message)
  with tf.control_dependencies([check]):
    return tf.identity(stacked)


class FusedGroup:
  """Heads of one class and configuration, computed as one.

  A `MaskedHead` in `heads` is computed as the head it wraps, its
  unlabelled rows weighing 0 (see `fused_masks`).

  Args:
    heads: Two or more heads that `fusion.plan` put in one group.
  """

  label_width = 1

  def __init__(self, heads):
    unwrapped = [fused_masks.unwrapped(head) for head in heads]
    self.heads = tuple(head for head, _ in unwrapped)
    self.marks = tuple(marks for _, marks in unwrapped)
    self.names = tuple(head.name for head in self.heads)
    self.size = len(self.heads)
    # pylint: disable=protected-access
    self.weight_columns = [head._weight_column for head in self.heads]
    self.loss_reduction = self.heads[0].loss_reduction

  # One batch.

  def batch(self, features, logits, labels):
    """Stacks and processes the group's inputs; returns a `Batch`.

    Args:
      features: The features dict (weights are read from it).
      logits: Each head's logits, keyed by head name.
      labels: Each head's labels, keyed by head name.
    """
    pieces = self._pieces(logits)
    stacked_logits = stack(pieces)
    lookup = self._new_lookup()
    head_labels, keeps = [], []
    for head, marks, piece in zip(self.heads, self.marks, pieces):
      given, keep = labels[head.name], None
      if marks is not None:
        with head_group.ErrorsNamingHead(head.name):
          given, keep = fused_masks.labelled(head, marks, given, piece,
                                             features)
      head_labels.append(self._named_head_labels(head, piece, given, lookup))
      keeps.append(keep)
    stacked_labels = self._checked_labels(
        _check_leading_dims(stack(head_labels), stacked_logits, self.names))
    weights = self._weights(features, pieces)
    kept = None
    if any(keep is not None for keep in keeps):
      kept = fused_masks.KeptRows(keeps, pieces)
      stacked_logits = kept.logits(stacked_logits)
      weights = kept.weights(weights)
    unweighted = self._unweighted_loss(stacked_logits, stacked_labels)
    return Batch(logits=stacked_logits, labels=stacked_labels,
                 unweighted_loss=unweighted, weights=weights,
                 losses=self._losses(unweighted, weights, kept),
                 loss_weights=None if kept is None else kept.loss_weights())

  def _pieces(self, logits):
    """Each head's logits, as float32, checked as the head checks them."""
    pieces = []
    for head in self.heads:
      with head_group.ErrorsNamingHead(head.name):
        pieces.append(base_head.check_logits_final_dim(
            logits[head.name], head.logits_dimension))
    return pieces

  def _new_lookup(self):
    """What looks labels up in vocabularies for one batch, if anything."""
    return None

  def _named_head_labels(self, head, logits, labels, lookup):
    with head_group.ErrorsNamingHead(head.name):
      processed = self._head_labels(head, logits, labels, lookup)
      self._refuse_known_bad_labels(processed)
      return processed

  def _refuse_known_bad_labels(self, labels):
    """Raises now, as the head alone would, for known labels out of range.

    The group checks its stacked labels once, as they run; labels known
    while building (constants, eager tensors) are checked head by head as
    well, so that the error names the head. In range, nothing is added.
    """
    value = tf.get_static_value(labels)
    if self.label_classes is None or value is None:
      return
    if ((value < 0) | (value >= self.label_classes)).any():
      self._checked_labels(labels)

  def _head_labels(self, head, logits, labels, lookup):
    """One head's processed labels `[D0, ..., DN, label_width]`."""
    del lookup  # Only heads with a vocabulary look labels up.
    return head._processed_labels(logits, labels)  # pylint: disable=protected-access

  # Processed labels must lie in [0, label_classes), if it is set; the
  # message replaces `check_label_range`'s own when it is set.
  label_classes = None
  label_range_message = None

  def _checked_labels(self, labels):
    if self.label_classes is None:
      return labels
    return base_head.check_label_range(labels, self.label_classes,
                                       message=self.label_range_message)

  def _weights(self, features, pieces):
    columns = self.weight_columns
    if all(column is None for column in columns):
      return None
    read = {}
    for name, column, logits in zip(self.names, columns, pieces):
      if column is not None and column not in read:
        with head_group.ErrorsNamingHead(name):
          read[column] = base_head.get_weights_and_check_match_logits(
              features, column, logits,
              allow_per_logit_weights=self.per_logit_weights)
    if len(set(columns)) == 1:
      return tf.expand_dims(read[columns[0]], -2)
    wide = max(weights.shape[-1] for weights in read.values())
    shape = tf.concat([tf.shape(pieces[0])[:-1], [wide]], axis=0)
    return stack([
        tf.broadcast_to(read[column] if column is not None else 1., shape)
        for column in columns])

  per_logit_weights = False

  def _losses(self, unweighted, weights, kept=None):
    """Each head's training loss, `[1, H]`, as `compute_weighted_loss`.

    With `kept` (a `fused_masks.KeptRows`), a mean runs over each head's
    labelled rows only.
    """
    weighted = unweighted if weights is None else tf.math.multiply(
        unweighted, weights)
    weighted_rows = rows(weighted)
    total = tf.math.reduce_sum(weighted_rows, axis=1)
    if self.loss_reduction == _SUM_OVER_BATCH_SIZE:
      if kept is None:
        entries = tf.cast(tf.shape(weighted_rows)[1], tf.float32)
      else:
        entries = kept.entries(weighted)
      total = tf.math.divide_no_nan(total, entries)
    if not tf.executing_eagerly():
      # Keras notes the last loss reduction for distribution strategies.
      tf.compat.v1.get_default_graph()._last_loss_reduction = (  # pylint: disable=protected-access
          self.loss_reduction)
    return total[tf.newaxis, :]

  def _unweighted_loss(self, logits, labels):
    raise NotImplementedError

  # Predictions and serving.

  def predictions(self, logits, apart=()):
    """Each head's predictions dict, keyed by head name.

    The heads named in `apart` (those with signatures of their own in an
    export) have their tensors cut by ops of their own, from the logits'
    source tensor: see `narrow_outputs`.
    """
    pieces = self._pieces(logits)
    with tf.name_scope('predictions'):
      positions = [index for index, name in enumerate(self.names)
                   if name in apart]
      if not positions:
        return self._predictions(pieces, stack(pieces),
                                 narrow_outputs.UNSTACK)
      stacked = narrow_outputs.stack_from_source(pieces)
      cut = narrow_outputs.HeadCuts(self.size, positions)
      return self._predictions(cut.pieces(stacked, pieces), stacked, cut)

  def _predictions(self, pieces, stacked, cut):
    """Each head's predictions, from its logits `pieces` and the `stacked`
    ones; `cut` (a `narrow_outputs.HeadCuts`) cuts group tensors into each
    head's."""
    raise NotImplementedError

  def export_outputs(self, predictions):
    """Each head's export outputs, keyed by head name."""
    raise NotImplementedError

  # Metrics.

  def loss_key(self, name):
    return f'{metric_keys.MetricKeys.LOSS}/{name}'

  def states(self):
    """New metric state objects, keyed by state name."""
    states = {'loss': fused_metrics.ColumnMean(self.size, 'loss')}
    states.update(self._states())
    return states

  def readings(self):
    """A `Reading` per metric key of every head in the group."""
    readings = [Reading(self.loss_key(name), 'loss', 'mean', index)
                for index, name in enumerate(self.names)]
    return readings + self._readings()

  def update_states(self, states, batch):
    """Updates every state with `batch`; returns one op doing it all."""
    loss_weights = batch.loss_weights
    updates = [states['loss'].update_state(
        tf.transpose(batch.losses),
        None if loss_weights is None else tf.transpose(loss_weights))]
    updates.extend(self._update_states(states, batch))
    return tf.group(updates)

  def _key(self, head, key):
    return f'{key}/{head.name}'

  def _weight_rows(self, batch, values):
    if batch.weights is None:
      return None
    return rows(tf.broadcast_to(batch.weights, tf.shape(values)))

  def _states(self):
    raise NotImplementedError

  def _readings(self):
    raise NotImplementedError

  def _update_states(self, states, batch):
    raise NotImplementedError
