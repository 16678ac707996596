"""`MaskedHead`: a head that learns and reports on labelled rows only.

Multi-task data is rarely fully labelled: a conversion label exists only for
clicked impressions. `MaskedHead` wraps any `Head` and hands it only the
rows that carry a label, so its loss, gradients and metrics are exactly the
wrapped head's on those rows, while its predictions cover every row.

A row is a position `[D0, ..., DN]` of the labels (the logits' leading
dimensions), so sequence logits `[batch, time, n]` are masked per time step.
It is unlabelled where its label equals `missing_label` (every entry of it,
for labels with a last dimension above 1; `float('nan')` matches NaN), or
where the feature `mask_key` is false or zero; with both, a row must pass
both. Dense features whose leading dimensions are the rows' (the weight
column, and anything else the wrapped head reads) are cut alike; other
features pass untouched. See docs/masked_head.md for the full rules.

>>> import numpy as np
>>> import tensorflow as tf
>>> head = MaskedHead(tf.estimator.BinaryClassHead(name='conversion'),
...                   missing_label=-1)
>>> logits = np.array([[0.], [2.], [-1.]], np.float32)
>>> labels = np.array([[1], [-1], [0]])  # The second row has no label.
>>> # The mean over the two labelled rows: (log(2) + log(1 + e**-1)) / 2.
>>> print(f'{head.loss(labels, logits, features={}).numpy():.4f}')
0.5032
>>> head.predictions(logits)['class_ids'].numpy().ravel().tolist()
[0, 1, 0]
"""
import collections
import math
import numbers

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import control_flow_util
from tensorflow_estimator.python.estimator.head import (
    multi_head as estimator_multi_head)
from tensorflow_estimator.python.estimator.mode_keys import ModeKeys

from tensorflow_multihead import base_head
from tensorflow_multihead import head_group

# What the wrapped head is given: the labelled rows, cut out of everything.
_Rows = collections.namedtuple('_Rows', ['labels', 'logits', 'features'])


def _describe(head):
  if head.name:
    return f'MaskedHead {head.name!r}'
  return f'MaskedHead of an unnamed {type(head).__name__}'


def _is_number(value):
  return isinstance(value, (numbers.Real, np.number)) and not isinstance(
      value, (bool, np.bool_))


def _is_nan(value):
  return _is_number(value) and math.isnan(value)


def _check_arguments(head, missing_label, mask_key):
  if not isinstance(head, tf.estimator.Head):
    raise TypeError(f'MaskedHead wraps a tf.estimator.Head. Given: {head!r}')
  if isinstance(head, (estimator_multi_head.MultiHead,
                       head_group.GroupedHead)):
    raise TypeError(
        f'{_describe(head)}: wrap each head of a MultiHead in a MaskedHead, '
        'not the MultiHead itself.')
  if missing_label is None and mask_key is None:
    raise ValueError(
        f'{_describe(head)}: give missing_label (the label value of a row '
        'without label), mask_key (the feature telling which rows have one) '
        'or both.')
  if missing_label is not None and not (
      _is_number(missing_label) or isinstance(missing_label, (str, bytes))):
    raise TypeError(
        f'{_describe(head)}: missing_label must be a number, NaN or a '
        f'string. Given: {missing_label!r}')
  if mask_key is not None and not isinstance(mask_key, str):
    raise TypeError(
        f'{_describe(head)}: mask_key must be a feature name (a string). '
        f'Given: {mask_key!r}')


def _refuse_in_xla(who):
  """Raises in an XLA computation (TPU), which needs shapes known ahead."""
  if control_flow_util.GraphOrParentsInXlaContext(
      tf.compat.v1.get_default_graph()):
    raise ValueError(
        f'{who} cannot compute a loss or metrics inside an XLA computation '
        '(TPUEstimator on a TPU, or tf.function(jit_compile=True)): it drops '
        'unlabelled rows, and the number of rows left is known only when the '
        'batch is read, whereas a TPU needs every shape ahead of time. '
        'Predictions work there. Train and evaluate on CPU or GPU; or, on a '
        'TPU, write a valid label and a weight of 0 on unlabelled rows (the '
        'mean is then taken over every row).')


# Shapes: every tensor cut by the row mask must start with the rows' shape,
# the logits' leading dimensions `[D0, ..., DN]`.


def _leading_verdict(shape, logits):
  """Whether `shape` statically starts with the rows': True, False or None.

  None means the static shapes allow it but do not prove it.
  """
  rows = logits.shape[:-1]
  if shape.rank is None or shape.rank < rows.rank:
    return False
  leading = shape[:rows.rank]
  if not leading.is_compatible_with(rows):
    return False
  if leading.is_fully_defined() and rows.is_fully_defined():
    return True
  return None


def _at_run_time(message):
  """`message` for an assertion op, which would print quotes escaped."""
  return message.replace("'", '`')


def _checked(tensor, check):
  with tf.control_dependencies([check]):
    return tf.identity(tensor)


def _require_rows(tensor, logits, message):
  """`tensor`, checked to start with the logits' leading dimensions.

  A mismatch the static shapes prove raises `ValueError` now; one they leave
  open is checked when the graph runs (`InvalidArgumentError`).
  """
  verdict = _leading_verdict(tensor.shape, logits)
  if verdict is False:
    raise ValueError(f'{message} Given shape {tensor.shape}, logits '
                     f'{logits.shape}.')
  if verdict:
    return tensor
  rows_rank = logits.shape.rank - 1
  return _checked(tensor, tf.debugging.assert_equal(
      tf.shape(tensor)[:rows_rank], tf.shape(logits)[:-1],
      message=_at_run_time(message)))


def _cut_feature(value, keep, logits, who, key):
  """A dense per-row feature's labelled rows; anything else, untouched."""
  if isinstance(value, np.ndarray):
    shape = tf.TensorShape(value.shape)
  elif isinstance(value, tf.Tensor) and value.dtype != tf.resource:
    shape = value.shape
  else:
    return value
  if _leading_verdict(shape, logits) is False:
    return value
  value = _require_rows(
      tf.convert_to_tensor(value), logits,
      f'{who}: feature {key!r} looked per row (its static shape allows it) '
      'but its leading dimensions differ from those of the rows; give it a '
      'static shape.')
  return tf.boolean_mask(value, keep)


def _cut_sparse_rows(labels, keep):
  """The rows of a rank-2 `SparseTensor` where `keep` is true, renumbered."""
  entry_kept = tf.gather(keep, labels.indices[:, 0])
  kept = tf.sparse.retain(labels, entry_kept)
  new_row = tf.cumsum(tf.cast(keep, tf.int64)) - 1
  indices = tf.concat(
      [tf.gather(new_row, kept.indices[:, :1]), kept.indices[:, 1:]], axis=1)
  dense_shape = tf.concat(
      [[tf.reduce_sum(tf.cast(keep, tf.int64))], kept.dense_shape[1:]], axis=0)
  return tf.sparse.SparseTensor(indices, kept.values, dense_shape)


class MaskedHead(base_head.Head):
  """A `Head` whose loss and metrics see only the rows that have a label.

  Wraps `head` (a `tf.estimator` head or one of this package) and gives it,
  for its loss, metrics and TRAIN/EVAL specs, only the labelled rows: the
  loss is the wrapped head's mean (or sum) over labelled rows, as PyTorch's
  `ignore_index` does, gradients flow from labelled rows only, and the
  metrics are the wrapped head's on labelled rows. A batch without a labelled
  row gives a loss of 0 (never NaN) and leaves the metrics where they were.
  Predictions and export outputs cover every row, unchanged. Inside a
  `MultiHead` such a batch also leaves `loss/<head>` where it was.

  What is a row, and what is cut:

  * Rows are the positions `[D0, ..., DN]` of the logits' leading
    dimensions; labels are `[D0, ..., DN]` or `[D0, ..., DN, k]`. With
    `k > 1` (multi-hot labels, `label_dimension > 1`) a row is missing only
    when all its `k` entries equal `missing_label`.
  * `SparseTensor` labels (class ids for `MultiLabelHead`): a row is missing
    when it stores at least one value and all its values equal
    `missing_label`; a row storing nothing means "no class", a label.
  * Every dense feature (`Tensor` or NumPy array) whose leading dimensions
    are the rows' is cut the same way: the weight column in any of its
    shapes (`[B]`, `[B, 1]`, `[B, T]`, `[B, T, 1]`, per-logit weights), and
    anything else the wrapped head reads. Features of other shapes, sparse
    and ragged ones pass untouched. Rank-3 rows come out flattened to
    `[labelled rows, ...]`, which the heads treat alike.

  On a TPU (`TPUEstimator` with `use_tpu=True`, or any XLA computation) the
  loss and metrics raise a `ValueError` naming the head while the graph is
  built: the number of labelled rows is known only at run time, and TPUs
  need static shapes. Predictions and export work there; TRAIN and EVAL run
  under `TPUEstimator(use_tpu=False)`, on CPU and GPU.

  >>> import numpy as np
  >>> import tensorflow as tf
  >>> head = MaskedHead(tf.estimator.RegressionHead(name='value'),
  ...                   missing_label=float('nan'), mask_key='scored')
  >>> labels = np.array([[1.], [np.nan], [4.]], np.float32)
  >>> features = {'scored': np.array([True, True, False])}
  >>> logits = np.array([[2.], [0.], [0.]], np.float32)
  >>> float(head.loss(labels, logits, features))  # Only row 0: (2 - 1)**2.
  1.0
  >>> metrics = head.update_metrics(head.metrics(), features, logits, labels)
  >>> float(metrics['label/mean/value'].result())
  1.0

  Args:
    head: The `Head` to wrap. Its `name`, `logits_dimension` and
      `loss_reduction` are this head's.
    missing_label: The label value of a row without label: a number, `NaN`
      (float labels), or a string (string labels with a vocabulary).
    mask_key: The name of a feature, bool or numeric, shaped like the labels
      without their last dimension (or with a last dimension of 1), true or
      non-zero where the row has a label.

  Raises:
    ValueError: Neither `missing_label` nor `mask_key`.
    TypeError: `head` is not a `Head`, or is a `MultiHead`; `missing_label`
      is neither a number nor a string; `mask_key` is not a string.
  """

  def __init__(self, head, missing_label=None, mask_key=None):
    _check_arguments(head, missing_label, mask_key)
    self._head = head
    self._missing_label = missing_label
    self._mask_key = mask_key
    self._who = _describe(head)

  @property
  def head(self):
    """The wrapped head."""
    return self._head

  @property
  def missing_label(self):
    return self._missing_label

  @property
  def mask_key(self):
    return self._mask_key

  @property
  def name(self):
    return self._head.name

  @property
  def logits_dimension(self):
    return self._head.logits_dimension

  @property
  def loss_reduction(self):
    return self._head.loss_reduction

  def __repr__(self):
    return (f'MaskedHead({self._head!r}, missing_label='
            f'{self._missing_label!r}, mask_key={self._mask_key!r})')

  # The Head interface: the wrapped head's, on the labelled rows.

  def loss(self, labels, logits, features=None, mode=None,
           regularization_losses=None):
    """The wrapped head's loss on the labelled rows; 0 if there are none."""
    rows = self._labelled_rows(labels, logits, features)
    return self._head.loss(
        labels=rows.labels, logits=rows.logits, features=rows.features,
        mode=mode, regularization_losses=regularization_losses)

  def predictions(self, logits, keys=None):
    """The wrapped head's predictions for every row.

    `keys` picks among them, also for heads whose `predictions` takes no
    `keys` (the regression heads).
    """
    predictions = self._head.predictions(logits)
    if keys is None:
      return predictions
    base_head.check_prediction_keys(keys, list(predictions))
    return {key: predictions[key] for key in keys}

  def metrics(self, regularization_losses=None):
    return self._head.metrics(regularization_losses=regularization_losses)

  def update_metrics(self, eval_metrics, features, logits, labels,
                     regularization_losses=None, mode=None):
    """Updates the wrapped head's metrics with the labelled rows."""
    del mode  # The tf.estimator heads' metrics take no mode.
    rows = self._labelled_rows(labels, logits, features)
    return self._head.update_metrics(
        eval_metrics, rows.features, rows.logits, rows.labels,
        regularization_losses=regularization_losses)

  def labelled_row_count(self, labels, logits, features=None):
    """The number of labelled rows in the batch, a scalar int32 `Tensor`.

    `MultiHead` reads it to leave `loss/<head>` alone after a batch without
    labelled rows.
    """
    with tf.name_scope('labelled_row_count'):
      labels, logits = self._labels_and_logits(labels, logits)
      return tf.reduce_sum(
          tf.cast(self._keep(labels, logits, features), tf.int32))

  def create_estimator_spec(self, features, mode, logits, labels=None,
                            optimizer=None, trainable_variables=None,
                            train_op_fn=None, update_ops=None,
                            regularization_losses=None):
    """The wrapped head's `create_estimator_spec`, on the labelled rows.

    In TRAIN and EVAL the wrapped head gets the labelled rows only; the
    spec's predictions, and in PREDICT everything, cover every row. See
    `Head.create_estimator_spec` for the arguments.
    """
    return self._spec(
        self._head.create_estimator_spec, features, mode, logits, labels,
        dict(optimizer=optimizer, trainable_variables=trainable_variables,
             train_op_fn=train_op_fn, update_ops=update_ops,
             regularization_losses=regularization_losses))

  def _create_tpu_estimator_spec(self, features, mode, logits, labels=None,
                                 optimizer=None, trainable_variables=None,
                                 train_op_fn=None, update_ops=None,
                                 regularization_losses=None):
    """The wrapped head's `_create_tpu_estimator_spec`; see above."""
    return self._spec(
        self._head._create_tpu_estimator_spec,  # pylint: disable=protected-access
        features, mode, logits, labels,
        dict(optimizer=optimizer, trainable_variables=trainable_variables,
             train_op_fn=train_op_fn, update_ops=update_ops,
             regularization_losses=regularization_losses))

  def _spec(self, build, features, mode, logits, labels, train_args):
    """`build`'s spec, given the labelled rows in TRAIN and EVAL."""
    if mode == ModeKeys.PREDICT:
      return build(features=features, mode=mode, logits=logits,
                   labels=labels, **train_args)
    rows = self._labelled_rows(labels, logits, features)
    spec = build(features=rows.features, mode=mode, logits=rows.logits,
                 labels=rows.labels, **train_args)
    return spec._replace(predictions=self._head.predictions(logits))

  # Finding and cutting the labelled rows.

  def _labelled_rows(self, labels, logits, features):
    """The labels, logits and per-row features of the labelled rows."""
    if labels is None:  # The wrapped head says what is wrong.
      return _Rows(labels, logits, features)
    with tf.name_scope('labelled_rows'):
      labels, logits = self._labels_and_logits(labels, logits)
      keep = self._keep(labels, logits, features)
      if isinstance(labels, tf.sparse.SparseTensor):
        kept_labels = _cut_sparse_rows(labels, keep)
      else:
        kept_labels = tf.boolean_mask(labels, keep)
      kept_features = features if features is None else {
          key: _cut_feature(value, keep, logits, self._who, key)
          for key, value in features.items()}
      return _Rows(kept_labels, tf.boolean_mask(logits, keep), kept_features)

  def _labels_and_logits(self, labels, logits):
    """Labels and logits as tensors, the labels checked to be per row."""
    _refuse_in_xla(self._who)
    if isinstance(labels, dict):
      raise TypeError(f'{self._who}: labels must be a Tensor, not a dict '
                      f'(keys {sorted(labels)}).')
    labels = tf.compat.v1.convert_to_tensor_or_sparse_tensor(labels)
    logits = tf.convert_to_tensor(logits)
    if logits.shape.rank is None or logits.shape.rank < 2:
      raise ValueError(f'{self._who}: logits must have a known rank of 2 or '
                       f'more, [D0, ..., DN, {self.logits_dimension}]. Given '
                       f'shape {logits.shape}.')
    if isinstance(labels, tf.sparse.SparseTensor):
      return self._sparse_labels(labels, logits), logits
    if labels.shape.rank not in (logits.shape.rank - 1, logits.shape.rank):
      raise ValueError(
          f'{self._who}: labels must be [D0, ..., DN] or [D0, ..., DN, k] '
          f'where the logits are [D0, ..., DN, {self.logits_dimension}]. '
          f'Given labels of shape {labels.shape}, logits of shape '
          f'{logits.shape}.')
    return _require_rows(
        labels, logits,
        f'{self._who}: the leading dimensions of the labels must be those '
        'of the logits.'
    ), logits

  def _sparse_labels(self, labels, logits):
    if labels.shape.rank != 2 or logits.shape.rank != 2:
      raise ValueError(
          f'{self._who}: SparseTensor labels must be [batch, k] with logits '
          f'[batch, {self.logits_dimension}]. Given labels of shape '
          f'{labels.shape}, logits of shape {logits.shape}.')
    same_batch = tf.debugging.assert_equal(
        labels.dense_shape[0], tf.shape(logits, out_type=tf.int64)[0],
        message=_at_run_time(
            f'{self._who}: labels and logits have different batch sizes.'))
    return tf.sparse.SparseTensor(_checked(labels.indices, same_batch),
                                  labels.values, labels.dense_shape)

  def _keep(self, labels, logits, features):
    """A bool `[D0, ..., DN]` tensor: true where the row has a label."""
    keeps = []
    if self._missing_label is not None:
      keeps.append(tf.logical_not(self._missing_rows(labels, logits)))
    if self._mask_key is not None:
      keeps.append(self._mask_feature(features, logits))
    return keeps[0] if len(keeps) == 1 else tf.logical_and(*keeps)

  def _missing_rows(self, labels, logits):
    """Where a row's label equals `missing_label`, as bool `[D0, ..., DN]`."""
    if isinstance(labels, tf.sparse.SparseTensor):
      row_of_value = labels.indices[:, 0]
      batch = tf.shape(logits, out_type=tf.int64)[0]
      stored = tf.math.unsorted_segment_sum(
          tf.ones_like(row_of_value), row_of_value, batch)
      missing = tf.math.unsorted_segment_sum(
          tf.cast(self._is_missing(labels.values), tf.int64), row_of_value,
          batch)
      return tf.logical_and(stored > 0, tf.equal(missing, stored))
    missing = self._is_missing(labels)
    if labels.shape.rank == logits.shape.rank:  # A row is [..., k].
      missing = tf.reduce_all(missing, axis=-1)
    return missing

  def _is_missing(self, values):
    """Where `values` equal `missing_label`; TypeError if they cannot."""
    dtype = values.dtype
    missing_label = self._missing_label
    if dtype == tf.string:
      fits = isinstance(missing_label, (str, bytes))
    elif dtype.is_floating:
      fits = _is_number(missing_label)
    elif dtype.is_integer:
      fits = (_is_number(missing_label) and not _is_nan(missing_label) and
              float(missing_label).is_integer() and
              dtype.min <= missing_label <= dtype.max)
    else:
      fits = False
    if not fits:
      raise TypeError(
          f'{self._who}: missing_label {missing_label!r} cannot be held by '
          f'labels of dtype {dtype.name}; give a '
          f'{"string" if dtype == tf.string else dtype.name} value, or mark '
          'the rows with mask_key instead.')
    if _is_nan(missing_label):
      return tf.math.is_nan(values)
    if dtype.is_integer:
      missing_label = int(missing_label)
    return tf.equal(values, tf.constant(missing_label, dtype))

  def _mask_feature(self, features, logits):
    """The `mask_key` feature as bool `[D0, ..., DN]`, checked."""
    key = self._mask_key
    if features is None or key not in features:
      raise ValueError(
          f'{self._who}: mask_key {key!r} is not among the features. Given '
          f'features: {sorted(features or {})}.')
    mask = features[key]
    if isinstance(mask, (tf.sparse.SparseTensor, tf.RaggedTensor)):
      raise TypeError(f'{self._who}: the mask feature {key!r} must be dense.')
    mask = tf.convert_to_tensor(mask)
    if not (mask.dtype == tf.bool or mask.dtype.is_floating or
            mask.dtype.is_integer):
      raise TypeError(
          f'{self._who}: the mask feature {key!r} must be bool or numeric. '
          f'Given dtype {mask.dtype.name}.')
    message = (f'{self._who}: the mask feature {key!r} must be shaped like '
               'the rows, [D0, ..., DN] (the logits without their last '
               'dimension), or [D0, ..., DN, 1].')
    rows_rank = logits.shape.rank - 1
    if mask.shape.rank == rows_rank + 1 and mask.shape[-1] in (1, None):
      mask = tf.squeeze(_checked(mask, tf.debugging.assert_equal(
          tf.shape(mask)[-1], 1, message=_at_run_time(message))), axis=-1)
    elif mask.shape.rank != rows_rank:
      raise ValueError(f'{message} Given shape {mask.shape}, logits '
                       f'{logits.shape}.')
    mask = _require_rows(mask, logits, message)
    return mask if mask.dtype == tf.bool else tf.not_equal(mask, 0)
