"""A fused group's exported heads, each cut from the group by ops of its own.

A fused group computes on `[D0, ..., DN, H, width]` tensors. Splitting one
into the heads' tensors takes one op with H outputs (`tf.unstack`), and
stacking the heads' logits one op with H inputs (`tf.stack` of the pieces
that `tf.split` cut from the logits, itself an op with H outputs): the
fewest ops, which TRAIN and EVAL use. But then every head's tensor depends
on ops as wide as the group, and so does every signature of one head. TF
2's `tf.saved_model.load` copies each signature's graph into a function of
its own: with 1,024 `BinaryClassHead`s, 4,098 signatures of three such ops
each made 12 million tensors, 10 GiB and 150 s.

So for the heads whose own signatures are exported, `stack_from_source`
takes the stacked logits straight from the tensor `tf.split` cut the pieces
from (a reshape, or a gather and a reshape), `HeadCuts` cuts each such
head's tensors off with a gather of its own, and `rows_like` repeats class
names and ids for the head's own rows: its signature then holds a dozen
narrow ops, whatever H is. The values are the same: gathers copy. The other
heads, served only through the merged `predict` signature (which holds
every head anyway), keep the few wide ops.

>>> import tensorflow as tf
>>> with tf.Graph().as_default():
...   logits = tf.compat.v1.placeholder(tf.float32, [None, 5])
...   pieces = tf.split(logits, [1, 2, 1, 1], axis=-1)
...   stacked = stack_from_source([pieces[0], pieces[2], pieces[3]])
...   cuts = HeadCuts(3, apart=[1, 2])(stacked)
>>> stacked.shape.as_list(), cuts[2].shape.as_list()
([None, 3, 1], [None, 1])
>>> [cut.op.type for cut in cuts], stacked.op.type
(['Unpack', 'GatherV2', 'GatherV2'], 'Reshape')
"""
import numpy as np
import tensorflow as tf


def _split_source(pieces):
  """`(tensor, columns)` if `tf.split` cut `pieces` from `tensor`'s last axis.

  `columns` are the indices of the pieces' columns in `tensor`, in order.
  None when the pieces came otherwise (a dict of logits, casts, eagerly).
  """
  if tf.executing_eagerly():
    return None
  op = pieces[0].op
  if op.type != 'SplitV' or any(piece.op is not op for piece in pieces):
    return None
  tensor, sizes, axis = op.inputs
  sizes, axis = tf.get_static_value(sizes), tf.get_static_value(axis)
  rank = tensor.shape.rank
  if sizes is None or axis is None or rank is None or (
      int(axis) % rank != rank - 1) or (np.asarray(sizes) < 0).any():
    return None
  starts = np.concatenate([[0], np.cumsum(sizes)])
  columns = [int(column) for piece in pieces for column in range(
      starts[piece.value_index], starts[piece.value_index + 1])]
  return tensor, columns


def stack_from_source(pieces):
  """`tf.stack(pieces, axis=-2)` for pieces of one width, without a wide op.

  Taken from the tensor `tf.split` cut the pieces from, if it did;
  otherwise the pieces are stacked.
  """
  source = _split_source(pieces)
  if source is None:
    return tf.stack(pieces, axis=-2)
  tensor, columns = source
  width = pieces[0].shape[-1]
  if columns == list(range(tensor.shape[-1] or 0)):
    gathered = tensor  # The group's heads are all the heads, in order.
  else:
    gathered = tf.gather(tensor, tf.constant(columns, tf.int32), axis=-1)
  leading = tensor.shape[1:-1]
  if leading.is_fully_defined():
    shape = [-1] + leading.as_list() + [len(pieces), width]
  else:
    shape = tf.concat([tf.shape(tensor)[:-1], [len(pieces), width]], 0)
  return tf.reshape(gathered, shape)


class HeadCuts:
  """Cuts `[D0, ..., DN, H, ...]` tensors into each head's.

  The heads at the positions `apart` get a gather each (their index a
  constant made once); the others share one `tf.unstack`, made only if
  some head is not apart.

  Args:
    size: H, the number of heads.
    apart: The positions of the heads cut by ops of their own.
  """

  def __init__(self, size, apart=()):
    self._size = size
    self._apart = frozenset(apart)
    if not self._apart:
      return
    with tf.name_scope('head_cuts'):
      self._axis = tf.constant(-2, name='axis')
      self._indices = {index: tf.constant(index, name=f'head_{index}')
                       for index in sorted(self._apart)}

  def apart(self, index):
    """Whether the head at position `index` is cut by ops of its own."""
    return index in self._apart

  def __call__(self, tensor):
    unstacked = (tf.unstack(tensor, axis=-2)
                 if len(self._apart) < self._size else None)
    return [tf.gather(tensor, self._indices[index], axis=self._axis)
            if index in self._apart else unstacked[index]
            for index in range(self._size)]

  def pieces(self, stacked, pieces):
    """Each head's logits: cut from `stacked` if apart, else its piece."""
    return [tf.gather(stacked, self._indices[index], axis=self._axis)
            if index in self._apart else piece
            for index, piece in enumerate(pieces)]


class _Unstack:
  """`HeadCuts` with no head apart, whatever the size: TRAIN and EVAL."""

  def apart(self, index):
    del index  # No head is.
    return False

  def __call__(self, tensor):
    return tf.unstack(tensor, axis=-2)

  def pieces(self, stacked, pieces):
    del stacked  # Every head keeps its piece.
    return pieces


UNSTACK = _Unstack()


def rows_like(table, like):
  """The row `table` (`[1, n]`) once for each of `like`'s `D0` rows.

  As `base_head.all_classes` and `all_class_ids` tile it; for a `[D0, n]`
  tensor `like`, in two ops whose only input is `like` (a head's scores, so
  that its signature needs nothing else).

  >>> rows_like(tf.constant([[b'no', b'yes']]), tf.zeros([2, 2])).numpy()
  array([[b'no', b'yes'],
         [b'no', b'yes']], dtype=object)
  """
  if like.shape.rank == 2 and like.shape[-1] == table.shape[-1]:
    return tf.broadcast_to(table, tf.shape(like))
  return tf.tile(table, [tf.shape(like)[0], 1])
