"""Which rows of a batch have a label, and the batch cut down to them.

`RowMarks` knows how a head's unlabelled rows are marked: by a label value
(`missing_label`), by a feature (`mask_key`), or both. Given a batch, it
finds the labelled rows and cuts them, with `tf.boolean_mask`, out of the
labels, the logits and every dense feature shaped per row. `MaskedHead`
hands what is left to the head it wraps.

A row is a position `[D0, ..., DN]` of the logits' leading dimensions;
labels are `[D0, ..., DN]` or `[D0, ..., DN, k]`, and with `k > 1` a row is
unlabelled only when all its `k` entries equal `missing_label`.

>>> import tensorflow as tf
>>> marks = RowMarks("the example's head", missing_label=-1)
>>> rows = marks.cut(labels=[[1], [-1], [0]], logits=tf.zeros([3, 2]),
...                  features={'w': tf.constant([1., 2., 3.]), 'n': 7})
>>> rows.labels.numpy().tolist(), rows.logits.shape.as_list()
([[1], [0]], [2, 2])
>>> rows.features['w'].numpy().tolist(), rows.features['n']
([1.0, 3.0], 7)
"""
import collections
import math
import numbers

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import control_flow_util

# What is left of a batch: its labelled rows, cut out of everything.
Rows = collections.namedtuple('Rows', ['labels', 'logits', 'features'])


def _is_number(value):
  return isinstance(value, (numbers.Real, np.number)) and not isinstance(
      value, (bool, np.bool_))


def _is_nan(value):
  return _is_number(value) and math.isnan(value)


def _check_marks(who, missing_label, mask_key):
  if missing_label is None and mask_key is None:
    raise ValueError(
        f'{who}: give missing_label (the label value of a row without '
        'label), mask_key (the feature telling which rows have one) or both.')
  if missing_label is not None and not (
      _is_number(missing_label) or isinstance(missing_label, (str, bytes))):
    raise TypeError(
        f'{who}: missing_label must be a number, NaN or a string. Given: '
        f'{missing_label!r}')
  if mask_key is not None and not isinstance(mask_key, str):
    raise TypeError(
        f'{who}: mask_key must be a feature name (a string). Given: '
        f'{mask_key!r}')


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


class RowMarks:
  """How a head's unlabelled rows are marked, and finding them in a batch.

  Args:
    who: The head, as error messages name it, e.g. "MaskedHead 'click'".
    missing_label: The label value of a row without label: a number, NaN or
      a string.
    mask_key: The name of a bool or numeric feature, `[D0, ..., DN]` or
      `[D0, ..., DN, 1]`, true or non-zero where the row has a label.

  Raises:
    ValueError: Neither `missing_label` nor `mask_key`.
    TypeError: `missing_label` neither a number nor a string, `mask_key` not
      a string.
  """

  def __init__(self, who, missing_label=None, mask_key=None):
    _check_marks(who, missing_label, mask_key)
    self._who = who
    self.missing_label = missing_label
    self.mask_key = mask_key

  def cut(self, labels, logits, features):
    """Returns the labelled rows' `Rows`: labels, logits, per-row features.

    Features that are not dense tensors or arrays shaped per row come back
    as they were given; `features` may be None.
    """
    with tf.name_scope('labelled_rows'):
      labels, logits, keep = self.find(labels, logits, features)
      if isinstance(labels, tf.sparse.SparseTensor):
        kept_labels = _cut_sparse_rows(labels, keep)
      else:
        kept_labels = tf.boolean_mask(labels, keep)
      kept_features = features if features is None else {
          key: _cut_feature(value, keep, logits, self._who, key)
          for key, value in features.items()}
      return Rows(kept_labels, tf.boolean_mask(logits, keep), kept_features)

  def count(self, labels, logits, features):
    """The number of labelled rows, a scalar int32 `Tensor`."""
    with tf.name_scope('labelled_row_count'):
      _, _, keep = self.find(labels, logits, features)
      return tf.reduce_sum(tf.cast(keep, tf.int32))

  def find(self, labels, logits, features):
    """Returns `(labels, logits, keep)`, without cutting anything.

    `labels` and `logits` come back as tensors (labels dense or sparse),
    checked as `cut` checks them; `keep` is a bool `[D0, ..., DN]` tensor,
    true where the row has a label.
    """
    labels, logits = self._labels_and_logits(labels, logits)
    return labels, logits, self._keep(labels, logits, features)

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
                       'more, [D0, ..., DN, logits_dimension]. Given '
                       f'shape {logits.shape}.')
    if isinstance(labels, tf.sparse.SparseTensor):
      return self._sparse_labels(labels, logits), logits
    if labels.shape.rank not in (logits.shape.rank - 1, logits.shape.rank):
      raise ValueError(
          f'{self._who}: labels must be [D0, ..., DN] or [D0, ..., DN, k] '
          'where the logits are [D0, ..., DN, logits_dimension]. '
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
          '[batch, logits_dimension]. Given labels of shape '
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
    if self.missing_label is not None:
      keeps.append(tf.logical_not(self._missing_rows(labels, logits)))
    if self.mask_key is not None:
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
    missing_label = self.missing_label
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
    key = self.mask_key
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
