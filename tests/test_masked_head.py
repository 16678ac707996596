"""`MaskedHead`, rule by rule (issue 8, items 1, 2 and 4).

Each test states one rule of what a row is, what is cut, what a batch
without labels does, or which bad input raises what, and checks it against
a formula or the bare `tf.estimator` head. `test_masked_head_differential.py`
runs the same comparison over every head type and option.
"""
import math

import numpy as np
import pytest
import tensorflow as tf

import tensorflow_multihead as tmh
from tensorflow_multihead import masked_head

EVAL = tf.estimator.ModeKeys.EVAL
PREDICT = tf.estimator.ModeKeys.PREDICT
NAN = float('nan')


def _bce(labels, logits):
  """Sigmoid cross-entropy per row, by its formula."""
  labels, logits = np.asarray(labels, np.float64), np.asarray(logits)
  return np.maximum(logits, 0) - logits * labels + np.log1p(
      np.exp(-np.abs(logits)))


def _clicks_head(**kwargs):
  return tmh.MaskedHead(tf.estimator.BinaryClassHead(name='conversion'),
                        **kwargs)


LOGITS = np.array([[0.5], [-1.], [2.], [0.], [-3.], [1.]], np.float32)
LABELS = np.array([[1], [-1], [0], [-1], [0], [1]])
LABELLED = LABELS[:, 0] != -1


# The head itself.


def test_masked_head_is_a_head_with_the_wrapped_heads_properties():
  wrapped = tf.estimator.MultiClassHead(
      4, name='topic', loss_reduction=tf.losses.Reduction.SUM)
  head = tmh.MaskedHead(wrapped, mask_key='has_topic')
  assert isinstance(head, tf.estimator.Head)
  assert isinstance(head, tmh.Head)
  assert (head.name, head.logits_dimension, head.loss_reduction) == (
      'topic', 4, tf.losses.Reduction.SUM)
  assert head.head is wrapped
  assert (head.missing_label, head.mask_key) == (None, 'has_topic')
  assert tmh.MaskedHead is masked_head.MaskedHead
  assert 'MaskedHead' in tmh.__all__


def test_repr_shows_the_wrapped_head_and_the_marks():
  head = _clicks_head(missing_label=-1)
  assert repr(head).startswith('MaskedHead(<tensorflow_estimator')
  assert repr(head).endswith('missing_label=-1, mask_key=None)')


# The loss: the wrapped head's on the labelled rows.


def test_loss_is_the_mean_over_labelled_rows_only():
  loss = _clicks_head(missing_label=-1).loss(LABELS, LOGITS, {})
  expected = _bce(LABELS[LABELLED], LOGITS[LABELLED]).mean()
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  # Not the sum divided by every row, as a zero weight would give.
  assert not np.isclose(
      loss, _bce(LABELS[LABELLED], LOGITS[LABELLED]).sum() / len(LABELS))


def test_sum_reduction_sums_the_labelled_rows():
  head = tmh.MaskedHead(
      tf.estimator.BinaryClassHead(loss_reduction=tf.losses.Reduction.SUM),
      missing_label=-1)
  np.testing.assert_allclose(
      head.loss(LABELS, LOGITS, {}),
      _bce(LABELS[LABELLED], LOGITS[LABELLED]).sum(), rtol=1e-6)


def test_weights_of_labelled_rows_weight_the_mean_over_labelled_rows():
  head = tmh.MaskedHead(tf.estimator.RegressionHead(weight_column='w'),
                        missing_label=NAN)
  labels = np.array([[1.], [NAN], [3.], [0.]], np.float32)
  logits = np.array([[2.], [5.], [1.], [0.]], np.float32)
  weights = np.array([2., NAN, 0.5, 1.], np.float32)
  # SUM_OVER_BATCH_SIZE divides the weighted sum by the labelled rows, 3.
  expected = (2. * 1. + 0.5 * 4. + 1. * 0.) / 3.
  np.testing.assert_allclose(head.loss(labels, logits, {'w': weights}),
                             expected, rtol=1e-6)


def test_rank_3_logits_mask_each_time_step():
  head = tmh.MaskedHead(tf.estimator.BinaryClassHead(), missing_label=-1)
  logits = np.array([[[1.], [2.], [0.]], [[-1.], [0.5], [3.]]], np.float32)
  labels = np.array([[1, -1, 0], [-1, -1, 1]])
  steps = labels != -1
  np.testing.assert_allclose(
      head.loss(labels, logits, {}),
      _bce(labels[steps], logits[..., 0][steps]).mean(), rtol=1e-6)


def test_regularization_is_added_to_the_loss_even_without_labelled_rows():
  head = _clicks_head(missing_label=-1)
  regularized = head.loss(LABELS, LOGITS, {}, regularization_losses=[
      tf.constant(0.25)])
  np.testing.assert_allclose(
      regularized, head.loss(LABELS, LOGITS, {}) + 0.25, rtol=1e-6)
  nothing = np.full_like(LABELS, -1)
  assert float(head.loss(nothing, LOGITS, {}, regularization_losses=[
      tf.constant(0.25)])) == 0.25


# What a row is, and what marks it unlabelled.


def test_a_multi_hot_row_is_missing_only_when_every_entry_is():
  head = tmh.MaskedHead(tf.estimator.MultiLabelHead(3), missing_label=-1)
  logits = np.array([[1., -1., 0.], [2., 2., -2.]], np.float32)
  labels = np.array([[-1, -1, -1], [1, 0, 1]])
  np.testing.assert_allclose(
      head.loss(labels, logits, {}), _bce(labels[1], logits[1]).mean(),
      rtol=1e-6)
  # A row only partly at the sentinel is a labelled row, and -1 is then
  # a bad multi-hot value for the wrapped head.
  with pytest.raises(ValueError, match='integer indicator'):
    head.loss(np.array([[1, -1, 0], [1, 0, 1]]), logits, {})


def test_a_regression_row_is_missing_when_all_its_targets_are_nan():
  head = tmh.MaskedHead(tf.estimator.RegressionHead(label_dimension=2),
                        missing_label=NAN)
  logits = np.array([[1., 2.], [0., 0.]], np.float32)
  np.testing.assert_allclose(
      head.loss(np.array([[NAN, NAN], [1., 3.]], np.float32), logits, {}),
      (1. + 9.) / 2)
  # One NaN target leaves the row labelled: the NaN reaches the loss.
  assert math.isnan(head.loss(
      np.array([[NAN, 1.], [1., 3.]], np.float32), logits, {}))


def test_sparse_labels_drop_rows_holding_only_the_sentinel():
  head = tmh.MaskedHead(tf.estimator.MultiLabelHead(3), missing_label=-1)
  logits = np.array([[1., 0., 0.], [0., 1., -1.], [2., 2., 2.]], np.float32)
  # Row 0 holds the sentinel; row 1 holds nothing: "no class", a label.
  labels = tf.sparse.SparseTensor(indices=[[0, 0], [2, 0], [2, 1]],
                                  values=tf.constant([-1, 0, 2], tf.int64),
                                  dense_shape=[3, 2])
  reference = tf.estimator.MultiLabelHead(3).loss(
      np.array([[0, 0, 0], [1, 0, 1]]), logits[1:], {})
  np.testing.assert_allclose(head.loss(labels, logits, {}), reference,
                             rtol=1e-6)


def test_sparse_labels_with_a_mask_drop_the_masked_rows():
  head = tmh.MaskedHead(tf.estimator.MultiLabelHead(3), mask_key='known')
  logits = np.array([[1., 0., 0.], [0., 1., -1.], [2., 2., 2.]], np.float32)
  labels = tf.sparse.SparseTensor(indices=[[0, 0], [1, 0], [2, 0]],
                                  values=tf.constant([9, 1, 2], tf.int64),
                                  dense_shape=[3, 1])
  features = {'known': np.array([False, True, True])}
  reference = tf.estimator.MultiLabelHead(3).loss(
      np.array([[0, 1, 0], [0, 0, 1]]), logits[1:], {})
  np.testing.assert_allclose(head.loss(labels, logits, features), reference,
                             rtol=1e-6)


def test_string_labels_are_compared_as_strings():
  wrapped = tf.estimator.MultiClassHead(3, label_vocabulary=['a', 'b', 'c'])
  head = tmh.MaskedHead(wrapped, missing_label='?')
  logits = np.array([[1., 0., 0.], [0., 3., 0.], [0., 0., 2.]], np.float32)
  labels = np.array([['a'], ['?'], ['c']])
  np.testing.assert_allclose(
      head.loss(labels, logits, {}),
      tf.estimator.MultiClassHead(3, label_vocabulary=['a', 'b', 'c']).loss(
          labels[[0, 2]], logits[[0, 2]], {}), rtol=1e-6)


@pytest.mark.parametrize('mask', [
    np.array([True, False, True, False, True, True]),
    np.array([[1], [0], [1], [0], [1], [1]]),
    np.array([0.5, 0., 2., 0., -1., 1.], np.float32),
], ids=['bool_rows', 'int_rows_1', 'float_rows'])
def test_mask_key_keeps_rows_where_the_mask_is_true_or_non_zero(mask):
  labels = np.where(LABELLED[:, np.newaxis], LABELS, 7)  # 7: not a label.
  loss = _clicks_head(mask_key='clicked').loss(labels, LOGITS,
                                               {'clicked': mask})
  np.testing.assert_allclose(
      loss, _bce(LABELS[LABELLED], LOGITS[LABELLED]).mean(), rtol=1e-6)


def test_with_both_marks_a_row_counts_only_where_both_say_labelled():
  mask = np.array([True, True, False, True, True, True])
  head = _clicks_head(missing_label=-1, mask_key='clicked')
  kept = LABELLED & mask
  np.testing.assert_allclose(
      head.loss(LABELS, LOGITS, {'clicked': mask}),
      _bce(LABELS[kept], LOGITS[kept]).mean(), rtol=1e-6)


# Features: those per row are cut, others pass untouched.


class _RecordingHead(tmh.Head):
  """A regression head that remembers the features its loss was given."""

  def __init__(self):
    self.wrapped = tf.estimator.RegressionHead(name='score')
    self.seen = None

  name = property(lambda self: self.wrapped.name)
  logits_dimension = property(lambda self: 1)
  loss_reduction = property(lambda self: self.wrapped.loss_reduction)

  def loss(self, labels, logits, features=None, mode=None,
           regularization_losses=None):
    self.seen = features
    return self.wrapped.loss(labels, logits, features)

  def predictions(self, logits, keys=None):
    return self.wrapped.predictions(logits)

  def metrics(self, regularization_losses=None):
    return self.wrapped.metrics()

  def update_metrics(self, eval_metrics, features, logits, labels,
                     regularization_losses=None, mode=None):
    return self.wrapped.update_metrics(eval_metrics, features, logits, labels)


def test_features_shaped_per_row_are_cut_others_pass_untouched():
  recording = _RecordingHead()
  head = tmh.MaskedHead(recording, missing_label=NAN)
  rows = np.arange(4, dtype=np.float32)
  sparse = tf.sparse.SparseTensor([[0, 0]], ['x'], [4, 2])
  features = {
      'per_row': rows, 'per_row_wide': np.stack([rows, -rows], axis=1),
      'per_row_list_of_words': np.array([[b'a'], [b'b'], [b'c'], [b'd']]),
      'other_length': np.arange(7), 'scalar': np.float32(3.),
      'sparse': sparse, 'a_string': 'hello'}
  labels = np.array([[1.], [NAN], [NAN], [4.]], np.float32)
  head.loss(labels, np.zeros([4, 1], np.float32), features)
  seen = recording.seen
  assert seen['per_row'].numpy().tolist() == [0., 3.]
  assert seen['per_row_wide'].numpy().tolist() == [[0., -0.], [3., -3.]]
  assert seen['per_row_list_of_words'].numpy().tolist() == [[b'a'], [b'd']]
  assert seen['other_length'] is features['other_length']
  assert seen['scalar'] is features['scalar']
  assert seen['sparse'] is sparse
  assert seen['a_string'] == 'hello'


def test_rank_3_rows_cut_time_step_features_and_pass_batch_features():
  recording = _RecordingHead()
  head = tmh.MaskedHead(recording, mask_key='step_known')
  known = np.array([[True, False, True], [False, False, True]])
  features = {'step_known': known,
              'step_weight': np.arange(6, dtype=np.float32).reshape(2, 3),
              'step_weight_1': np.arange(6, dtype=np.float32).reshape(2, 3, 1),
              'per_example': np.ones([2, 5], np.float32)}
  head.loss(np.zeros([2, 3, 1], np.float32), np.zeros([2, 3, 1], np.float32),
            features)
  seen = recording.seen
  assert seen['step_weight'].numpy().tolist() == [0., 2., 5.]
  assert seen['step_weight_1'].numpy().tolist() == [[0.], [2.], [5.]]
  assert seen['per_example'] is features['per_example']


def test_a_numeric_column_weight_is_cut_like_a_named_one():
  column = tf.feature_column.numeric_column('w')
  head = tmh.MaskedHead(tf.estimator.BinaryClassHead(weight_column=column),
                        missing_label=-1)
  weights = np.array([[1.], [NAN], [2.], [NAN], [0.5], [1.]], np.float32)
  expected = tf.estimator.BinaryClassHead(weight_column=column).loss(
      LABELS[LABELLED], LOGITS[LABELLED], {'w': weights[LABELLED]})
  np.testing.assert_allclose(head.loss(LABELS, LOGITS, {'w': weights}),
                             expected, rtol=1e-6)


# Predictions: every row, as the wrapped head gives them.


def test_predictions_cover_every_row_unchanged():
  head = _clicks_head(missing_label=-1)
  ours = head.predictions(LOGITS)
  theirs = tf.estimator.BinaryClassHead(name='conversion').predictions(LOGITS)
  assert set(ours) == set(theirs)
  for key, value in theirs.items():
    np.testing.assert_array_equal(ours[key], value, err_msg=key)
  assert ours['probabilities'].shape == (6, 2)


def test_predictions_keys_pick_also_for_heads_whose_predictions_take_none():
  head = tmh.MaskedHead(tf.estimator.RegressionHead(), missing_label=NAN)
  assert list(head.predictions(LOGITS, keys=['predictions'])) == [
      'predictions']
  with pytest.raises(ValueError, match='Prediction key must be in'):
    head.predictions(LOGITS, keys=['probabilities'])


def test_eval_spec_predictions_cover_every_row():
  head = _clicks_head(missing_label=-1)
  with tf.Graph().as_default():
    spec = head.create_estimator_spec(
        features={}, mode=EVAL, logits=tf.constant(LOGITS),
        labels=tf.constant(LABELS))
    assert spec.predictions['logits'].shape == (6, 1)


def test_a_create_estimator_spec_override_is_called_with_the_labelled_rows():
  class _Overriding(tf.estimator.RegressionHead):
    labels_seen = None

    def create_estimator_spec(self, features, mode, logits, labels=None,
                              **kwargs):
      type(self).labels_seen = labels
      return super().create_estimator_spec(features, mode, logits, labels,
                                           **kwargs)

  head = tmh.MaskedHead(_Overriding(), missing_label=NAN)
  labels = np.array([[1.], [NAN], [2.]], np.float32)
  with tf.Graph().as_default():
    spec = head.create_estimator_spec(
        features={}, mode=EVAL, logits=tf.zeros([3, 1]),
        labels=tf.constant(labels))
    with tf.compat.v1.Session() as session:
      seen, loss = session.run([_Overriding.labels_seen, spec.loss])
  assert seen.tolist() == [[1.], [2.]]
  np.testing.assert_allclose(loss, (1. + 4.) / 2)


# A batch without a labelled row.


@pytest.mark.parametrize('graph', [False, True], ids=['eager', 'graph'])
def test_a_batch_without_labels_gives_zero_loss_and_zero_gradient(graph):
  """Zero, never NaN, although the labels are NaN and reach no loss."""
  features = np.ones([4, 2], np.float32)
  labels = np.full([4, 1], NAN, np.float32)
  head = tmh.MaskedHead(tf.estimator.RegressionHead(), missing_label=NAN)

  def loss_and_gradient(x, y):
    kernel = tf.Variable([[0.5], [-1.]])
    with tf.GradientTape() as tape:
      loss = head.loss(y, tf.matmul(x, kernel), {'x': x})
    return loss, tape.gradient(loss, kernel)

  if graph:
    with tf.Graph().as_default():
      x = tf.compat.v1.placeholder(tf.float32, [None, 2])
      y = tf.compat.v1.placeholder(tf.float32, [None, 1])
      tensors = loss_and_gradient(x, y)
      with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        loss, gradient = session.run(tensors, {x: features, y: labels})
  else:
    loss, gradient = loss_and_gradient(features, labels)
  assert float(loss) == 0.
  assert np.asarray(gradient).tolist() == [[0.], [0.]]


def _metric_values(head, batches):
  metrics = head.metrics()
  for labels, logits in batches:
    head.update_metrics(metrics, {}, logits, labels)
  return {key: float(metric.result()) for key, metric in metrics.items()}


def test_a_batch_without_labels_leaves_the_metrics_where_they_were():
  head = _clicks_head(missing_label=-1)
  unlabelled = (np.full_like(LABELS, -1), LOGITS[::-1].copy())
  later = (LABELS[::-1].copy(), LOGITS * 2)
  with_empty_batch = _metric_values(
      head, [(LABELS, LOGITS), unlabelled, later])
  without = _metric_values(head, [(LABELS, LOGITS), later])
  assert with_empty_batch == without
  assert 0. < without['auc/conversion'] < 1.


# Bad input: clear errors naming the head and the key.


def test_neither_missing_label_nor_mask_key_is_a_value_error():
  with pytest.raises(ValueError, match="MaskedHead 'conversion': give "
                     'missing_label'):
    _clicks_head()


@pytest.mark.parametrize('wrapped', [
    lambda: 'not a head',
    lambda: tmh.MultiHead([tf.estimator.BinaryClassHead(name='a')]),
    lambda: tf.estimator.MultiHead([tf.estimator.BinaryClassHead(name='a')]),
], ids=['string', 'multi_head', 'reference_multi_head'])
def test_only_single_heads_can_be_wrapped(wrapped):
  with pytest.raises(TypeError, match='MaskedHead'):
    tmh.MaskedHead(wrapped(), missing_label=-1)


@pytest.mark.parametrize('kwargs, message', [
    ({'missing_label': [-1]}, 'missing_label must be a number, NaN or a '
     'string. Given: \\[-1\\]'),
    ({'missing_label': True}, 'missing_label must be a number'),
    ({'mask_key': 3}, 'mask_key must be a feature name'),
])
def test_arguments_of_the_wrong_type_are_type_errors(kwargs, message):
  with pytest.raises(TypeError, match=f"MaskedHead 'conversion': {message}"):
    _clicks_head(**kwargs)


def test_a_mask_key_missing_from_the_features_names_head_and_key():
  with pytest.raises(ValueError, match="MaskedHead 'conversion': mask_key "
                     "'clicked' is not among the features. Given features: "
                     r"\['x'\]"):
    _clicks_head(mask_key='clicked').loss(LABELS, LOGITS, {'x': LOGITS})


@pytest.mark.parametrize('mask', [
    np.ones([5], bool), np.ones([6, 2], bool), np.ones([6, 1, 1], bool),
    np.ones([], bool)], ids=['short', 'wide', 'rank_3', 'scalar'])
def test_a_mask_of_the_wrong_shape_names_head_and_key(mask):
  with pytest.raises(ValueError, match="MaskedHead 'conversion': the mask "
                     "feature 'clicked' must be shaped like the rows"):
    _clicks_head(mask_key='clicked').loss(LABELS, LOGITS, {'clicked': mask})


def test_a_mask_found_wrong_only_at_run_time_names_head_and_key():
  head = _clicks_head(mask_key='clicked')
  with tf.Graph().as_default():
    mask = tf.compat.v1.placeholder(tf.bool, [None])
    loss = head.loss(tf.constant(LABELS), tf.constant(LOGITS),
                     {'clicked': mask})
    with tf.compat.v1.Session() as session:
      with pytest.raises(tf.errors.InvalidArgumentError,
                         match='MaskedHead `conversion`: the mask feature '
                         '`clicked` must be shaped like the rows'):
        session.run(loss, {mask: np.ones([4], bool)})


def test_a_string_mask_is_a_type_error():
  with pytest.raises(TypeError, match="MaskedHead 'conversion': the mask "
                     "feature 'clicked' must be bool or numeric"):
    _clicks_head(mask_key='clicked').loss(
        LABELS, LOGITS, {'clicked': np.array(['y'] * 6)})


@pytest.mark.parametrize('missing_label, labels', [
    ('none', LABELS), (NAN, LABELS), (0.5, LABELS), (-1, LABELS + 1),
    (-1, np.array([['a']] * 6)), (-1, LABELS.astype(bool)),
], ids=['string_for_int', 'nan_for_int', 'fraction_for_int',
        'negative_for_uint8', 'number_for_string', 'number_for_bool'])
def test_a_missing_label_the_labels_cannot_hold_is_a_type_error(
    missing_label, labels):
  if missing_label == -1 and labels.dtype.kind == 'i':
    labels = labels.astype(np.uint8)
  head = _clicks_head(missing_label=missing_label)
  with pytest.raises(TypeError, match=(
      f"MaskedHead 'conversion': missing_label {missing_label!r} cannot be "
      'held by labels of dtype')):
    head.loss(labels, LOGITS, {})


def test_labels_as_a_dict_are_a_type_error():
  with pytest.raises(TypeError, match="MaskedHead 'conversion': labels must "
                     'be a Tensor, not a dict'):
    _clicks_head(missing_label=-1).loss({'conversion': LABELS}, LOGITS, {})


def test_labels_of_a_rank_not_fitting_the_logits_name_the_head():
  with pytest.raises(ValueError, match="MaskedHead 'conversion': labels must "
                     r'be \[D0, ..., DN\] or \[D0, ..., DN, k\]'):
    _clicks_head(missing_label=-1).loss(LABELS[np.newaxis], LOGITS, {})


def test_labels_with_other_rows_than_the_logits_name_the_head():
  head = _clicks_head(missing_label=-1)
  with pytest.raises(ValueError, match="MaskedHead 'conversion': the leading "
                     'dimensions of the labels must be those of the logits'):
    head.loss(LABELS[:4], LOGITS, {})
  with tf.Graph().as_default():
    labels = tf.compat.v1.placeholder(tf.int64, [None, 1])
    loss = head.loss(labels, tf.constant(LOGITS), {})
    with tf.compat.v1.Session() as session:
      with pytest.raises(tf.errors.InvalidArgumentError,
                         match='MaskedHead `conversion`: the leading dimensions'):
        session.run(loss, {labels: LABELS[:4]})


def test_no_labels_get_the_wrapped_heads_own_error():
  with pytest.raises(ValueError, match='You must provide a labels Tensor'):
    _clicks_head(missing_label=-1).loss(None, LOGITS, {})


# TPU: no loss or metrics inside an XLA computation; predictions work.


def test_loss_inside_a_tpu_computation_raises_naming_the_head():
  head = _clicks_head(missing_label=-1)
  with tf.Graph().as_default():
    with pytest.raises(ValueError, match="MaskedHead 'conversion' cannot "
                       'compute a loss or metrics inside an XLA computation'):
      tf.compat.v1.tpu.rewrite(
          lambda: head.loss(tf.constant(LABELS), tf.constant(LOGITS), {}))


def test_metrics_inside_a_tpu_computation_raise_naming_the_head():
  head = _clicks_head(mask_key='clicked')

  def update():
    head.update_metrics(head.metrics(), {'clicked': tf.ones([6], tf.bool)},
                        tf.constant(LOGITS), tf.constant(LABELS))
    return tf.constant(0.)

  with tf.Graph().as_default():
    with pytest.raises(ValueError, match="MaskedHead 'conversion' cannot"):
      tf.compat.v1.tpu.rewrite(update)


def test_a_predict_spec_builds_inside_a_tpu_computation():
  head = _clicks_head(missing_label=-1)
  with tf.Graph().as_default():
    (probabilities,) = tf.compat.v1.tpu.rewrite(
        lambda: head._create_tpu_estimator_spec(  # pylint: disable=protected-access
            features={}, mode=PREDICT, logits=tf.constant(LOGITS)
        ).predictions['probabilities'])
    assert probabilities.shape == (6, 2)


def test_loss_in_a_jit_compiled_function_raises_naming_the_head():
  head = _clicks_head(missing_label=-1)
  loss = tf.function(lambda: head.loss(LABELS, LOGITS, {}),
                     jit_compile=True)
  with pytest.raises(ValueError, match="MaskedHead 'conversion' cannot"):
    loss()
