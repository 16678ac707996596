"""Fused groups of regression heads: plain, Poisson and logistic.

See `fused_heads` for how a group stacks its heads and reduces over rows.
"""
import tensorflow as tf
from tensorflow_estimator.python.estimator.canned import metric_keys
from tensorflow_estimator.python.estimator.canned import prediction_keys

from tensorflow_multihead import base_head
from tensorflow_multihead import fused_heads
from tensorflow_multihead import fused_metrics

_KEYS = metric_keys.MetricKeys
_PRED = prediction_keys.PredictionKeys

# The shared machinery, by short names.
_Reading = fused_heads.Reading
_rows = fused_heads.rows
_expand_flat = fused_heads.expand_flat
_dense_shape_fits = fused_heads.dense_shape_fits


class RegressionGroup(fused_heads.FusedGroup):
  """`RegressionHead`s of one `label_dimension`, or Poisson, or logistic."""

  per_logit_weights = True

  def __init__(self, heads):
    super().__init__(heads)
    self.label_width = heads[0].logits_dimension
    self.kind = type(heads[0])

  def _head_labels(self, head, logits, labels, lookup):
    if not isinstance(labels, tf.sparse.SparseTensor):
      labels = _expand_flat(tf.convert_to_tensor(labels), logits)
      if (_dense_shape_fits(labels, logits, self.label_width) and
          (labels.dtype.is_integer or labels.dtype.is_floating or
           labels.dtype == tf.bool)):
        return tf.cast(labels, tf.float32)
    return super()._head_labels(head, logits, labels, lookup)

  @property
  def label_classes(self):
    """Logistic regression labels are probabilities, in [0, 1]."""
    if self.kind is tf.estimator.LogisticRegressionHead:
      return 2
    return None

  label_range_message = 'Labels must be in range [0, 1]'

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

  def _predictions(self, pieces, stacked, cut):
    values = self._predicted_values(stacked)
    if values is None:
      return {name: {_PRED.PREDICTIONS: piece}
              for name, piece in zip(self.names, pieces)}
    return {name: {_PRED.PREDICTIONS: value, _PRED.LOGITS: piece}
            for name, piece, value in zip(self.names, pieces, cut(values))}

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
          _Reading(self._key(head, _KEYS.LOSS_MEAN), 'average_loss', 'mean',
                  index),
          _Reading(self._key(head, _KEYS.PREDICTION_MEAN), 'prediction_mean',
                  'mean', index),
          _Reading(self._key(head, _KEYS.LABEL_MEAN), 'label_mean', 'mean',
                  index)]
    return readings

  def _update_states(self, states, batch):
    values = self._predicted_values(batch.logits)
    values = batch.logits if values is None else values
    weights = self._weight_rows(batch, batch.labels)
    return [
        states['average_loss'].update_state(_rows(batch.unweighted_loss),
                                            weights),
        states['prediction_mean'].update_state(_rows(values), weights),
        states['label_mean'].update_state(_rows(batch.labels), weights),
    ]
