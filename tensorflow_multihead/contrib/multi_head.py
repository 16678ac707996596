"""`multi_head`: `tf.contrib.estimator.multi_head` for TF 2.15.

Merges several heads into one TF 1.x `_Head`, which TF 1.x code hands to a
canned estimator (`head=`) or returns the spec of from its `model_fn`. It
checks and merges the heads as `tensorflow_multihead.MultiHead` does, through
the same `HeadGroup`, and differs from it only where the two head APIs do:
it merges TF 1.x `_Head`s (v2 heads join in through an adapter), takes a
TF 1.x optimizer, and reports metrics as TF 1.x `(value, update_op)` pairs.

>>> import numpy as np
>>> from tensorflow_multihead import contrib
>>> head = contrib.multi_head(
...     [contrib.regression_head(name='price'),
...      contrib.binary_classification_head(name='sold')],
...     head_weights=[1., 2.])
>>> head.name, head.logits_dimension
('price_sold', 2)
>>> loss_spec = head.create_loss(
...     features={}, mode='train',
...     logits=np.array([[3., 0.], [1., 0.]], np.float32),
...     labels={'price': np.array([[2.], [2.]], np.float32),
...             'sold': np.array([[1.], [0.]], np.float32)})
>>> # price: ((3 - 2)**2 + (1 - 2)**2) / 2 = 1; sold: log(2) for each example.
>>> print(f'{float(loss_spec.training_loss):.4f}')  # 1 + 2 * log(2)
2.3863
>>> sorted(loss_spec.unreduced_loss)
['price', 'sold']
"""
import tensorflow as tf
from tensorflow_estimator.python.estimator import model_fn
from tensorflow_estimator.python.estimator.canned import head as canned_head
from tensorflow_estimator.python.estimator.canned import metric_keys
from tensorflow_estimator.python.estimator.mode_keys import ModeKeys

from tensorflow_multihead import autograph_off
from tensorflow_multihead import head_group
from tensorflow_multihead.contrib import head_adapter
from tensorflow_multihead.contrib import training

_TF1_HEAD = canned_head._Head  # pylint: disable=protected-access
_HEAD_TYPES = (_TF1_HEAD, tf.estimator.Head)
_MODES = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)


def multi_head(heads, head_weights=None, default_head=None):
  """Creates a TF 1.x `_Head` for multi-objective learning.

  Merges several heads, each with a unique `name`:

  * TRAIN: the heads' losses, each times its weight in `head_weights`, plus
    any `regularization_losses`, give the one loss that `optimizer` or
    `train_op_fn` minimizes; a `loss` summary records it.
  * EVAL: every head's metrics (their keys already end in `/<head name>`),
    `loss/<head name>` for each head's loss and, with regularization,
    `regularization_loss/<multi-head name>`.
  * Predictions are keyed by `(head name, prediction key)`, in every mode.
  * Exports serve `default_head` (the first head unless named) under
    `serving_default`, every head's outputs under `<head>` and
    `<head>/<key>`, and all heads' predictions together under `predict`.

  Labels are a dict keyed by head name; entries for no head are ignored, as
  TF 1.x did. Logits are such a dict (with no other entries) or one `Tensor`
  `[D0, ... DN, logits_dimension]`, split along its last dimension among the
  heads, in order. An error that a head raises comes out as the same type,
  its message starting `Head '<name>': `. Heads may differ in
  `loss_reduction`, as in TF 1.x.

  ```python
  def model_fn(features, labels, mode):
    head = contrib.multi_head([
        contrib.multi_class_head(n_classes=3, name='head1'),
        contrib.binary_classification_head(name='head2')])
    net = tf.feature_column.input_layer(features, feature_columns)
    logits = tf.layers.dense(net, units=head.logits_dimension)
    return head.create_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels,
        optimizer=tf.train.AdagradOptimizer(learning_rate=0.1))
  ```

  Args:
    heads: List or tuple of heads, each with a unique, non-empty `name`:
      TF 1.x `_Head`s, as this package's factories return, or v2
      `tf.estimator.Head`s.
    head_weights: Optional list of numbers, one per head, weighting each
      head's loss in the sum. If `None`, all losses count equally.
    default_head: Optional name of the head served under `serving_default`.
      Defaults to the first head; `tf.contrib.estimator` had no such choice.

  Returns:
    A `_Head` that merges `heads`.

  Raises:
    ValueError: No heads; a head without a name; two heads with one name;
      `head_weights` of another length than `heads`; an unknown
      `default_head`.
    TypeError: A head that is neither a `_Head` nor a `tf.estimator.Head`; a
      weight that is not a number.
  """
  return TF1MultiHead(heads, head_weights=head_weights,
                      default_head=default_head)


@autograph_off.unconverted(*autograph_off.HEAD_METHODS)
class TF1MultiHead(head_group.GroupedHead, _TF1_HEAD):
  """The `_Head` that `multi_head` returns; it documents the arguments."""

  def __init__(self, heads, head_weights=None, default_head=None):
    self._group = head_group.HeadGroup(heads, head_weights, default_head,
                                       head_types=_HEAD_TYPES)
    # v2 heads answer through TF 1.x adapters; the group keeps the originals.
    self._tf1_heads = tuple(
        head_adapter.as_tf1_head(head) for head in self._group.heads)
    self._loss_keys = {name: f'{metric_keys.MetricKeys.LOSS}/{name}'
                       for name in self._group.names}
    self._regularization_key = (
        f'{metric_keys.MetricKeys.LOSS_REGULARIZATION}/{self.name}')

  def create_loss(self, features, mode, logits, labels):
    """Returns the merged `LossSpec`.

    Its `training_loss` is the weighted sum of the heads' training losses;
    `unreduced_loss`, `weights` and `processed_labels` are dicts keyed by
    head name. As in `tf.contrib.estimator`, each head's unreduced loss and
    example weights come multiplied by its head weight.

    Args:
      features: Input `dict` of `Tensor` or `SparseTensor` objects.
      mode: Estimator's `ModeKeys`.
      logits: A dict of logits keyed by head name, or one `Tensor` that is
        split among the heads.
      labels: A dict of labels keyed by head name.
    """
    logits = self._group.logits_by_head(logits)
    labels = self._group.labels_by_head(labels, ModeKeys.TRAIN)
    specs = head_group.call_each(self._tf1_heads, lambda head: head.create_loss(
        features, mode, logits[head.name], labels[head.name]))
    names = self._group.names
    head_weights = dict(zip(names, self._group.weights or (None,) * len(names)))
    return canned_head.LossSpec(
        training_loss=self._group.weighted_sum(
            [spec.training_loss for spec in specs.values()]),
        unreduced_loss={
            name: _times(spec.unreduced_loss, head_weights[name])
            for name, spec in specs.items()},
        weights={name: _times(spec.weights, head_weights[name])
                 for name, spec in specs.items()},
        processed_labels={name: spec.processed_labels
                          for name, spec in specs.items()})

  def create_estimator_spec(self, features, mode, logits, labels=None,
                            optimizer=None, train_op_fn=None,
                            regularization_losses=None):
    """Returns the merged `EstimatorSpec` for `mode`.

    Each head's spec is built once, then merged.

    Args:
      features: Input `dict` of `Tensor` or `SparseTensor` objects.
      mode: Estimator's `ModeKeys`.
      logits: A dict of logits keyed by head name, or one `Tensor` of shape
        `[D0, ... DN, logits_dimension]` split among the heads in order.
      labels: A dict of labels keyed by head name; required in TRAIN and
        EVAL.
      optimizer: A `tf.compat.v1.train.Optimizer` whose `minimize` trains
        the merged loss and steps the global step in TRAIN.
      train_op_fn: Instead of `optimizer`, a function from the merged loss
        to the train op. Exactly one of the two is needed in TRAIN.
      regularization_losses: Scalar losses added to the merged loss (not to
        each head's).

    Raises:
      ValueError: An unknown `mode`; bad logits or labels; in TRAIN, neither
        or both of `optimizer` and `train_op_fn`, or an optimizer that is not
        a TF 1.x one.
    """
    if mode not in _MODES:
      raise ValueError(f'mode={mode} unrecognized')
    if mode == ModeKeys.TRAIN:
      training.check_trainer(optimizer, train_op_fn)
    logits = self._group.logits_by_head(logits)
    labels = self._group.labels_by_head(labels, mode)
    specs = head_group.call_each(
        self._tf1_heads, lambda head: head.create_estimator_spec(
            features=features, mode=mode, logits=logits[head.name],
            labels=labels[head.name], train_op_fn=training.no_op_train_fn))
    predictions = self._group.merged_predictions(
        {name: spec.predictions for name, spec in specs.items()})
    if mode == ModeKeys.PREDICT:
      return model_fn.EstimatorSpec(
          mode=mode, predictions=predictions,
          export_outputs=self._group.merged_export_outputs(
              {name: spec.export_outputs for name, spec in specs.items()}))
    # An empty list, like None, adds nothing.
    regularization_loss = head_group.sum_or_none(
        list(regularization_losses or ()) or None)
    loss = self._group.weighted_sum(
        [specs[name].loss for name in self._group.names], regularization_loss)
    if mode == ModeKeys.EVAL:
      return model_fn.EstimatorSpec(
          mode=mode, predictions=predictions, loss=loss,
          eval_metric_ops=self._eval_metric_ops(specs, regularization_loss))
    op = training.train_op(loss, optimizer, train_op_fn)
    training.summarize_loss(loss, regularization_loss=regularization_loss)
    return model_fn.EstimatorSpec(
        mode=mode, predictions=predictions, loss=loss, train_op=op,
        eval_metric_ops=self._head_metrics(specs))

  def _eval_metric_ops(self, specs, regularization_loss):
    """Every head's metrics, its `loss/<head>`, and the regularization."""
    metrics = {}
    with tf.compat.v1.name_scope('merge_eval'):
      for name, spec in specs.items():
        metrics[self._loss_keys[name]] = tf.compat.v1.metrics.mean(
            spec.loss, name=self._loss_keys[name])
      if regularization_loss is not None:
        metrics[self._regularization_key] = tf.compat.v1.metrics.mean(
            regularization_loss,
            name=metric_keys.MetricKeys.LOSS_REGULARIZATION)
    return self._head_metrics(specs, metrics)

  @staticmethod
  def _head_metrics(specs, metrics=None):
    """Merges the heads' `eval_metric_ops`, refusing a key given twice."""
    metrics = {} if metrics is None else metrics
    for name, spec in specs.items():
      head_group.merge_unique(metrics, spec.eval_metric_ops, name, 'metric')
    return metrics


def _times(value, weight):
  """`value` times a head weight, unless either is missing."""
  if value is None or weight is None:
    return value
  return tf.math.multiply(value, weight)
