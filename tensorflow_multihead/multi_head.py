"""`MultiHead`: one `Head` made of several, for multi-objective learning.

A `MultiHead` asks each of its heads for its own spec exactly once per mode
and merges the answers; how it differs from `tf.estimator.MultiHead`, and
why, is listed in the project's README.

>>> import numpy as np
>>> import tensorflow as tf
>>> from tensorflow_multihead import MultiHead
>>> head = MultiHead([tf.estimator.BinaryClassHead(name='clicks'),
...                   tf.estimator.RegressionHead(name='value')],
...                  head_weights=[1., 0.5])
>>> head.logits_dimension
2
>>> logits = {'clicks': np.array([[0.], [2.]], np.float32),
...           'value': np.array([[1.], [3.]], np.float32)}
>>> labels = {'clicks': np.array([[0], [1]]),
...           'value': np.array([[2.], [3.]], np.float32)}
>>> # clicks: (log(2) + log(1 + e**-2)) / 2 = 0.41; value: (1 + 0) / 2 = 0.5.
>>> print(f'{head.loss(labels, logits).numpy():.2f}')  # 0.41 + 0.5 * 0.5
0.66
"""
import tensorflow as tf
from tensorflow_estimator.python.estimator import model_fn
from tensorflow_estimator.python.estimator.canned import metric_keys
from tensorflow_estimator.python.estimator.mode_keys import ModeKeys

from tensorflow_multihead import aggregated_training
from tensorflow_multihead import base_head
from tensorflow_multihead import export_outputs
from tensorflow_multihead import funnel
from tensorflow_multihead import head_group
from tensorflow_multihead import head_parts
from tensorflow_multihead import loss_merger
from tensorflow_multihead import regularization_metric

_MODES = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)
_REGULARIZATION_KEY = metric_keys.MetricKeys.LOSS_REGULARIZATION


def _shared_loss_reduction(heads):
  """The heads' one `loss_reduction`; raises if they have several."""
  reductions = head_group.call_each(heads, lambda head: head.loss_reduction)
  if len(set(reductions.values())) > 1:
    raise ValueError(
        'The loss_reduction must be the same for different heads. '
        f'Given: {list(reductions.values())} (by head: {reductions}).')
  return next(iter(reductions.values()))


class MultiHead(head_group.GroupedHead, base_head.Head):
  """A `Head` merging several heads, for learning several objectives at once.

  Every head needs a name of its own. Labels come as a dict keyed by head
  name (entries for no head are ignored); logits either as such a dict (with
  no other entries) or as one `Tensor` of shape
  `[D0, ..., DN, logits_dimension]`, whose last dimension is cut into the
  heads' `logits_dimension`s, in the heads' order. An error that a head
  raises comes out as the same type, its message starting `Head '<name>': `.

  * TRAIN: `optimizer` or `train_op_fn` minimizes one loss: each head's loss
    times its weight, plus `regularization_losses`. The heads must share one
    `loss_reduction`; heads that do not still evaluate and predict.
  * EVAL: each head's metrics, which the heads key as `<metric>/<head>`, and
    `loss/<head>`: the loss each head reports.
  * PREDICT: predictions keyed `(head, key)`. The export serves
    `default_head` (the first head unless named) as `serving_default`, every
    head's outputs as `<head>` and `<head>/<key>` (those of `export_heads`
    if given), and all predictions together as `predict`.

  >>> import numpy as np
  >>> import tensorflow as tf
  >>> head = MultiHead([tf.estimator.BinaryClassHead(name='clicks'),
  ...                   tf.estimator.MultiClassHead(3, name='topic')],
  ...                  head_weights=[1., 2.])
  >>> logits = {'clicks': np.array([[1.], [-1.], [0.]], np.float32),
  ...           'topic': np.array([[2., 0., 0.], [0., 2., 0.], [0., 0., 0.]],
  ...                             np.float32)}
  >>> labels = {'clicks': np.array([[1], [0], [1]]),
  ...           'topic': np.array([[0], [2], [1]])}
  >>> print(f'{head.loss(labels, logits).numpy():.4f}')  # 0.4399 + 2 * 1.1926
  2.8250
  >>> metrics = head.update_metrics(head.metrics(), {}, logits, labels)
  >>> for key in ('loss/clicks', 'auc/clicks', 'accuracy/topic'):
  ...   print(f'{key}: {metrics[key].result().numpy():.4f}')
  loss/clicks: 0.4399
  auc/clicks: 1.0000
  accuracy/topic: 0.3333
  >>> sorted(head.predictions(logits, keys=['class_ids', ('topic', 'logits')]))
  [('clicks', 'class_ids'), ('topic', 'class_ids'), ('topic', 'logits')]

  Args:
    heads: List or tuple of `Head` instances (this package's or
      `tf.estimator`'s), each with a unique, non-empty `name`. A
      `ConditionalHead` is computed jointly with its given head, and
      reported also as `<name>_given_<given>` (see `conditional_head`).
    head_weights: Optional numbers, one per head, weighting each head's loss
      in the sum. If `None`, every loss counts once.
    default_head: Optional name of the head served as `serving_default`.
      Defaults to the first head.
    fuse_heads: Whether heads of one type and configuration (see
      `tensorflow_multihead.fusion`) are computed together, by batched ops:
      the same values, a graph a fraction of the size. `False` computes
      every head on its own.
    loss_weighting: Optional `weighting` method learning the loss weights;
      `head_weights` then multiply the losses before it, as fixed priors.
    gradient_aggregation: Optional `aggregation` method: the shared
      variables (or representation) it names train on its aggregate of the
      heads' weighted gradients (see `aggregated_training`).
    name: Optional name of the merged head, also the name scope of its ops
      and state; see `head_group.default_scope` for the default.
    export_heads: Optional list of the signatures' heads the export holds:
      head names, or a `ConditionalHead`'s view (`conversion_given_click`);
      `[]`: only `serving_default` and `predict`; `None`: all.
    serving_default: `'head'` serves `default_head`, `'all'` every head's
      predictions, keyed as in `predict` (`export_outputs.ExportChoice`).

  Raises:
    ValueError: No heads; a head without a name; two heads with one name;
      `head_weights` of another length than `heads`; an unknown
      `default_head` or name in `export_heads`; a bad `serving_default` or
      `name`; a `ConditionalHead` given no head, or in a loop; a
      `gradient_aggregation` with neither or both of `shared_variables` and
      `shared_representation`.
    TypeError: A head that is not a `Head` (such as a TF 1.x head, which
      `tensorflow_multihead.contrib.multi_head` merges); a weight that is
      not a number; a `loss_weighting` that is not a `weighting` method; a
      `ConditionalHead` given a head that is not binary; a
      `gradient_aggregation` that is not an `aggregation.Aggregator`.
  """

  def __init__(self, heads, head_weights=None, default_head=None,
               fuse_heads=True, loss_weighting=None,
               gradient_aggregation=None, name=None, export_heads=None,
               serving_default=export_outputs.SERVE_HEAD):
    self._group = head_group.HeadGroup(heads, head_weights, default_head,
                                       name=name)
    self._merger = loss_merger.LossMerger(self._group, loss_weighting)
    self._aggregation = aggregated_training.for_heads(gradient_aggregation,
                                                      self._group)
    self._regularization_metric_key = self._summary_key(_REGULARIZATION_KEY)
    self._fuse_heads = bool(fuse_heads)
    # The heads computed: each ConditionalHead stands for two.
    self._funnel = funnel.Funnel(self._group.heads, self._fuse_heads)
    # What the export serves: the views have signatures of their own too.
    self._exports = export_outputs.ExportChoice(
        self._funnel.layout(ModeKeys.PREDICT).names, self._group.default_head,
        export_heads, serving_default, given_default_head=default_head)
    # The parts whose metric objects `metrics()` handed out, so that
    # `update_metrics()` updates those same objects and they accumulate.
    self._metric_parts = None

  @property
  def loss_reduction(self):
    """The `loss_reduction` that every head shares.

    Heads with different reductions merge for EVAL and PREDICT, as in
    `tf.estimator.MultiHead`; reading this, as TRAIN does, raises.

    Raises:
      ValueError: The heads have different `loss_reduction`s.
    """
    return _shared_loss_reduction(self.heads)

  @property
  def fuse_heads(self):
    """Whether heads of one type and configuration are computed together."""
    return self._fuse_heads

  def _parts(self, logits=None, labels=None, mode=None):
    """The parts computing this call; see `head_parts.parts_for`."""
    return self._funnel.layout(mode).parts(logits, labels,
                                           self._exports.served_apart)

  def _losses_in_order(self, losses_by_head):
    """The heads' losses as a list, in the heads' order."""
    return [losses_by_head[name] for name in self._group.names]

  @property
  def loss_weighting(self):
    """The `weighting` method learning the loss weights, or `None`."""
    return self._merger.loss_weighting

  @property
  def gradient_aggregation(self):
    """The `aggregation` method of the shared gradients, or `None`."""
    if self._aggregation is None:
      return None
    return self._aggregation.aggregator

  # The Head interface, one call at a time.

  def loss(self, labels, logits, features=None, mode=None,
           regularization_losses=None):
    """Returns the weighted sum of the heads' losses plus regularization."""
    logits = self._group.logits_by_head(logits)
    labels = self._group.labels_by_head(labels, mode or ModeKeys.TRAIN)
    features = {} if features is None else features  # Heads read weights.
    logits, labels, features = self._funnel.inputs(ModeKeys.TRAIN, logits,
                                                   labels, features)
    losses = {}
    for part in self._parts(logits, labels, ModeKeys.TRAIN):
      losses.update(part.losses(features, logits, labels, mode))
    return self._merger.merge(
        self._losses_in_order(losses),
        head_group.sum_or_none(regularization_losses)).loss

  def predictions(self, logits, keys=None):
    """Returns the heads' predictions keyed `(head name, key)`.

    Args:
      logits: A dict of logits keyed by head name, or one logits `Tensor`.
      keys: Optional list of what to predict: a plain key (such as
        `'probabilities'`) asks every head that has it, a `(head name, key)`
        pair asks one head. `None` asks for everything.

    Raises:
      ValueError: A pair names an unknown head or a key its head lacks, or no
        head has a plain key.
    """
    logits = self._funnel.logits(self._group.logits_by_head(logits))
    names = self._funnel.layout().names
    selection = head_parts.Selection(keys, names)
    by_head = {}
    for part in self._parts(logits):
      by_head.update(part.predictions(logits, selection))
    merged = self._group.merged_predictions(
        {name: by_head[name] for name in names})
    selection.check_found(merged)
    return merged

  def metrics(self, regularization_losses=None):
    """Returns `loss/<head>` means and every head's own metric objects.

    Handing out the heads' metrics here lets `update_metrics` accumulate them
    over batches, as it does the loss means. A fused group's metrics are
    views of its shared state: each has its key's `result()`.
    """
    eval_metrics = {}
    if regularization_losses is not None:
      eval_metrics[self._regularization_metric_key] = (
          regularization_metric.new_mean())
    self._metric_parts = self._parts()
    for part in self._metric_parts:
      for key, metric in part.metrics().items():
        head_group.merge_unique(eval_metrics, {key: metric}, part.names[0],
                                'metric')
    return eval_metrics

  def update_metrics(self, eval_metrics, features, logits, labels,
                     regularization_losses=None, mode=None):
    """Updates `eval_metrics` with every head's loss and metrics.

    `regularization_losses` comes fifth, as in `tf.estimator.MultiHead`;
    `mode`, which the `Head` interface names, is taken by keyword.
    """
    del mode  # The tf.estimator heads' metrics do not depend on it.
    logits = self._group.logits_by_head(logits)
    labels = self._group.labels_by_head(labels, ModeKeys.EVAL)
    features = {} if features is None else features
    logits, labels, features = self._funnel.inputs(ModeKeys.EVAL, logits,
                                                   labels, features)
    if regularization_losses is not None:
      regularization_metric.add_update(
          eval_metrics, self._regularization_metric_key,
          regularization_losses)
    for part in self._metric_parts or self._parts():
      part.update_metrics(eval_metrics, features, logits, labels)
    return eval_metrics

  # Specs, each head's work built once. `create_estimator_spec` is the base
  # class's: `_create_tpu_estimator_spec(...).as_estimator_spec()`.

  def create_tpu_estimator_spec(self, features, mode, logits, labels=None,
                                optimizer=None, trainable_variables=None,
                                train_op_fn=None, update_ops=None,
                                regularization_losses=None):
    """Returns the merged spec as a `TPUEstimatorSpec` for `TPUEstimator`.

    Takes the arguments of `create_estimator_spec`. The eval metrics are a
    `(metric_fn, tensors)` pair giving every head's metrics and
    `loss/<head>`, which `TPUEstimator` calls on the host.
    """
    spec = self._create_tpu_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels,
        optimizer=optimizer, trainable_variables=trainable_variables,
        train_op_fn=train_op_fn, update_ops=update_ops,
        regularization_losses=regularization_losses)
    return tf.compat.v1.estimator.tpu.TPUEstimatorSpec(
        mode=spec.mode, predictions=spec.predictions, loss=spec.loss,
        train_op=spec.train_op, eval_metrics=spec.eval_metrics,
        export_outputs=spec.export_outputs)

  def _create_tpu_estimator_spec(self, features, mode, logits, labels=None,
                                 optimizer=None, trainable_variables=None,
                                 train_op_fn=None, update_ops=None,
                                 regularization_losses=None):
    """Builds the merged spec for `mode`.

    Takes `base_head.Head.create_estimator_spec`'s arguments: logits are a
    dict keyed by head name or one `Tensor` split among the heads, labels a
    dict keyed by head name; `regularization_losses` are added to the
    merged loss (to no head's) and reported as `regularization_loss` in
    EVAL. The optimizer's `iterations` becomes the graph's global step;
    TF 2.11+ `tf.keras.optimizers`, which in a graph would update nothing,
    are refused.

    Raises:
      ValueError: An unknown `mode`, bad logits or labels; in TRAIN, heads
        of different `loss_reduction`s, neither or both of `optimizer` and
        `train_op_fn`, or an optimizer that `base_head.validate_v2_optimizer`
        refuses.
    """
    if mode not in _MODES:
      raise ValueError(f'mode={mode} unrecognized')
    # Read first, so that heads of mixed reductions fail TRAIN at once.
    loss_reduction = self.loss_reduction if mode == ModeKeys.TRAIN else None
    with tf.compat.v1.name_scope(self._group.scope):
      logits = self._group.logits_by_head(logits)
      labels = self._group.labels_by_head(labels, mode)
      features = {} if features is None else features
      logits, labels, features = self._funnel.inputs(mode, logits, labels,
                                                     features)
      names = self._funnel.layout(mode).names
      specs = [part.spec(features, mode, logits, labels)
               for part in self._parts(logits, labels, mode)]
      predictions = self._group.merged_predictions(
          head_parts.by_head(specs, 'predictions', names))
      if mode == ModeKeys.PREDICT:
        return model_fn._TPUEstimatorSpec(  # pylint: disable=protected-access
            mode=mode, predictions=predictions,
            export_outputs=self._exports.merged(
                head_parts.by_head(specs, 'export_outputs', names)))
      regularization_loss = head_group.sum_or_none(regularization_losses)
      losses = head_parts.by_head(specs, 'losses', self._group.names)
      merged = self._merger.merge(self._losses_in_order(losses),
                                  regularization_loss)
      loss = merged.loss
      if mode == ModeKeys.EVAL:
        return model_fn._TPUEstimatorSpec(  # pylint: disable=protected-access
            mode=mode, predictions=predictions, loss=loss,
            eval_metrics=merged.eval_metrics(
                regularization_metric.with_metric_fn(
                    *head_parts.merged_metrics(specs),
                    self._regularization_metric_key, regularization_loss)))
      train_op = merged.train_op(base_head.create_estimator_spec_train_op(
          head_name=self.name, optimizer=optimizer,
          trainable_variables=merged.trainable_variables(trainable_variables),
          train_op_fn=train_op_fn, update_ops=update_ops,
          regularized_training_loss=aggregated_training.trained_loss(
              self._aggregation, self.loss_weighting, loss,
              self._losses_in_order(losses), logits, loss_reduction),
          loss_reduction=loss_reduction))
      base_head.create_estimator_spec_summary(
          loss, None if regularization_loss is None else [regularization_loss])
      merged.add_summaries()
      return model_fn._TPUEstimatorSpec(  # pylint: disable=protected-access
          mode=mode, predictions=predictions, loss=loss, train_op=train_op,
          eval_metrics=head_parts.merged_metrics(specs))
