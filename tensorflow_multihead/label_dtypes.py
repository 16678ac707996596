"""Labels of a dtype their head cannot take, refused while the graph is built.

The `tf.estimator` classification heads take class ids (integers) without a
`label_vocabulary` and class names (strings) with one. Given the other,
most fail late or in words that do not say what to change:
`BinaryClassHead` without a vocabulary casts strings to float when the
graph runs (`Cast string to float is not supported`), with one it looks
integers up in its string table (`Dtype of argument keys must be
string`); `MultiLabelHead` without one fails on `None` (`'NoneType'
object is not iterable`); the regression heads cast strings to float when
the graph runs. `MultiHead` checks the labels' dtype before it hands them
to such a head (fused or not), and refuses them saying what to give or to
set. A `MultiLabelHead` takes integers with or without a vocabulary, as
the reference does: dense labels are a multi-hot indicator, and sparse
integers are class ids.

The exception is the reference's where it raises while building
(`MultiClassHead`'s `ValueError`, whose message ours starts with;
`TypeError` for a `BinaryClassHead` with a vocabulary and for a
`MultiLabelHead`), else `ValueError`. Only the heads of exactly these
classes are checked: a subclass may process its labels its own way.

>>> import tensorflow as tf
>>> check(tf.estimator.BinaryClassHead(name='click'),
...       tf.constant([['yes'], ['no']]))
Traceback (most recent call last):
...
ValueError: The BinaryClassHead got string labels but has no \
label_vocabulary: give it label_vocabulary=[...] (the names of its classes \
0 and 1, in that order), or give class ids 0 and 1 (integers, or \
probabilities) as labels.
>>> check(tf.estimator.BinaryClassHead(name='click'), tf.constant([[1], [0]]))
"""
import numpy as np
import tensorflow as tf

from tensorflow_multihead import masked_head

_BINARY = tf.estimator.BinaryClassHead
_MULTI_CLASS = tf.estimator.MultiClassHead
_MULTI_LABEL = tf.estimator.MultiLabelHead
_REGRESSIONS = (tf.estimator.RegressionHead,
                tf.estimator.PoissonRegressionHead,
                tf.estimator.LogisticRegressionHead)
# How many words of a label vocabulary a message lists.
_WORDS_SHOWN = 5


def _dtype(labels):
  """The labels' dtype (a `SparseTensor`'s values'), or None if unknown.

  As the head will see it: a NumPy array keeps its dtype, Python numbers
  become int32 or float32 tensors.
  """
  if isinstance(labels, (tf.Tensor, tf.sparse.SparseTensor, tf.Variable)):
    return labels.dtype
  try:
    array = np.asarray(labels)
  except (TypeError, ValueError):
    return None
  kind = array.dtype.kind
  if kind in 'SU':
    return tf.string
  if kind not in 'iufb':
    return None  # Objects or anything else: the head decides.
  if isinstance(labels, np.ndarray):
    return tf.as_dtype(array.dtype)
  return {'i': tf.int32, 'u': tf.int32, 'f': tf.float32, 'b': tf.bool}[kind]


def _vocabulary_text(vocabulary):
  words = list(vocabulary)
  shown = ', '.join(repr(word) for word in words[:_WORDS_SHOWN])
  more = '' if len(words) <= _WORDS_SHOWN else f', ... ({len(words)} words)'
  return f'[{shown}{more}]'


def _classes_text(head):
  if type(head) is _BINARY:  # pylint: disable=unidiomatic-typecheck
    return 'class ids 0 and 1 (integers, or probabilities)'
  return f'integer class ids in [0, {head.logits_dimension})'


def _refusal(head, labels):
  """`(exception type, message)` refusing `labels` for `head`, or None."""
  kind = type(head)
  dtype = _dtype(labels)
  if dtype is None:
    return None
  is_string = dtype == tf.string
  if kind in _REGRESSIONS:
    if is_string:
      return ValueError, (
          f'The {kind.__name__} got string labels, but takes numbers: parse '
          'them in the input function (e.g. tf.strings.to_number).')
    return None
  if kind not in (_BINARY, _MULTI_CLASS, _MULTI_LABEL):
    return None
  vocabulary = head._label_vocabulary  # pylint: disable=protected-access
  sparse = isinstance(labels, tf.sparse.SparseTensor)
  if kind is _MULTI_LABEL:
    return _multi_label_refusal(head, is_string, sparse, vocabulary)
  if sparse:
    return None  # The head refuses sparse labels, whatever their dtype.
  if vocabulary is None and is_string:
    if kind is _MULTI_CLASS:
      return ValueError, (
          f'Labels dtype should be integer. Instead got {dtype}. The '
          'MultiClassHead got string labels but has no label_vocabulary: '
          'give it label_vocabulary=[...] (the names of its '
          f'{head.logits_dimension} classes, in class id order), or give '
          f'{_classes_text(head)} as labels.')
    return ValueError, (
        'The BinaryClassHead got string labels but has no label_vocabulary: '
        'give it label_vocabulary=[...] (the names of its classes 0 and 1, '
        f'in that order), or give {_classes_text(head)} as labels.')
  if vocabulary is not None and not is_string:
    text = (f'its label_vocabulary is {_vocabulary_text(vocabulary)}, so '
            'its labels must be class names from it (strings); give those, '
            f'or give {_classes_text(head)} to a head without '
            'label_vocabulary.')
    if kind is _MULTI_CLASS:
      return ValueError, (
          'Labels dtype should be string if there is a vocabulary. Instead '
          f'got {dtype}: the MultiClassHead got {dtype.name} labels, but '
          f'{text}')
    return TypeError, (
        f'The BinaryClassHead got {dtype.name} labels, but {text}')
  return None


def _multi_label_refusal(head, is_string, sparse, vocabulary):
  if not is_string:
    return None
  if not sparse:
    return TypeError, (
        'The MultiLabelHead got dense string labels: dense labels are a '
        'multi-hot indicator [D0, ..., DN, n_classes] of 0s and 1s. Give '
        'class names as a SparseTensor (one row of names per example) to a '
        'head with label_vocabulary=[...], or class ids as a SparseTensor '
        'of integers, or the indicator.')
  if vocabulary is None:
    return TypeError, (
        'The MultiLabelHead got string labels but has no label_vocabulary: '
        'give it label_vocabulary=[...] (the names of its '
        f'{head.logits_dimension} classes, in class id order), or give '
        f'{_classes_text(head)} as labels.')
  return None


def check(head, labels):
  """Raises if `head` cannot take labels of `labels`' dtype.

  A `MaskedHead` is checked as the head it wraps. Heads of other classes,
  and labels of a dtype not known while building, pass.

  Raises:
    ValueError, TypeError: See the module's docstring. The message does
      not name the head: it is raised inside the caller's
      `head_group.ErrorsNamingHead`.
  """
  if labels is None:
    return
  if type(head) is masked_head.MaskedHead:  # pylint: disable=unidiomatic-typecheck
    head = head.head
  refusal = _refusal(head, labels)
  if refusal is not None:
    error_type, message = refusal
    raise error_type(message)
