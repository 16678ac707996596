"""Labels of a dtype their head cannot take are refused while building.

String labels for a classification head without `label_vocabulary`,
integer labels for a `BinaryClassHead` or `MultiClassHead` with one, dense
strings for a `MultiLabelHead` and strings for a regression head: ours
raises while `create_estimator_spec` builds the graph (labels are
placeholders, their values unknown), fused or per head, and in eager
`loss()`; the message names the head and says what to give or to set. Side
by side, `tf.estimator.MultiHead` fails only when the graph runs, or while
building in words that do not say what to change; where it raises while
building, ours raises the same type.
"""
import dataclasses
import typing

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_estimator.python.estimator.head import (
    base_head as estimator_base_head)

import tensorflow_multihead as tmh

EVAL = tf.estimator.ModeKeys.EVAL
CULPRIT = 'conversion'
_SIDES = {
    'fused': lambda heads: tmh.MultiHead(heads),
    'per_head': lambda heads: tmh.MultiHead(heads, fuse_heads=False),
    'reference': tf.estimator.MultiHead,
}
_VOCABULARY = ['no', 'yes']
_WORDS = ['ant', 'bee', 'cat']


@dataclasses.dataclass(frozen=True)
class Case:
  """Two heads of one kind (so they fuse), the second given bad labels.

  `error` is the type ours raises, `advice` texts its message holds;
  `reference` what `tf.estimator.MultiHead` does: `'run'` if it fails only
  when run, else the type it raises while building.
  """
  heads: typing.Callable[[], list]
  labels: dict
  error: type
  advice: tuple
  reference: typing.Union[str, type]


def _pair(make):
  return lambda: [make('click'), make(CULPRIT)]


def _sparse(values):
  values = np.array(values)
  return tf.compat.v1.SparseTensorValue(
      np.array([[row, 0] for row in range(len(values))], np.int64), values,
      np.array([len(values), 1], np.int64))


CASES = {
    'binary_strings_without_vocabulary': Case(
        _pair(lambda name: tf.estimator.BinaryClassHead(name=name)),
        {'click': np.array([[1], [0]]),
         CULPRIT: np.array([[b'yes'], [b'no']])},
        ValueError, ('label_vocabulary=[...]', 'class ids 0 and 1'), 'run'),
    'binary_integers_with_vocabulary': Case(
        _pair(lambda name: tf.estimator.BinaryClassHead(
            name=name, label_vocabulary=_VOCABULARY)),
        {'click': np.array([[b'yes'], [b'no']]),
         CULPRIT: np.array([[1], [0]])},
        TypeError, ("label_vocabulary is ['no', 'yes']",
                    'must be class names from it (strings)',
                    'class ids 0 and 1', 'without label_vocabulary'),
        TypeError),
    'multi_class_strings_without_vocabulary': Case(
        _pair(lambda name: tf.estimator.MultiClassHead(3, name=name)),
        {'click': np.array([[2], [0]]),
         CULPRIT: np.array([[b'bee'], [b'ant']])},
        ValueError, ('label_vocabulary=[...]', 'names of its 3 classes',
                     'integer class ids in [0, 3)'), ValueError),
    'multi_class_integers_with_vocabulary': Case(
        _pair(lambda name: tf.estimator.MultiClassHead(
            3, name=name, label_vocabulary=_WORDS)),
        {'click': np.array([[b'bee'], [b'ant']]),
         CULPRIT: np.array([[1], [0]])},
        ValueError, ("label_vocabulary is ['ant', 'bee', 'cat']",
                     'integer class ids in [0, 3)'), ValueError),
    'multi_label_strings_without_vocabulary': Case(
        _pair(lambda name: tf.estimator.MultiLabelHead(3, name=name)),
        {'click': _sparse([0, 2]), CULPRIT: _sparse([b'ant', b'cat'])},
        TypeError, ('label_vocabulary=[...]', 'integer class ids in [0, 3)'),
        TypeError),
    'multi_label_dense_strings': Case(
        _pair(lambda name: tf.estimator.MultiLabelHead(
            3, name=name, label_vocabulary=_WORDS)),
        {'click': np.array([[0, 1, 1], [1, 0, 0]]),
         CULPRIT: np.array([[b'ant', b'bee', b'cat']] * 2)},
        TypeError, ('multi-hot indicator', 'as a SparseTensor'), TypeError),
    'regression_strings': Case(
        _pair(lambda name: tf.estimator.RegressionHead(name=name)),
        {'click': np.array([[1.], [2.]], np.float32),
         CULPRIT: np.array([[b'1.5'], [b'2']])},
        ValueError, ('takes numbers', 'tf.strings.to_number'), 'run'),
}


def _placeholder(value, feeds):
  if isinstance(value, tf.compat.v1.SparseTensorValue):
    tensor = tf.compat.v1.sparse_placeholder(tf.as_dtype(value.values.dtype),
                                             shape=[None, None])
  else:
    tensor = tf.compat.v1.placeholder(tf.as_dtype(value.dtype),
                                      [None] + list(value.shape[1:]))
  feeds[tensor] = value
  return tensor


def _build_and_run(side, case):
  """Builds `side`'s EVAL spec and runs its loss: `(stage, error)`.

  `stage` is `'build'` or `'run'`, where the error came; `(None, None)`
  if none did.
  """
  with tf.Graph().as_default():
    feeds = {}
    heads = case.heads()
    width = sum(head.logits_dimension for head in heads)
    logits = _placeholder(np.zeros([2, width], np.float32), feeds)
    labels = {name: _placeholder(value, feeds)
              for name, value in case.labels.items()}
    try:
      spec = _SIDES[side](heads).create_estimator_spec(
          features={}, mode=EVAL, logits=logits, labels=labels)
    except Exception as error:  # pylint: disable=broad-except
      return 'build', error
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.tables_initializer())
      try:
        session.run(spec.loss, feeds)
      except tf.errors.OpError as error:
        return 'run', error
  return None, None


@pytest.mark.parametrize('side', ['fused', 'per_head'])
@pytest.mark.parametrize('name', sorted(CASES))
def test_refused_while_building_naming_the_head_and_what_to_do(name, side):
  case = CASES[name]
  stage, error = _build_and_run(side, case)
  assert stage == 'build', (stage, error)
  assert type(error) is case.error, error
  assert str(error).startswith(f"Head '{CULPRIT}': "), error
  for text in case.advice:
    assert text in str(error), (text, str(error))


@pytest.mark.parametrize('name', sorted(CASES))
def test_reference_fails_late_or_without_saying_what_to_do(name):
  case = CASES[name]
  stage, error = _build_and_run('reference', case)
  if case.reference == 'run':
    assert stage == 'run'
    assert type(error) is tf.errors.UnimplementedError
    assert 'Cast string to float is not supported' in error.message
  else:
    assert stage == 'build'
    assert type(error) is case.reference  # Ours raises this type too.
    assert 'label_vocabulary' not in str(error)
    assert CULPRIT not in str(error)


@pytest.mark.parametrize('fuse_heads', [True, False])
def test_eager_loss_refuses_strings_without_a_vocabulary(fuse_heads):
  case = CASES['binary_strings_without_vocabulary']
  multi_head = tmh.MultiHead(case.heads(), fuse_heads=fuse_heads)
  with pytest.raises(ValueError, match=f"^Head '{CULPRIT}': The "
                     'BinaryClassHead got string labels'):
    multi_head.loss(case.labels, tf.zeros([2, 2]))


def test_reference_eager_loss_fails_casting_strings_to_float():
  case = CASES['binary_strings_without_vocabulary']
  with pytest.raises(tf.errors.UnimplementedError,
                     match='Cast string to float is not supported'):
    tf.estimator.MultiHead(case.heads()).loss(case.labels, tf.zeros([2, 2]),
                                              features={})


@pytest.mark.parametrize('fuse_heads', [True, False])
def test_a_masked_head_is_checked_as_the_head_it_wraps(fuse_heads):
  heads = [tf.estimator.BinaryClassHead(name='click'),
           tmh.MaskedHead(tf.estimator.BinaryClassHead(name=CULPRIT),
                          missing_label='')]
  labels = {'click': np.array([[1], [0]]),
            CULPRIT: np.array([[b'yes'], [b'']])}
  with pytest.raises(ValueError, match=f"^Head '{CULPRIT}': The "
                     'BinaryClassHead got string labels but has no '
                     'label_vocabulary'):
    tmh.MultiHead(heads, fuse_heads=fuse_heads).loss(labels, tf.zeros([2, 2]))


@pytest.mark.parametrize('side', ['fused', 'per_head', 'reference'])
def test_predict_ignores_the_labels_whatever_their_dtype(side):
  case = CASES['binary_strings_without_vocabulary']
  with tf.Graph().as_default():
    labels = {name: tf.constant(value) for name, value in case.labels.items()}
    spec = _SIDES[side](case.heads()).create_estimator_spec(
        features={}, mode=tf.estimator.ModeKeys.PREDICT,
        logits=tf.zeros([2, 2]), labels=labels)
  assert spec.loss is None
  assert ('click', 'probabilities') in spec.predictions


# What the heads take stays taken, as in the reference.

_ACCEPTED = {
    'binary_probabilities': (
        _pair(lambda name: tf.estimator.BinaryClassHead(name=name)),
        {'click': np.array([[1.], [0.]], np.float32),
         CULPRIT: np.array([[.25], [.75]], np.float32)}),
    'binary_booleans': (
        _pair(lambda name: tf.estimator.BinaryClassHead(name=name)),
        {'click': np.array([[True], [False]]),
         CULPRIT: np.array([[False], [True]])}),
    'multi_label_integer_ids_with_vocabulary': (
        _pair(lambda name: tf.estimator.MultiLabelHead(
            3, name=name, label_vocabulary=_WORDS)),
        {'click': _sparse([0, 2]), CULPRIT: _sparse([1, 1])}),
    'multi_label_indicator_with_vocabulary': (
        _pair(lambda name: tf.estimator.MultiLabelHead(
            3, name=name, label_vocabulary=_WORDS)),
        {'click': np.array([[0, 1, 1], [1, 0, 0]]),
         CULPRIT: np.array([[1, 1, 0], [0, 0, 1]])}),
}


def _eager(value):
  if isinstance(value, tf.compat.v1.SparseTensorValue):
    return tf.sparse.SparseTensor(value.indices, value.values,
                                  value.dense_shape)
  return value


@pytest.mark.parametrize('name', sorted(_ACCEPTED))
def test_labels_the_heads_take_give_the_references_loss(name):
  make_heads, labels = _ACCEPTED[name]
  labels = {key: _eager(value) for key, value in labels.items()}
  width = sum(head.logits_dimension for head in make_heads())
  logits = tf.constant(np.linspace(-1., 1., 2 * width, dtype=np.float32)
                       .reshape([2, width]))
  expected = tf.estimator.MultiHead(make_heads()).loss(labels, logits,
                                                        features={})
  for fuse_heads in (True, False):
    ours = tmh.MultiHead(make_heads(), fuse_heads=fuse_heads).loss(labels,
                                                                   logits)
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=1e-6)


# The helper that checks class ids, which the fused groups use.


def test_check_label_range_refuses_strings_saying_ids_come_from_a_vocabulary():
  with pytest.raises(TypeError, match=r"dtype string\. Labels that name "
                     r"classes are turned into ids by the head's "
                     'label_vocabulary first'):
    tmh.base_head.check_label_range(tf.constant([['yes']]), 2)


def test_reference_check_label_range_refuses_strings_with_a_type_error():
  with pytest.raises(TypeError, match='Cannot convert 1 to EagerTensor of '
                     'dtype string'):
    estimator_base_head.check_label_range(tf.constant([['yes']]), 2)
