"""Batched losses, predictions and metrics of a fused group of heads.

A group of H heads of one `tf.estimator` class (see `fusion`) stacks its
heads' logits into one `[D0, ..., DN, H, width]` tensor, their processed
labels and weights alike, and computes each head's loss, predictions and
metrics with a few ops over those, instead of a dozen ops per head. Each
head then gets its own tensors back, split off in one op.

Reductions run over *rows* (`[H, N]`, one head's values in order per row),
the way the head's own reductions run, so that losses and metrics agree
with the per-head computation to the last bit or nearly.

One class per head type; `FusedGroup.build` picks it.
"""
import dataclasses
import typing

import tensorflow as tf
from tensorflow_estimator.python.estimator.canned import metric_keys
from tensorflow_estimator.python.estimator.canned import prediction_keys

from tensorflow_multihead import base_head
from tensorflow_multihead import fused_metrics

_KEYS = metric_keys.MetricKeys
_PRED = prediction_keys.PredictionKeys
_SUM_OVER_BATCH_SIZE = tf.losses.Reduction.SUM_OVER_BATCH_SIZE
_INDICATOR_MESSAGE = (
    'labels must be an integer indicator Tensor with values in [0, 1]')


@dataclasses.dataclass
class Batch:
  """One batch of a group, every tensor `[D0, ..., DN, H, ...]`.

  `weights` is None when no head has a weight column; its head axis has
  size 1 when all heads share one. `losses` is each head's training loss,
  `[1, H]`. These are the tensors the EVAL spec hands to its metric
  function, batch first as `TPUEstimator` wants them.
  """
  logits: tf.Tensor
  labels: tf.Tensor
  unweighted_loss: tf.Tensor
  losses: tf.Tensor
  weights: typing.Optional[tf.Tensor] = None

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


def _stack(pieces):
  return tf.stack(pieces, axis=-2)


def _split(tensor):
  return tf.unstack(tensor, axis=-2)


def _expand_flat(labels, logits):
  if labels.shape.rank == logits.shape.rank - 1:
    return tf.expand_dims(labels, -1)
  return labels


def _dense_shape_fits(labels, logits, width):
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


class _Lookup:
  """One label vocabulary's tables, built once per graph and vocabulary."""

  def __init__(self):
    self._ids = {}

  def ids(self, vocabulary, labels):
    vocabulary = tuple(vocabulary)
    if vocabulary not in self._ids:
      self._ids[vocabulary] = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(
              tf.constant(vocabulary), tf.range(len(vocabulary),
                                                dtype=tf.int64)),
          default_value=-1, name='class_id_lookup')
    return self._ids[vocabulary].lookup(labels)


def _class_names(class_ids, vocabularies, n_classes):
  """Names of `class_ids` `[..., H, 1]`, from each head's vocabulary."""
  if not any(vocabularies):
    return tf.strings.as_string(class_ids)
  names = []
  for vocabulary in vocabularies:
    names.extend(vocabulary or [str(i) for i in range(n_classes)])
  offsets = tf.constant([[index * n_classes]
                         for index in range(len(vocabularies))], tf.int64)
  return tf.gather(tf.constant(names), class_ids + offsets)


class FusedGroup:
  """Heads of one class and configuration, computed as one.

  Args:
    heads: Two or more heads that `fusion.plan` put in one group.
  """

  label_width = 1

  def __init__(self, heads):
    self.heads = tuple(heads)
    self.names = tuple(head.name for head in heads)
    self.size = len(self.heads)
    # pylint: disable=protected-access
    self.weight_columns = [head._weight_column for head in self.heads]
    self.loss_reduction = self.heads[0].loss_reduction

  @staticmethod
  def build(heads):
    """Returns the `FusedGroup` subclass instance for `heads`' class."""
    kind = type(heads[0])
    for group_class in (_BinaryGroup, _MultiClassGroup, _MultiLabelGroup,
                        _RegressionGroup):
      if issubclass(kind, group_class.head_class):
        return group_class(heads)
    raise TypeError(f'No fused computation for {kind.__name__}.')

  # One batch.

  def batch(self, features, logits, labels):
    """Stacks and processes the group's inputs; returns a `Batch`.

    Args:
      features: The features dict (weights are read from it).
      logits: Each head's logits, keyed by head name.
      labels: Each head's labels, keyed by head name.
    """
    pieces = [tf.cast(logits[name], tf.float32) for name in self.names]
    stacked_logits = _stack(pieces)
    lookup = _Lookup()
    stacked_labels = _stack([
        self._head_labels(head, piece, labels[head.name], lookup)
        for head, piece in zip(self.heads, pieces)])
    stacked_labels = self._checked_labels(
        _check_leading_dims(stacked_labels, stacked_logits, self.names))
    weights = self._weights(features, pieces)
    unweighted = self._unweighted_loss(stacked_logits, stacked_labels)
    return Batch(logits=stacked_logits, labels=stacked_labels,
                 unweighted_loss=unweighted, weights=weights,
                 losses=self._losses(unweighted, weights))

  def _head_labels(self, head, logits, labels, lookup):
    """One head's processed labels `[D0, ..., DN, label_width]`."""
    del lookup  # Only heads with a vocabulary look labels up.
    return head._processed_labels(logits, labels)  # pylint: disable=protected-access

  def _checked_labels(self, labels):
    return labels

  def _weights(self, features, pieces):
    columns = self.weight_columns
    if all(column is None for column in columns):
      return None
    read = {}
    for column, logits in zip(columns, pieces):
      if column is not None and column not in read:
        read[column] = base_head.get_weights_and_check_match_logits(
            features, column, logits,
            allow_per_logit_weights=self.per_logit_weights)
    if len(set(columns)) == 1:
      return tf.expand_dims(read[columns[0]], -2)
    wide = max(weights.shape[-1] for weights in read.values())
    shape = tf.concat([tf.shape(pieces[0])[:-1], [wide]], axis=0)
    return _stack([
        tf.broadcast_to(read[column] if column is not None else 1., shape)
        for column in columns])

  per_logit_weights = False

  def _losses(self, unweighted, weights):
    """Each head's training loss, `[1, H]`, as `compute_weighted_loss`."""
    weighted = unweighted if weights is None else tf.math.multiply(
        unweighted, weights)
    weighted = rows(weighted)
    total = tf.math.reduce_sum(weighted, axis=1)
    if self.loss_reduction == _SUM_OVER_BATCH_SIZE:
      total = tf.math.divide_no_nan(
          total, tf.cast(tf.shape(weighted)[1], tf.float32))
    if not tf.executing_eagerly():
      # Keras notes the last loss reduction for distribution strategies.
      tf.compat.v1.get_default_graph()._last_loss_reduction = (  # pylint: disable=protected-access
          self.loss_reduction)
    return total[tf.newaxis, :]

  def _unweighted_loss(self, logits, labels):
    raise NotImplementedError

  # Predictions and serving.

  def predictions(self, logits):
    """Each head's predictions dict, keyed by head name."""
    pieces = [tf.cast(logits[name], tf.float32) for name in self.names]
    with tf.name_scope('predictions'):
      return self._predictions(pieces, _stack(pieces))

  def _predictions(self, pieces, stacked):
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
    updates = [states['loss'].update_state(tf.transpose(batch.losses))]
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


def _threshold_pairs(heads):
  """(head position, threshold) for each threshold of each head."""
  # pylint: disable=protected-access
  return [(index, threshold) for index, head in enumerate(heads)
          for threshold in head._thresholds]


def _threshold_readings(heads, first_column):
  readings = []
  column = first_column
  for head in heads:
    for threshold in head._thresholds:  # pylint: disable=protected-access
      readings += [
          Reading(f'{_KEYS.ACCURACY_AT_THRESHOLD % threshold}/{head.name}',
                  'accuracy', 'mean', column),
          Reading(f'{_KEYS.PRECISION_AT_THRESHOLD % threshold}/{head.name}',
                  'confusion', 'precision', column),
          Reading(f'{_KEYS.RECALL_AT_THRESHOLD % threshold}/{head.name}',
                  'confusion', 'recall', column)]
      column += 1
  return readings


class _Pairs:
  """Rows of labels, scores and weights, one per (head, threshold) pair."""

  def __init__(self, heads, labels, scores, weights):
    pairs = _threshold_pairs(heads)
    self.count = len(pairs)
    self.thresholds = [[threshold] for _, threshold in pairs]
    if not pairs:
      self.labels = self.scores = self.weights = None
      return
    by_pair = tf.constant([index for index, _ in pairs], tf.int32)
    self.labels = tf.gather(labels, by_pair)
    self.scores = tf.gather(scores, by_pair)
    self.weights = None if weights is None else tf.gather(weights, by_pair)

  def matches(self):
    """1 where the label equals the score thresholded (BinaryAccuracy)."""
    if not self.count:
      return None
    predicted = tf.cast(tf.math.greater(
        self.scores, tf.constant(self.thresholds, tf.float32)), tf.float32)
    return tf.cast(tf.math.equal(self.labels, predicted), tf.float32)

  def after(self, own, paired=None):
    """`own` rows, then the pairs' rows (`paired`, or own rows gathered)."""
    if own is None or not self.count:
      return own
    if paired is None:
      paired = self.weights
    return tf.concat([own, paired], axis=0)


class _ClassifierGroup(FusedGroup):
  """What the classification heads share: vocabularies and class names."""

  n_classes = 2

  def __init__(self, heads):
    super().__init__(heads)
    # pylint: disable=protected-access
    self.vocabularies = [head._label_vocabulary for head in self.heads]

  def _all_classes(self, logits):
    """`all_classes` per distinct vocabulary, shared by the heads."""
    shared = {}
    for vocabulary in self.vocabularies:
      key = tuple(vocabulary or ())
      if key not in shared:
        shared[key] = base_head.all_classes(logits, self.n_classes,
                                            vocabulary)
    return [shared[tuple(vocabulary or ())] for vocabulary in
            self.vocabularies]

  def _class_predictions(self, pieces, class_ids):
    """class_ids, classes, all_class_ids, all_classes per head."""
    ids = tf.expand_dims(class_ids, -1)
    names = _class_names(ids, self.vocabularies, self.n_classes)
    all_ids = base_head.all_class_ids(pieces[0], self.n_classes)
    return [{_PRED.CLASS_IDS: head_ids, _PRED.CLASSES: head_names,
             _PRED.ALL_CLASS_IDS: all_ids, _PRED.ALL_CLASSES: all_names}
            for head_ids, head_names, all_names in zip(
                _split(ids), _split(names), self._all_classes(pieces[0]))]

  def _classification_outputs(self, predictions, scores_key):
    outputs = {}
    classes = self._all_classes(
        predictions[self.names[0]][scores_key])
    for name, head_classes in zip(self.names, classes):
      head_predictions = predictions[name]
      classification = tf.estimator.export.ClassificationOutput(
          scores=head_predictions[scores_key], classes=head_classes)
      outputs[name] = {
          base_head.DEFAULT_SERVING_KEY: classification,
          base_head.CLASSIFY_SERVING_KEY: classification,
          base_head.PREDICT_SERVING_KEY:
              tf.estimator.export.PredictOutput(head_predictions)}
    return outputs

  def _label_ids(self, head, labels, lookup, integer_only):
    """Dense `[..., 1]` labels as ids (vocabulary looked up), or None."""
    vocabulary = head._label_vocabulary  # pylint: disable=protected-access
    if vocabulary:
      if labels.dtype != tf.string:
        return None
      return lookup.ids(vocabulary, labels)
    if labels.dtype.is_integer or (
        not integer_only and (labels.dtype.is_floating or
                              labels.dtype == tf.bool)):
      return labels
    return None


class _BinaryGroup(_ClassifierGroup):
  """`BinaryClassHead`s: sigmoid cross-entropy, AUCs, thresholds."""

  head_class = tf.estimator.BinaryClassHead

  def _head_labels(self, head, logits, labels, lookup):
    if isinstance(labels, tf.sparse.SparseTensor):
      return super()._head_labels(head, logits, labels, lookup)
    labels = _expand_flat(tf.convert_to_tensor(labels), logits)
    ids = None
    if _dense_shape_fits(labels, logits, 1):
      ids = self._label_ids(head, labels, lookup, integer_only=False)
    if ids is None:  # Not for the fast path: the head checks them itself.
      return super()._head_labels(head, logits, labels, lookup)
    return tf.cast(ids, tf.float32)

  def _checked_labels(self, labels):
    return base_head.check_label_range(labels, 2)

  def _unweighted_loss(self, logits, labels):
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels,
                                                   logits=logits)

  @staticmethod
  def _two_class_logits(stacked):
    return tf.concat([tf.zeros_like(stacked), stacked], axis=-1)

  def _predictions(self, pieces, stacked):
    two_class = self._two_class_logits(stacked)
    logistic = _split(tf.math.sigmoid(stacked))
    probabilities = _split(tf.nn.softmax(two_class))
    classes = self._class_predictions(pieces,
                                      tf.math.argmax(two_class, axis=-1))
    return {name: dict(head_classes, **{
        _PRED.LOGITS: piece, _PRED.LOGISTIC: head_logistic,
        _PRED.PROBABILITIES: head_probabilities})
            for name, piece, head_logistic, head_probabilities, head_classes
            in zip(self.names, pieces, logistic, probabilities, classes)}

  def export_outputs(self, predictions):
    outputs = self._classification_outputs(predictions, _PRED.PROBABILITIES)
    for name in self.names:
      outputs[name][base_head.REGRESS_SERVING_KEY] = (
          tf.estimator.export.RegressionOutput(
              value=predictions[name][_PRED.LOGISTIC]))
    return outputs

  def _states(self):
    pairs = _threshold_pairs(self.heads)
    columns = self.size + len(pairs)
    return {
        'average_loss': fused_metrics.ColumnMean(self.size, 'average_loss'),
        'accuracy': fused_metrics.ColumnMean(columns, 'accuracy'),
        'confusion': fused_metrics.ColumnConfusion(
            [.5] * self.size + [threshold for _, threshold in pairs],
            'confusion'),
        'prediction_mean': fused_metrics.ColumnMean(self.size,
                                                    'prediction_mean'),
        'label_mean': fused_metrics.LabelMean(self.size, 'label_mean'),
        'auc': fused_metrics.ColumnAUC(self.size, 'auc'),
    }

  def _readings(self):
    readings = []
    for index, head in enumerate(self.heads):
      key = lambda metric, head=head: self._key(head, metric)
      readings += [
          Reading(key(_KEYS.LOSS_MEAN), 'average_loss', 'mean', index),
          Reading(key(_KEYS.ACCURACY), 'accuracy', 'mean', index),
          Reading(key(_KEYS.PRECISION), 'confusion', 'precision', index),
          Reading(key(_KEYS.RECALL), 'confusion', 'recall', index),
          Reading(key(_KEYS.PREDICTION_MEAN), 'prediction_mean', 'mean',
                  index),
          Reading(key(_KEYS.LABEL_MEAN), 'label_mean', 'mean', index),
          Reading(key(_KEYS.ACCURACY_BASELINE), 'label_mean', 'baseline',
                  index),
          Reading(key(_KEYS.AUC), 'auc', 'roc', index),
          Reading(key(_KEYS.AUC_PR), 'auc', 'pr', index)]
    return readings + _threshold_readings(self.heads, self.size)

  def _update_states(self, states, batch):
    two_class = self._two_class_logits(batch.logits)
    class_ids = tf.cast(tf.math.argmax(two_class, axis=-1)[..., tf.newaxis],
                        tf.float32)
    labels, logistic = rows(batch.labels), rows(tf.math.sigmoid(batch.logits))
    predicted, weights = rows(class_ids), self._weight_rows(batch,
                                                            batch.labels)
    matches = tf.cast(tf.math.equal(labels, predicted), tf.float32)
    pairs = _Pairs(self.heads, labels, logistic, weights)
    return [
        states['average_loss'].update_state(rows(batch.unweighted_loss),
                                            weights),
        states['accuracy'].update_state(
            pairs.after(matches, pairs.matches()), pairs.after(weights)),
        states['confusion'].update_state(
            pairs.after(labels, pairs.labels),
            pairs.after(predicted, pairs.scores), pairs.after(weights)),
        states['prediction_mean'].update_state(logistic, weights),
        states['label_mean'].update_state(labels, weights),
        states['auc'].update_state(labels, logistic, weights),
    ]


class _MultiClassGroup(_ClassifierGroup):
  """`MultiClassHead`s of one `n_classes`: softmax cross-entropy."""

  head_class = tf.estimator.MultiClassHead

  def __init__(self, heads):
    super().__init__(heads)
    self.n_classes = heads[0].logits_dimension

  def _head_labels(self, head, logits, labels, lookup):
    if isinstance(labels, tf.sparse.SparseTensor):
      return super()._head_labels(head, logits, labels, lookup)
    labels = _expand_flat(tf.convert_to_tensor(labels), logits)
    ids = None
    if _dense_shape_fits(labels, logits, 1):
      ids = self._label_ids(head, labels, lookup, integer_only=True)
    if ids is None:
      ids = super()._head_labels(head, logits, labels, lookup)
    return tf.cast(ids, tf.int64)

  def _checked_labels(self, labels):
    return base_head.check_label_range(labels, self.n_classes)

  def _unweighted_loss(self, logits, labels):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels[..., 0], logits=logits)[..., tf.newaxis]

  def _predictions(self, pieces, stacked):
    probabilities = _split(tf.nn.softmax(stacked))
    classes = self._class_predictions(pieces,
                                      tf.math.argmax(stacked, axis=-1))
    return {name: dict(head_classes, **{
        _PRED.LOGITS: piece, _PRED.PROBABILITIES: head_probabilities})
            for name, piece, head_probabilities, head_classes in zip(
                self.names, pieces, probabilities, classes)}

  def export_outputs(self, predictions):
    return self._classification_outputs(predictions, _PRED.PROBABILITIES)

  def _states(self):
    return {
        'average_loss': fused_metrics.ColumnMean(self.size, 'average_loss'),
        'accuracy': fused_metrics.ColumnMean(self.size, 'accuracy'),
    }

  def _readings(self):
    readings = []
    for index, head in enumerate(self.heads):
      readings += [
          Reading(self._key(head, _KEYS.LOSS_MEAN), 'average_loss', 'mean',
                  index),
          Reading(self._key(head, _KEYS.ACCURACY), 'accuracy', 'mean',
                  index)]
    return readings

  def _update_states(self, states, batch):
    class_ids = tf.math.argmax(batch.logits, axis=-1)[..., tf.newaxis]
    weights = self._weight_rows(batch, batch.labels)
    matches = tf.math.equal(tf.cast(rows(batch.labels), tf.float32),
                            tf.cast(rows(class_ids), tf.float32))
    return [
        states['average_loss'].update_state(rows(batch.unweighted_loss),
                                            weights),
        states['accuracy'].update_state(tf.cast(matches, tf.float32),
                                        weights),
    ]


class _MultiLabelGroup(_ClassifierGroup):
  """`MultiLabelHead`s of one `n_classes`: sigmoid cross-entropy per class."""

  head_class = tf.estimator.MultiLabelHead

  def __init__(self, heads):
    super().__init__(heads)
    self.n_classes = heads[0].logits_dimension
    self.label_width = self.n_classes
    # (head position, class id) of every per-class metric, in head order.
    self.class_columns = [
        (index, class_id) for index, head in enumerate(self.heads)
        for class_id in head._classes_for_class_based_metrics]  # pylint: disable=protected-access

  def _head_labels(self, head, logits, labels, lookup):
    if not isinstance(labels, tf.sparse.SparseTensor):
      labels = tf.convert_to_tensor(labels)
      if (_dense_shape_fits(labels, logits, self.n_classes) and
          (labels.dtype.is_integer or labels.dtype.is_floating)):
        return tf.cast(labels, tf.float32)
    return tf.cast(super()._head_labels(head, logits, labels, lookup),
                   tf.float32)

  def _checked_labels(self, labels):
    return base_head.check_label_range(labels, 2, message=_INDICATOR_MESSAGE)

  def _unweighted_loss(self, logits, labels):
    per_class = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels,
                                                        logits=logits)
    return tf.math.reduce_mean(per_class, axis=-1, keepdims=True)

  def _predictions(self, pieces, stacked):
    probabilities = _split(tf.math.sigmoid(stacked))
    classes = self._all_classes(pieces[0])
    return {name: {_PRED.LOGITS: piece, _PRED.PROBABILITIES: probability,
                   _PRED.CLASSES: names}
            for name, piece, probability, names in zip(
                self.names, pieces, probabilities, classes)}

  def export_outputs(self, predictions):
    return self._classification_outputs(predictions, _PRED.PROBABILITIES)

  def _states(self):
    pairs = _threshold_pairs(self.heads)
    states = {
        'average_loss': fused_metrics.ColumnMean(self.size, 'average_loss'),
        'auc': fused_metrics.ColumnAUC(self.size, 'auc'),
    }
    if pairs:
      states['accuracy'] = fused_metrics.ColumnMean(len(pairs), 'accuracy')
      states['confusion'] = fused_metrics.ColumnConfusion(
          [threshold for _, threshold in pairs], 'confusion')
    if self.class_columns:
      count = len(self.class_columns)
      states['class_mean'] = fused_metrics.ColumnMean(count, 'class_mean')
      states['class_auc'] = fused_metrics.ColumnAUC(count, 'class_auc')
    return states

  def _class_names(self, head, class_id):
    vocabulary = head._label_vocabulary  # pylint: disable=protected-access
    if vocabulary is None:
      return (_KEYS.PROBABILITY_MEAN_AT_CLASS % class_id,
              _KEYS.AUC_AT_CLASS % class_id, _KEYS.AUC_PR_AT_CLASS % class_id)
    name = vocabulary[class_id]
    return (_KEYS.PROBABILITY_MEAN_AT_NAME % name, _KEYS.AUC_AT_NAME % name,
            _KEYS.AUC_PR_AT_NAME % name)

  def _readings(self):
    readings = []
    for index, head in enumerate(self.heads):
      readings += [
          Reading(self._key(head, _KEYS.LOSS_MEAN), 'average_loss', 'mean',
                  index),
          Reading(self._key(head, _KEYS.AUC), 'auc', 'roc', index),
          Reading(self._key(head, _KEYS.AUC_PR), 'auc', 'pr', index)]
    readings += _threshold_readings(self.heads, 0)
    for column, (index, class_id) in enumerate(self.class_columns):
      head = self.heads[index]
      mean_key, auc_key, auc_pr_key = self._class_names(head, class_id)
      readings += [
          Reading(self._key(head, mean_key), 'class_mean', 'mean', column),
          Reading(self._key(head, auc_key), 'class_auc', 'roc', column),
          Reading(self._key(head, auc_pr_key), 'class_auc', 'pr', column)]
    return readings

  def _update_states(self, states, batch):
    probabilities = tf.math.sigmoid(batch.logits)
    labels, scores = rows(batch.labels), rows(probabilities)
    weights = self._weight_rows(batch, batch.labels)
    updates = [
        states['average_loss'].update_state(
            rows(batch.unweighted_loss),
            self._weight_rows(batch, batch.unweighted_loss)),
        states['auc'].update_state(labels, scores, weights),
    ]
    pairs = _Pairs(self.heads, labels, scores, weights)
    if pairs.count:
      updates += [
          states['accuracy'].update_state(pairs.matches(), pairs.weights),
          states['confusion'].update_state(pairs.labels, pairs.scores,
                                           pairs.weights)]
    if self.class_columns:
      updates += self._update_class_states(states, batch, probabilities)
    return updates

  def _update_class_states(self, states, batch, probabilities):
    """Per-class metrics: one row per (head, class) column."""
    def class_rows(tensor):  # [..., H, n] -> [H * n, D0 * ... * DN]
      rank = tensor.shape.rank
      moved = tf.transpose(tensor, [rank - 2, rank - 1] + list(range(rank - 2)))
      return tf.reshape(moved, [self.size * self.n_classes, -1])

    picks = [index * self.n_classes + class_id
             for index, class_id in self.class_columns]
    labels = tf.gather(class_rows(batch.labels), picks)
    scores = tf.gather(class_rows(probabilities), picks)
    weights = None
    if batch.weights is not None:
      example_shape = tf.shape(batch.unweighted_loss)
      weights = tf.gather(
          rows(tf.broadcast_to(batch.weights, example_shape)),
          [index for index, _ in self.class_columns])
    return [states['class_mean'].update_state(scores, weights),
            states['class_auc'].update_state(labels, scores, weights)]


class _RegressionGroup(FusedGroup):
  """`RegressionHead`s of one `label_dimension`, or Poisson, or logistic."""

  head_class = tf.estimator.RegressionHead
  per_logit_weights = True

  def __init__(self, heads):
    super().__init__(heads)
    self.label_width = heads[0].logits_dimension
    self.kind = type(heads[0])

  def _head_labels(self, head, logits, labels, lookup):
    if not isinstance(labels, tf.sparse.SparseTensor):
      labels = _expand_flat(tf.convert_to_tensor(labels), logits)
      if (_dense_shape_fits(labels, logits, self.label_width) and
          (labels.dtype.is_integer or labels.dtype.is_floating)):
        return tf.cast(labels, tf.float32)
    return super()._head_labels(head, logits, labels, lookup)

  def _checked_labels(self, labels):
    if self.kind is tf.estimator.LogisticRegressionHead:
      return base_head.check_label_range(
          labels, 2, message='Labels must be in range [0, 1]')
    return labels

  def _unweighted_loss(self, logits, labels):
    if self.kind is tf.estimator.PoissonRegressionHead:
      return tf.nn.log_poisson_loss(
          targets=labels, log_input=logits,
          compute_full_loss=self.heads[0]._compute_full_loss)  # pylint: disable=protected-access
    if self.kind is tf.estimator.LogisticRegressionHead:
      return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels,
                                                     logits=logits)
    return tf.math.squared_difference(logits, labels)

  def _predicted_values(self, stacked):
    if self.kind is tf.estimator.PoissonRegressionHead:
      return tf.math.exp(stacked)
    if self.kind is tf.estimator.LogisticRegressionHead:
      return tf.math.sigmoid(stacked)
    return None

  def _predictions(self, pieces, stacked):
    values = self._predicted_values(stacked)
    if values is None:
      return {name: {_PRED.PREDICTIONS: piece}
              for name, piece in zip(self.names, pieces)}
    return {name: {_PRED.PREDICTIONS: value, _PRED.LOGITS: piece}
            for name, piece, value in zip(self.names, pieces, _split(values))}

  def export_outputs(self, predictions):
    outputs = {}
    for name in self.names:
      regression = tf.estimator.export.RegressionOutput(
          value=predictions[name][_PRED.PREDICTIONS])
      outputs[name] = {
          base_head.DEFAULT_SERVING_KEY: regression,
          base_head.REGRESS_SERVING_KEY: regression,
          base_head.PREDICT_SERVING_KEY:
              tf.estimator.export.PredictOutput(predictions[name])}
    return outputs

  def _states(self):
    return {name: fused_metrics.ColumnMean(self.size, name)
            for name in ('average_loss', 'prediction_mean', 'label_mean')}

  def _readings(self):
    readings = []
    for index, head in enumerate(self.heads):
      readings += [
          Reading(self._key(head, _KEYS.LOSS_MEAN), 'average_loss', 'mean',
                  index),
          Reading(self._key(head, _KEYS.PREDICTION_MEAN), 'prediction_mean',
                  'mean', index),
          Reading(self._key(head, _KEYS.LABEL_MEAN), 'label_mean', 'mean',
                  index)]
    return readings

  def _update_states(self, states, batch):
    values = self._predicted_values(batch.logits)
    values = batch.logits if values is None else values
    weights = self._weight_rows(batch, batch.labels)
    return [
        states['average_loss'].update_state(rows(batch.unweighted_loss),
                                            weights),
        states['prediction_mean'].update_state(rows(values), weights),
        states['label_mean'].update_state(rows(batch.labels), weights),
    ]
