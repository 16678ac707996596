"""Fused groups of classification heads: binary, multi-class, multi-label.

See `fused_heads` for how a group stacks its heads and reduces over rows.
Class names and ids come from each head's own vocabulary; threshold metrics
are kept per (head, threshold) pair, per-class metrics per (head, class).
"""
import tensorflow as tf
from tensorflow_estimator.python.estimator.canned import metric_keys
from tensorflow_estimator.python.estimator.canned import prediction_keys

from tensorflow_multihead import base_head
from tensorflow_multihead import fused_checks
from tensorflow_multihead import fused_heads
from tensorflow_multihead import fused_metrics
from tensorflow_multihead import narrow_outputs

_KEYS = metric_keys.MetricKeys
_PRED = prediction_keys.PredictionKeys

# The shared machinery, by short names.
_Reading = fused_heads.Reading
_rows = fused_heads.rows
_expand_flat = fused_heads.expand_flat
_dense_shape_fits = fused_heads.dense_shape_fits
_INDICATOR_MESSAGE = (
    'labels must be an integer indicator Tensor with values in [0, 1]')


class _Lookup:
  """One batch's vocabulary lookups, and the dense labels looked up.

  A table is built once per vocabulary, whatever the number of heads that
  share it; the dense labels looked up are checked together, once every
  head's are known (`check`).
  """

  def __init__(self):
    self._ids = {}
    self._looked_up = []  # (head name, vocabulary, strings, their ids).

  def ids(self, vocabulary, labels):
    """The ids of string `labels` in `vocabulary`, -1 where missing."""
    vocabulary = tuple(vocabulary)
    if vocabulary not in self._ids:
      self._ids[vocabulary] = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(
              tf.constant(vocabulary), tf.range(len(vocabulary),
                                                dtype=tf.int64)),
          default_value=-1, name='class_id_lookup')
    return self._ids[vocabulary].lookup(labels)

  def dense_ids(self, name, vocabulary, labels):
    """`ids` of one head's dense labels, noted for `check`."""
    ids = self.ids(vocabulary, labels)
    fused_checks.refuse_known_misses(labels, ids, vocabulary)
    self._looked_up.append((name, vocabulary, labels, ids))
    return ids

  def check(self):
    """The run-time check that every dense label looked up was found."""
    if not self._looked_up:
      return None
    names, vocabularies, strings, ids = zip(*self._looked_up)
    return fused_checks.vocabularies(names, vocabularies, strings, ids)


def _class_names(class_ids, vocabularies, n_classes):
  """Names of `class_ids` `[..., H, 1]`, from each head's vocabulary."""
  if not any(vocabularies):
    return tf.strings.as_string(class_ids)
  names, offsets = [], []
  for vocabulary in vocabularies:
    # A binary head takes a vocabulary of any length (the reference does
    # not check it): each head's names start where the previous ones end.
    offsets.append([len(names)])
    names.extend(vocabulary or [str(i) for i in range(n_classes)])
  return tf.gather(tf.constant(names),
                   class_ids + tf.constant(offsets, tf.int64))


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
          _Reading(f'{_KEYS.ACCURACY_AT_THRESHOLD % threshold}/{head.name}',
                  'accuracy', 'mean', column),
          _Reading(f'{_KEYS.PRECISION_AT_THRESHOLD % threshold}/{head.name}',
                  'confusion', 'precision', column),
          _Reading(f'{_KEYS.RECALL_AT_THRESHOLD % threshold}/{head.name}',
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


class ClassifierGroup(fused_heads.FusedGroup):
  """What the classification heads share: vocabularies and class names."""

  n_classes = 2

  def __init__(self, heads):
    super().__init__(heads)
    # pylint: disable=protected-access
    self.vocabularies = [head._label_vocabulary for head in self.heads]

  def _new_lookup(self):
    return _Lookup()

  def _vocabulary_check(self, lookup):
    return lookup.check()

  def _all_classes(self, pieces, scores, cut):
    """Each head's `all_classes`, shared by heads of one vocabulary.

    A head cut apart (`cut.apart`) gets its own, from its own `scores`, so
    that its signature needs no other head's tensors.
    """
    shared, rows = {}, {}
    classes = []
    for index, (vocabulary, head_scores) in enumerate(
        zip(self.vocabularies, scores)):
      key = tuple(vocabulary or ())
      if cut.apart(index):
        if key not in rows:
          rows[key] = tf.constant([list(vocabulary or [
              str(class_id) for class_id in range(self.n_classes)])])
        classes.append(narrow_outputs.rows_like(rows[key], head_scores))
      else:
        if key not in shared:
          shared[key] = base_head.all_classes(pieces[0], self.n_classes,
                                              vocabulary)
        classes.append(shared[key])
    return classes

  def _all_class_ids(self, pieces, scores, cut):
    """Each head's `all_class_ids`; see `_all_classes`."""
    shared = row = None
    ids = []
    for index, head_scores in enumerate(scores):
      if cut.apart(index):
        if row is None:
          row = tf.constant([list(range(self.n_classes))], tf.int32)
        ids.append(narrow_outputs.rows_like(row, head_scores))
      else:
        if shared is None:
          shared = base_head.all_class_ids(pieces[0], self.n_classes)
        ids.append(shared)
    return ids

  def _class_predictions(self, pieces, class_ids, cut, scores):
    """class_ids, classes, all_class_ids, all_classes per head."""
    ids = tf.expand_dims(class_ids, -1)
    names = _class_names(ids, self.vocabularies, self.n_classes)
    all_ids = self._all_class_ids(pieces, scores, cut)
    all_names = self._all_classes(pieces, scores, cut)
    return [{_PRED.CLASS_IDS: head_ids, _PRED.CLASSES: head_names,
             _PRED.ALL_CLASS_IDS: head_all_ids, _PRED.ALL_CLASSES: head_all}
            for head_ids, head_names, head_all_ids, head_all in zip(
                cut(ids), cut(names), all_ids, all_names)]

  def _classification_outputs(self, predictions, scores_key,
                              classes_key=_PRED.ALL_CLASSES):
    outputs = {}
    for name in self.names:
      head_predictions = predictions[name]
      classification = tf.estimator.export.ClassificationOutput(
          scores=head_predictions[scores_key],
          classes=head_predictions[classes_key])
      outputs[name] = {
          base_head.DEFAULT_SERVING_KEY: classification,
          base_head.CLASSIFY_SERVING_KEY: classification,
          base_head.PREDICT_SERVING_KEY:
              tf.estimator.export.PredictOutput(head_predictions)}
    return outputs

  def _dense_label_ids(self, head, logits, labels, lookup, integer_only):
    """`(labels, ids)`: dense labels at the logits' rank, and their ids.

    The ids (vocabulary looked up) come only from dense labels that fit
    `[D0, ..., DN, 1]` with a dtype the head takes; otherwise they are None
    and the head's own processing, with its checks and errors, applies.
    """
    if isinstance(labels, tf.sparse.SparseTensor):
      return labels, None
    labels = _expand_flat(tf.convert_to_tensor(labels), logits)
    if not _dense_shape_fits(labels, logits, 1):
      return labels, None
    return labels, self._label_ids(head, labels, lookup, integer_only)

  def _label_ids(self, head, labels, lookup, integer_only):
    """Dense `[..., 1]` labels as ids (vocabulary looked up), or None."""
    vocabulary = head._label_vocabulary  # pylint: disable=protected-access
    if vocabulary:
      if labels.dtype != tf.string:
        return None
      return lookup.dense_ids(head.name, vocabulary, labels)
    if labels.dtype.is_integer or (
        not integer_only and (labels.dtype.is_floating or
                              labels.dtype == tf.bool)):
      return labels
    return None


class BinaryGroup(ClassifierGroup):
  """`BinaryClassHead`s: sigmoid cross-entropy, AUCs, thresholds."""

  def _head_labels(self, head, logits, labels, lookup):
    labels, ids = self._dense_label_ids(head, logits, labels, lookup,
                                        integer_only=False)
    if ids is None:  # Not for the fast path: the head checks them itself.
      return super()._head_labels(head, logits, labels, lookup)
    return tf.cast(ids, tf.float32)

  label_classes = 2

  def _unweighted_loss(self, logits, labels):
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels,
                                                   logits=logits)

  @staticmethod
  def _two_class_logits(stacked):
    return tf.concat([tf.zeros_like(stacked), stacked], axis=-1)

  def _predictions(self, pieces, stacked, cut):
    two_class = self._two_class_logits(stacked)
    logistic = cut(tf.math.sigmoid(stacked))
    probabilities = cut(tf.nn.softmax(two_class))
    classes = self._class_predictions(
        pieces, tf.math.argmax(two_class, axis=-1), cut, probabilities)
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
          _Reading(key(_KEYS.LOSS_MEAN), 'average_loss', 'mean', index),
          _Reading(key(_KEYS.ACCURACY), 'accuracy', 'mean', index),
          _Reading(key(_KEYS.PRECISION), 'confusion', 'precision', index),
          _Reading(key(_KEYS.RECALL), 'confusion', 'recall', index),
          _Reading(key(_KEYS.PREDICTION_MEAN), 'prediction_mean', 'mean',
                  index),
          _Reading(key(_KEYS.LABEL_MEAN), 'label_mean', 'mean', index),
          _Reading(key(_KEYS.ACCURACY_BASELINE), 'label_mean', 'baseline',
                  index),
          _Reading(key(_KEYS.AUC), 'auc', 'roc', index),
          _Reading(key(_KEYS.AUC_PR), 'auc', 'pr', index)]
    return readings + _threshold_readings(self.heads, self.size)

  def _update_states(self, states, batch):
    two_class = self._two_class_logits(batch.logits)
    class_ids = tf.cast(tf.math.argmax(two_class, axis=-1)[..., tf.newaxis],
                        tf.float32)
    labels, logistic = _rows(batch.labels), _rows(tf.math.sigmoid(batch.logits))
    predicted, weights = _rows(class_ids), self._weight_rows(batch,
                                                            batch.labels)
    matches = tf.cast(tf.math.equal(labels, predicted), tf.float32)
    pairs = _Pairs(self.heads, labels, logistic, weights)
    return [
        states['average_loss'].update_state(_rows(batch.unweighted_loss),
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


class MultiClassGroup(ClassifierGroup):
  """`MultiClassHead`s of one `n_classes`: softmax cross-entropy."""

  def __init__(self, heads):
    super().__init__(heads)
    self.n_classes = heads[0].logits_dimension

  def _head_labels(self, head, logits, labels, lookup):
    # Sparse labels reach the head, which refuses them.
    labels, ids = self._dense_label_ids(head, logits, labels, lookup,
                                        integer_only=True)
    if ids is None:
      ids = super()._head_labels(head, logits, labels, lookup)
    return tf.cast(ids, tf.int64)

  @property
  def label_classes(self):
    return self.n_classes

  def _unweighted_loss(self, logits, labels):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels[..., 0], logits=logits)[..., tf.newaxis]

  def _predictions(self, pieces, stacked, cut):
    probabilities = cut(tf.nn.softmax(stacked))
    classes = self._class_predictions(
        pieces, tf.math.argmax(stacked, axis=-1), cut, probabilities)
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
          _Reading(self._key(head, _KEYS.LOSS_MEAN), 'average_loss', 'mean',
                  index),
          _Reading(self._key(head, _KEYS.ACCURACY), 'accuracy', 'mean',
                  index)]
    return readings

  def _update_states(self, states, batch):
    class_ids = tf.math.argmax(batch.logits, axis=-1)[..., tf.newaxis]
    weights = self._weight_rows(batch, batch.labels)
    matches = tf.math.equal(tf.cast(_rows(batch.labels), tf.float32),
                            tf.cast(_rows(class_ids), tf.float32))
    return [
        states['average_loss'].update_state(_rows(batch.unweighted_loss),
                                            weights),
        states['accuracy'].update_state(tf.cast(matches, tf.float32),
                                        weights),
    ]


class MultiLabelGroup(ClassifierGroup):
  """`MultiLabelHead`s of one `n_classes`: sigmoid cross-entropy per class."""


  def __init__(self, heads):
    super().__init__(heads)
    self.n_classes = heads[0].logits_dimension
    self.label_width = self.n_classes
    # (head position, class id) of every per-class metric, in head order.
    self.class_columns = [
        (index, class_id) for index, head in enumerate(self.heads)
        for class_id in head._classes_for_class_based_metrics]  # pylint: disable=protected-access

  def _head_labels(self, head, logits, labels, lookup):
    if isinstance(labels, tf.sparse.SparseTensor):
      if (labels.shape.rank == logits.shape.rank and
          (labels.dtype == tf.string or labels.dtype.is_integer)):
        return self._sparse_indicator(head, labels, lookup)
    else:
      labels = tf.convert_to_tensor(labels)
      if (_dense_shape_fits(labels, logits, self.n_classes) and
          (labels.dtype.is_integer or labels.dtype.is_floating)):
        return tf.cast(labels, tf.float32)
    return tf.cast(super()._head_labels(head, logits, labels, lookup),
                   tf.float32)

  def _sparse_indicator(self, head, labels, lookup):
    """Sparse class ids (names, with a vocabulary) as a float indicator.

    As the head makes it, `[D0, ..., DN, n_classes]`, once the ids are
    checked to be classes: by an assertion naming the head, or now if they
    are known.
    """
    n_classes = self.n_classes
    values = labels.values
    if values.dtype == tf.string:  # label_dtypes refused it without one.
      vocabulary = head._label_vocabulary  # pylint: disable=protected-access
      ids = lookup.ids(vocabulary, values)
      fused_checks.refuse_known_misses(values, ids, vocabulary, sparse=True)
    else:
      vocabulary, ids = None, values
      if tf.get_static_value(ids) is not None:
        base_head.check_label_range(
            ids, n_classes,
            message=fused_checks.sparse_range_message(n_classes))
    check = fused_checks.sparse_values(head.name, values, ids, n_classes,
                                       vocabulary)
    with fused_checks.after([check]):
      indicator = tf.sparse.to_indicator(
          tf.sparse.SparseTensor(labels.indices, ids, labels.dense_shape),
          n_classes)
    return tf.cast(indicator, tf.float32)

  label_classes = 2
  label_range_message = _INDICATOR_MESSAGE

  def _unweighted_loss(self, logits, labels):
    per_class = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels,
                                                        logits=logits)
    return tf.math.reduce_mean(per_class, axis=-1, keepdims=True)

  def _predictions(self, pieces, stacked, cut):
    probabilities = cut(tf.math.sigmoid(stacked))
    classes = self._all_classes(pieces, probabilities, cut)
    return {name: {_PRED.LOGITS: piece, _PRED.PROBABILITIES: probability,
                   _PRED.CLASSES: names}
            for name, piece, probability, names in zip(
                self.names, pieces, probabilities, classes)}

  def export_outputs(self, predictions):
    return self._classification_outputs(predictions, _PRED.PROBABILITIES,
                                        _PRED.CLASSES)

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
          _Reading(self._key(head, _KEYS.LOSS_MEAN), 'average_loss', 'mean',
                  index),
          _Reading(self._key(head, _KEYS.AUC), 'auc', 'roc', index),
          _Reading(self._key(head, _KEYS.AUC_PR), 'auc', 'pr', index)]
    readings += _threshold_readings(self.heads, 0)
    for column, (index, class_id) in enumerate(self.class_columns):
      head = self.heads[index]
      mean_key, auc_key, auc_pr_key = self._class_names(head, class_id)
      readings += [
          _Reading(self._key(head, mean_key), 'class_mean', 'mean', column),
          _Reading(self._key(head, auc_key), 'class_auc', 'roc', column),
          _Reading(self._key(head, auc_pr_key), 'class_auc', 'pr', column)]
    return readings

  def _update_states(self, states, batch):
    probabilities = tf.math.sigmoid(batch.logits)
    labels, scores = _rows(batch.labels), _rows(probabilities)
    weights = self._weight_rows(batch, batch.labels)
    updates = [
        states['average_loss'].update_state(
            _rows(batch.unweighted_loss),
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
          _rows(tf.broadcast_to(batch.weights, example_shape)),
          [index for index, _ in self.class_columns])
    return [states['class_mean'].update_state(scores, weights),
            states['class_auc'].update_state(labels, scores, weights)]
