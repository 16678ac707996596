"""`MaskedHead`s in a fused group: their unlabelled rows weigh 0.

Computed on its own, a `MaskedHead` cuts its labelled rows out of the batch
and hands them to the head it wraps. In a fused group (see `fusion`) every
head is given the whole batch instead, and a masked head's unlabelled rows
stay where they are with a weight of 0, which gives the same numbers:

* its labels there become a valid label (0, `False`, the first word of
  its vocabulary; a sparse row loses its values) and its logits 0, before
  anything reads them, so that no sentinel, NaN or out-of-range value
  reaches a label check, a vocabulary lookup, the loss or a gradient;
* its weights there become 0 (NaN weights too), so that every sum the loss
  and the metrics take adds exactly 0 for the row: each metric of the
  fusable heads is a weighted mean or a weighted count (at thresholds, for
  precision, recall and the AUCs), where a zero weight and a dropped row
  are the same;
* with `SUM_OVER_BATCH_SIZE` its loss is divided by the loss entries of its
  labelled rows, not of the whole batch: 0 when there are none;
* its `loss/<head>` mean skips a batch without a labelled row.

Only a `MaskedHead` itself (not a subclass) over a fusable head joins a
group; any other `MaskedHead` keeps its own path.

>>> import tensorflow as tf
>>> from tensorflow_multihead import MaskedHead
>>> head = MaskedHead(tf.estimator.BinaryClassHead(name='c'), missing_label=-1)
>>> inner, marks = unwrapped(head)
>>> type(inner).__name__, marks.missing_label
('BinaryClassHead', -1)
>>> labels, keep = labelled(inner, marks, [[1], [-1]], tf.zeros([2, 1]), {})
>>> labels.numpy().ravel().tolist(), keep.numpy().tolist()
([1, 0], [True, False])
"""
import tensorflow as tf

from tensorflow_multihead import masked_head


def unwrapped(head):
  """`(the head to compute, its RowMarks)`; the marks are None if unmasked."""
  if type(head) is masked_head.MaskedHead:  # pylint: disable=unidiomatic-typecheck
    return head.head, head.row_marks
  return head, None


def _valid_label(head, dtype):
  """A label every head of `head`'s kind accepts, of `dtype`."""
  if dtype == tf.string:
    vocabulary = getattr(head, '_label_vocabulary', None)
    return tf.constant(vocabulary[0] if vocabulary else '')
  return tf.zeros([], dtype)


def labelled(head, marks, labels, logits, features):
  """One masked head's labels, made valid on its unlabelled rows.

  Args:
    head: The wrapped head.
    marks: Its `labelled_rows.RowMarks`.
    labels, logits, features: The head's inputs for the whole batch.

  Returns:
    `(labels, keep)`: the labels (dense or sparse) with a valid label on
    every unlabelled row, and `keep`, bool `[D0, ..., DN]`, true where the
    row has a label.
  """
  labels, logits, keep = marks.find(labels, logits, features)
  if isinstance(labels, tf.sparse.SparseTensor):
    return tf.sparse.retain(labels, tf.gather(keep, labels.indices[:, 0])), keep
  if labels.shape.rank == logits.shape.rank:
    per_entry = keep[..., tf.newaxis]
  else:
    per_entry = keep
  return tf.where(per_entry, labels, _valid_label(head, labels.dtype)), keep


class KeptRows:
  """Which rows each head of a group learns from, in one batch.

  Args:
    keeps: Per head, its bool `[D0, ..., DN]` rows with a label, or None for
      an unmasked head (every row).
    pieces: Per head, its logits `[D0, ..., DN, width]`.
  """

  def __init__(self, keeps, pieces):
    self._masked = tf.constant([keep is not None for keep in keeps])
    rows = tf.shape(pieces[0])[:-1]
    self.keep = tf.stack(
        [keep if keep is not None else tf.fill(rows, True) for keep in keeps],
        axis=-1)[..., tf.newaxis]  # [D0, ..., DN, H, 1]
    kept = tf.cast(self.keep, tf.float32)
    self._rows_kept = tf.math.reduce_sum(
        kept, axis=list(range(kept.shape.rank - 2)) + [-1])  # [H]

  def logits(self, stacked):
    """The stacked logits, 0 on unlabelled rows (the gradient there is 0)."""
    return tf.where(self.keep, stacked, 0.)

  def weights(self, weights):
    """The stacked weights (None: 1 each), 0 on unlabelled rows."""
    return tf.where(self.keep, 1. if weights is None else weights, 0.)

  def entries(self, weighted):
    """Each head's loss entries `[H]` on labelled rows, for the mean."""
    width = tf.cast(tf.shape(weighted)[-1], tf.float32)
    return self._rows_kept * width

  def loss_weights(self):
    """`[1, H]`: 0 for a masked head without a labelled row, else 1."""
    counts = tf.math.logical_or(tf.math.logical_not(self._masked),
                                self._rows_kept > 0.)
    return tf.cast(counts, tf.float32)[tf.newaxis, :]
