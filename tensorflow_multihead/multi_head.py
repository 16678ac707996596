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
import inspect

import tensorflow as tf
from tensorflow_estimator.python.estimator import model_fn
from tensorflow_estimator.python.estimator.canned import metric_keys
from tensorflow_estimator.python.estimator.head import (
    base_head as estimator_base_head)
from tensorflow_estimator.python.estimator.mode_keys import ModeKeys

from tensorflow_multihead import base_head
from tensorflow_multihead import head_group
from tensorflow_multihead import loss_merger

_MODES = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)
# Where the summed regularization losses travel among the metric tensors.
_REGULARIZATION_TENSOR_KEY = 'regularization'
_LOSS_KEY = metric_keys.MetricKeys.LOSS
_REGULARIZATION_KEY = metric_keys.MetricKeys.LOSS_REGULARIZATION


def _no_train_op(head_loss):
  del head_loss  # Only the merged loss is trained, by the merged train op.
  return tf.no_op()


def _check_loss_reductions(heads):
  reductions = {head.name: head.loss_reduction for head in heads}
  if len(set(reductions.values())) > 1:
    raise ValueError(
        'The loss_reduction must be the same for different heads. '
        f'Given: {list(reductions.values())} (by head: {reductions}).')
  return next(iter(reductions.values()))


def _builds_through_tpu_spec(head):
  """Whether the head's `create_estimator_spec` is the base class's own.

  Such a head builds its spec through `_create_tpu_estimator_spec`, whose
  metrics come as a function of tensors that the merged spec can hand on to
  `TPUEstimator`. A head overriding `create_estimator_spec` is asked for that
  spec instead, so that its override is honoured.
  """
  return type(head).create_estimator_spec in (
      base_head.Head.create_estimator_spec,
      estimator_base_head.Head.create_estimator_spec)


def _takes_keys(head):
  """Whether `head.predictions` accepts `keys` (the regression heads don't)."""
  try:
    return 'keys' in inspect.signature(head.predictions).parameters
  except (TypeError, ValueError):  # No signature to read: assume it does.
    return True


class _Selection:
  """Which predictions `MultiHead.predictions(keys=...)` asks for.

  A plain key asks every head that has it; a `(head name, key)` pair asks one
  head, which must have it.
  """

  def __init__(self, keys, head_names):
    self.everything = keys is None
    keys = [] if keys is None else [keys] if isinstance(keys, str) else keys
    self.plain = [key for key in keys if not isinstance(key, tuple)]
    self.pairs = [key for key in keys if isinstance(key, tuple)]
    for name, key in self.pairs:
      if name not in head_names:
        raise ValueError(
            f'Prediction key {(name, key)!r} names unknown head {name!r}. The '
            f'heads are: {list(head_names)}.')

  def of_head(self, head, logits):
    """The head's chosen predictions; all of them if nothing was chosen."""
    if self.everything:
      return head.predictions(logits)
    required = [key for name, key in self.pairs if name == head.name]
    if not (required or self.plain):
      return {}
    if required and not self.plain and _takes_keys(head):
      return self._asked(head, lambda: head.predictions(logits, required))
    offered = head.predictions(logits)
    missing = [key for key in required if key not in offered]
    if missing:
      raise ValueError(f'Head {head.name!r} has no predictions {missing}; it '
                       f'has {sorted(offered)}.')
    return {key: value for key, value in offered.items()
            if key in required or key in self.plain}

  @staticmethod
  def _asked(head, predict):
    try:
      return predict()
    except ValueError as error:
      raise ValueError(f'Head {head.name!r}: {error}') from error

  def check_found(self, merged):
    found = {key for _, key in merged}
    absent = [key for key in self.plain if key not in found]
    if absent:
      raise ValueError(f'No head has the predictions {absent}.')


class _HeadPart:
  """One head's spec, with its metrics as a function of named tensors."""

  def __init__(self, head, index, **spec_args):
    self.name = head.name
    self._tensor_prefix = f'{index}:'
    if _builds_through_tpu_spec(head):
      self.spec = head._create_tpu_estimator_spec(**spec_args)  # pylint: disable=protected-access
      self._metric_fn, tensors = self.spec.eval_metrics or (None, {})
    else:
      self.spec = head.create_estimator_spec(**spec_args)
      built_metrics = self.spec.eval_metric_ops
      self._metric_fn, tensors = (lambda: built_metrics), {}
    # Prefixed by the head's position, since heads name their tensors alike.
    self.metric_tensors = {
        self._tensor_prefix + key: value for key, value in tensors.items()}

  @property
  def has_metrics(self):
    return self._metric_fn is not None

  def metrics(self, all_tensors):
    """Calls the head's metric function with its share of `all_tensors`."""
    if self._metric_fn is None:
      return {}
    start = len(self._tensor_prefix)
    return self._metric_fn(**{
        key[start:]: value for key, value in all_tensors.items()
        if key.startswith(self._tensor_prefix)})


def _mean_of(name, values):
  mean = tf.keras.metrics.Mean(name=name)
  mean.update_state(values=values)
  return mean


class MultiHead(head_group.GroupedHead, base_head.Head):
  """A `Head` merging several heads, for learning several objectives at once.

  Every head needs a name of its own. Labels come as a dict keyed by head
  name; logits either as such a dict or as one `Tensor` of shape
  `[D0, ..., DN, logits_dimension]`, whose last dimension is cut into the
  heads' `logits_dimension`s, in the heads' order.

  * TRAIN: `optimizer` or `train_op_fn` minimizes one loss: each head's loss
    times its weight, plus `regularization_losses`.
  * EVAL: each head's metrics, which the heads key as `<metric>/<head>`, and
    `loss/<head>`: the loss each head reports.
  * PREDICT: predictions keyed `(head, key)`. The export serves
    `default_head` (the first head unless named) as `serving_default`, every
    head's outputs as `<head>` and `<head>/<key>`, and all predictions
    together as `predict`.

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
      `tf.estimator`'s), each with a unique, non-empty `name`.
    head_weights: Optional numbers, one per head, weighting each head's loss
      in the sum. If `None`, every loss counts once.
    default_head: Optional name of the head served as `serving_default`.
      Defaults to the first head.
    loss_weighting: Optional `weighting` method learning the loss weights;
      `head_weights` then multiply the losses before it, as fixed priors.

  Raises:
    ValueError: No heads; a head without a name; two heads with one name;
      `head_weights` of another length than `heads`; heads with different
      `loss_reduction`s; an unknown `default_head`.
    TypeError: A head that is not a `Head`; a weight that is not a number;
      a `loss_weighting` that is not a `weighting` method.
  """

  def __init__(self, heads, head_weights=None, default_head=None,
               loss_weighting=None):
    self._group = head_group.HeadGroup(heads, head_weights, default_head)
    self._merger = loss_merger.LossMerger(self._group, loss_weighting)
    self._loss_reduction = _check_loss_reductions(self._group.heads)
    self._regularization_metric_key = self._summary_key(_REGULARIZATION_KEY)
    self._loss_keys = {
        name: f'{_LOSS_KEY}/{name}' for name in self._group.names}
    # Which metric keys each head gave in `metrics()`, so that
    # `update_metrics()` updates those same objects and they accumulate.
    self._metric_keys_by_head = {}

  @property
  def loss_reduction(self):
    """The `loss_reduction` that every head shares."""
    return self._loss_reduction

  @property
  def loss_weighting(self):
    """The `weighting` method learning the loss weights, or `None`."""
    return self._merger.loss_weighting

  # The Head interface, one call at a time.

  def loss(self, labels, logits, features=None, mode=None,
           regularization_losses=None):
    """Returns the weighted sum of the heads' losses plus regularization."""
    logits = self._group.logits_by_head(logits)
    labels = self._group.labels_by_head(labels, mode or ModeKeys.TRAIN)
    features = {} if features is None else features  # Heads read weights.
    return self._merger.merge(
        [head.loss(labels=labels[head.name], logits=logits[head.name],
                   features=features, mode=mode) for head in self.heads],
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
    logits = self._group.logits_by_head(logits)
    selection = _Selection(keys, self._group.names)
    merged = self._group.merged_predictions({
        head.name: selection.of_head(head, logits[head.name])
        for head in self.heads})
    selection.check_found(merged)
    return merged

  def metrics(self, regularization_losses=None):
    """Returns `loss/<head>` means and every head's own metric objects.

    Handing out the heads' metrics here lets `update_metrics` accumulate them
    over batches, as it does the loss means.
    """
    eval_metrics = {}
    if regularization_losses is not None:
      eval_metrics[self._regularization_metric_key] = tf.keras.metrics.Mean(
          name=_REGULARIZATION_KEY)
    eval_metrics.update(
        {key: tf.keras.metrics.Mean(name=key)
         for key in self._loss_keys.values()})
    for head in self.heads:
      head_metrics = head.metrics()
      self._metric_keys_by_head[head.name] = tuple(head_metrics)
      head_group.merge_unique(eval_metrics, head_metrics, head.name, 'metric')
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
    if regularization_losses is not None:
      self._metric(eval_metrics, self._regularization_metric_key).update_state(
          values=head_group.sum_of(regularization_losses))
    for head in self.heads:
      head_logits, head_labels = logits[head.name], labels[head.name]
      self._metric(eval_metrics, self._loss_keys[head.name]).update_state(
          values=head.loss(labels=head_labels, logits=head_logits,
                           features=features))
      eval_metrics.update(head.update_metrics(
          self._head_metrics(head, eval_metrics), features, head_logits,
          head_labels) or {})
    return eval_metrics

  @staticmethod
  def _metric(eval_metrics, key):
    """Returns `eval_metrics[key]`, adding a new mean if it is missing."""
    if key not in eval_metrics:
      eval_metrics[key] = tf.keras.metrics.Mean(name=key)
    return eval_metrics[key]

  def _head_metrics(self, head, eval_metrics):
    """The head's metric objects in `eval_metrics`, or new ones.

    New ones when `eval_metrics` did not come from this head's `metrics()`:
    they then hold this batch only, as the reference's always do.
    """
    keys = self._metric_keys_by_head.get(head.name)
    if keys is not None and all(key in eval_metrics for key in keys):
      return {key: eval_metrics[key] for key in keys}
    return head.metrics()

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
    """Builds the merged spec for `mode`; see `create_estimator_spec`.

    Args:
      features: The features dict, handed to every head.
      mode: A `tf.estimator.ModeKeys` value.
      logits: A dict of logits keyed by head name, or one `Tensor` split
        among the heads.
      labels: A dict of labels keyed by head name; needed in TRAIN and EVAL.
      optimizer: A `tf.keras` optimizer minimizing the merged loss in TRAIN;
        give it or `train_op_fn`, not both.
      trainable_variables: What `optimizer` may change.
      train_op_fn: A function from the merged loss to the train op.
      update_ops: Ops to run with every training step.
      regularization_losses: Scalars added to the merged loss (not to any
        head's), reported as `regularization_loss/<name>` in EVAL.

    Returns:
      A `_TPUEstimatorSpec`.

    Raises:
      ValueError: An unknown `mode`, bad logits or labels, or in TRAIN
        neither or both of `optimizer` and `train_op_fn`.
    """
    if mode not in _MODES:
      raise ValueError(f'mode={mode} unrecognized')
    with tf.compat.v1.name_scope(self.name, 'multi_head'):
      logits = self._group.logits_by_head(logits)
      labels = self._group.labels_by_head(labels, mode)
      parts = [
          _HeadPart(head, index, features=features, mode=mode,
                    logits=logits[head.name], labels=labels[head.name],
                    train_op_fn=_no_train_op)
          for index, head in enumerate(self.heads)]
      predictions = self._group.merged_predictions(
          {part.name: part.spec.predictions for part in parts})
      if mode == ModeKeys.PREDICT:
        return model_fn._TPUEstimatorSpec(  # pylint: disable=protected-access
            mode=mode, predictions=predictions,
            export_outputs=self._group.merged_export_outputs(
                {part.name: part.spec.export_outputs for part in parts}))
      regularization_loss = head_group.sum_or_none(regularization_losses)
      merged = self._merger.merge([part.spec.loss for part in parts],
                                  regularization_loss)
      loss = merged.loss
      if mode == ModeKeys.EVAL:
        return model_fn._TPUEstimatorSpec(  # pylint: disable=protected-access
            mode=mode, predictions=predictions, loss=loss,
            eval_metrics=merged.eval_metrics(
                self._eval_metrics(parts, regularization_loss)))
      train_op = merged.train_op(base_head.create_estimator_spec_train_op(
          head_name=self.name, optimizer=optimizer,
          trainable_variables=merged.trainable_variables(trainable_variables),
          train_op_fn=train_op_fn, update_ops=update_ops,
          regularized_training_loss=loss, loss_reduction=self.loss_reduction))
      base_head.create_estimator_spec_summary(
          loss, None if regularization_loss is None else [regularization_loss])
      merged.add_summaries()
      return model_fn._TPUEstimatorSpec(  # pylint: disable=protected-access
          mode=mode, predictions=predictions, loss=loss, train_op=train_op,
          eval_metrics=self._train_metrics(parts))

  def _eval_metrics(self, parts, regularization_loss):
    """Returns `(metric_fn, tensors)` for every head's metrics and loss.

    `loss/<head>` is the loss each head's EVAL spec reports, the very loss
    summed into the merged `loss`.
    """
    # Rank 1, since TPUEstimator moves metric tensors batch by batch.
    tensors = {}
    if regularization_loss is not None:
      tensors[_REGULARIZATION_TENSOR_KEY] = tf.reshape(
          regularization_loss, [1])
    for part in parts:
      tensors[self._loss_keys[part.name]] = tf.reshape(part.spec.loss, [1])
    tensors.update(_metric_tensors(parts))

    def metric_fn(**metric_tensors):
      eval_metrics = {}
      if _REGULARIZATION_TENSOR_KEY in metric_tensors:
        eval_metrics[self._regularization_metric_key] = _mean_of(
            _REGULARIZATION_KEY, metric_tensors[_REGULARIZATION_TENSOR_KEY])
      for part in parts:
        key = self._loss_keys[part.name]
        eval_metrics[key] = _mean_of(key, metric_tensors[key])
      return _merged_head_metrics(parts, metric_tensors, eval_metrics)

    return metric_fn, tensors

  @staticmethod
  def _train_metrics(parts):
    """Whatever metrics the heads' TRAIN specs report, merged; else None."""
    if not any(part.has_metrics for part in parts):
      return None

    def metric_fn(**metric_tensors):
      return _merged_head_metrics(parts, metric_tensors, {})

    return metric_fn, _metric_tensors(parts)


def _metric_tensors(parts):
  """Every head's metric tensors, each under its head-prefixed name."""
  return {key: value for part in parts
          for key, value in part.metric_tensors.items()}


def _merged_head_metrics(parts, metric_tensors, merged):
  """Adds every head's metrics, computed from `metric_tensors`, to `merged`."""
  for part in parts:
    head_group.merge_unique(merged, part.metrics(metric_tensors), part.name,
                            'metric')
  return merged
