"""A TF 1.x `_Head` for multi-label classification.

tensorflow-estimator 2.15 still ships TF 1.x heads for multi-class, binary and
regression problems, but its only multi-label head is the v2
`tf.estimator.MultiLabelHead`. This head gives `tf.contrib.estimator`'s
multi-label head back: a `_Head` whose metrics are TF 1.x
`(value, update_op)` pairs computed as TF 1.x computed them, whose loss takes
any `tf.compat.v1.losses.Reduction` but `NONE`, and whose predictions are
`logits` and `probabilities`. The label, weight and logits checks are the
ones the canned TF 1.x heads use.
"""
import tensorflow as tf
from tensorflow.python.ops import lookup_ops  # pylint: disable=g-direct-tensorflow-import
from tensorflow_estimator.python.estimator import model_fn
from tensorflow_estimator.python.estimator.canned import head as canned_head
from tensorflow_estimator.python.estimator.canned import metric_keys
from tensorflow_estimator.python.estimator.canned import prediction_keys
from tensorflow_estimator.python.estimator.export import export_output
from tensorflow_estimator.python.estimator.mode_keys import ModeKeys

from tensorflow_multihead.contrib import training

# The canned TF 1.x heads' helpers, which this head shares.
# pylint: disable=protected-access
_TF1_HEAD = canned_head._Head
_check_labels = canned_head._check_dense_labels_match_logits_and_reshape
_check_logits = canned_head._check_logits_final_dim
_weights = canned_head._get_weights_and_check_match_logits
_assert_range = canned_head._assert_range
_call_loss_fn = canned_head._call_loss_fn
_validate_loss_fn_args = canned_head._validate_loss_fn_args
_eval_metrics_tuple = canned_head._create_eval_metrics_tuple
_classification_output = canned_head._classification_output
_summary_key = canned_head._summary_key
_auc = canned_head._auc
_predictions_mean = canned_head._predictions_mean
_AT_THRESHOLD_METRICS = (
    (metric_keys.MetricKeys.ACCURACY_AT_THRESHOLD,
     canned_head._accuracy_at_threshold),
    (metric_keys.MetricKeys.PRECISION_AT_THRESHOLD,
     canned_head._precision_at_threshold),
    (metric_keys.MetricKeys.RECALL_AT_THRESHOLD,
     canned_head._recall_at_threshold))
_SERVING_KEYS = (canned_head._DEFAULT_SERVING_KEY,
                 canned_head._CLASSIFY_SERVING_KEY,
                 canned_head._PREDICT_SERVING_KEY)
_TPUEstimatorSpec = model_fn._TPUEstimatorSpec
# pylint: enable=protected-access

_KEYS = metric_keys.MetricKeys
_PREDICTIONS = prediction_keys.PredictionKeys
_REDUCTION = tf.compat.v1.losses.Reduction


def check_loss_reduction(loss_reduction, where='multi_label_head'):
  """Raises unless `loss_reduction` is a TF 1.x reduction other than NONE.

  `where` names the head in the message.

  >>> check_loss_reduction('sum_over_batch_size')  # Keras', not TF 1.x's.
  Traceback (most recent call last):
  ...
  ValueError: multi_label_head: loss_reduction 'sum_over_batch_size' is not \
a tf.compat.v1.losses.Reduction other than NONE.
  """
  if (loss_reduction not in _REDUCTION.all() or
      loss_reduction == _REDUCTION.NONE):
    raise ValueError(
        f'{where}: loss_reduction {loss_reduction!r} is not a '
        'tf.compat.v1.losses.Reduction other than NONE.')


def _check_thresholds(thresholds, where):
  thresholds = tuple(thresholds or ())
  for threshold in thresholds:
    if not 0. < threshold < 1.:
      raise ValueError(
          f'{where}: every threshold must lie strictly between 0 and 1; '
          f'thresholds has {threshold}.')
  return thresholds


def _check_vocabulary(label_vocabulary, n_classes, where):
  if label_vocabulary is None:
    return None
  if not isinstance(label_vocabulary, (list, tuple)):
    raise ValueError(
        f'{where}: label_vocabulary must be a list or tuple of class names, '
        f'not a {type(label_vocabulary).__name__}.')
  if len(label_vocabulary) != n_classes:
    raise ValueError(
        f'{where}: label_vocabulary needs one name per class, '
        f'n_classes={n_classes}; it has {len(label_vocabulary)}.')
  return tuple(label_vocabulary)


def _class_ids(classes, n_classes, label_vocabulary, where):
  """Turns `classes_for_class_based_metrics` into class ids."""
  ids = []
  for given in classes or ():
    if isinstance(given, str):
      if not label_vocabulary:
        raise ValueError(
            f'{where}: classes_for_class_based_metrics has the class name '
            f'{given!r}, but there is no label_vocabulary to find it in.')
      if given not in label_vocabulary:
        raise ValueError(
            f'{where}: classes_for_class_based_metrics has {given!r}, which '
            f'is not in label_vocabulary {list(label_vocabulary)}.')
      ids.append(label_vocabulary.index(given))
    elif not 0 <= given < n_classes:
      raise ValueError(
          f'{where}: classes_for_class_based_metrics has class id {given}, '
          f'outside [0, {n_classes - 1}].')
    else:
      ids.append(int(given))
  return tuple(ids)


class TF1MultiLabelHead(_TF1_HEAD):
  """Multi-label classification with sigmoid cross-entropy, TF 1.x style.

  Build it with `tensorflow_multihead.contrib.multi_label_head`, which
  documents the arguments.

  Labels are either a multi-hot `Tensor` `[D0, ... DN, n_classes]` of 0s and
  1s, or a `SparseTensor` of class ids (of class names from
  `label_vocabulary`, if given). The unreduced loss of an example is the mean
  over classes of the sigmoid cross-entropy (or `loss_fn`'s value). As in
  TF 1.x, sparse labels of another type, or of strings when there is no
  `label_vocabulary`, raise a `TypeError`.
  """

  def __init__(self, n_classes, weight_column=None, thresholds=None,
               label_vocabulary=None,
               loss_reduction=_REDUCTION.SUM_OVER_BATCH_SIZE, loss_fn=None,
               classes_for_class_based_metrics=None, name=None):
    where = f'multi_label_head {name!r}' if name else 'multi_label_head'
    if n_classes is None or n_classes < 2:
      raise ValueError(
          f'{where}: multi-label classification needs n_classes of at '
          f'least 2; given {n_classes}.')
    check_loss_reduction(loss_reduction, where)
    if loss_fn:
      _validate_loss_fn_args(loss_fn)
    self._n_classes = n_classes
    self._weight_column = weight_column
    self._thresholds = _check_thresholds(thresholds, where)
    self._label_vocabulary = _check_vocabulary(label_vocabulary, n_classes,
                                               where)
    self._loss_reduction = loss_reduction
    self._loss_fn = loss_fn
    self._metric_classes = _class_ids(
        classes_for_class_based_metrics, n_classes, self._label_vocabulary,
        where)
    self._name = name

  @property
  def name(self):
    return self._name

  @property
  def logits_dimension(self):
    return self._n_classes

  def _processed_labels(self, logits, labels):
    """Returns multi-hot labels shaped like `logits`."""
    if labels is not None:
      labels = tf.compat.v1.convert_to_tensor_or_sparse_tensor(labels)
    if isinstance(labels, tf.sparse.SparseTensor):
      labels = tf.cast(
          tf.sparse.to_indicator(self._sparse_ids(labels), self._n_classes),
          tf.int64)
    elif labels is not None:
      labels = _assert_range(
          labels, 2,
          message='labels must be an integer indicator Tensor with values in '
          '[0, 1]')
    return _check_labels(labels, logits, self._n_classes)

  def _sparse_ids(self, labels):
    """Class ids of sparse labels: looked up, or range-checked."""
    if labels.dtype == tf.string:
      if not self._label_vocabulary:
        raise TypeError(
            f'Head {self._name!r}: its labels are strings, but without a '
            'label_vocabulary it has no class ids to look them up as.')
      table = lookup_ops.index_table_from_tensor(
          vocabulary_list=self._label_vocabulary, name='class_id_lookup')
      return labels.with_values(table.lookup(labels.values))
    if not labels.dtype.is_integer:
      raise TypeError(
          f'Head {self._name!r}: sparse labels must hold integer class ids '
          f'(or strings from label_vocabulary), not {labels.dtype.name}.')
    return labels.with_values(_assert_range(
        labels.values, self._n_classes,
        message='labels must be an integer SparseTensor with values in '
        f'[0, {self._n_classes})'))

  def create_loss(self, features, mode, logits, labels):
    """Returns the `LossSpec` of a batch; see `_Head`."""
    del mode  # The loss is the same in every mode.
    logits = tf.convert_to_tensor(logits)
    labels = self._processed_labels(logits, labels)
    if self._loss_fn:
      unreduced_loss = _call_loss_fn(
          loss_fn=self._loss_fn, labels=labels, logits=logits,
          features=features, expected_loss_dim=1)
    else:
      per_class = tf.compat.v1.losses.sigmoid_cross_entropy(
          multi_class_labels=labels, logits=logits,
          reduction=_REDUCTION.NONE)
      unreduced_loss = tf.math.reduce_mean(per_class, axis=-1, keepdims=True)
    weights = _weights(features=features, weight_column=self._weight_column,
                       logits=logits)
    training_loss = tf.compat.v1.losses.compute_weighted_loss(
        unreduced_loss, weights=weights, reduction=self._loss_reduction)
    return canned_head.LossSpec(
        training_loss=training_loss, unreduced_loss=unreduced_loss,
        weights=weights, processed_labels=labels)

  def _create_tpu_estimator_spec(self, features, mode, logits, labels=None,
                                 optimizer=None, train_op_fn=None,
                                 regularization_losses=None):
    """Returns this head's `_TPUEstimatorSpec` for `mode`; see `_Head`."""
    with tf.compat.v1.name_scope(self._name, 'head'):
      logits = _check_logits(logits, self._n_classes)
      with tf.compat.v1.name_scope('predictions'):
        probabilities = tf.math.sigmoid(
            logits, name=_PREDICTIONS.PROBABILITIES)
      predictions = {_PREDICTIONS.LOGITS: logits,
                     _PREDICTIONS.PROBABILITIES: probabilities}
      if mode == ModeKeys.PREDICT:
        return _TPUEstimatorSpec(
            mode=mode, predictions=predictions,
            export_outputs=self._export_outputs(predictions))
      loss_spec = self.create_loss(features, mode, logits, labels)
      regularization_loss = (tf.math.add_n(regularization_losses)
                             if regularization_losses else None)
      loss = loss_spec.training_loss
      if regularization_loss is not None:
        loss = tf.math.add_n([loss, regularization_loss])
      if mode == ModeKeys.EVAL:
        return _TPUEstimatorSpec(
            mode=mode, predictions=predictions, loss=loss,
            eval_metrics=_eval_metrics_tuple(self._eval_metric_ops, {
                'labels': loss_spec.processed_labels,
                'probabilities': probabilities,
                'weights': loss_spec.weights,
                'unreduced_loss': loss_spec.unreduced_loss,
                'regularization_loss': regularization_loss}))
      op = training.train_op(loss, optimizer, train_op_fn)
    self._summarize(loss, regularization_loss, loss_spec)
    return _TPUEstimatorSpec(
        mode=mode, predictions=predictions, loss=loss, train_op=op)

  def _summarize(self, loss, regularization_loss, loss_spec):
    """TRAIN summaries; under SUM, also the weighted mean loss, as TF 1.x."""
    training.summarize_loss(loss, regularization_loss, self._name)
    if self._loss_reduction != _REDUCTION.SUM:
      return
    total_weight = tf.math.reduce_sum(
        loss_spec.weights * tf.ones_like(loss_spec.unreduced_loss))
    with tf.compat.v1.name_scope(''):
      tf.compat.v1.summary.scalar(
          _summary_key(self._name, _KEYS.LOSS_MEAN),
          loss_spec.training_loss / total_weight)

  def _export_outputs(self, predictions):
    classes = _classification_output(
        scores=predictions[_PREDICTIONS.PROBABILITIES],
        n_classes=self._n_classes, label_vocabulary=self._label_vocabulary)
    default, classify, predict = _SERVING_KEYS
    return {default: classes, classify: classes,
            predict: export_output.PredictOutput(predictions)}

  def _eval_metric_ops(self, labels, probabilities, weights, unreduced_loss,
                       regularization_loss):
    """Returns the EVAL metrics as `(value, update_op)` pairs."""
    def key(metric):
      return _summary_key(self._name, metric)

    with tf.compat.v1.name_scope('metrics'):
      ops = {
          key(_KEYS.LOSS_MEAN): tf.compat.v1.metrics.mean(
              unreduced_loss, weights=weights, name=_KEYS.LOSS_MEAN),
          key(_KEYS.AUC): _auc(labels, probabilities, weights=weights,
                               name=_KEYS.AUC),
          key(_KEYS.AUC_PR): _auc(labels, probabilities, weights=weights,
                                  curve='PR', name=_KEYS.AUC_PR),
      }
      if regularization_loss is not None:
        ops[key(_KEYS.LOSS_REGULARIZATION)] = tf.compat.v1.metrics.mean(
            regularization_loss, name=_KEYS.LOSS_REGULARIZATION)
      for threshold in self._thresholds:
        for name, metric in _AT_THRESHOLD_METRICS:
          ops[key(name % threshold)] = metric(
              labels, probabilities, weights, threshold,
              name=name % threshold)
      for class_id in self._metric_classes:
        ops.update(self._class_metric_ops(
            class_id, labels[..., class_id:class_id + 1],
            probabilities[..., class_id:class_id + 1], weights))
    return ops

  def _class_metric_ops(self, class_id, labels, probabilities, weights):
    """One class's probability mean, AUC and PR AUC.

    Their keys name the class by its id, `probability_mean/class<id>`, or,
    given a `label_vocabulary`, by its name, `probability_mean/<name>`.
    """
    if self._label_vocabulary:
      label = self._label_vocabulary[class_id]
      names = (_KEYS.PROBABILITY_MEAN_AT_NAME % label,
               _KEYS.AUC_AT_NAME % label, _KEYS.AUC_PR_AT_NAME % label)
    else:
      names = (_KEYS.PROBABILITY_MEAN_AT_CLASS % class_id,
               _KEYS.AUC_AT_CLASS % class_id,
               _KEYS.AUC_PR_AT_CLASS % class_id)
    values = (
        _predictions_mean(probabilities, weights=weights, name=names[0]),
        _auc(labels, probabilities, weights=weights, name=names[1]),
        _auc(labels, probabilities, weights=weights, curve='PR',
             name=names[2]))
    return {_summary_key(self._name, name): value
            for name, value in zip(names, values)}
