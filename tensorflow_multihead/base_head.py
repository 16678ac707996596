"""The `Head` interface and the helpers that concrete heads are built from.

A head turns the logits of a model into a loss, predictions, metrics, a
train op and export outputs.  This module holds the abstract `Head` class and
the module-level helpers every head shares: checking labels, weights and
logits against each other, validating constructor arguments, building the
train op and the training summaries.

The helpers behave like those of `tf.estimator`'s `base_head` module (same
names, arguments, results and exception types), with one code path for eager
and graph mode: a shape problem that the static shapes already reveal raises
`ValueError` as soon as the helper is called (always the case in eager mode,
where every shape is known), and only dimensions that are unknown until run
time are checked by assertion ops, which raise
`tf.errors.InvalidArgumentError` when the graph runs.

>>> labels = check_dense_labels_match_logits_and_reshape(
...     labels=[0., 1.], logits=tf.zeros([2, 1]), expected_labels_dimension=1)
>>> labels.shape
TensorShape([2, 1])
"""
import abc
import contextlib

import tensorflow as tf
# Weight columns are feature columns; TF exposes neither the class of the
# older `_NumericColumn` nor a way to read a column's dense tensor from a
# features dict, so these two come from the feature-column internals.
from tensorflow.python.feature_column.feature_column import _LazyBuilder
from tensorflow.python.feature_column.feature_column import _NumericColumn
from tensorflow.python.feature_column.feature_column_v2 import NumericColumn
# The argument names a loss function accepts, understood the way Estimator
# understands them (partials, callable objects and bound methods included).
from tensorflow.python.util.function_utils import fn_args

from tensorflow_multihead import autograph_off
from tensorflow_multihead import keras_optimizer

DEFAULT_SERVING_KEY = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
# Only a naming convention shared by the heads, unlike the key above which
# TF Serving looks for.
CLASSIFY_SERVING_KEY = 'classification'
REGRESS_SERVING_KEY = 'regression'
PREDICT_SERVING_KEY = 'predict'

# Summary names used by `create_estimator_spec_summary` (Estimator's
# `MetricKeys.LOSS` and `MetricKeys.LOSS_REGULARIZATION`).
_LOSS_SUMMARY_KEY = 'loss'
_REGULARIZATION_LOSS_SUMMARY_KEY = 'regularization_loss'

# Texts a user sees when labels or weights are wrong.  Tests of existing
# heads match them by regular expression, so their wording is kept.
_NO_LABELS_MESSAGE = (
    'You must provide a labels Tensor. Given: None. Suggested troubleshooting '
    'steps: Check that your data contains your label feature. Check that your '
    'input_fn properly parses and returns labels.')
_SPARSE_LABELS_MESSAGE = (
    'SparseTensor labels are not supported. Labels must be a Tensor of shape '
    '[D0, D1, ..., DN, {dim}], e.g. [batch_size, {dim}].Suggested Fix (1): '
    'Check the label feature in your data. Each example must contain {dim} '
    'value(s). If not, your choice of label was probably incorrect. Suggested '
    'Fix (2): In your input_fn, use tf.sparse_tensor_to_dense() to turn '
    'labels into a Tensor.')
_LABEL_DIMENSION_MESSAGE = (
    'Mismatched label shape. Expected labels dimension={expected}.  Received '
    '{received}. Suggested Fix: If your classifier expects one-hot encoding '
    'label, check your n_classes argument to the estimator and/or the shape '
    'of your label. Otherwise, check the shape of your label.')
_LABEL_SHAPE_MESSAGE = (
    'labels shape must be [D0, D1, ... DN, {dim}]. Suggested Fix: check your '
    'n_classes argument to the head and/or the shape of your label.')
_LOGITS_SHAPE_MESSAGE = (
    'logits shape must be [D0, D1, ... DN, logits_dimension]')
_NOT_A_SEQUENCE_MESSAGE = '{} should be a list or a tuple. Given type: {}.'
_NO_SPEC_MESSAGE = (
    'Subclasses of Head must implement `create_estimator_spec()` or '
    '_create_tpu_estimator_spec().')


class Head(abc.ABC):
  """The top of a model: from logits to loss, predictions and metrics.

  A head knows the task (regression, binary or multi-class classification,
  ...) but not the network below it, so one head serves any model that
  produces logits of shape `[D0, D1, ... DN, logits_dimension]`.  In a
  `model_fn` the network computes the logits and the head does the rest:

  ```python
  def model_fn(features, labels, mode):
    logits = my_network(features, units=head.logits_dimension)
    return head.create_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels,
        optimizer=tf.keras.optimizers.legacy.Adagrad(0.1),
        trainable_variables=tf.compat.v1.trainable_variables())
  ```

  The same head also serves a custom eager training loop through `loss`,
  `predictions`, `metrics` and `update_metrics`.

  This class is registered as a virtual subclass of `tf.estimator.Head`, so a
  head built on it is accepted wherever an Estimator head is expected, and a
  head written against `tf.estimator.Head` works unchanged on top of it.
  Subclasses implement the abstract members below, and either
  `create_estimator_spec` or `_create_tpu_estimator_spec`.
  """

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    # This package's heads only: a user's own head may rely on AutoGraph.
    if cls.__module__.startswith('tensorflow_multihead.'):
      autograph_off.unconverted(*autograph_off.HEAD_METHODS)(cls)

  @property
  @abc.abstractmethod
  def name(self):
    """The head's name (a string, or None), used to key its outputs."""

  @property
  @abc.abstractmethod
  def logits_dimension(self):
    """The size of the last logits dimension, e.g. the number of classes."""

  @property
  @abc.abstractmethod
  def loss_reduction(self):
    """How the training loss is reduced over the batch.

    One of `tf.losses.Reduction`, other than `NONE`.
    """

  @abc.abstractmethod
  def loss(self, labels, logits, features=None, mode=None,
           regularization_losses=None):
    """Returns the scalar training loss, regularization included.

    Args:
      labels: A labels `Tensor`, or a dict of them keyed by label name.
      logits: The logits `Tensor`.
      features: The features dict, e.g. to read example weights from.
      mode: A `tf.estimator.ModeKeys` value, for heads whose loss depends
        on it.
      regularization_losses: Scalar losses to add to the training loss.
    """

  @abc.abstractmethod
  def predictions(self, logits, keys=None):
    """Returns a dict of prediction `Tensor`s keyed by prediction name.

    Args:
      logits: The logits `Tensor`.
      keys: The prediction keys to compute; None means all of them.
    """

  @abc.abstractmethod
  def metrics(self, regularization_losses=None):
    """Returns a dict of fresh `tf.keras.metrics.Metric` objects by name.

    Args:
      regularization_losses: Scalar losses added to the training loss, for
        heads that report a regularization-loss metric.
    """

  @abc.abstractmethod
  def update_metrics(self, eval_metrics, features, logits, labels, mode=None,
                     regularization_losses=None):
    """Updates the metrics in `eval_metrics` with a batch; returns them.

    Args:
      eval_metrics: The dict returned by `metrics`.
      features: The features dict, e.g. to read example weights from.
      logits: The logits `Tensor`.
      labels: A labels `Tensor`, or a dict of them keyed by label name.
      mode: A `tf.estimator.ModeKeys` value; most heads ignore it.
      regularization_losses: Scalar losses added to the training loss.
    """

  def _summary_key(self, key):
    """`key` made specific to this head: 'key/name', or `key` if unnamed."""
    return '{}/{}'.format(key, self.name) if self.name else key

  def create_estimator_spec(self, features, mode, logits, labels=None,
                            optimizer=None, trainable_variables=None,
                            train_op_fn=None, update_ops=None,
                            regularization_losses=None):
    """Returns the `tf.estimator.EstimatorSpec` for a `model_fn` to return.

    By default this is `_create_tpu_estimator_spec(...)` converted with
    `as_estimator_spec()`; a head that implements neither method raises
    `NotImplementedError`.

    Args:
      features: The features dict.
      mode: A `tf.estimator.ModeKeys` value.
      logits: The logits `Tensor`.
      labels: A labels `Tensor` or dict of them; needed in TRAIN and EVAL.
      optimizer: A `tf.keras.optimizers.legacy` optimizer (or any Keras
        optimizer defining `get_updates`) that minimizes the loss over
        `trainable_variables` in TRAIN mode; under Estimator its
        `iterations` becomes the global step.
      trainable_variables: The variables `optimizer` updates.
      train_op_fn: Instead of `optimizer`, a function from the loss to the
        train op.  Exactly one of the two is needed in TRAIN mode.
      update_ops: Ops to run with every training step, e.g. batch-norm
        moving averages.
      regularization_losses: Scalar losses to add to the training loss.
    """
    try:
      tpu_spec = self._create_tpu_estimator_spec(
          features=features, mode=mode, logits=logits, labels=labels,
          optimizer=optimizer, trainable_variables=trainable_variables,
          train_op_fn=train_op_fn, update_ops=update_ops,
          regularization_losses=regularization_losses)
    except NotImplementedError as error:
      raise NotImplementedError(_NO_SPEC_MESSAGE) from error
    return tpu_spec.as_estimator_spec()

  def _create_tpu_estimator_spec(self, features, mode, logits, labels=None,
                                 optimizer=None, trainable_variables=None,
                                 train_op_fn=None, update_ops=None,
                                 regularization_losses=None):
    """Returns a `_TPUEstimatorSpec`; takes the `create_estimator_spec` args.

    Heads that can run on TPU override this; the default raises
    `NotImplementedError`.
    """
    raise NotImplementedError(
        'TPUEstimatorSpec not available for this model head.')


# Heads deriving from this class must pass Estimator's isinstance checks.
autograph_off.unconverted(*autograph_off.HEAD_METHODS)(Head)
tf.estimator.Head.register(Head)


# Shape checking.
#
# Every check first looks at static shapes, which are complete in eager mode
# and usually partial in graph mode.  A mismatch they prove raises ValueError
# right away; a match they prove costs nothing; otherwise an assertion on the
# run-time shapes is attached to the returned tensor.


def _rank(tensor):
  return tensor.shape.rank


def _shown(shape):
  """A static shape the way error messages print it, e.g. `(2, 1)`."""
  return tuple(shape.as_list()) if shape.rank is not None else '<unknown>'


def _static_match(actual, expected):
  """True/False if the static shapes prove a match/mismatch, else None."""
  if not actual.is_compatible_with(expected):
    return False
  if actual.is_fully_defined() and expected.is_fully_defined():
    return True
  return None


def _same_shape(actual, expected):
  """Whether two 1-D run-time shapes are equal, even if of unequal lengths."""
  # `tf.equal` would fail or broadcast on vectors of different lengths, so
  # both are padded to the longer length with fillers no dimension can equal.
  length = tf.maximum(tf.size(actual), tf.size(expected))
  def pad(shape, filler):
    return tf.pad(shape, [[0, length - tf.size(shape)]],
                  constant_values=filler)
  return tf.reduce_all(tf.equal(pad(actual, -1), pad(expected, -2)))


def _with_assertion(tensor, assertion):
  return _with_assertions(tensor, [assertion])


def _with_assertions(tensor, assertions):
  """`tensor`, readable only once every assertion has passed."""
  with tf.control_dependencies(assertions):
    return tf.identity(tensor)


def _require_shape(tensor, expected_shapes, error, assertion_data):
  """Checks that `tensor` has one of `expected_shapes`.

  Args:
    tensor: The `Tensor` to check.
    expected_shapes: (static `TensorShape`, function returning the run-time
      shape) pairs; any one of them is accepted.
    error: The `ValueError` text for a statically proven mismatch.
    assertion_data: A function returning the `tf.debugging.Assert` data for
      a mismatch found at run time.

  Returns:
    `tensor`, with a run-time assertion attached if one is needed.
  """
  verdicts = [_static_match(tensor.shape, static)
              for static, _ in expected_shapes]
  if True in verdicts:
    return tensor
  if all(verdict is False for verdict in verdicts):
    raise ValueError(error)
  actual = tf.shape(tensor)
  matches = [_same_shape(actual, dynamic())
             for (_, dynamic), verdict in zip(expected_shapes, verdicts)
             if verdict is None]
  return _with_assertion(
      tensor, tf.debugging.Assert(tf.reduce_any(matches), assertion_data()))


def _require_rank_at_least_2(tensor, what, message):
  """Checks the rank of `tensor` is >= 2; `what` names it in the error."""
  rank = _rank(tensor)
  if rank is None:
    return _with_assertion(
        tensor, tf.debugging.assert_rank_at_least(tensor, 2, message=message))
  if rank < 2:
    raise ValueError(
        '{} {} must have rank at least 2.  Received rank {}, shape {}'.format(
            message, what, rank, _shown(tensor.shape)))
  return tensor


def _last_dimension(tensor):
  """The static size of the last dimension, or None if unknown."""
  return tensor.shape[-1] if _rank(tensor) else None


def _static_int(value):
  """`value` if it is a Python int (a static dimension), else None."""
  return value if isinstance(value, int) else None


def _expected_from_logits(logits, last_dimension):
  """(static, run-time) shape `[D0, ... DN, last_dimension]` from logits."""
  static = logits.shape[:-1].concatenate([_static_int(last_dimension)])
  return static, lambda: tf.concat(
      [tf.shape(logits)[:-1], [last_dimension]], axis=0)


def _squeezed_last_axis_of(tensor, logits):
  """Whether `tensor` is statically one rank below `logits`."""
  return (_rank(tensor) is not None and _rank(logits) is not None and
          _rank(tensor) == _rank(logits) - 1)


def check_dense_labels_match_logits_and_reshape(labels, logits,
                                                expected_labels_dimension):
  """Checks labels have shape `[D0, ... DN, expected_labels_dimension]`.

  `[D0, ... DN]` are the logits' leading dimensions.  Labels one rank below
  the logits get a trailing axis added first, so `[D0, ... DN]` labels are
  accepted when `expected_labels_dimension` is 1.

  Args:
    labels: A labels `Tensor` (or anything convertible to one).
    logits: The logits `Tensor`, `[D0, ... DN, logits_dimension]`.
    expected_labels_dimension: The expected last labels dimension.

  Returns:
    The labels as a `Tensor`, reshaped if they needed a trailing axis.

  Raises:
    ValueError: If labels are None or sparse, or their shape is statically
      wrong.
    tf.errors.InvalidArgumentError: At run time, if a shape that was not
      statically known turns out wrong.

  >>> check_dense_labels_match_logits_and_reshape(
  ...     [[1], [0]], tf.zeros([2, 3]), 1).numpy().tolist()
  [[1], [0]]
  >>> check_dense_labels_match_logits_and_reshape(
  ...     [[1, 0]], tf.zeros([2, 3]), 1)
  Traceback (most recent call last):
  ...
  ValueError: Mismatched label shape. Expected labels dimension=1.  ...
  """
  if labels is None:
    raise ValueError(_NO_LABELS_MESSAGE)
  with tf.name_scope('labels'):
    labels = tf.compat.v1.convert_to_tensor_or_sparse_tensor(labels)
    if isinstance(labels, tf.sparse.SparseTensor):
      raise ValueError(
          _SPARSE_LABELS_MESSAGE.format(dim=expected_labels_dimension))
    if _squeezed_last_axis_of(labels, logits):
      labels = tf.expand_dims(labels, -1)
    shape_message = _LABEL_SHAPE_MESSAGE.format(dim=expected_labels_dimension)
    labels = _require_rank_at_least_2(labels, 'labels', shape_message)
    last = _last_dimension(labels)
    if last is not None and last != expected_labels_dimension:
      raise ValueError(_LABEL_DIMENSION_MESSAGE.format(
          expected=expected_labels_dimension, received=last))
    expected = _expected_from_logits(logits, expected_labels_dimension)
    return _require_shape(
        labels, [expected],
        error='{}, expected_labels_shape: {}. labels_shape: {}.'.format(
            shape_message, _shown(expected[0]), _shown(labels.shape)),
        assertion_data=lambda: [
            shape_message, 'expected_labels_shape: ', expected[1](),
            'labels_shape: ', tf.shape(labels)])


def _weights_from(features, weight_column):
  """Reads the float32 weights of `weight_column` from `features`."""
  if isinstance(weight_column, str):
    weight_column = tf.feature_column.numeric_column(
        key=weight_column, shape=(1,))
  if not isinstance(weight_column, (NumericColumn, _NumericColumn)):
    raise TypeError('Weight column must be either a string or NumericColumn.'
                    ' Given type: {}.'.format(type(weight_column)))
  # pylint: disable-next=protected-access
  weights = weight_column._get_dense_tensor(_LazyBuilder(features))
  if not (weights.dtype.is_floating or weights.dtype.is_integer):
    raise ValueError('Weight column should be castable to float. '
                     'Given dtype: {}'.format(weights.dtype))
  return tf.cast(weights, tf.float32, name='weights')


def get_weights_and_check_match_logits(features, weight_column, logits,
                                       allow_per_logit_weights=False):
  """Reads example weights from `features`, shaped to match the logits.

  With logits of shape `[D0, ... DN, logits_dimension]`, weights may have
  shape `[D0, ... DN]` (given a trailing axis here), `[D0, ... DN, 1]`, or,
  if `allow_per_logit_weights`, the logits' own shape.

  Args:
    features: The features dict holding the weights.
    weight_column: A feature name or a `tf.feature_column.numeric_column`;
      None means every example weighs 1.
    logits: The logits `Tensor`.
    allow_per_logit_weights: Whether weights may have one value per logit.

  Returns:
    The float32 weights `Tensor`, or the float 1. without `weight_column`.

  Raises:
    TypeError: If `weight_column` is neither a string nor a numeric column.
    ValueError: If the weights are not numeric, or their shape is statically
      wrong.
    tf.errors.InvalidArgumentError: At run time, if a shape that was not
      statically known turns out wrong.

  >>> features = {'w': tf.constant([2., 3.])}
  >>> get_weights_and_check_match_logits(
  ...     features, 'w', tf.zeros([2, 1])).numpy().tolist()
  [[2.0], [3.0]]
  >>> get_weights_and_check_match_logits(features, None, tf.zeros([2, 1]))
  1.0
  """
  return get_weights_naming_head(features, weight_column, logits,
                                 allow_per_logit_weights)


def get_weights_naming_head(features, weight_column, logits,
                            allow_per_logit_weights=False, head_name=None):
  """`get_weights_and_check_match_logits`, naming `head_name` when run.

  For heads computed together (fused), whose ops lie in no head's name
  scope: the run-time assertion's message then starts ``Head `<name>`: ``
  (backticks, since an assertion prints quotes escaped).

  >>> get_weights_naming_head({'w': tf.constant([[2.]])}, 'w',
  ...                         tf.zeros([1, 1]), head_name='click').numpy()
  array([[2.]], dtype=float32)
  """
  if allow_per_logit_weights:
    message = ('weights shape must be [D0, D1, ... DN], [D0, D1, ... DN, 1] '
               'or [D0, D1, ... DN, logits_dimension]')
  else:
    message = 'weights shape must be [D0, D1, ... DN] or [D0, D1, ... DN, 1]'
  if weight_column is None:
    return 1.
  run_time_message = message if head_name is None else (
      f'Head `{head_name}`: {message}')
  with tf.name_scope('weights'):
    weights = _weights_from(features, weight_column)
    squeezed = _squeezed_last_axis_of(weights, logits)
    if squeezed:
      allowed = [(logits.shape[:-1], lambda: tf.shape(logits)[:-1])]
    else:
      allowed = [_expected_from_logits(logits, 1)]
      if allow_per_logit_weights:
        allowed.append((logits.shape, lambda: tf.shape(logits)))
    weights = _require_shape(
        weights, allowed,
        error='{}, logits_shape: {}. weights_shape: {}.'.format(
            message, _shown(logits.shape), _shown(weights.shape)),
        assertion_data=lambda: [
            run_time_message, 'logits_shape: ', tf.shape(logits),
            'weights_shape: ', tf.shape(weights)])
    return tf.expand_dims(weights, -1) if squeezed else weights


def check_logits_final_dim(logits, expected_logits_dimension):
  """Checks logits have shape `[D0, ... DN, expected_logits_dimension]`.

  Args:
    logits: The logits `Tensor`, of rank 2 or more.
    expected_logits_dimension: The expected last dimension; when it is not a
      Python int (e.g. a `Tensor`), a statically known last dimension is
      taken as it is.

  Returns:
    The logits cast to float32.

  Raises:
    ValueError: If the rank or last dimension is statically wrong.
    tf.errors.InvalidArgumentError: At run time, if a shape that was not
      statically known turns out wrong.

  >>> check_logits_final_dim(tf.constant([[1, 2]]), 2).dtype
  tf.float32
  >>> check_logits_final_dim(tf.zeros([3, 2]), 1)
  Traceback (most recent call last):
  ...
  ValueError: logits shape must be [D0, D1, ... DN, ...], got (3, 2).
  """
  with tf.name_scope('logits'):
    logits = tf.cast(logits, tf.float32)
    logits = _require_rank_at_least_2(logits, 'logits', _LOGITS_SHAPE_MESSAGE)
    last = _last_dimension(logits)
    if last is None:
      return _with_assertion(logits, tf.debugging.assert_equal(
          expected_logits_dimension, tf.shape(logits)[-1],
          message=_LOGITS_SHAPE_MESSAGE))
    expected = _static_int(expected_logits_dimension)
    if expected is not None and last != expected:
      raise ValueError('{}, got {}.'.format(
          _LOGITS_SHAPE_MESSAGE, _shown(logits.shape)))
    return logits


# Argument validation.


def validate_loss_fn_args(loss_fn):
  """Checks a custom loss function has an argument list a head can call.

  It must take `labels` and `logits`, and may take `features` and
  `loss_reduction`; nothing else.

  Raises:
    ValueError: If the arguments are not as described.

  >>> validate_loss_fn_args(lambda labels, logits, features: logits)
  >>> validate_loss_fn_args(lambda labels, logits, weights: logits)
  Traceback (most recent call last):
  ...
  ValueError: loss_fn has unexpected args: ['weights']
  """
  arguments = fn_args(loss_fn)
  for required in ('labels', 'logits'):
    if required not in arguments:
      raise ValueError('loss_fn must contain argument: {}. Given arguments: '
                       '{}'.format(required, arguments))
  allowed = ('labels', 'logits', 'features', 'loss_reduction')
  unexpected = [name for name in arguments if name not in allowed]
  if unexpected:
    raise ValueError('loss_fn has unexpected args: {}'.format(unexpected))


def validate_loss_reduction(loss_reduction):
  """Checks `loss_reduction` is a `tf.losses.Reduction` other than NONE.

  Raises:
    ValueError: Otherwise.

  >>> validate_loss_reduction(tf.losses.Reduction.SUM)
  >>> validate_loss_reduction(tf.losses.Reduction.NONE)
  Traceback (most recent call last):
  ...
  ValueError: Invalid loss_reduction: none. See ...
  """
  reduction = tf.losses.Reduction
  if (loss_reduction not in reduction.all() or
      loss_reduction == reduction.NONE):
    raise ValueError('Invalid loss_reduction: {}. See `tf.losses.Reduction` '
                     'for valid options.'.format(loss_reduction))


def _require_list_or_tuple(value, name):
  if not isinstance(value, (list, tuple)):
    raise ValueError(_NOT_A_SEQUENCE_MESSAGE.format(name, type(value)))


def validate_update_ops(update_ops=None):
  """Checks `update_ops` is None, a list or a tuple.

  Raises:
    ValueError: Otherwise.
  """
  if update_ops is not None:
    _require_list_or_tuple(update_ops, 'update_ops')


def validate_v2_optimizer(optimizer):
  """Checks `optimizer` is a Keras optimizer that has `get_updates`.

  The `tf.keras.optimizers.legacy` optimizers have it, and so has any Keras
  optimizer class defining it; see `keras_optimizer.check`.

  Raises:
    ValueError: Otherwise.

  >>> validate_v2_optimizer('sgd')
  Traceback (most recent call last):
  ...
  ValueError: The given optimizer is not a ... of type <class 'str'>
  """
  keras_optimizer.check(optimizer)


def validate_trainable_variables(trainable_variables=None):
  """Checks `trainable_variables` is a list or a tuple.

  Raises:
    ValueError: If it is None or of another type.
  """
  if trainable_variables is None:
    raise ValueError('trainable_variables cannot be None. Given {}'.format(
        trainable_variables))
  _require_list_or_tuple(trainable_variables, 'trainable_variables')


def validate_n_classes(n_classes):
  """Checks a multi-class head's number of classes is more than 2.

  A Python int is checked at once; a `Tensor` by `tf.debugging`, which in
  graph mode can only catch a statically known value.

  Returns:
    `n_classes`, unchanged.

  Raises:
    ValueError: If `n_classes` is a Python int <= 2.
    tf.errors.InvalidArgumentError: If it is a `Tensor` known to be <= 2.

  >>> validate_n_classes(3)
  3
  >>> validate_n_classes(2)
  Traceback (most recent call last):
  ...
  ValueError: n_classes must be > 2: 2.
  """
  if isinstance(n_classes, int) and n_classes <= 2:
    raise ValueError('n_classes must be > 2: {}.'.format(n_classes))
  tf.debugging.assert_greater(tf.convert_to_tensor(n_classes), 2,
                              message='n_classes must be greater than 2')
  return n_classes


# Helpers for loss, predictions and metrics.


def call_loss_fn(loss_fn, labels, logits, features, expected_loss_dim=1):
  """Calls a custom loss function and checks the shape of its result.

  `features` is passed only if `loss_fn` takes it.

  Args:
    loss_fn: The loss function; see `validate_loss_fn_args`.
    labels: The checked labels `Tensor`.
    logits: The logits `Tensor`, `[D0, ... DN, logits_dimension]`.
    features: The features dict.
    expected_loss_dim: The expected last dimension of the loss.

  Returns:
    The unreduced loss, of shape `[D0, ... DN, expected_loss_dim]`.

  Raises:
    ValueError: If the loss shape is statically wrong.
    tf.errors.InvalidArgumentError: At run time, if a shape that was not
      statically known turns out wrong.

  >>> squared = lambda labels, logits: tf.square(labels - logits)
  >>> call_loss_fn(squared, tf.ones([2, 1]), tf.zeros([2, 1]),
  ...              features={}).numpy().tolist()
  [[1.0], [1.0]]
  """
  extra = {'features': features} if 'features' in fn_args(loss_fn) else {}
  with tf.name_scope('call_loss_fn'):
    loss = tf.convert_to_tensor(loss_fn(labels=labels, logits=logits, **extra))
    message = 'loss_fn must return Tensor of shape [D0, D1, ... DN, {}]. '
    message = message.format(expected_loss_dim)
    expected = _expected_from_logits(logits, expected_loss_dim)
    return _require_shape(
        loss, [expected],
        error='{}logits_shape: {}. loss_shape: {}.'.format(
            message, _shown(logits.shape), _shown(loss.shape)),
        assertion_data=lambda: [
            message, 'logits_shape: ', tf.shape(logits), 'loss_shape: ',
            tf.shape(loss)])


def check_prediction_keys(pred_keys, valid_keys):
  """Checks every requested prediction key is one of `valid_keys`.

  Raises:
    ValueError: On the first key that is not.

  >>> check_prediction_keys(['probabilities'], ['logits', 'probabilities'])
  """
  for key in pred_keys:
    if key not in valid_keys:
      raise ValueError('Prediction key must be in PredictionKeys, given: {}.'
                       'Valid prediction keys include {}.'.format(
                           key, valid_keys))


def all_class_ids(logits, n_classes):
  """Returns `[0, ... n_classes - 1]` for each example, as int32.

  >>> all_class_ids(tf.zeros([2, 3]), 3).numpy().tolist()
  [[0, 1, 2], [0, 1, 2]]
  """
  class_ids = tf.range(n_classes)[tf.newaxis, :]
  return tf.tile(class_ids, [tf.shape(logits)[0], 1])


def all_classes(logits, n_classes, label_vocabulary=None):
  """Returns every class name for each example, as strings.

  Names come from `label_vocabulary` when given, else they are the class
  ids written as strings.

  >>> all_classes(tf.zeros([1, 2]), 2).numpy().tolist()
  [[b'0', b'1']]
  >>> all_classes(tf.zeros([1, 2]), 2, ['no', 'yes']).numpy().tolist()
  [[b'no', b'yes']]
  """
  if label_vocabulary:
    names = tf.convert_to_tensor([label_vocabulary])
  else:
    names = tf.strings.as_string(tf.range(n_classes)[tf.newaxis, :])
  return tf.tile(names, [tf.shape(logits)[0], 1])


def classification_output(scores, n_classes, label_vocabulary=None):
  """Returns the `ClassificationOutput` that serves `scores` per class.

  >>> output = classification_output(tf.constant([[.3, .7]]), 2)
  >>> output.classes.numpy().tolist()
  [[b'0', b'1']]
  """
  return tf.estimator.export.ClassificationOutput(
      scores=scores,
      classes=all_classes(scores, n_classes, label_vocabulary))


def check_label_range(labels, n_classes, message=None):
  """Checks every label is a class id, i.e. in `[0, n_classes)`.

  Eager tensors are checked at once; in graph mode the check is an
  assertion that runs with the returned tensor (or fails while building if
  the labels are constants).

  Args:
    labels: An integer labels `Tensor`.
    n_classes: The number of classes.
    message: The error text to use instead of the default one.

  Returns:
    The labels.

  Raises:
    TypeError: If the labels are not numbers (e.g. class names, which a
      head's label vocabulary turns into ids first).
    ValueError: In eager mode, if a label is out of range.
    tf.errors.InvalidArgumentError: In graph mode, if a label is out of
      range.

  >>> check_label_range(tf.constant([0, 2]), 3).numpy().tolist()
  [0, 2]
  >>> check_label_range(tf.constant([0, 3]), 3)
  Traceback (most recent call last):
  ...
  ValueError: Labels must be <= 3 - 1
  """
  labels = tf.convert_to_tensor(labels)
  if not (labels.dtype.is_integer or labels.dtype.is_floating):
    raise TypeError(
        f'Labels must be numbers (class ids) to be checked against n_classes '
        f'= {n_classes}; given labels of dtype {labels.dtype.name}. Labels '
        'that name classes are turned into ids by the head\'s '
        'label_vocabulary first.')
  highest = n_classes - 1
  # (holds for every label?, its graph-mode assertion, what the error says)
  bounds = (
      (lambda: tf.math.less_equal(labels, highest),
       lambda text: tf.compat.v1.debugging.assert_less_equal(
           labels, tf.cast(highest, labels.dtype), message=text),
       f'Labels must be <= {n_classes} - 1', 'Labels must be <= n_classes - 1'),
      (lambda: tf.math.greater_equal(labels, 0),
       lambda text: tf.compat.v1.debugging.assert_non_negative(
           labels, message=text),
       'Labels must be >= 0', 'Labels must be >= 0'),
  )
  with tf.name_scope('check_label_range'):
    if tf.executing_eagerly():
      # The values are at hand, so a bad label is a ValueError like every
      # other eager check here rather than an op error.
      for holds, _, eager_text, _ in bounds:
        if not tf.reduce_all(holds()):
          raise ValueError(message or eager_text)
      return labels
    assertions = [assertion(message or graph_text)
                  for _, assertion, _, graph_text in bounds]
    return _with_assertions(labels, assertions)


def update_metric_with_broadcast_weights(eval_metric, values, weights):
  """Updates a Keras metric with float32 `values`, weights broadcast to them.

  >>> mean = tf.keras.metrics.Mean()
  >>> update_metric_with_broadcast_weights(
  ...     mean, tf.constant([[1., 3.]]), tf.constant([[1.], ]))
  >>> float(mean.result())
  2.0
  """
  values = tf.cast(values, tf.float32)
  if weights is not None:
    weights = tf.__internal__.ops.broadcast_weights(weights, values)
  eval_metric.update_state(values=values, sample_weight=weights)


def create_eval_metrics_tuple(fn, kwargs):
  """Returns the `(metric_fn, tensors)` pair that `TPUEstimatorSpec` takes.

  `TPUEstimatorSpec` calls its metric function with `Tensor` arguments only.
  The returned function takes the `Tensor` entries of `kwargs` and calls `fn`
  with them plus the other entries, which it has bound.

  Args:
    fn: A function of the `kwargs` returning `{name: (value, update_op)}`.
    kwargs: Its arguments, tensors or not.

  >>> metric_fn, tensors = create_eval_metrics_tuple(
  ...     lambda x, scale: {'m': x * scale}, {'x': tf.constant(2), 'scale': 3})
  >>> sorted(tensors)
  ['x']
  >>> int(metric_fn(**tensors)['m'])
  6
  """
  tensors = {key: value for key, value in kwargs.items() if tf.is_tensor(value)}
  others = {key: value for key, value in kwargs.items()
            if key not in tensors}

  def metric_fn(**tensor_kwargs):
    return fn(**others, **tensor_kwargs)

  return metric_fn, tensors


# Training.


def _per_replica(loss, loss_reduction):
  """Scales a batch-averaged loss down by the number of replicas.

  Each replica minimizes its own share and the strategy sums the gradients,
  so a loss averaged over the per-replica batch has to be divided too.
  """
  if loss_reduction != tf.losses.Reduction.SUM_OVER_BATCH_SIZE:
    return loss
  replicas = tf.distribute.get_strategy().num_replicas_in_sync
  return loss * (1. / replicas) if replicas > 1 else loss


def create_estimator_spec_train_op(
    head_name,
    optimizer=None,
    trainable_variables=None,
    train_op_fn=None,
    update_ops=None,
    regularized_training_loss=None,
    loss_reduction=tf.losses.Reduction.SUM_OVER_BATCH_SIZE):
  """Returns the train op of a head's TRAIN-mode `EstimatorSpec`.

  The op is `optimizer.get_updates(loss, trainable_variables)`, or
  `train_op_fn(loss)`, grouped with `update_ops`.  Its ops live under the
  top-level name scope 'training', as in Keras.

  In a graph with a global step (as Estimator builds), the optimizer's
  `iterations` becomes the global step, so that each step moves it and
  `Estimator.train(steps=...)` ends; TensorFlow's canned estimators do the
  same.

  Args:
    head_name: The head's name (unused; kept for the common signature).
    optimizer: A `tf.keras.optimizers.legacy` optimizer, or any Keras
      optimizer defining `get_updates`; the non-legacy `tf.keras.optimizers`
      lack it and are refused.  With `SUM_OVER_BATCH_SIZE`, it minimizes the
      loss divided by the number of replicas in sync.
    trainable_variables: The list or tuple of variables to optimize; needed
      with `optimizer`.
    train_op_fn: A function from the loss to the train op, used instead of
      `optimizer`; it gets the loss as it is, so scale it yourself.
    update_ops: A list or tuple of ops to run with every step.
    regularized_training_loss: The scalar training loss.
    loss_reduction: The head's `tf.losses.Reduction`.

  Raises:
    ValueError: If both or neither of `optimizer` and `train_op_fn` are
      given, an argument has the wrong type, or the optimizer counts its
      steps in a variable other than the global step.
  """
  del head_name
  validate_update_ops(update_ops)
  _require_one_trainer(optimizer, train_op_fn)
  if optimizer is not None:
    validate_v2_optimizer(optimizer)
    validate_trainable_variables(trainable_variables)
    keras_optimizer.count_steps_with_global_step(optimizer)
  with _top_level_scope('training'):
    if optimizer is None:
      train_op = train_op_fn(regularized_training_loss)
    else:
      loss = _per_replica(regularized_training_loss, loss_reduction)
      train_op = optimizer.get_updates(loss, trainable_variables)[0]
    if update_ops is None:
      return train_op
    return tf.group(train_op, *update_ops)


def _require_one_trainer(optimizer, train_op_fn):
  if optimizer is not None and train_op_fn is not None:
    raise ValueError('train_op_fn and optimizer cannot both be set.')
  if optimizer is None and train_op_fn is None:
    raise ValueError('train_op_fn and optimizer cannot both be None.')


@contextlib.contextmanager
def _top_level_scope(name):
  """Opens name scope `name` at the graph's top level, wherever we are.

  Keras names its training ops 'training/...'; the heads' train ops get the
  same names whichever name scope the model_fn called them in.
  """
  with tf.compat.v1.name_scope(''), tf.compat.v1.name_scope(name):
    yield


def create_estimator_spec_summary(regularized_training_loss,
                                  regularization_losses=None,
                                  summary_key_fn=None):
  """Adds the scalar training-loss summaries of a head (graph mode).

  The summaries are 'loss' and, with `regularization_losses`, their sum as
  'regularization_loss'; `summary_key_fn` may rename both (e.g. to add the
  head's name).  They are created at the top-level name scope.

  Args:
    regularized_training_loss: The scalar training loss.
    regularization_losses: A list of scalar regularization losses, or None.
    summary_key_fn: A function from a summary name to the name to use.
  """
  key = summary_key_fn or (lambda name: name)
  with tf.compat.v1.name_scope(''):
    tf.compat.v1.summary.scalar(key(_LOSS_SUMMARY_KEY),
                                regularized_training_loss)
    if regularization_losses is not None:
      tf.compat.v1.summary.scalar(key(_REGULARIZATION_LOSS_SUMMARY_KEY),
                                  tf.math.add_n(regularization_losses))
