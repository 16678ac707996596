"""Differential specification of `tensorflow_multihead.base_head`.

Every helper is run next to the reference (`tf.estimator`'s `base_head`) on
the same inputs, in eager mode and in graph mode, and both must give the same
values and raise the same exception types.  The one deliberate difference:
a shape mismatch that static shapes already prove raises `ValueError` while
the graph is built, where the reference builds an assertion that fails with
`InvalidArgumentError` when the graph runs; those cases are pinned down
explicitly below.
"""
import functools
import inspect

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from tensorflow.python.feature_column import feature_column as fc_v1
from tensorflow_estimator.python.estimator import model_fn as model_fn_lib
from tensorflow_estimator.python.estimator.head import base_head as ref

from tensorflow_multihead import base_head as ours

MODULES = pytest.mark.parametrize('impl', [ref, ours], ids=['ref', 'ours'])

# ---------------------------------------------------------------------------
# Running one call in eager or graph mode and describing what happened.


def eager_outcome(call, impl):
  """('ok', value) or ('error', exception type) of `call(impl)` in eager."""
  try:
    result = call(impl)
  except Exception as error:  # pylint: disable=broad-except
    return 'error', type(error)
  return 'ok', result if isinstance(result, float) else np.asarray(result)


def graph_outcome(build, impl):
  """What happens when `build(impl)` builds a graph that is then run.

  `build` returns the tensor to fetch and the feed dict.  The result is
  ('ok', value), ('build', exception type) or ('run', exception type).
  """
  with tf.Graph().as_default():
    try:
      fetch, feed = build(impl)
    except Exception as error:  # pylint: disable=broad-except
      return 'build', type(error)
    with tf.compat.v1.Session() as session:
      try:
        return 'ok', session.run(fetch, feed_dict=feed)
      except tf.errors.OpError as error:
        return 'run', type(error)


def assert_same(outcome, reference_outcome):
  assert outcome[0] == reference_outcome[0]
  if outcome[0] == 'ok':
    np.testing.assert_array_equal(outcome[1], reference_outcome[1])
    if isinstance(outcome[1], np.ndarray):
      assert outcome[1].dtype == reference_outcome[1].dtype
  else:
    assert outcome[1] is reference_outcome[1]


def eager_both(call):
  """Runs `call` on both implementations; returns our outcome."""
  reference_outcome = eager_outcome(call, ref)
  outcome = eager_outcome(call, ours)
  assert_same(outcome, reference_outcome)
  return outcome


def graph_both(build):
  reference_outcome = graph_outcome(build, ref)
  outcome = graph_outcome(build, ours)
  assert_same(outcome, reference_outcome)
  return outcome


def run_graph(build):
  """Builds and runs `build()` in a fresh graph; returns the fetched value."""
  with tf.Graph().as_default():
    fetch, feed = build()
    with tf.compat.v1.Session() as session:
      return session.run(fetch, feed_dict=feed)


def placeholder(shape, dtype=tf.float32):
  return tf.compat.v1.placeholder(dtype, shape)


def error_text(call):
  """The message of the error `call()` raises."""
  with pytest.raises(Exception) as caught:
    call()
  return str(caught.value)


# ---------------------------------------------------------------------------
# Constants.


def test_serving_keys_equal_the_reference():
  assert ours.DEFAULT_SERVING_KEY == ref.DEFAULT_SERVING_KEY == (
      'serving_default')
  assert ours.CLASSIFY_SERVING_KEY == ref.CLASSIFY_SERVING_KEY == (
      'classification')
  assert ours.REGRESS_SERVING_KEY == ref.REGRESS_SERVING_KEY == 'regression'
  assert ours.PREDICT_SERVING_KEY == ref.PREDICT_SERVING_KEY == 'predict'


_PUBLIC_HELPERS = [
    'check_dense_labels_match_logits_and_reshape',
    'get_weights_and_check_match_logits', 'check_logits_final_dim',
    'validate_loss_fn_args', 'validate_loss_reduction', 'validate_update_ops',
    'validate_v2_optimizer', 'validate_trainable_variables',
    'validate_n_classes', 'call_loss_fn', 'check_prediction_keys',
    'all_class_ids', 'all_classes', 'classification_output',
    'check_label_range', 'update_metric_with_broadcast_weights',
    'create_eval_metrics_tuple', 'create_estimator_spec_train_op',
    'create_estimator_spec_summary',
]


@pytest.mark.parametrize('name', _PUBLIC_HELPERS)
def test_helper_has_the_reference_signature(name):
  ours_signature = inspect.signature(getattr(ours, name))
  assert ours_signature == inspect.signature(getattr(ref, name))
  assert getattr(ours, name).__doc__


@pytest.mark.parametrize('name', [
    'loss', 'predictions', 'metrics', 'update_metrics', '_summary_key',
    'create_estimator_spec', '_create_tpu_estimator_spec'])
def test_head_method_has_the_reference_signature(name):
  assert inspect.signature(getattr(ours.Head, name)) == inspect.signature(
      getattr(ref.Head, name))


def test_train_op_loss_reduction_defaults_to_sum_over_batch_size():
  default = inspect.signature(ours.create_estimator_spec_train_op).parameters[
      'loss_reduction'].default
  assert default == tf.losses.Reduction.SUM_OVER_BATCH_SIZE


# ---------------------------------------------------------------------------
# check_dense_labels_match_logits_and_reshape.


def labels_check(labels, logits, dim):
  return lambda impl: impl.check_dense_labels_match_logits_and_reshape(
      labels=labels, logits=logits, expected_labels_dimension=dim)


def test_labels_one_rank_below_logits_get_a_trailing_axis_in_eager():
  outcome = eager_both(labels_check([1., 2.], tf.zeros([2, 1]), 1))
  assert outcome[1].tolist() == [[1.], [2.]]


def test_labels_matching_multi_dimensional_logits_pass_through_in_eager():
  labels = tf.reshape(tf.range(12.), [2, 2, 3])
  outcome = eager_both(labels_check(labels, tf.zeros([2, 2, 3]), 3))
  assert outcome[1].shape == (2, 2, 3)
  assert outcome[1][1, 1].tolist() == [9., 10., 11.]


def test_rank_3_labels_below_rank_4_logits_are_expanded_in_eager():
  outcome = eager_both(labels_check(tf.ones([2, 3, 4]), tf.zeros([2, 3, 4, 1]),
                                    1))
  assert outcome[1].shape == (2, 3, 4, 1)


@pytest.mark.parametrize('labels, logits_shape, dim', [
    ([[1., 2.], [3., 4.]], [2, 1], 1),  # last dimension
    ([[1.], [2.], [3.]], [2, 1], 1),  # batch dimension
    ([1.], [1], 1),  # rank 1 when logits are rank 1
    ([[[1.]]], [1, 1], 1),  # rank 3 for rank 2 logits
], ids=['last_dim', 'batch', 'rank1', 'rank3'])
def test_wrong_labels_shape_raises_value_error_in_eager(labels, logits_shape,
                                                        dim):
  outcome = eager_both(labels_check(labels, tf.zeros(logits_shape), dim))
  assert outcome == ('error', ValueError)


@MODULES
def test_none_labels_raise_value_error_asking_for_labels(impl):
  with pytest.raises(ValueError, match='You must provide a labels Tensor'):
    labels_check(None, tf.zeros([2, 1]), 1)(impl)


@MODULES
def test_sparse_labels_raise_value_error(impl):
  sparse = tf.sparse.SparseTensor([[0, 0]], [1.], [2, 1])
  with pytest.raises(ValueError, match=r'SparseTensor labels are not '
                     r'supported.*\[batch_size, 1\]'):
    labels_check(sparse, tf.zeros([2, 1]), 1)(impl)


@MODULES
def test_wrong_last_label_dimension_message_names_both_dimensions(impl):
  with pytest.raises(ValueError, match='Mismatched label shape. Expected '
                     r'labels dimension=3\.  Received 2\.'):
    labels_check(tf.zeros([2, 2]), tf.zeros([2, 3]), 3)(impl)


@MODULES
def test_wrong_labels_batch_message_shows_expected_shape_in_eager(impl):
  with pytest.raises(ValueError, match=(
      r'labels shape must be \[D0, D1, ... DN, 1\].*'
      r'expected_labels_shape: \(2, 1\). labels_shape: \(3, 1\)')):
    labels_check(tf.zeros([3, 1]), tf.zeros([2, 1]), 1)(impl)


@MODULES
def test_rank_1_labels_message_names_the_rank(impl):
  with pytest.raises(ValueError, match='rank at least 2'):
    labels_check(tf.zeros([2]), tf.zeros([2]), 1)(impl)


def test_static_labels_are_checked_and_reshaped_in_graph():
  outcome = graph_both(lambda impl: (
      labels_check(tf.constant([3., 4.]), tf.zeros([2, 1]), 1)(impl), None))
  assert outcome[1].tolist() == [[3.], [4.]]


@pytest.mark.parametrize('labels, logits_shape', [
    ([[1., 2.]], [1, 1]),
    ([1.], [1]),
], ids=['last_dim', 'rank1'])
def test_static_rank_or_last_dim_errors_raise_while_building_graph(
    labels, logits_shape):
  outcome = graph_both(lambda impl: (labels_check(
      tf.constant(labels), tf.zeros(logits_shape), 1)(impl), None))
  assert outcome == ('build', ValueError)


def test_dynamic_labels_with_right_shape_pass_in_graph():
  def build(impl):
    labels, logits = placeholder([None]), placeholder([None, 1])
    checked = labels_check(labels, logits, 1)(impl)
    return checked, {labels: [5., 6.], logits: [[0.], [0.]]}
  assert graph_both(build)[1].tolist() == [[5.], [6.]]


@pytest.mark.parametrize('labels_shape, labels_value', [
    ([None, 1], [[1.], [2.], [3.]]),  # batch differs from logits
    (None, [1., 2.]),  # unknown rank, fed rank 1
    (None, [[1., 1.], [2., 2.]]),  # unknown rank, fed wrong last dimension
], ids=['batch', 'rank', 'last_dim'])
def test_dynamic_labels_mismatch_fails_when_graph_runs(labels_shape,
                                                       labels_value):
  def build(impl):
    labels, logits = placeholder(labels_shape), placeholder([None, 1])
    checked = labels_check(labels, logits, 1)(impl)
    return checked, {labels: labels_value, logits: [[0.], [0.]]}
  assert graph_both(build) == ('run', tf.errors.InvalidArgumentError)


@MODULES
def test_dynamic_labels_error_prints_expected_and_actual_shapes(impl):
  def build():
    labels, logits = placeholder([None, 1]), placeholder([None, 1])
    checked = labels_check(labels, logits, 1)(impl)
    return checked, {labels: [[1.]] * 3, logits: [[0.]] * 2}
  text = error_text(lambda: run_graph(build))
  assert 'labels shape must be [D0, D1, ... DN, 1]' in text
  assert '[expected_labels_shape: ] [2 1] [labels_shape: ] [3 1]' in text


def test_static_labels_batch_mismatch_raises_when_graph_is_built():
  def build(impl):
    return labels_check(tf.zeros([3, 1]), tf.zeros([2, 1]), 1)(impl), None
  # The reference defers even a statically known mismatch to run time.
  assert graph_outcome(build, ref) == ('run', tf.errors.InvalidArgumentError)
  assert graph_outcome(build, ours) == ('build', ValueError)


def test_labels_check_inside_tf_function_fails_at_call_on_bad_batch():
  def traced(impl):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32),
                                  tf.TensorSpec([None, 1], tf.float32)])
    def check(labels, logits):
      return impl.check_dense_labels_match_logits_and_reshape(
          labels, logits, 1)
    return check
  for impl in (ref, ours):
    check = traced(impl)
    assert check(tf.ones([2]), tf.zeros([2, 1])).shape == (2, 1)
    with pytest.raises(tf.errors.InvalidArgumentError):
      check(tf.ones([3]), tf.zeros([2, 1]))


# ---------------------------------------------------------------------------
# get_weights_and_check_match_logits.


def weights_check(weights, logits, allow_per_logit=False, column='w'):
  return lambda impl: impl.get_weights_and_check_match_logits(
      features={'w': weights}, weight_column=column, logits=logits,
      allow_per_logit_weights=allow_per_logit)


def test_no_weight_column_means_weight_one():
  outcome = eager_both(weights_check([9.], tf.zeros([1, 1]), column=None))
  assert outcome == ('ok', 1.)


@pytest.mark.parametrize('weights, logits_shape, allow, expected', [
    ([2., 3.], [2, 1], False, [[2.], [3.]]),
    ([[2.], [3.]], [2, 1], False, [[2.], [3.]]),
    ([2, 3], [2, 4], False, [[2.], [3.]]),
    ([[1., 2.], [3., 4.]], [2, 2], True, [[1., 2.], [3., 4.]]),
    ([[5.], [6.]], [2, 2], True, [[5.], [6.]]),
], ids=['rank1', 'rank2', 'ints', 'per_logit', 'per_example_allowed'])
def test_weights_of_a_supported_shape_are_float32_with_trailing_axis(
    weights, logits_shape, allow, expected):
  outcome = eager_both(weights_check(tf.constant(weights),
                                     tf.zeros(logits_shape), allow))
  assert outcome[1].tolist() == expected
  assert outcome[1].dtype == np.float32


def test_weights_one_rank_below_sequence_logits_get_a_trailing_axis():
  # Rank-1 weights are already [batch, 1] once read through a feature
  # column, so the trailing axis matters for logits of rank 3 and more.
  outcome = eager_both(weights_check(tf.constant([[1., 2.], [3., 4.]]),
                                     tf.zeros([2, 2, 1])))
  assert outcome[1].tolist() == [[[1.], [2.]], [[3.], [4.]]]


@pytest.mark.parametrize('weights_shape, logits_shape, allow', [
    ([2, 3], [2, 2, 1], False),
    ([3], [2, 1], False),
    ([2, 2], [2, 2], False),
    ([2, 2], [2, 3], True),
    ([3, 1], [2, 1], True),
    ([2, 1, 1], [2, 1], True),
], ids=['sequence', 'rank1_batch', 'per_logit_not_allowed',
        'per_logit_wrong', 'batch', 'rank3'])
def test_weights_of_a_wrong_shape_raise_value_error_in_eager(
    weights_shape, logits_shape, allow):
  outcome = eager_both(weights_check(tf.ones(weights_shape),
                                     tf.zeros(logits_shape), allow))
  assert outcome == ('error', ValueError)


@MODULES
def test_wrong_weights_message_lists_allowed_shapes_and_actual_ones(impl):
  with pytest.raises(ValueError, match=(
      r'weights shape must be \[D0, D1, ... DN\], \[D0, D1, ... DN, 1\] or '
      r'\[D0, D1, ... DN, logits_dimension\], logits_shape: \(2, 3\)\. '
      r'weights_shape: \(2, 2\)\.')):
    weights_check(tf.ones([2, 2]), tf.zeros([2, 3]), True)(impl)


@pytest.mark.parametrize('make_column, expected', [
    (lambda: tf.feature_column.numeric_column('w'), [[1.], [2.]]),
    (lambda: tf.feature_column.numeric_column(
        'w', shape=(1,), normalizer_fn=lambda w: w * 2.), [[2.], [4.]]),
    (lambda: fc_v1._numeric_column('w'),  # pylint: disable=protected-access
     [[1.], [2.]]),
], ids=['numeric_column', 'with_normalizer', 'v1_numeric_column'])
def test_numeric_weight_columns_are_read_from_features(make_column, expected):
  column = make_column()
  outcome = eager_both(weights_check(tf.constant([[1.], [2.]]),
                                     tf.zeros([2, 1]), column=column))
  assert outcome[1].tolist() == expected


@pytest.mark.parametrize('column', [
    3, tf.feature_column.categorical_column_with_identity('w', 3),
], ids=['int', 'categorical'])
def test_other_weight_column_types_raise_type_error(column):
  outcome = eager_both(weights_check(tf.constant([1.]), tf.zeros([1, 1]),
                                     column=column))
  assert outcome == ('error', TypeError)


@MODULES
def test_weight_column_type_error_names_the_type(impl):
  with pytest.raises(TypeError, match='Weight column must be either a string '
                     "or NumericColumn. Given type: <class 'int'>"):
    weights_check(tf.constant([1.]), tf.zeros([1, 1]), column=3)(impl)


def test_string_weights_fail_in_the_cast_like_the_reference():
  # The reference's dtype check comes after the column's own float cast,
  # so string weights fail in TF's Cast kernel, in both implementations.
  outcome = eager_both(weights_check(tf.constant(['a']), tf.zeros([1, 1])))
  assert outcome == ('error', tf.errors.UnimplementedError)


def test_weights_missing_from_features_raise_value_error():
  outcome = eager_both(lambda impl: impl.get_weights_and_check_match_logits(
      {'x': tf.ones([1])}, 'w', tf.zeros([1, 1])))
  assert outcome == ('error', ValueError)


def test_static_weights_are_checked_in_graph():
  outcome = graph_both(lambda impl: (
      weights_check(tf.constant([1., 2.]), tf.zeros([2, 3]))(impl), None))
  assert outcome[1].tolist() == [[1.], [2.]]


@pytest.mark.parametrize('weights_shape, weights_value, allow, ok', [
    ([None], [1., 2.], False, True),
    ([None], [1., 2., 3.], False, False),
    ([None, None], [[1., 2., 3.]] * 2, True, True),
    ([None, None], [[1.]] * 2, True, True),
    ([None, None], [[1., 2.]] * 2, True, False),
    ([None, None], [[1., 2., 3.]] * 2, False, False),
    (None, [[[1.]]] * 2, True, False),
], ids=['rank1', 'rank1_batch', 'per_logit', 'per_example', 'per_logit_wrong',
        'per_logit_not_allowed', 'unknown_rank_rank3'])
def test_dynamic_weights_shapes_are_checked_when_graph_runs(
    weights_shape, weights_value, allow, ok):
  def build(impl):
    weights, logits = placeholder(weights_shape), placeholder([None, 3])
    checked = weights_check(weights, logits, allow)(impl)
    return checked, {weights: weights_value, logits: [[0.] * 3] * 2}
  outcome = graph_both(build)
  assert outcome[0] == ('ok' if ok else 'run')


@pytest.mark.parametrize('weights_value, ok', [
    ([[1., 2.]], True), ([[1., 2., 3.]], False),
], ids=['ok', 'time_steps'])
def test_dynamic_sequence_weights_are_checked_when_graph_runs(weights_value,
                                                              ok):
  def build(impl):
    weights, logits = placeholder([None, None]), placeholder([None, None, 1])
    checked = weights_check(weights, logits)(impl)
    return checked, {weights: weights_value, logits: [[[0.], [0.]]]}
  outcome = graph_both(build)
  assert outcome[0] == ('ok' if ok else 'run')
  if ok:
    assert outcome[1].tolist() == [[[1.], [2.]]]


@MODULES
def test_dynamic_weights_error_prints_logits_and_weights_shapes(impl):
  def build():
    weights, logits = placeholder([None, None]), placeholder([None, 3])
    checked = weights_check(weights, logits, True)(impl)
    return checked, {weights: [[1., 2.]], logits: [[0.] * 3]}
  text = error_text(lambda: run_graph(build))
  assert ('[weights shape must be [D0, D1, ... DN], [D0, D1, ... DN, 1] or '
          '[D0, D1, ... DN, logits_dimension]] [logits_shape: ] [1 3] '
          '[weights_shape: ] [1 2]') in text


def test_static_weights_mismatch_raises_when_graph_is_built():
  def build(impl):
    return weights_check(tf.ones([3]), tf.zeros([2, 1]))(impl), None
  assert graph_outcome(build, ref) == ('run', tf.errors.InvalidArgumentError)
  assert graph_outcome(build, ours) == ('build', ValueError)


# ---------------------------------------------------------------------------
# check_logits_final_dim.


def logits_check(logits, dim):
  return lambda impl: impl.check_logits_final_dim(logits, dim)


def test_logits_with_right_last_dimension_are_cast_to_float32():
  outcome = eager_both(logits_check(tf.constant([[1, 2], [3, 4]]), 2))
  assert outcome[1].tolist() == [[1., 2.], [3., 4.]]
  assert outcome[1].dtype == np.float32


@pytest.mark.parametrize('shape, dim', [([2, 3], 2), ([3], 3), ([], 1)],
                         ids=['last_dim', 'rank1', 'scalar'])
def test_wrong_logits_shape_raises_value_error_in_eager(shape, dim):
  assert eager_both(logits_check(tf.zeros(shape), dim)) == ('error',
                                                            ValueError)


@MODULES
def test_wrong_logits_message_shows_the_shape(impl):
  with pytest.raises(ValueError, match=r'logits shape must be \[D0, D1, ... '
                     r'DN, logits_dimension\], got \(2, 3\)\.'):
    logits_check(tf.zeros([2, 3]), 2)(impl)


@MODULES
def test_rank_1_logits_message_names_the_rank(impl):
  with pytest.raises(ValueError, match='rank at least 2'):
    logits_check(tf.zeros([3]), 3)(impl)


def test_tensor_logits_dimension_accepts_any_static_last_dimension():
  outcome = eager_both(logits_check(tf.zeros([2, 5]), tf.constant(3)))
  assert outcome[1].shape == (2, 5)


@pytest.mark.parametrize('shape, dim, expected', [
    ([2, 3], 3, 'ok'), ([2, 3], 2, 'build'), ([3], 3, 'build'),
], ids=['ok', 'last_dim', 'rank1'])
def test_static_logits_are_checked_while_building_graph(shape, dim, expected):
  outcome = graph_both(lambda impl: (logits_check(tf.zeros(shape), dim)(impl),
                                     None))
  assert outcome[0] == expected


@pytest.mark.parametrize('shape, value, dim, ok', [
    ([None, None], [[1., 2.]], 2, True),
    ([None, None], [[1., 2.]], 3, False),
    (None, [1., 2.], 2, False),
    (None, [[1., 2.]], 2, True),
], ids=['ok', 'last_dim', 'rank1', 'unknown_rank_ok'])
def test_dynamic_logits_are_checked_when_graph_runs(shape, value, dim, ok):
  def build(impl):
    logits = placeholder(shape)
    return logits_check(logits, dim)(impl), {logits: value}
  outcome = graph_both(build)
  assert outcome[0] == ('ok' if ok else 'run')


def test_dynamic_logits_checked_against_a_tensor_dimension():
  def build(impl):
    logits = placeholder([None, None])
    return logits_check(logits, tf.constant(2))(impl), {logits: [[1., 2., 3.]]}
  assert graph_both(build) == ('run', tf.errors.InvalidArgumentError)


# ---------------------------------------------------------------------------
# validate_loss_fn_args and call_loss_fn.


class _CallableLoss:

  def __call__(self, labels, logits):
    return labels - logits


class _LossHolder:

  def loss(self, labels, logits, features):
    del features
    return labels - logits


def _partial_loss(labels, logits, scale):
  return scale * (labels - logits)


@pytest.mark.parametrize('loss_fn', [
    lambda labels, logits: logits,
    lambda labels, logits, features, loss_reduction: logits,
    lambda logits, labels: logits,
    _CallableLoss(),
    _LossHolder().loss,
    functools.partial(_partial_loss, scale=2.),
], ids=['minimal', 'all', 'reordered', 'callable', 'method', 'partial'])
def test_loss_fn_with_allowed_arguments_is_accepted(loss_fn):
  for impl in (ref, ours):
    assert impl.validate_loss_fn_args(loss_fn) is None


@pytest.mark.parametrize('loss_fn, message', [
    (lambda labels: labels, 'loss_fn must contain argument: logits'),
    (lambda logits: logits, 'loss_fn must contain argument: labels'),
    (lambda labels, logits, weights: logits,
     r"loss_fn has unexpected args: \['weights'\]"),
    (_partial_loss, r"loss_fn has unexpected args: \['scale'\]"),
], ids=['no_logits', 'no_labels', 'extra', 'unbound_extra'])
def test_loss_fn_with_wrong_arguments_raises_value_error(loss_fn, message):
  for impl in (ref, ours):
    with pytest.raises(ValueError, match=message):
      impl.validate_loss_fn_args(loss_fn)


def test_call_loss_fn_returns_the_unreduced_loss():
  loss_fn = lambda labels, logits: tf.square(labels - logits)
  outcome = eager_both(lambda impl: impl.call_loss_fn(
      loss_fn, tf.constant([[1.], [3.]]), tf.zeros([2, 1]), features={}))
  assert outcome[1].tolist() == [[1.], [9.]]


def test_call_loss_fn_passes_features_only_when_asked_for():
  seen = []
  def loss_fn(labels, logits, features):
    seen.append(sorted(features))
    return labels * features['w'] - logits
  outcome = eager_both(lambda impl: impl.call_loss_fn(
      loss_fn, tf.ones([2, 1]), tf.zeros([2, 1]),
      features={'w': tf.constant([[2.], [4.]])}))
  assert outcome[1].tolist() == [[2.], [4.]]
  assert seen == [['w'], ['w']]


def test_call_loss_fn_accepts_a_wider_expected_loss_dimension():
  outcome = eager_both(lambda impl: impl.call_loss_fn(
      lambda labels, logits: labels - logits, tf.ones([2, 3]),
      tf.zeros([2, 3]), features={}, expected_loss_dim=3))
  assert outcome[1].shape == (2, 3)


@pytest.mark.parametrize('loss_shape', [[2], [2, 2], [3, 1]],
                         ids=['rank1', 'last_dim', 'batch'])
def test_call_loss_fn_with_wrong_loss_shape_raises_value_error_in_eager(
    loss_shape):
  outcome = eager_both(lambda impl: impl.call_loss_fn(
      lambda labels, logits: tf.zeros(loss_shape), tf.ones([2, 1]),
      tf.zeros([2, 1]), features={}))
  assert outcome == ('error', ValueError)


@MODULES
def test_call_loss_fn_error_names_expected_dimension(impl):
  with pytest.raises(ValueError, match=r'loss_fn must return Tensor of shape '
                     r'\[D0, D1, ... DN, 1\]\. '):
    impl.call_loss_fn(lambda labels, logits: tf.zeros([2]), tf.ones([2, 1]),
                      tf.zeros([2, 1]), features={})


def test_call_loss_fn_checks_static_shapes_in_graph():
  outcome = graph_both(lambda impl: (impl.call_loss_fn(
      lambda labels, logits: labels + logits, tf.ones([2, 1]),
      tf.ones([2, 1]), features={}), None))
  assert outcome[1].tolist() == [[2.], [2.]]


@pytest.mark.parametrize('labels_value, ok', [
    ([[1.], [2.]], True), ([[1.], [2.], [3.]], False),
], ids=['ok', 'batch'])
def test_call_loss_fn_checks_dynamic_shapes_when_graph_runs(labels_value, ok):
  def build(impl):
    labels, logits = placeholder([None, 1]), placeholder([None, 1])
    loss = impl.call_loss_fn(lambda labels, logits: labels, labels, logits,
                             features={})
    return loss, {labels: labels_value, logits: [[0.], [0.]]}
  outcome = graph_both(build)
  assert outcome[0] == ('ok' if ok else 'run')


def test_static_loss_shape_mismatch_raises_when_graph_is_built():
  def build(impl):
    loss = impl.call_loss_fn(lambda labels, logits: tf.zeros([3, 1]),
                             tf.ones([2, 1]), tf.zeros([2, 1]), features={})
    return loss, None
  assert graph_outcome(build, ref) == ('run', tf.errors.InvalidArgumentError)
  assert graph_outcome(build, ours) == ('build', ValueError)


# ---------------------------------------------------------------------------
# Argument validation.


@pytest.mark.parametrize('reduction', ['sum', 'sum_over_batch_size', 'auto'])
def test_loss_reductions_other_than_none_are_valid(reduction):
  assert reduction in tf.losses.Reduction.all()
  for impl in (ref, ours):
    impl.validate_loss_reduction(reduction)


@pytest.mark.parametrize('reduction', ['none', 'mean', None])
def test_none_or_unknown_loss_reduction_raises_value_error(reduction):
  for impl in (ref, ours):
    with pytest.raises(ValueError, match='Invalid loss_reduction'):
      impl.validate_loss_reduction(reduction)


@pytest.mark.parametrize('update_ops', [None, [], (), ['op']])
def test_update_ops_may_be_none_a_list_or_a_tuple(update_ops):
  for impl in (ref, ours):
    impl.validate_update_ops(update_ops)


@pytest.mark.parametrize('update_ops', ['op', {'op'}, {'a': 1}])
def test_update_ops_of_other_types_raise_value_error(update_ops):
  for impl in (ref, ours):
    with pytest.raises(ValueError,
                       match='update_ops should be a list or a tuple'):
      impl.validate_update_ops(update_ops)


@pytest.mark.parametrize('make_optimizer', [
    lambda: tf.keras.optimizers.legacy.SGD(0.1),
    lambda: tf.keras.optimizers.legacy.Adagrad(0.1),
], ids=['legacy_sgd', 'legacy_adagrad'])
def test_keras_optimizers_are_valid(make_optimizer):
  optimizer = make_optimizer()
  for impl in (ref, ours):
    impl.validate_v2_optimizer(optimizer)


@pytest.mark.parametrize('name', ['SGD', 'Adam', 'Adagrad'])
def test_keras_optimizer_without_get_updates_is_refused_naming_legacy(name):
  """The reference validates it, then fails with AttributeError when used."""
  optimizer = getattr(tf.keras.optimizers, name)(0.1)
  ref.validate_v2_optimizer(optimizer)
  with pytest.raises(ValueError, match=(
      rf'The given optimizer \({name}\) has no get_updates: .* Use '
      rf'tf.keras.optimizers.legacy.{name} instead.')):
    ours.validate_v2_optimizer(optimizer)


@pytest.mark.parametrize('make_optimizer', [
    lambda: 'sgd',
    lambda: tf.compat.v1.train.GradientDescentOptimizer(0.1),
    # tf_keras is a separate package from the `tf.keras` seen by TF 2.15.
    lambda: tf_keras.optimizers.legacy.SGD(0.1),
], ids=['string', 'tf1_optimizer', 'tf_keras'])
def test_non_keras_optimizers_raise_value_error(make_optimizer):
  optimizer = make_optimizer()
  for impl in (ref, ours):
    with pytest.raises(ValueError, match='The given optimizer is not a '
                       'tf.keras.optimizers.Optimizer instance'):
      impl.validate_v2_optimizer(optimizer)


def test_trainable_variables_may_be_a_list_or_a_tuple():
  variable = tf.Variable(1.)
  for impl in (ref, ours):
    impl.validate_trainable_variables([variable])
    impl.validate_trainable_variables((variable,))


@pytest.mark.parametrize('variables, message', [
    (None, 'trainable_variables cannot be None'),
    ('v', 'trainable_variables should be a list or a tuple'),
    ({'v'}, 'trainable_variables should be a list or a tuple'),
], ids=['none', 'string', 'set'])
def test_missing_or_unlisted_trainable_variables_raise_value_error(variables,
                                                                   message):
  for impl in (ref, ours):
    with pytest.raises(ValueError, match=message):
      impl.validate_trainable_variables(variables)


@pytest.mark.parametrize('n_classes', [3, 10])
def test_more_than_two_classes_are_returned_unchanged(n_classes):
  assert eager_both(lambda impl: impl.validate_n_classes(n_classes))[1] == (
      n_classes)


@pytest.mark.parametrize('n_classes', [2, 1, 0, -3, True])
def test_two_or_fewer_python_classes_raise_value_error(n_classes):
  for impl in (ref, ours):
    with pytest.raises(ValueError, match='n_classes must be > 2'):
      impl.validate_n_classes(n_classes)


def test_tensor_n_classes_is_returned_as_the_same_tensor():
  n_classes = tf.constant(4)
  for impl in (ref, ours):
    assert impl.validate_n_classes(n_classes) is n_classes


@pytest.mark.parametrize('n_classes', [tf.constant(2), np.int64(2)],
                         ids=['tensor', 'numpy'])
def test_two_classes_not_as_python_int_raise_invalid_argument_in_eager(
    n_classes):
  outcome = eager_both(lambda impl: impl.validate_n_classes(n_classes))
  assert outcome == ('error', tf.errors.InvalidArgumentError)


def test_constant_two_classes_raise_invalid_argument_while_building_graph():
  outcome = graph_both(lambda impl: (
      impl.validate_n_classes(tf.constant(2)), None))
  assert outcome == ('build', tf.errors.InvalidArgumentError)


def test_placeholder_n_classes_is_not_checked_in_graph():
  def build(impl):
    n_classes = placeholder([], tf.int32)
    return impl.validate_n_classes(n_classes), {n_classes: 1}
  assert graph_both(build) == ('ok', 1)


def test_known_prediction_keys_pass():
  for impl in (ref, ours):
    impl.check_prediction_keys(['logits'], ['logits', 'probabilities'])
    impl.check_prediction_keys([], ['logits'])


def test_unknown_prediction_key_raises_value_error_naming_it():
  for impl in (ref, ours):
    with pytest.raises(ValueError, match='Prediction key must be in '
                       'PredictionKeys, given: classes'):
      impl.check_prediction_keys(['logits', 'classes'], ['logits'])


# ---------------------------------------------------------------------------
# Class ids, class names and classification output.


def test_all_class_ids_repeat_the_range_for_each_example():
  outcome = eager_both(lambda impl: impl.all_class_ids(tf.zeros([2, 3]), 3))
  assert outcome[1].tolist() == [[0, 1, 2], [0, 1, 2]]
  assert outcome[1].dtype == np.int32


def test_all_class_ids_follow_a_dynamic_batch_in_graph():
  def build(impl):
    logits = placeholder([None, 2])
    return impl.all_class_ids(logits, 2), {logits: [[0., 0.]] * 3}
  assert graph_both(build)[1].tolist() == [[0, 1]] * 3


@pytest.mark.parametrize('vocabulary, expected', [
    (None, [b'0', b'1', b'2']),
    ([], [b'0', b'1', b'2']),
    (['a', 'b', 'c'], [b'a', b'b', b'c']),
    (('x', 'y', 'z'), [b'x', b'y', b'z']),
], ids=['none', 'empty', 'list', 'tuple'])
def test_all_classes_are_vocabulary_or_stringified_ids(vocabulary, expected):
  outcome = eager_both(lambda impl: impl.all_classes(tf.zeros([2, 3]), 3,
                                                     vocabulary))
  assert outcome[1].tolist() == [expected, expected]


@pytest.mark.parametrize('vocabulary, expected', [
    (None, [b'0', b'1']), (['no', 'yes'], [b'no', b'yes']),
], ids=['ids', 'vocabulary'])
def test_classification_output_serves_scores_with_class_names(vocabulary,
                                                              expected):
  scores = tf.constant([[.2, .8], [.6, .4]])
  for impl in (ref, ours):
    output = impl.classification_output(scores, 2, vocabulary)
    assert isinstance(output, tf.estimator.export.ClassificationOutput)
    assert output.classes.numpy().tolist() == [expected, expected]
    assert output.scores is scores


def test_classification_output_in_graph_has_the_same_signature():
  def signature(impl):
    with tf.Graph().as_default():
      scores = placeholder([None, 3])
      output = impl.classification_output(scores, 3, ['a', 'b', 'c'])
      signature = output.as_signature_def(
          {'examples': placeholder([None], tf.string)})
      return {key: value.dtype for key, value in signature.outputs.items()}
  assert signature(ours) == signature(ref)
  assert sorted(signature(ours)) == ['classes', 'scores']


# ---------------------------------------------------------------------------
# check_label_range.


def test_labels_in_range_are_returned_in_eager():
  outcome = eager_both(lambda impl: impl.check_label_range(
      tf.constant([[0], [2]]), 3))
  assert outcome[1].tolist() == [[0], [2]]


@pytest.mark.parametrize('labels, message', [
    ([[3]], r'Labels must be <= 3 - 1'),
    ([[-1]], 'Labels must be >= 0'),
], ids=['too_big', 'negative'])
def test_labels_out_of_range_raise_value_error_in_eager(labels, message):
  for impl in (ref, ours):
    with pytest.raises(ValueError, match=message):
      impl.check_label_range(tf.constant(labels), 3)


def test_label_range_error_uses_the_given_message():
  for impl in (ref, ours):
    with pytest.raises(ValueError, match='^Bad label!$'):
      impl.check_label_range(tf.constant([[5]]), 3, message='Bad label!')


def test_constant_labels_out_of_range_fail_while_building_graph():
  outcome = graph_both(lambda impl: (
      impl.check_label_range(tf.constant([[4]]), 3), None))
  assert outcome == ('build', tf.errors.InvalidArgumentError)


@pytest.mark.parametrize('value, ok', [
    ([[0], [1]], True), ([[2]], False), ([[-1]], False),
], ids=['ok', 'too_big', 'negative'])
def test_dynamic_label_range_is_checked_when_graph_runs(value, ok):
  def build(impl):
    labels = placeholder([None, 1], tf.int64)
    return impl.check_label_range(labels, 2), {labels: value}
  outcome = graph_both(build)
  assert outcome[0] == ('ok' if ok else 'run')


@MODULES
def test_dynamic_label_range_error_uses_the_given_message(impl):
  def build():
    labels = placeholder([None], tf.int32)
    return impl.check_label_range(labels, 2, message='Out of range'), {
        labels: [7]}
  assert 'Out of range' in error_text(lambda: run_graph(build))


# ---------------------------------------------------------------------------
# Metrics helpers.


@pytest.mark.parametrize('values, weights, expected', [
    ([[1., 3.], [5., 7.]], [[1.], [0.]], 2.),
    ([[1., 3.], [5., 7.]], None, 4.),
    ([[1, 3]], [[1., 3.]], 2.5),
], ids=['broadcast', 'unweighted', 'int_values'])
def test_metric_is_updated_with_weights_broadcast_to_values(values, weights,
                                                            expected):
  results = []
  for impl in (ref, ours):
    mean = tf.keras.metrics.Mean()
    impl.update_metric_with_broadcast_weights(
        mean, tf.constant(values),
        None if weights is None else tf.constant(weights))
    results.append(float(mean.result()))
  assert results == [expected, expected]


def test_weights_that_do_not_broadcast_raise_value_error_in_eager():
  def call(impl):
    impl.update_metric_with_broadcast_weights(
        tf.keras.metrics.Mean(), tf.ones([2, 3]), tf.ones([2, 2]))
  assert eager_both(call) == ('error', ValueError)


def test_metric_update_in_graph_gives_the_same_result():
  def run(impl):
    with tf.Graph().as_default():
      mean = tf.keras.metrics.Mean()
      values, weights = placeholder([None, 2]), placeholder([None, 1])
      impl.update_metric_with_broadcast_weights(mean, values, weights)
      with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.variables_initializer(mean.variables))
        session.run(mean.updates, feed_dict={
            values: [[2., 4.], [6., 8.]], weights: [[0.], [1.]]})
        return session.run(mean.result())
  assert run(ours) == run(ref) == 7.


def test_eval_metrics_tuple_feeds_only_tensors_and_binds_the_rest():
  calls = []
  def metric_fn(x, y, scale, name):
    calls.append((scale, name))
    return {name: (x + y) * scale}
  kwargs = {'x': tf.constant(1.), 'y': tf.constant(2.), 'scale': 10.,
            'name': 'sum'}
  results = []
  for impl in (ref, ours):
    fn, tensors = impl.create_eval_metrics_tuple(metric_fn, kwargs)
    assert sorted(tensors) == ['x', 'y']
    assert tensors['x'] is kwargs['x']
    results.append(float(fn(**tensors)['sum']))
  assert results == [30., 30.]
  assert calls == [(10., 'sum'), (10., 'sum')]


def test_eval_metrics_tuple_lets_fed_tensors_replace_the_originals():
  for impl in (ref, ours):
    fn, _ = impl.create_eval_metrics_tuple(lambda x, k: x * k,
                                           {'x': tf.constant(1), 'k': 5})
    assert int(fn(x=tf.constant(4))) == 20


# ---------------------------------------------------------------------------
# create_estimator_spec_train_op.


class _TwoReplicas:
  num_replicas_in_sync = 2


def _trained_value(impl, loss_reduction):
  """Value of w after one SGD(0.1) step on w**2 from w=1 (gradient 2)."""
  with tf.Graph().as_default():
    w = tf.compat.v1.get_variable('w', initializer=1.)
    train_op = impl.create_estimator_spec_train_op(
        head_name='head', optimizer=tf.keras.optimizers.legacy.SGD(0.1),
        trainable_variables=[w], regularized_training_loss=w * w,
        loss_reduction=loss_reduction)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      session.run(train_op)
      return session.run(w)


def test_optimizer_train_op_moves_the_variable_like_the_reference():
  reduction = tf.losses.Reduction.SUM_OVER_BATCH_SIZE
  assert _trained_value(ours, reduction) == pytest.approx(0.8)
  assert _trained_value(ref, reduction) == pytest.approx(0.8)


@pytest.mark.parametrize('reduction, expected', [
    ('sum_over_batch_size', 0.9), ('sum', 0.8),
])
def test_batch_averaged_loss_is_split_across_replicas(monkeypatch, reduction,
                                                      expected):
  monkeypatch.setattr(tf.distribute, 'get_strategy', _TwoReplicas)
  assert _trained_value(ours, reduction) == pytest.approx(expected)
  assert _trained_value(ref, reduction) == pytest.approx(expected)


def test_train_op_fn_gets_the_unscaled_loss(monkeypatch):
  monkeypatch.setattr(tf.distribute, 'get_strategy', _TwoReplicas)
  received = []
  def train_op_fn(loss):
    received.append(loss)
    return tf.constant('trained')
  for impl in (ref, ours):
    loss = tf.constant(3.)
    train_op = impl.create_estimator_spec_train_op(
        'head', train_op_fn=train_op_fn, regularized_training_loss=loss)
    assert train_op.numpy() == b'trained'
    assert received.pop() is loss


def test_train_op_is_grouped_with_update_ops():
  def run(impl):
    with tf.Graph().as_default():
      counter = tf.compat.v1.get_variable('counter', initializer=0)
      step = tf.compat.v1.assign_add(counter, 1)
      update = tf.compat.v1.assign_add(counter, 10)
      train_op = impl.create_estimator_spec_train_op(
          'head', train_op_fn=lambda _: step, update_ops=[update],
          regularized_training_loss=tf.constant(0.))
      with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        session.run(train_op)
        return session.run(counter), train_op.type
  assert run(ours) == run(ref) == (11, 'NoOp')


def test_train_ops_are_created_in_a_top_level_training_scope():
  def names(impl):
    with tf.Graph().as_default():
      with tf.name_scope('outer'):
        first = impl.create_estimator_spec_train_op(
            'head', train_op_fn=lambda _: tf.no_op(name='step'),
            regularized_training_loss=tf.constant(0.))
        second = impl.create_estimator_spec_train_op(
            'head', train_op_fn=lambda _: tf.no_op(name='step'),
            regularized_training_loss=tf.constant(0.))
      return first.name, second.name
  assert names(ours) == names(ref) == ('training/step', 'training_1/step')


def test_optimizer_updates_are_created_under_training_scope():
  def update_names(impl):
    with tf.Graph().as_default():
      w = tf.compat.v1.get_variable('w', initializer=1.)
      train_op = impl.create_estimator_spec_train_op(
          'head', optimizer=tf.keras.optimizers.legacy.SGD(0.1),
          trainable_variables=[w], regularized_training_loss=w * w)
      return train_op.name.split('/')[0]
  assert update_names(ours) == update_names(ref) == 'training'


def _build_train_op(impl, optimizer=None, variables='all', **kwargs):
  """Calls the helper in a fresh graph, with loss w**2 to minimize over w."""
  with tf.Graph().as_default():
    w = tf.compat.v1.get_variable('w', initializer=1.)
    if optimizer == 'keras':
      optimizer = tf.keras.optimizers.legacy.SGD(1.)
    variables = {'all': [w], 'one': w, None: None}[variables]
    return impl.create_estimator_spec_train_op(
        'head', optimizer=optimizer, trainable_variables=variables,
        regularized_training_loss=w * w, **kwargs)


@MODULES
def test_optimizer_and_train_op_fn_together_raise_value_error(impl):
  with pytest.raises(ValueError,
                     match='train_op_fn and optimizer cannot both be set'):
    _build_train_op(impl, 'keras', train_op_fn=lambda loss: tf.no_op())


@MODULES
def test_neither_optimizer_nor_train_op_fn_raises_value_error(impl):
  with pytest.raises(ValueError,
                     match='train_op_fn and optimizer cannot both be None'):
    _build_train_op(impl)


@MODULES
def test_update_ops_not_in_a_list_raise_value_error(impl):
  with pytest.raises(ValueError,
                     match='update_ops should be a list or a tuple'):
    _build_train_op(impl, train_op_fn=lambda loss: tf.no_op(),
                    update_ops='op')


@pytest.mark.parametrize('make_optimizer, variables, message', [
    (lambda: 'sgd', 'all', 'The given optimizer is not a'),
    (tf.compat.v1.train.AdamOptimizer, 'all', 'The given optimizer is not'),
    (lambda: 'keras', None, 'trainable_variables cannot be None'),
    (lambda: 'keras', 'one', 'trainable_variables should be a list or a'),
], ids=['string', 'tf1', 'no_variables', 'one_variable'])
def test_invalid_optimizer_or_variables_raise_value_error(make_optimizer,
                                                          variables, message):
  for impl in (ref, ours):
    with pytest.raises(ValueError, match=message):
      _build_train_op(impl, make_optimizer(), variables)


# ---------------------------------------------------------------------------
# create_estimator_spec_summary.


def _summaries(impl, regularization=None, summary_key_fn=None):
  """{tag: value} of the summaries the helper adds for a loss of 2, in a graph.

  `regularization` lists the regularization loss values, if any.  The helper
  is called inside a name scope, which must not show in the tags.
  """
  with tf.Graph().as_default():
    with tf.name_scope('somewhere/deep'):
      impl.create_estimator_spec_summary(
          tf.constant(2.),
          regularization_losses=(None if regularization is None else
                                 [tf.constant(x) for x in regularization]),
          summary_key_fn=summary_key_fn)
    merged = tf.compat.v1.summary.merge_all()
    with tf.compat.v1.Session() as session:
      summary = tf.compat.v1.Summary.FromString(session.run(merged))
  return {value.tag: value.simple_value for value in summary.value}


def test_summary_has_only_the_loss_without_regularization():
  assert _summaries(ours) == _summaries(ref) == {'loss': 2.}


def test_summary_adds_summed_regularization_loss():
  assert _summaries(ours, [.5, .25]) == _summaries(ref, [.5, .25]) == {
      'loss': 2., 'regularization_loss': .75}


def test_summary_keys_go_through_summary_key_fn():
  def key_fn(key):
    return key + '/my_head'
  assert _summaries(ours, [1.], key_fn) == _summaries(ref, [1.], key_fn) == {
      'loss/my_head': 2., 'regularization_loss/my_head': 1.}


def test_empty_regularization_list_fails_like_the_reference():
  # tf.math.add_n needs at least one input.
  for impl in (ref, ours):
    with pytest.raises(ValueError):
      _summaries(impl, [])


# ---------------------------------------------------------------------------
# The Head interface.


def _head_class(base):
  """A small regression head, written once, built on either Head base.

  It implements `_create_tpu_estimator_spec` only, with the base module's
  helpers, as a head written for `tf.estimator.Head` would.
  """
  impl = ours if base is ours.Head else ref

  class TinyRegressionHead(base):

    def __init__(self, name=None):
      self._name = name

    @property
    def name(self):
      return self._name

    @property
    def logits_dimension(self):
      return 1

    @property
    def loss_reduction(self):
      return tf.losses.Reduction.SUM_OVER_BATCH_SIZE

    def loss(self, labels, logits, features=None, mode=None,
             regularization_losses=None):
      labels = impl.check_dense_labels_match_logits_and_reshape(
          labels, logits, 1)
      loss = tf.reduce_mean(tf.square(labels - logits))
      if regularization_losses:
        loss += tf.add_n(regularization_losses)
      return loss

    def predictions(self, logits, keys=None):
      return {'predictions': impl.check_logits_final_dim(logits, 1)}

    def metrics(self, regularization_losses=None):
      return {self._summary_key('mean_label'): tf.keras.metrics.Mean()}

    def update_metrics(self, eval_metrics, features, logits, labels,
                       mode=None, regularization_losses=None):
      impl.update_metric_with_broadcast_weights(
          eval_metrics[self._summary_key('mean_label')], labels, None)
      return eval_metrics

    def _create_tpu_estimator_spec(self, features, mode, logits, labels=None,
                                   optimizer=None, trainable_variables=None,
                                   train_op_fn=None, update_ops=None,
                                   regularization_losses=None):
      predictions = self.predictions(logits)
      if mode == tf.estimator.ModeKeys.PREDICT:
        return model_fn_lib._TPUEstimatorSpec(  # pylint: disable=W0212
            mode=mode, predictions=predictions)
      loss = self.loss(labels, logits, features, mode, regularization_losses)
      train_op = impl.create_estimator_spec_train_op(
          self.name, optimizer=optimizer,
          trainable_variables=trainable_variables, train_op_fn=train_op_fn,
          update_ops=update_ops, regularized_training_loss=loss,
          loss_reduction=self.loss_reduction)
      impl.create_estimator_spec_summary(loss, regularization_losses,
                                         self._summary_key)
      return model_fn_lib._TPUEstimatorSpec(  # pylint: disable=protected-access
          mode=mode, predictions=predictions, loss=loss, train_op=train_op)

  return TinyRegressionHead


def test_head_subclass_is_an_estimator_head():
  head = _head_class(ours.Head)()
  assert isinstance(head, tf.estimator.Head)
  assert isinstance(head, ours.Head)
  assert issubclass(ours.Head, tf.estimator.Head)


def test_head_implementing_only_tpu_spec_gets_create_estimator_spec():
  for base in (ref.Head, ours.Head):
    head = _head_class(base)()
    spec = head.create_estimator_spec(
        features={}, mode=tf.estimator.ModeKeys.PREDICT,
        logits=tf.constant([[1.5]]))
    assert isinstance(spec, tf.estimator.EstimatorSpec)
    assert spec.predictions['predictions'].numpy().tolist() == [[1.5]]


def test_head_written_for_estimator_trains_the_same_on_either_base():
  def train(base):
    with tf.Graph().as_default():
      w = tf.compat.v1.get_variable('w', initializer=[[1.]])
      head = _head_class(base)(name='tiny')
      spec = head.create_estimator_spec(
          features={}, mode=tf.estimator.ModeKeys.TRAIN,
          logits=tf.matmul(tf.constant([[1.], [2.]]), w),
          labels=tf.constant([3., 4.]),
          optimizer=tf.keras.optimizers.legacy.SGD(0.1),
          trainable_variables=[w],
          regularization_losses=[tf.constant(.5)])
      merged = tf.compat.v1.summary.merge_all()
      with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        loss, _, summary = session.run([spec.loss, spec.train_op, merged])
        summary = tf.compat.v1.Summary.FromString(summary)
        tags = {value.tag: value.simple_value for value in summary.value}
        return loss, session.run(w).item(), tags
  loss, trained, tags = train(ours.Head)
  assert (loss, trained, tags) == train(ref.Head)
  # loss = ((3 - 1)**2 + (4 - 2)**2) / 2 + 0.5; d/dw = -(2*1 + 2*2) = -6.
  assert loss == pytest.approx(4.5)
  assert trained == pytest.approx(1.6)
  assert tags == {'loss/tiny': pytest.approx(4.5),
                  'regularization_loss/tiny': .5}


@pytest.mark.parametrize('name, expected', [('head_a', 'loss/head_a'),
                                            (None, 'loss'), ('', 'loss')])
def test_summary_key_is_suffixed_with_the_head_name(name, expected):
  for base in (ref.Head, ours.Head):
    head = _head_class(base)(name)
    assert head._summary_key('loss') == expected  # pylint: disable=W0212


_HEAD_MEMBERS = {
    'name': property(lambda self: 'h'),
    'logits_dimension': property(lambda self: 1),
    'loss_reduction': property(lambda self: 'sum'),
    'loss': lambda self, labels, logits, features=None, mode=None,
                   regularization_losses=None: 0.,
    'predictions': lambda self, logits, keys=None: {},
    'metrics': lambda self, regularization_losses=None: {},
    'update_metrics': lambda self, eval_metrics, features, logits, labels,
                             mode=None, regularization_losses=None: {},
}


def _spec_less_head_class(base, without=()):
  """A head implementing neither spec method, nor the members `without`."""
  body = {key: value for key, value in _HEAD_MEMBERS.items()
          if key not in without}
  return type('SpecLessHead', (base,), body)


def test_head_without_any_spec_method_raises_not_implemented():
  for base in (ref.Head, ours.Head):
    head = _spec_less_head_class(base)()
    with pytest.raises(NotImplementedError, match='Subclasses of Head must '
                       r'implement `create_estimator_spec\(\)` or '
                       r'_create_tpu_estimator_spec\(\)'):
      head.create_estimator_spec(features={}, mode='infer',
                                 logits=tf.zeros([1, 1]))


def test_default_tpu_spec_raises_not_implemented():
  for base in (ref.Head, ours.Head):
    head = _spec_less_head_class(base)()
    with pytest.raises(NotImplementedError,
                       match='TPUEstimatorSpec not available'):
      # pylint: disable-next=protected-access
      head._create_tpu_estimator_spec({}, 'infer', tf.zeros([1, 1]))


@pytest.mark.parametrize('missing', sorted(_HEAD_MEMBERS))
def test_head_missing_an_abstract_member_cannot_be_instantiated(missing):
  for base in (ref.Head, ours.Head):
    with pytest.raises(TypeError, match=missing):
      _spec_less_head_class(base, without=[missing])()


def test_the_base_head_itself_is_abstract():
  with pytest.raises(TypeError, match='abstract'):
    ours.Head()  # pylint: disable=abstract-class-instantiated
