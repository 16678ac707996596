"""The mean regularization loss among a merged head's EVAL metrics.

`tf.estimator.MultiHead` reports the summed `regularization_losses` as the
metric `regularization_loss` (suffixed by the merged head's name, as its
summaries are). No head computes it, so the merged head adds it: to the
metric objects it hands out, to the metrics it updates, and to the
`(metric_fn, tensors)` pair `TPUEstimator` calls on the host.

>>> import tensorflow as tf
>>> metrics = {}
>>> add_update(metrics, 'regularization_loss', [tf.constant(0.5),
...                                             tf.constant(1.5)])
>>> float(metrics['regularization_loss'].result())
2.0
"""
import tensorflow as tf
from tensorflow_estimator.python.estimator.canned import metric_keys

from tensorflow_multihead import head_group

# The metric object's own name, whatever key it is stored under.
_METRIC_NAME = metric_keys.MetricKeys.LOSS_REGULARIZATION
# Where the summed regularization loss travels among the metric tensors.
_TENSOR_KEY = 'regularization'


def new_mean():
  """A fresh metric object for the regularization loss."""
  return tf.keras.metrics.Mean(name=_METRIC_NAME)


def add_update(eval_metrics, key, regularization_losses):
  """Updates `eval_metrics[key]` (made if missing) with the losses' sum."""
  if key not in eval_metrics:
    eval_metrics[key] = new_mean()
  eval_metrics[key].update_state(
      values=head_group.sum_of(regularization_losses))


def with_metric_fn(metric_fn, tensors, key, regularization_loss):
  """`(metric_fn, tensors)` also giving the regularization mean as `key`.

  Returns the pair unchanged when there is no regularization loss.
  """
  if regularization_loss is None:
    return metric_fn, tensors
  # Rank 1, since TPUEstimator moves metric tensors batch by batch.
  tensors = dict(tensors, **{_TENSOR_KEY: tf.reshape(regularization_loss,
                                                     [1])})

  def with_regularization(**metric_tensors):
    regularization = new_mean()
    regularization.update_state(values=metric_tensors.pop(_TENSOR_KEY))
    return dict({key: regularization}, **metric_fn(**metric_tensors))

  return with_regularization, tensors
