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
import collections
import numbers

import numpy as np
import tensorflow as tf
from tensorflow_estimator.python.estimator import model_fn
from tensorflow_estimator.python.estimator.canned import metric_keys
from tensorflow_estimator.python.estimator.export import export_output
from tensorflow_estimator.python.estimator.mode_keys import ModeKeys

from tensorflow_multihead import base_head

_MODES = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)


def _no_op_train_fn(loss):
  del loss  # The merged loss, not each head's, drives training.
  return tf.no_op()


def _check_heads(heads):
  """Raises if `heads` cannot be merged; returns them as a tuple."""
  if not heads:
    raise ValueError(f'Must specify heads. Given: {heads}')
  if isinstance(heads, (dict, str)) or not isinstance(
      heads, collections.abc.Iterable):
    raise TypeError(
        f'heads must be a list or tuple of Head instances. Given: {heads!r}')
  heads = tuple(heads)
  seen = {}
  for position, head in enumerate(heads):
    if not isinstance(head, tf.estimator.Head):
      raise TypeError(
          f'heads[{position}] is not a Head (tf.estimator.Head or '
          f'tensorflow_multihead.Head). Given: {head!r}')
    if head.name is None or head.name == '':
      raise ValueError(
          'All given heads must have name specified. '
          f'heads[{position}] has name {head.name!r}. Given: {head}')
    if head.name in seen:
      raise ValueError(
          f'Head names must be unique: heads[{seen[head.name]}] and '
          f'heads[{position}] are both named {head.name!r}, so one would '
          'overwrite the other\'s predictions and metrics.')
    seen[head.name] = position
  return heads


def _check_head_weights(head_weights, heads):
  """Raises if `head_weights` cannot weight `heads`; returns a tuple."""
  if head_weights is None or (
      isinstance(head_weights, (list, tuple)) and not head_weights):
    return ()
  if isinstance(head_weights, (str, dict)) or not isinstance(
      head_weights, collections.abc.Iterable):
    raise TypeError(
        f'head_weights must be a list or tuple of numbers. Given: '
        f'{head_weights!r}')
  head_weights = tuple(head_weights)
  if len(head_weights) != len(heads):
    raise ValueError(
        'heads and head_weights must have the same size. '
        f'Given len(heads): {len(heads)}. '
        f'Given len(head_weights): {len(head_weights)}.')
  for head, weight in zip(heads, head_weights):
    is_number = (isinstance(weight, (numbers.Real, np.number)) and
                 not isinstance(weight, bool))
    if not (is_number or tf.is_tensor(weight)):
      raise TypeError(
          f'head_weights must be numbers: the weight of head {head.name!r} is '
          f'{weight!r} of type {type(weight).__name__}.')
  return head_weights


def _check_loss_reductions(heads):
  reductions = {head.name: head.loss_reduction for head in heads}
  if len(set(reductions.values())) > 1:
    raise ValueError(
        'The loss_reduction must be the same for different heads. '
        f'Given: {list(reductions.values())} (by head: {reductions}).')
  return next(iter(reductions.values()))


def _check_keys(given, head_names, what):
  """Raises unless the dict `given` holds exactly one entry per head."""
  missing = [name for name in head_names if name not in given]
  if missing:
    raise ValueError(
        f'{what} has missing values for head(s): {missing}. '
        f'Given keys: {sorted(map(str, given))}.')
  unknown = [key for key in given if key not in head_names]
  if unknown:
    raise ValueError(
        f'{what} has values for unknown head(s): {unknown}. '
        f'The heads are: {list(head_names)}.')


def _merge_unique(merged, extra, head_name, what):
  """Adds `extra` into `merged`, refusing keys another head already gave."""
  for key, value in (extra or {}).items():
    if key in merged:
      raise ValueError(
          f'Head {head_name!r} gives {what} key {key!r}, which another head '
          'already gave; name the heads so that their keys differ.')
    merged[key] = value
  return merged


def _default_export_output(export_outputs, head_name):
  """Picks the output a head serves by default from its `export_outputs`."""
  if len(export_outputs) == 1:
    return next(iter(export_outputs.values()))
  if base_head.DEFAULT_SERVING_KEY in export_outputs:
    return export_outputs[base_head.DEFAULT_SERVING_KEY]
  raise ValueError(
      f'{head_name} did not specify default export_outputs. Given: '
      f'{export_outputs} Suggested fix: Use one of the heads in tf.estimator, '
      f'or include key {base_head.DEFAULT_SERVING_KEY} in export_outputs.')


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
    self._heads = _check_heads(heads)
    self._head_weights = _check_head_weights(head_weights, self._heads)
    self._loss_reduction = _check_loss_reductions(self._heads)
    self._head_names = tuple(head.name for head in self._heads)
    if default_head is None:
      default_head = self._head_names[0]
    if default_head not in self._head_names:
      raise ValueError(
          f'default_head {default_head!r} is not one of the heads: '
          f'{list(self._head_names)}.')
    self._default_head = default_head
    self._logits_dimension = sum(head.logits_dimension for head in self._heads)
    keys = metric_keys.MetricKeys
    self._loss_regularization_key = self._summary_key(keys.LOSS_REGULARIZATION)
    self._loss_keys = {
        name: f'{keys.LOSS}/{name}' for name in self._head_names}
    # Filled by `metrics()` so that `update_metrics()` can update each head's
    # own metric objects in place, letting them accumulate across batches.
    self._metric_keys_by_head = {}

  @property
  def name(self):
    """The heads' names joined by `_`."""
    return '_'.join(self._head_names)

  @property
  def logits_dimension(self):
    """The sum of the heads' `logits_dimension`s."""
    return self._logits_dimension

  @property
  def loss_reduction(self):
    """The `loss_reduction` that every head shares."""
    return self._loss_reduction

  @property
  def heads(self):
    """The merged heads, in order."""
    return self._heads

  @property
  def head_weights(self):
    """The heads' loss weights, or `()` when all weigh 1."""
    return self._head_weights

  @property
  def default_head(self):
    """The name of the head served under `serving_default`."""
    return self._default_head

  # Logits and labels.

  def _logits_by_head(self, logits):
    """Returns a dict of each head's logits, splitting a `Tensor` if given."""
    if isinstance(logits, dict):
      _check_keys(logits, self._head_names, 'logits')
      return dict(logits)
    return self._split_logits(logits)

  def _split_logits(self, logits):
    """Splits logits `[D0, ..., DN, logits_dimension]` among the heads."""
    with tf.name_scope('split_logits'):
      logits = tf.convert_to_tensor(logits)
      widths = [head.logits_dimension for head in self._heads]
      last_dimension = logits.shape[-1] if logits.shape.rank else None
      if last_dimension is not None and last_dimension != sum(widths):
        raise ValueError(
            f'Could not split logits of shape {logits.shape.as_list()} among '
            f'the heads {list(self._head_names)} with individual logits '
            f'dimensions: {widths}. The last dimension of the logits tensor '
            f'should equal {sum(widths)} but is {last_dimension}.')
      # `tf.split` checks at run time that the widths add up to the last
      # dimension when that dimension is unknown while building.
      pieces = tf.split(logits, widths, axis=-1)
    return dict(zip(self._head_names, pieces))

  def _labels_by_head(self, labels, mode=None):
    """Checks that `labels` is a dict with one entry per head."""
    if labels is None:
      if mode in (ModeKeys.TRAIN, ModeKeys.EVAL):
        raise ValueError(
            f'labels are required in mode {mode}: give a dict keyed by head '
            f'name, with keys {list(self._head_names)}.')
      return None
    if not isinstance(labels, dict):
      raise ValueError(
          f'labels must be a dict keyed by head name '
          f'{list(self._head_names)}. Given: {labels}')
    _check_keys(labels, self._head_names, 'labels')
    return labels

  def _weighted_sum(self, losses, regularization_losses=None):
    """Adds the heads' losses, each times its weight, and regularization."""
    with tf.name_scope('merge_losses'):
      if self._head_weights:
        losses = [tf.math.multiply(loss, weight)
                  for loss, weight in zip(losses, self._head_weights)]
      total = tf.math.add_n(list(losses))
      if regularization_losses is not None:
        total += tf.math.add_n(list(regularization_losses))
      return total

  # The Head interface, one call at a time.

  def loss(self, labels, logits, features=None, mode=None,
           regularization_losses=None):
    """Returns the weighted sum of the heads' losses plus regularization."""
    logits = self._logits_by_head(logits)
    labels = self._labels_by_head(labels, ModeKeys.TRAIN)
    features = {} if features is None else features  # Heads read weights.
    losses = [
        head.loss(labels=labels[head.name], logits=logits[head.name],
                  features=features, mode=mode) for head in self._heads]
    return self._weighted_sum(losses, regularization_losses)

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
    logits = self._logits_by_head(logits)
    merged = {}
    with tf.name_scope('merge_pred'):
      for head in self._heads:
        head_keys = self._chosen_keys(keys)[head.name]
        if head_keys == []:  # pylint: disable=g-explicit-bool-comparison
          continue
        try:
          head_predictions = head.predictions(logits[head.name], head_keys)
        except ValueError as error:
          raise ValueError(f'Head {head.name!r}: {error}') from error
        for key, value in head_predictions.items():
          merged[(head.name, key)] = value
    return merged

  def _chosen_keys(self, keys):
    """Maps each head name to its chosen prediction keys, None for all."""
    if keys is None:
      return dict.fromkeys(self._head_names)
    chosen = {name: [] for name in self._head_names}
    for key in [keys] if isinstance(keys, str) else keys:
      if isinstance(key, tuple):
        name, head_key = key
        if name not in chosen:
          raise ValueError(
              f'Prediction key {key!r} names unknown head {name!r}. The heads '
              f'are: {list(self._head_names)}.')
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
    keys = metric_keys.MetricKeys
    eval_metrics = {}
    if regularization_losses is not None:
      eval_metrics[self._loss_regularization_key] = tf.keras.metrics.Mean(
          name=keys.LOSS_REGULARIZATION)
    with tf.name_scope('merge_eval'):
      for name in self._head_names:
        eval_metrics[self._loss_keys[name]] = tf.keras.metrics.Mean(
            name=self._loss_keys[name])
      for head in self._heads:
        head_metrics = head.metrics()
        self._metric_keys_by_head[head.name] = tuple(head_metrics)
        _merge_unique(eval_metrics, head_metrics, head.name, 'metric')
    return eval_metrics

  def update_metrics(self, eval_metrics, features, logits, labels, mode=None,
                     regularization_losses=None):
    """Updates `eval_metrics` with every head's loss and metrics."""
    del mode  # No head's metrics depend on it.
    logits = self._logits_by_head(logits)
    labels = self._labels_by_head(labels, ModeKeys.EVAL)
    features = {} if features is None else features
    if regularization_losses is not None:
      self._metric(eval_metrics, self._loss_regularization_key).update_state(
          values=tf.math.add_n(list(regularization_losses)))
    for head in self._heads:
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

  def _metric(self, eval_metrics, key):
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

  # The EstimatorSpec: each head's work built once.

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
    if mode not in _MODES:
      raise ValueError(f'mode={mode} unrecognized')
    with tf.compat.v1.name_scope(self.name, 'multi_head'):
      logits = self._logits_by_head(logits)
      labels = self._labels_by_head(labels, mode)
      specs = self._head_specs(features, mode, logits, labels)
      predictions = self._merged_predictions(specs)
      if mode == ModeKeys.PREDICT:
        return model_fn.EstimatorSpec(
            mode=mode, predictions=predictions,
            export_outputs=self._merged_export_outputs(specs))
      loss = self._weighted_sum([spec.loss for spec in specs.values()],
                                regularization_losses)
      if mode == ModeKeys.EVAL:
        return model_fn.EstimatorSpec(
            mode=mode, predictions=predictions, loss=loss,
            eval_metric_ops=self._eval_metrics(specs, regularization_losses))
      train_op = base_head.create_estimator_spec_train_op(
          head_name=self.name, optimizer=optimizer,
          trainable_variables=trainable_variables, train_op_fn=train_op_fn,
          update_ops=update_ops, regularized_training_loss=loss,
          loss_reduction=self.loss_reduction)
      base_head.create_estimator_spec_summary(loss, regularization_losses)
      head_metrics = {}
      for name, spec in specs.items():
        _merge_unique(head_metrics, spec.eval_metric_ops, name, 'metric')
      return model_fn.EstimatorSpec(
          mode=mode, loss=loss, train_op=train_op, predictions=predictions,
          eval_metric_ops=head_metrics)

  def _head_specs(self, features, mode, logits, labels):
    """Builds each head's own spec once: its loss, predictions, metrics."""
    return {
        head.name: head.create_estimator_spec(
            features=features, mode=mode, logits=logits[head.name],
            labels=None if labels is None else labels[head.name],
            train_op_fn=_no_op_train_fn)
        for head in self._heads}

  def _merged_predictions(self, specs):
    with tf.name_scope('merge_pred'):
      return {(name, key): value
              for name, spec in specs.items()
              for key, value in spec.predictions.items()}

  def _eval_metrics(self, specs, regularization_losses):
    """Adds `loss/<head>` means to the metrics each head's spec updated."""
    keys = metric_keys.MetricKeys
    eval_metrics = {}
    if regularization_losses is not None:
      regularization = tf.keras.metrics.Mean(name=keys.LOSS_REGULARIZATION)
      regularization.update_state(
          values=tf.math.add_n(list(regularization_losses)))
      eval_metrics[self._loss_regularization_key] = regularization
    with tf.name_scope('merge_eval'):
      for name, spec in specs.items():
        loss_mean = tf.keras.metrics.Mean(name=self._loss_keys[name])
        loss_mean.update_state(values=spec.loss)
        eval_metrics[self._loss_keys[name]] = loss_mean
    for name, spec in specs.items():
      _merge_unique(eval_metrics, spec.eval_metric_ops, name, 'metric')
    return eval_metrics

  def _merged_export_outputs(self, specs):
    """Serves every head's outputs; the default head's as the default."""
    default = self._default_head
    export_outputs = {
        base_head.DEFAULT_SERVING_KEY: _default_export_output(
            specs[default].export_outputs, default)}
    merged_predict_outputs = {}
    for name, spec in specs.items():
      for key, output in spec.export_outputs.items():
        if key == base_head.DEFAULT_SERVING_KEY:
          export_outputs[name] = output
        else:
          export_outputs[f'{name}/{key}'] = output
        if (key == base_head.PREDICT_SERVING_KEY and
            isinstance(output, export_output.PredictOutput)):
          for output_key, tensor in output.outputs.items():
            merged_predict_outputs[f'{name}/{output_key}'] = tensor
    export_outputs[base_head.PREDICT_SERVING_KEY] = (
        export_output.PredictOutput(merged_predict_outputs))
    return export_outputs
