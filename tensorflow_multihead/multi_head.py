"""`MultiHead`: one `Head` made of several, for multi-objective learning.

Each head keeps its own loss, metrics, predictions and serving outputs; the
multi-head adds their (optionally weighted) losses into one training loss,
suffixes nothing itself (the heads already suffix their metric keys with their
names), keys predictions by `(head name, prediction key)` and exports every
head's serving signatures with one head served by default.

Unlike `tf.estimator.MultiHead`, `create_estimator_spec` builds each head's
loss, predictions and metrics exactly once per mode (the reference builds them
two or three times), refuses duplicate head names (the reference lets a later
head silently overwrite an earlier head's predictions and metrics), refuses
unknown logits or labels keys, and checks a logits `Tensor`'s last dimension
at run time when it is not known while the graph is built.

>>> import numpy as np
>>> import tensorflow as tf
>>> from tensorflow_multihead import MultiHead
>>> head = MultiHead([tf.estimator.BinaryClassHead(name='clicks'),
...                   tf.estimator.RegressionHead(name='value')],
...                  head_weights=[1., 0.5])
>>> head.logits_dimension
2
>>> logits = np.array([[0.], [2.]], np.float32), np.array([[1.], [3.]],
...                                                       np.float32)
>>> labels = {'clicks': np.array([[0], [1]]),
...           'value': np.array([[2.], [3.]], np.float32)}
>>> loss = head.loss(labels, {'clicks': logits[0], 'value': logits[1]})
>>> # clicks: (log(2) + log(1 + e**-2)) / 2 = 0.41; value: (1 + 0) / 2 = 0.5.
>>> print(f'{loss.numpy():.2f}')  # 0.41 + 0.5 * 0.5
0.66
"""
import inspect

import tensorflow as tf
from tensorflow_estimator.python.estimator import model_fn
from tensorflow_estimator.python.estimator.canned import metric_keys
from tensorflow_estimator.python.estimator.head import base_head as estimator_base_head
from tensorflow_estimator.python.estimator.mode_keys import ModeKeys

from tensorflow_multihead import base_head
from tensorflow_multihead import head_group

_MODES = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)
_REGULARIZATION = 'regularization'


def _no_op_train_fn(loss):
  del loss  # The merged loss, not each head's, drives training.
  return tf.no_op()


def _check_loss_reductions(heads):
  reductions = {head.name: head.loss_reduction for head in heads}
  if len(set(reductions.values())) > 1:
    raise ValueError(
        'The loss_reduction must be the same for different heads. '
        f'Given: {list(reductions.values())} (by head: {reductions}).')
  return next(iter(reductions.values()))


def _builds_through_tpu_spec(head):
  """Whether `head.create_estimator_spec` is the base class's own.

  Such a head builds its spec through `_create_tpu_estimator_spec`, whose
  metrics come as a function of tensors, so the merged spec can hand them to
  `TPUEstimator`. A head that overrides `create_estimator_spec` is asked for
  that spec instead, so that its override is honoured.
  """
  own = type(head).create_estimator_spec
  return own in (base_head.Head.create_estimator_spec,
                 estimator_base_head.Head.create_estimator_spec)


def _head_predictions(head, logits, keys):
  """`head.predictions(logits)`, only `keys` if given, for any head.

  The `tf.estimator` regression heads take no `keys`, so for them the
  chosen keys are picked from all their predictions.
  """
  if keys is None:
    return head.predictions(logits)
  try:
    takes_keys = 'keys' in inspect.signature(head.predictions).parameters
  except (TypeError, ValueError):
    takes_keys = True
  try:
    if takes_keys:
      return head.predictions(logits, keys)
    every = head.predictions(logits)
    unknown = [key for key in keys if key not in every]
    if unknown:
      raise ValueError(
          f'Prediction keys {unknown} are not among {sorted(every)}.')
    return {key: every[key] for key in keys}
  except ValueError as error:
    raise ValueError(f'Head {head.name!r}: {error}') from error


class _HeadPart:
  """One head's spec and its metrics as a function of named tensors."""

  def __init__(self, head, index, **spec_args):
    self.name = head.name
    self._prefix = f'{index}:'
    if _builds_through_tpu_spec(head):
      self.spec = head._create_tpu_estimator_spec(**spec_args)  # pylint: disable=protected-access
      self._metric_fn, tensors = self.spec.eval_metrics or (None, {})
    else:
      self.spec = head.create_estimator_spec(**spec_args)
      built = self.spec.eval_metric_ops
      self._metric_fn, tensors = (lambda: built), {}
    self.metric_tensors = {
        self._prefix + key: value for key, value in tensors.items()}

  @property
  def has_metrics(self):
    return self._metric_fn is not None

  def metrics(self, tensors):
    """Calls the head's metric function with its share of `tensors`."""
    if self._metric_fn is None:
      return {}
    own = {key[len(self._prefix):]: value for key, value in tensors.items()
           if key.startswith(self._prefix)}
    return self._metric_fn(**own)


class MultiHead(base_head.Head):
  """Creates a `Head` for multi-objective learning.

  Merges several heads, each with a unique `name`:

  * TRAIN: the heads' losses, each times its weight in `head_weights`, plus
    any `regularization_losses`, give the one loss that `optimizer` or
    `train_op_fn` minimizes.
  * EVAL: every head's metrics (their keys already end in `/<head name>`),
    plus `loss/<head name>` for each head's loss.
  * PREDICT: predictions keyed by `(head name, prediction key)`; exports
    serve `default_head` (the first head unless named) under
    `serving_default`, every head's outputs under `<head>` and
    `<head>/<key>`, and all heads' predictions together under `predict`.

  Labels are a dict keyed by head name. Logits are either such a dict or one
  `Tensor` of shape `[D0, ..., DN, logits_dimension]` that is split along its
  last dimension among the heads, in order.

  >>> import numpy as np
  >>> import tensorflow as tf
  >>> head1 = tf.estimator.MultiLabelHead(n_classes=2, name='head1')
  >>> head2 = tf.estimator.MultiLabelHead(n_classes=3, name='head2')
  >>> multi_head = MultiHead([head1, head2])
  >>> logits = {
  ...     'head1': np.array([[-10., 10.], [-15., 10.]], np.float32),
  ...     'head2': np.array([[20., -20., 20.], [-30., 20., -20.]], np.float32)}
  >>> labels = {'head1': np.array([[1, 0], [1, 1]]),
  ...           'head2': np.array([[0, 1, 0], [1, 1, 0]])}
  >>> features = {'x': np.array([[42.]], np.float32)}
  >>> # head1: mean of [[10, 10], [15, 0]] = 8.75; head2: mean of
  >>> # [[20, 20, 20], [30, 0, 0]] = 15.
  >>> print(f'{multi_head.loss(labels, logits, features).numpy():.2f}')
  23.75
  >>> metrics = multi_head.update_metrics(
  ...     multi_head.metrics(), features, logits, labels)
  >>> for key in ('auc/head1', 'average_loss/head2', 'loss/head1'):
  ...   print(f'{key}: {metrics[key].result().numpy():.2f}')
  auc/head1: 0.17
  average_loss/head2: 15.00
  loss/head1: 8.75
  >>> multi_head.predictions(logits)[('head2', 'logits')].shape
  TensorShape([2, 3])

  Args:
    heads: List or tuple of `Head` instances (this package's or
      `tf.estimator`'s), each with a unique, non-empty `name`.
    head_weights: Optional list of numbers, one per head, weighting each
      head's loss in the sum. If `None`, all losses count equally.
    default_head: Optional name of the head served under `serving_default`.
      Defaults to the first head.

  Raises:
    ValueError: No heads; a head without a name; two heads with one name;
      `head_weights` of another length than `heads`; heads with different
      `loss_reduction`s; an unknown `default_head`.
    TypeError: A head that is not a `Head`; a weight that is not a number.
  """

  def __init__(self, heads, head_weights=None, default_head=None):
    self._group = head_group.HeadGroup(heads, head_weights, default_head)
    self._loss_reduction = _check_loss_reductions(self._group.heads)
    keys = metric_keys.MetricKeys
    self._loss_regularization_key = self._summary_key(keys.LOSS_REGULARIZATION)
    self._loss_keys = {
        name: f'{keys.LOSS}/{name}' for name in self._group.names}
    # Filled by `metrics()` so that `update_metrics()` can update each head's
    # own metric objects in place, letting them accumulate across batches.
    self._metric_keys_by_head = {}

  @property
  def name(self):
    """The heads' names joined by `_`."""
    return '_'.join(self._group.names)

  @property
  def logits_dimension(self):
    """The sum of the heads' `logits_dimension`s."""
    return self._group.logits_dimension

  @property
  def loss_reduction(self):
    """The `loss_reduction` that every head shares."""
    return self._loss_reduction

  @property
  def heads(self):
    """The merged heads, in order."""
    return self._group.heads

  @property
  def head_weights(self):
    """The heads' loss weights, or `()` when all weigh 1."""
    return self._group.weights

  @property
  def default_head(self):
    """The name of the head served under `serving_default`."""
    return self._group.default_head

  # The Head interface, one call at a time.

  def loss(self, labels, logits, features=None, mode=None,
           regularization_losses=None):
    """Returns the weighted sum of the heads' losses plus regularization."""
    logits = self._group.logits_by_head(logits)
    labels = self._group.labels_by_head(labels, ModeKeys.TRAIN)
    features = {} if features is None else features  # Heads read weights.
    losses = [
        head.loss(labels=labels[head.name], logits=logits[head.name],
                  features=features, mode=mode) for head in self.heads]
    return self._group.weighted_sum(losses, regularization_losses)

  def predictions(self, logits, keys=None):
    """Returns every head's predictions keyed `(head name, key)`.

    Args:
      logits: A dict of logits keyed by head name, or one logits `Tensor`.
      keys: Optional list choosing predictions: a plain key (such as
        `'logits'`) asks every head for it, a `(head name, key)` pair asks one
        head. Heads with nothing chosen are left out. The reference ignores
        `keys`.

    Raises:
      ValueError: A pair names an unknown head, or a head lacks a chosen key.
    """
    logits = self._group.logits_by_head(logits)
    chosen = self._chosen_keys(keys)
    predictions_by_head = {}
    for head in self.heads:
      if chosen[head.name] == []:  # pylint: disable=g-explicit-bool-comparison
        continue
      predictions_by_head[head.name] = _head_predictions(
          head, logits[head.name], chosen[head.name])
    return self._group.merged_predictions(predictions_by_head)

  def _chosen_keys(self, keys):
    """Maps each head name to its chosen prediction keys, None for all."""
    if keys is None:
      return dict.fromkeys(self._group.names)
    chosen = {name: [] for name in self._group.names}
    for key in [keys] if isinstance(keys, str) else keys:
      if isinstance(key, tuple):
        name, head_key = key
        if name not in chosen:
          raise ValueError(
              f'Prediction key {key!r} names unknown head {name!r}. The heads '
              f'are: {list(self._group.names)}.')
        chosen[name].append(head_key)
      else:
        for head_keys in chosen.values():
          head_keys.append(key)
    return chosen

  def metrics(self, regularization_losses=None):
    """Returns `loss/<head>` means and every head's own metrics.

    The reference returns only the loss means and makes new head metrics on
    each `update_metrics` call; returning the heads' metrics here lets them
    accumulate over batches like the loss means do.
    """
    eval_metrics = {}
    if regularization_losses is not None:
      eval_metrics[self._loss_regularization_key] = tf.keras.metrics.Mean(
          name=metric_keys.MetricKeys.LOSS_REGULARIZATION)
    with tf.name_scope('merge_eval'):
      for key in self._loss_keys.values():
        eval_metrics[key] = tf.keras.metrics.Mean(name=key)
      for head in self.heads:
        head_metrics = head.metrics()
        self._metric_keys_by_head[head.name] = tuple(head_metrics)
        head_group.merge_unique(eval_metrics, head_metrics, head.name,
                                'metric')
    return eval_metrics

  def update_metrics(self, eval_metrics, features, logits, labels,
                     regularization_losses=None, mode=None):
    """Updates `eval_metrics` with every head's loss and metrics.

    `regularization_losses` comes fifth, as in `tf.estimator.MultiHead`;
    `mode`, which the `Head` interface names, is accepted by keyword.
    """
    del mode  # No head's metrics depend on it.
    logits = self._group.logits_by_head(logits)
    labels = self._group.labels_by_head(labels, ModeKeys.EVAL)
    features = {} if features is None else features
    if regularization_losses is not None:
      self._metric(eval_metrics, self._loss_regularization_key).update_state(
          values=tf.math.add_n(list(regularization_losses)))
    for head in self.heads:
      head_logits, head_labels = logits[head.name], labels[head.name]
      head_loss = head.loss(labels=head_labels, logits=head_logits,
                            features=features)
      self._metric(eval_metrics, self._loss_keys[head.name]).update_state(
          values=head_loss)
      updated = head.update_metrics(
          self._head_metrics(head, eval_metrics), features, head_logits,
          head_labels)
      eval_metrics.update(updated or {})
    return eval_metrics

  @staticmethod
  def _metric(eval_metrics, key):
    """Returns `eval_metrics[key]`, adding a new mean if it is missing."""
    if key not in eval_metrics:
      eval_metrics[key] = tf.keras.metrics.Mean(name=key)
    return eval_metrics[key]

  def _head_metrics(self, head, eval_metrics):
    """Returns the head's metric objects from `eval_metrics`, or new ones."""
    keys = self._metric_keys_by_head.get(head.name)
    if keys is not None and all(key in eval_metrics for key in keys):
      return {key: eval_metrics[key] for key in keys}
    return head.metrics()

  # Specs: each head's work built once.

  def create_estimator_spec(self, features, mode, logits, labels=None,
                            optimizer=None, trainable_variables=None,
                            train_op_fn=None, update_ops=None,
                            regularization_losses=None):
    """Returns the merged `EstimatorSpec` for `mode`.

    Args:
      features: Input `dict` of `Tensor` or `SparseTensor` objects.
      mode: Estimator's `ModeKeys`.
      logits: A dict of logits keyed by head name, or one `Tensor` of shape
        `[D0, ..., DN, logits_dimension]` split among the heads in order.
      labels: A dict of labels keyed by head name; required in TRAIN and EVAL.
      optimizer: A `tf.keras.optimizers.Optimizer` minimizing the merged loss
        in TRAIN; exactly one of it and `train_op_fn` must be given then.
      trainable_variables: The variables `optimizer` updates.
      train_op_fn: Function from the merged scalar loss to a train op.
      update_ops: Extra ops to run with every training step.
      regularization_losses: Scalar losses added to the merged loss (not to
        each head's); reported as `regularization_loss/<name>` in EVAL.

    Returns:
      A `tf.estimator.EstimatorSpec`.

    Raises:
      ValueError: An unknown `mode`; bad logits or labels; in TRAIN, neither
        or both of `optimizer` and `train_op_fn`.
    """
    return self._create_tpu_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels,
        optimizer=optimizer, trainable_variables=trainable_variables,
        train_op_fn=train_op_fn, update_ops=update_ops,
        regularization_losses=regularization_losses).as_estimator_spec()

  def create_tpu_estimator_spec(self, features, mode, logits, labels=None,
                                optimizer=None, trainable_variables=None,
                                train_op_fn=None, update_ops=None,
                                regularization_losses=None):
    """Returns the merged spec as a `TPUEstimatorSpec` for `TPUEstimator`.

    Takes the arguments of `create_estimator_spec`. Its eval metrics are a
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
    """Builds the merged spec; the base class's `create_estimator_spec` path."""
    if mode not in _MODES:
      raise ValueError(f'mode={mode} unrecognized')
    with tf.compat.v1.name_scope(self.name, 'multi_head'):
      logits = self._group.logits_by_head(logits)
      labels = self._group.labels_by_head(labels, mode)
      parts = [
          _HeadPart(head, index, features=features, mode=mode,
                    logits=logits[head.name], labels=labels[head.name],
                    train_op_fn=_no_op_train_fn)
          for index, head in enumerate(self.heads)]
      predictions = self._group.merged_predictions(
          {part.name: part.spec.predictions for part in parts})
      if mode == ModeKeys.PREDICT:
        return model_fn._TPUEstimatorSpec(  # pylint: disable=protected-access
            mode=mode, predictions=predictions,
            export_outputs=self._group.merged_export_outputs(
                {part.name: part.spec.export_outputs for part in parts}))
      loss = self._group.weighted_sum([part.spec.loss for part in parts],
                                      regularization_losses)
      if mode == ModeKeys.EVAL:
        return model_fn._TPUEstimatorSpec(  # pylint: disable=protected-access
            mode=mode, predictions=predictions, loss=loss,
            eval_metrics=self._eval_metrics(parts, regularization_losses))
      train_op = base_head.create_estimator_spec_train_op(
          head_name=self.name, optimizer=optimizer,
          trainable_variables=trainable_variables, train_op_fn=train_op_fn,
          update_ops=update_ops, regularized_training_loss=loss,
          loss_reduction=self.loss_reduction)
      base_head.create_estimator_spec_summary(loss, regularization_losses)
      return model_fn._TPUEstimatorSpec(  # pylint: disable=protected-access
          mode=mode, predictions=predictions, loss=loss, train_op=train_op,
          eval_metrics=self._head_metrics_only(parts))

  def _eval_metrics(self, parts, regularization_losses):
    """Returns `(metric_fn, tensors)` for every head's metrics and loss."""
    tensors = {}
    if regularization_losses is not None:
      tensors[_REGULARIZATION] = tf.reshape(
          tf.math.add_n(list(regularization_losses)), [1])
    for part in parts:
      # Rank 1, since TPUEstimator moves metric tensors batch-wise.
      tensors[self._loss_keys[part.name]] = tf.reshape(part.spec.loss, [1])
      tensors.update(part.metric_tensors)

    def metric_fn(**given):
      eval_metrics = {}
      if _REGULARIZATION in given:
        eval_metrics[self._loss_regularization_key] = self._mean(
            metric_keys.MetricKeys.LOSS_REGULARIZATION, given[_REGULARIZATION])
      with tf.name_scope('merge_eval'):
        for part in parts:
          key = self._loss_keys[part.name]
          eval_metrics[key] = self._mean(key, given[key])
      for part in parts:
        head_group.merge_unique(eval_metrics, part.metrics(given), part.name,
                                'metric')
      return eval_metrics

    return metric_fn, tensors

  @staticmethod
  def _mean(name, values):
    mean = tf.keras.metrics.Mean(name=name)
    mean.update_state(values=values)
    return mean

  @staticmethod
  def _head_metrics_only(parts):
    """TRAIN metrics: whatever the heads' own TRAIN specs report, merged."""
    if not any(part.has_metrics for part in parts):
      return None
    tensors = {}
    for part in parts:
      tensors.update(part.metric_tensors)

    def metric_fn(**given):
      merged = {}
      for part in parts:
        head_group.merge_unique(merged, part.metrics(given), part.name,
                                'metric')
      return merged

    return metric_fn, tensors
