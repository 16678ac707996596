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
import tensorflow as tf
from tensorflow_estimator.python.estimator.head import (
    multi_head as estimator_multi_head)
from tensorflow_estimator.python.estimator.mode_keys import ModeKeys

from tensorflow_multihead import base_head
from tensorflow_multihead import head_group
from tensorflow_multihead import labelled_rows


def _describe(head):
  if head.name:
    return f'MaskedHead {head.name!r}'
  return f'MaskedHead of an unnamed {type(head).__name__}'


def _check_head(head):
  if not isinstance(head, tf.estimator.Head):
    raise TypeError(f'MaskedHead wraps a tf.estimator.Head. Given: {head!r}')
  if isinstance(head, (estimator_multi_head.MultiHead,
                       head_group.GroupedHead)):
    raise TypeError(
        f'{_describe(head)}: wrap each head of a MultiHead in a MaskedHead, '
        'not the MultiHead itself.')


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
    _check_head(head)
    self._head = head
    self._marks = labelled_rows.RowMarks(_describe(head), missing_label,
                                         mask_key)

  @property
  def head(self):
    """The wrapped head."""
    return self._head

  @property
  def row_marks(self):
    """How unlabelled rows are marked: a `labelled_rows.RowMarks`."""
    return self._marks

  @property
  def missing_label(self):
    return self._marks.missing_label

  @property
  def mask_key(self):
    return self._marks.mask_key

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
            f'{self.missing_label!r}, mask_key={self.mask_key!r})')

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
    return self._marks.count(labels, logits, features)

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

  def _labelled_rows(self, labels, logits, features):
    if labels is None:  # Nothing to cut: the wrapped head says what is wrong.
      return labelled_rows.Rows(labels, logits, features)
    return self._marks.cut(labels, logits, features)
