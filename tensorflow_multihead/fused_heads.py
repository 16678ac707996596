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
from tensorflow_multihead import fused_checks
from tensorflow_multihead import fused_masks
from tensorflow_multihead import fused_metrics
from tensorflow_multihead import head_group
from tensorflow_multihead import label_dtypes
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
  """Whether dense labels may fit `[D0, ..., DN, width]`, statically.

  A last dimension unknown until run time may: the group checks it then.
  """
  return (labels.shape.rank == logits.shape.rank and
          labels.shape[-1] in (width, None) and
          labels.shape[:-1].is_compatible_with(logits.shape[:-1]))


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

    Every check of the inputs names the head at fault: those the static
    shapes and values settle raise while building, inside the head's
    `ErrorsNamingHead`; the others are assertions (`fused_checks`), which
    every op that could fail on bad input waits for.

    Args:
      features: The features dict (weights are read from it).
      logits: Each head's logits, keyed by head name.
      labels: Each head's labels, keyed by head name.
    """
    pieces = self._pieces(logits)
    same_rows = fused_checks.same_rows(pieces, self.names)
    with fused_checks.after([same_rows]):
      stacked_logits = stack(pieces)
    lookup = self._new_lookup()
    head_labels, keeps = [], []
    for head, marks, piece in zip(self.heads, self.marks, pieces):
      with head_group.ErrorsNamingHead(head.name):
        processed, keep = self._one_heads_labels(
            head, marks, piece, labels[head.name], features, lookup)
      head_labels.append(processed)
      keeps.append(keep)
    stacked_labels = self._stacked_labels(head_labels, pieces, lookup,
                                          same_rows)
    stacked_labels.set_shape(
        stacked_logits.shape[:-1].concatenate([self.label_width]))
    stacked_labels = self._checked_labels(stacked_labels, head_labels)
    with fused_checks.after([same_rows]):  # Broadcasts between heads.
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

  def _one_heads_labels(self, head, marks, logits, labels, features, lookup):
    """`(processed labels, labelled rows)` of one head, checked.

    The labelled rows are None for an unmasked head. Called inside the
    head's `ErrorsNamingHead`.
    """
    label_dtypes.check(head, labels)
    keep = None
    if marks is not None:
      labels, keep = fused_masks.labelled(head, marks, labels, logits,
                                          features)
    processed = self._head_labels(head, logits, labels, lookup)
    fused_checks.refuse_known_bad_shape(processed, logits, self.label_width)
    self._refuse_known_bad_labels(processed)
    return processed, keep

  def _stacked_labels(self, head_labels, pieces, lookup, same_rows):
    """The heads' labels stacked, once every shape check passed."""
    shaped = fused_checks.labels_shape(head_labels, pieces, self.label_width,
                                       self.names)
    with fused_checks.after([same_rows, shaped]):
      in_vocabulary = self._vocabulary_check(lookup)
    with fused_checks.after([same_rows, shaped, in_vocabulary]):
      return stack(head_labels)

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

  def _vocabulary_check(self, lookup):
    """The run-time check that looked-up labels were in their vocabulary."""
    del lookup  # Only heads with a vocabulary look labels up.
    return None

  def _refuse_known_bad_labels(self, labels):
    """Raises now, as the head alone would, for known labels out of range.

    The group checks its stacked labels once, as they run; labels known
    while building (constants, eager tensors) are checked head by head
    instead, so that the error names the head. In range, nothing is added.
    """
    value = tf.get_static_value(labels)
    if self.label_classes is None or value is None:
      return
    if not ((value >= 0) & (value <= self.label_classes - 1)).all():  # NaN too.
      base_head.check_label_range(labels, self.label_classes,
                                  message=self.label_range_message)

  def _head_labels(self, head, logits, labels, lookup):
    """One head's processed labels `[D0, ..., DN, label_width]`."""
    del lookup  # Only heads with a vocabulary look labels up.
    return head._processed_labels(logits, labels)  # pylint: disable=protected-access

  # Processed labels must lie in [0, label_classes), if it is set; the
  # message replaces `check_label_range`'s own when it is set.
  label_classes = None
  label_range_message = None

  def _checked_labels(self, stacked, head_labels):
    """The stacked labels, checked when run to be in range (if needed)."""
    if (self.label_classes is None or tf.executing_eagerly() or all(
        tf.get_static_value(labels) is not None for labels in head_labels)):
      return stacked  # Nothing to check, or checked head by head already.
    messages = (self.label_range_message or 'Labels must be >= 0',
                self.label_range_message or 'Labels must be <= n_classes - 1')
    return fused_checks.label_range(stacked, self.label_classes, self.names,
                                    messages)

  def _weights(self, features, pieces):
    columns = self.weight_columns
    if all(column is None for column in columns):
      return None
    read = {}
    for name, column, logits in zip(self.names, columns, pieces):
      if column is not None and column not in read:
        with head_group.ErrorsNamingHead(name):
          read[column] = base_head.get_weights_naming_head(
              features, column, logits,
              allow_per_logit_weights=self.per_logit_weights,
              head_name=name)
    if len(set(columns)) == 1:
      return tf.expand_dims(read[columns[0]], -2)
    # Weights are [..., 1], or per logit where the heads allow it (their
    # width then maybe known only when run).
    wide = 1
    if self.per_logit_weights and any(
        weights.shape[-1] != 1 for weights in read.values()):
      wide = self.heads[0].logits_dimension
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
      cut = (narrow_outputs.HeadCuts(self.size, positions) if positions
             else narrow_outputs.UNSTACK)
      with fused_checks.after([fused_checks.same_rows(pieces, self.names)]):
        stacked = (narrow_outputs.stack_from_source(pieces) if positions
                   else stack(pieces))
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
