"""Bad input: ours raises what `tf.estimator.MultiHead` raises, or better.

The first part feeds both multi-heads the same bad input and expects the
same exception type from both, with our message naming the head and key at
fault. The second part pins each deliberate difference: the reference's
behaviour side by side with ours, so that the documentation can cite it.
The last part pins differences found while testing that are not (yet) on
the deliberate list.
"""
import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import MultiHead
from tests import differential as diff

TRAIN, EVAL, PREDICT = diff.TRAIN, diff.EVAL, diff.PREDICT


def _heads():
  return [tf.estimator.BinaryClassHead(name='clicks'),
          tf.estimator.MultiClassHead(n_classes=3, name='kind')]


_LOGITS = {'clicks': np.array([[0.], [1.]], np.float32),
           'kind': np.array([[0., 1., 2.], [2., 1., 0.]], np.float32)}
_LABELS = {'clicks': np.array([[1], [0]]), 'kind': np.array([[2], [0]])}
_FEATURES = {'x': np.zeros((2, 1), np.float32)}


def _error(call):
  """Returns the exception that `call()` raises."""
  with pytest.raises(Exception) as info:
    call()
  return info.value


def _errors(call_with):
  """Maps each implementation to the exception `call_with(make)` raises."""
  return {name: _error(lambda make=make: call_with(make))
          for name, make in diff.IMPLEMENTATIONS.items()}


def _assert_both_raise(expected_type, call_with):
  """Asserts both raise exactly `expected_type`; returns our exception."""
  errors = _errors(call_with)
  assert type(errors['reference']) is expected_type, errors['reference']
  assert type(errors['ours']) is expected_type, errors['ours']
  return errors['ours']


def _spec(make, mode, logits=None, labels=_LABELS, heads=None, **kwargs):
  """Builds `create_estimator_spec` in a new graph; returns the spec."""
  with tf.Graph().as_default():
    multi_head = make(heads or _heads())
    logits = _LOGITS if logits is None else logits
    if isinstance(logits, dict):
      logits = {name: tf.constant(value) for name, value in logits.items()}
    else:
      logits = tf.constant(logits)
    return multi_head.create_estimator_spec(
        features={key: tf.constant(value)
                  for key, value in _FEATURES.items()},
        mode=mode, logits=logits, labels=labels, **kwargs)


def _no_op_train_op_fn(loss):
  del loss
  return tf.no_op()


def _calls(logits=None, labels=None):
  """Every entry point that reads logits and labels, by name."""
  logits = _LOGITS if logits is None else logits
  labels = _LABELS if labels is None else labels
  return {
      'loss': lambda make: make(_heads()).loss(labels, logits, _FEATURES),
      'update_metrics': lambda make: make(_heads()).update_metrics(
          make(_heads()).metrics(), _FEATURES, logits, labels),
      'eval_spec': lambda make: _spec(make, EVAL, logits, labels),
      'train_spec': lambda make: _spec(
          make, TRAIN, logits, labels, train_op_fn=_no_op_train_op_fn),
  }


# Same exception type as the reference.


@pytest.mark.parametrize('heads', [[], (), None], ids=['list', 'tuple', 'None'])
def test_no_heads_raise_value_error_like_reference(heads):
  error = _assert_both_raise(ValueError, lambda make: make(heads))
  assert 'Must specify heads' in str(error)


def test_head_without_name_raises_value_error_like_reference():
  heads = [tf.estimator.RegressionHead(name='value'),
           tf.estimator.BinaryClassHead()]
  error = _assert_both_raise(ValueError, lambda make: make(heads))
  assert 'must have name specified' in str(error)
  assert 'heads[1] has name None' in str(error)


def test_head_weights_of_wrong_length_raise_value_error_like_reference():
  error = _assert_both_raise(
      ValueError, lambda make: make(_heads(), head_weights=[1., 2., 3.]))
  assert 'len(heads): 2' in str(error)
  assert 'len(head_weights): 3' in str(error)


_MISSING_LOGITS = {'clicks': _LOGITS['clicks']}


@pytest.mark.parametrize('call', sorted(_calls()) + ['predictions',
                                                      'predict_spec'])
def test_logits_dict_missing_a_head_raises_value_error_like_reference(call):
  calls = _calls(logits=_MISSING_LOGITS)
  calls['predictions'] = lambda make: make(_heads()).predictions(
      _MISSING_LOGITS)
  calls['predict_spec'] = lambda make: _spec(make, PREDICT, _MISSING_LOGITS,
                                             labels=None)
  error = _assert_both_raise(ValueError, calls[call])
  assert "logits has missing values for head(s): ['kind']" in str(error)
  assert "Given keys: ['clicks']" in str(error)


@pytest.mark.parametrize('call', sorted(_calls()))
def test_labels_not_a_dict_raise_value_error_like_reference(call):
  labels = np.array([[1], [0]])
  error = _assert_both_raise(ValueError, _calls(labels=labels)[call])
  assert 'labels must be a dict' in str(error)
  assert "['clicks', 'kind']" in str(error)


@pytest.mark.parametrize('call', sorted(_calls()))
def test_labels_missing_a_head_raise_value_error_like_reference(call):
  labels = {'kind': _LABELS['kind']}
  error = _assert_both_raise(ValueError, _calls(labels=labels)[call])
  assert "labels has missing values for head(s): ['clicks']" in str(error)
  assert "Given keys: ['kind']" in str(error)


_TOO_WIDE_LOGITS = np.zeros((2, 5), np.float32)


@pytest.mark.parametrize('call', sorted(_calls()) + ['predictions',
                                                      'predict_spec'])
def test_logits_tensor_of_wrong_static_width_raises_value_error_like_reference(
    call):
  calls = _calls(logits=_TOO_WIDE_LOGITS)
  calls['predictions'] = lambda make: make(_heads()).predictions(
      _TOO_WIDE_LOGITS)
  calls['predict_spec'] = lambda make: _spec(
      make, PREDICT, tf.constant(_TOO_WIDE_LOGITS), labels=None)
  error = _assert_both_raise(ValueError, calls[call])
  assert "among the heads ['clicks', 'kind']" in str(error)
  assert 'dimensions: [1, 3]' in str(error)
  assert 'should equal 4 but is 5' in str(error)


def test_wrong_static_width_message_states_expected_and_given_width():
  """The reference swaps the two numbers; ours states them right."""
  errors = _errors(lambda make: make(_heads()).predictions(_TOO_WIDE_LOGITS))
  assert 'should equal 5 but is 4' in str(errors['reference'])
  assert 'should equal 4 but is 5' in str(errors['ours'])


@pytest.mark.parametrize('labels', [_LABELS, None], ids=['labels', 'none'])
def test_unknown_mode_raises_value_error_like_reference(labels):
  error = _assert_both_raise(
      ValueError, lambda make: _spec(make, 'bogus', labels=labels))
  assert str(error) == 'mode=bogus unrecognized'


def test_train_without_optimizer_or_train_op_fn_raises_value_error():
  error = _assert_both_raise(ValueError, lambda make: _spec(make, TRAIN))
  assert 'train_op_fn and optimizer cannot both be None' in str(error)


def test_train_with_both_optimizer_and_train_op_fn_raises_value_error():
  def build(make):
    with tf.Graph().as_default():
      bias = tf.compat.v1.get_variable('bias', initializer=[0.])
      return make(_heads()).create_estimator_spec(
          features={}, mode=TRAIN,
          logits={name: tf.constant(value) + bias
                  for name, value in _LOGITS.items()},
          labels=_LABELS, train_op_fn=_no_op_train_op_fn,
          optimizer=tf.keras.optimizers.legacy.SGD(),
          trainable_variables=[bias])
  error = _assert_both_raise(ValueError, build)
  assert 'train_op_fn and optimizer cannot both be set' in str(error)


@pytest.mark.parametrize('mode', [TRAIN, EVAL])
def test_spec_without_labels_in_train_or_eval_raises_value_error(mode):
  error = _assert_both_raise(
      ValueError, lambda make: _spec(make, mode, labels=None,
                                     train_op_fn=_no_op_train_op_fn))
  assert f'labels are required in mode {mode}' in str(error)


def test_predict_spec_needs_no_labels_in_either():
  for make in diff.IMPLEMENTATIONS.values():
    spec = _spec(make, PREDICT, labels=None)
    assert ('kind', 'probabilities') in spec.predictions


# Deliberate differences: the reference's behaviour beside ours.


def _same_name_regression_heads():
  return [tf.estimator.RegressionHead(name='value'),
          tf.estimator.RegressionHead(name='value')]


def test_duplicate_head_names_are_refused_naming_the_name():
  error = _error(lambda: diff.our_multi_head(_same_name_regression_heads()))
  assert type(error) is ValueError
  assert "heads[0] and heads[1] are both named 'value'" in str(error)


def test_reference_lets_a_duplicate_name_overwrite_the_first_heads_output():
  multi_head = diff.reference_multi_head(_same_name_regression_heads())
  logits = np.array([[1., 2.], [3., 4.]], np.float32)
  predictions = multi_head.predictions(logits)
  assert list(predictions) == [('value', 'predictions')]
  # The first head's column [1, 3] is lost; only the second's remains.
  np.testing.assert_allclose(predictions[('value', 'predictions')],
                             [[2.], [4.]])


@pytest.mark.parametrize('what', ['logits', 'labels'])
def test_unknown_key_is_refused_naming_the_key(what):
  logits, labels = dict(_LOGITS), dict(_LABELS)
  (logits if what == 'logits' else labels)['cliks'] = _LOGITS['clicks']
  error = _error(
      lambda: diff.our_multi_head(_heads()).loss(labels, logits, _FEATURES))
  assert type(error) is ValueError
  assert f"{what} has values for unknown head(s): ['cliks']" in str(error)
  assert "The heads are: ['clicks', 'kind']" in str(error)


@pytest.mark.parametrize('what', ['logits', 'labels'])
def test_reference_ignores_an_unknown_key(what):
  logits, labels = dict(_LOGITS), dict(_LABELS)
  (logits if what == 'logits' else labels)['cliks'] = _LOGITS['clicks']
  multi_head = diff.reference_multi_head(_heads())
  assert float(multi_head.loss(labels, logits, _FEATURES)) == pytest.approx(
      float(multi_head.loss(_LABELS, _LOGITS, _FEATURES)))


@pytest.mark.parametrize('weight', ['2', None, True, [1.]],
                         ids=['str', 'None', 'bool', 'list'])
def test_non_numeric_head_weight_is_refused_naming_the_head(weight):
  error = _error(
      lambda: diff.our_multi_head(_heads(), head_weights=[1., weight]))
  assert type(error) is TypeError
  assert "the weight of head 'kind' is" in str(error)


def test_reference_takes_a_non_numeric_weight_and_fails_only_in_loss():
  multi_head = diff.reference_multi_head(_heads(), head_weights=[1., '2'])
  error = _error(lambda: multi_head.loss(_LABELS, _LOGITS, _FEATURES))
  assert type(error) is TypeError
  assert "'2'" in str(error)


def test_reference_counts_a_bool_weight_as_one():
  weighted = diff.reference_multi_head(_heads(), head_weights=[True, 1.])
  plain = diff.reference_multi_head(_heads())
  assert float(weighted.loss(_LABELS, _LOGITS, _FEATURES)) == pytest.approx(
      float(plain.loss(_LABELS, _LOGITS, _FEATURES)))


def _mixed_reduction_heads():
  return [tf.estimator.BinaryClassHead(name='clicks'),
          tf.estimator.RegressionHead(
              name='value', loss_reduction=tf.losses.Reduction.SUM)]


def test_heads_of_mixed_loss_reduction_are_refused_at_construction():
  error = _error(lambda: diff.our_multi_head(_mixed_reduction_heads()))
  assert type(error) is ValueError
  assert 'The loss_reduction must be the same for different heads' in str(
      error)
  assert "'value': 'sum'" in str(error)


def test_reference_refuses_mixed_loss_reduction_only_when_train_reads_it():
  multi_head = diff.reference_multi_head(_mixed_reduction_heads())
  assert multi_head.name == 'clicks_value'
  assert type(_error(lambda: multi_head.loss_reduction)) is ValueError
  logits = {'clicks': _LOGITS['clicks'], 'value': _LOGITS['clicks']}
  labels = {'clicks': _LABELS['clicks'],
            'value': np.array([[1.], [2.]], np.float32)}
  assert float(multi_head.loss(labels, logits, _FEATURES)) > 0.
  error = _error(lambda: _spec(
      diff.reference_multi_head, TRAIN, logits, labels,
      heads=_mixed_reduction_heads(), train_op_fn=_no_op_train_op_fn))
  assert type(error) is ValueError


@pytest.mark.parametrize('call', ['loss', 'update_metrics'])
def test_labels_none_raise_value_error_where_reference_raises_type_error(call):
  calls = {
      'loss': lambda make: make(_heads()).loss(None, _LOGITS, _FEATURES),
      'update_metrics': lambda make: make(_heads()).update_metrics(
          make(_heads()).metrics(), _FEATURES, _LOGITS, None)}
  errors = _errors(calls[call])
  assert type(errors['reference']) is TypeError
  assert type(errors['ours']) is ValueError
  assert "with keys ['clicks', 'kind']" in str(errors['ours'])


@pytest.mark.parametrize('not_a_head', ['clicks', object(), None],
                         ids=['str', 'object', 'None'])
def test_a_non_head_is_refused_with_type_error(not_a_head):
  heads = [tf.estimator.BinaryClassHead(name='clicks'), not_a_head]
  errors = _errors(lambda make: make(heads))
  assert type(errors['reference']) is AttributeError
  assert type(errors['ours']) is TypeError
  assert 'heads[1] is not a' in str(errors['ours'])


def test_empty_head_name_is_refused_where_reference_accepts_it():
  heads = [tf.estimator.BinaryClassHead(name='')]
  assert diff.reference_multi_head(heads).name == ''
  error = _error(lambda: diff.our_multi_head(heads))
  assert type(error) is ValueError
  assert "heads[0] has name ''" in str(error)


def _two_batches():
  second_logits = {'clicks': np.array([[3.], [-2.]], np.float32),
                   'kind': np.array([[1., 0., 0.], [0., 0., 4.]], np.float32)}
  second_labels = {'clicks': np.array([[0], [0]]),
                   'kind': np.array([[0], [1]])}
  return [(_LOGITS, _LABELS), (second_logits, second_labels)]


def _metrics_over_two_batches(make):
  multi_head = make(_heads())
  eval_metrics = multi_head.metrics()
  for logits, labels in _two_batches():
    eval_metrics = multi_head.update_metrics(eval_metrics, _FEATURES, logits,
                                             labels)
  return {key: float(metric.result()) for key, metric in eval_metrics.items()}


def _batch_losses(head_name):
  head = {head.name: head for head in _heads()}[head_name]
  return [float(head.loss(labels[head_name], logits[head_name], _FEATURES))
          for logits, labels in _two_batches()]


def test_head_metrics_accumulate_over_update_metrics_calls():
  ours = _metrics_over_two_batches(diff.our_multi_head)
  for name in ('clicks', 'kind'):
    assert ours[f'average_loss/{name}'] == pytest.approx(
        np.mean(_batch_losses(name)), rel=1e-6)
    assert ours[f'loss/{name}'] == pytest.approx(
        np.mean(_batch_losses(name)), rel=1e-6)


def test_reference_head_metrics_keep_only_the_last_update_metrics_batch():
  reference = _metrics_over_two_batches(diff.reference_multi_head)
  for name in ('clicks', 'kind'):
    assert reference[f'average_loss/{name}'] == pytest.approx(
        _batch_losses(name)[1], rel=1e-6)
    # Only the multi-head's own loss means accumulate.
    assert reference[f'loss/{name}'] == pytest.approx(
        np.mean(_batch_losses(name)), rel=1e-6)


def test_metrics_returns_each_heads_metrics_beside_the_loss_means():
  regularization = [tf.constant(1.)]
  ours = diff.our_multi_head(_heads()).metrics(regularization)
  reference = diff.reference_multi_head(_heads()).metrics(regularization)
  assert sorted(reference) == ['loss/clicks', 'loss/kind',
                               'regularization_loss/clicks_kind']
  assert set(ours) - set(reference) == {
      'accuracy/clicks', 'accuracy/kind', 'accuracy_baseline/clicks',
      'auc/clicks', 'auc_precision_recall/clicks', 'average_loss/clicks',
      'average_loss/kind', 'label/mean/clicks', 'precision/clicks',
      'prediction/mean/clicks', 'recall/clicks'}
  assert set(reference) <= set(ours)


def test_predictions_honour_plain_keys_for_every_head():
  predictions = diff.our_multi_head(_heads()).predictions(
      _LOGITS, keys=['logits', 'class_ids'])
  assert sorted(predictions) == [
      ('clicks', 'class_ids'), ('clicks', 'logits'),
      ('kind', 'class_ids'), ('kind', 'logits')]
  np.testing.assert_array_equal(predictions[('kind', 'class_ids')],
                                [[2], [0]])


def test_predictions_honour_head_key_pairs():
  predictions = diff.our_multi_head(_heads()).predictions(
      _LOGITS, keys=[('kind', 'probabilities')])
  assert list(predictions) == [('kind', 'probabilities')]


def test_reference_predictions_ignore_keys():
  predictions = diff.reference_multi_head(_heads()).predictions(
      _LOGITS, keys=['logits'])
  assert len(predictions) == 13
  assert ('kind', 'probabilities') in predictions


def test_prediction_key_pair_naming_an_unknown_head_is_refused():
  error = _error(lambda: diff.our_multi_head(_heads()).predictions(
      _LOGITS, keys=[('kinds', 'logits')]))
  assert type(error) is ValueError
  assert "unknown head 'kinds'" in str(error)


def test_plain_prediction_key_asks_only_the_heads_that_have_it():
  predictions = diff.our_multi_head(_heads()).predictions(
      _LOGITS, keys=['logistic'])  # Only the binary head has it.
  assert [head for head, _ in predictions] == ['clicks']


def test_prediction_key_no_head_has_is_refused_naming_the_key():
  error = _error(lambda: diff.our_multi_head(_heads()).predictions(
      _LOGITS, keys=['logistics']))
  assert type(error) is ValueError
  assert 'logistics' in str(error)


def test_prediction_pair_a_head_lacks_is_refused_naming_the_head():
  error = _error(lambda: diff.our_multi_head(_heads()).predictions(
      _LOGITS, keys=[('kind', 'logistic')]))
  assert type(error) is ValueError
  assert "Head 'kind'" in str(error)
  assert 'logistic' in str(error)


def _predict_with_unknown_width(make, fed_logits):
  with tf.Graph().as_default():
    logits = tf.compat.v1.placeholder(tf.float32, [None, None])
    spec = make(_heads()).create_estimator_spec(
        features={}, mode=PREDICT, logits=logits)
    with tf.compat.v1.Session() as session:
      return session.run(spec.predictions[('kind', 'logits')],
                         {logits: fed_logits})


_FIVE_WIDE = np.arange(10, dtype=np.float32).reshape(2, 5)


def test_unknown_width_logits_too_wide_at_run_time_raise():
  error = _error(lambda: _predict_with_unknown_width(diff.our_multi_head,
                                                     _FIVE_WIDE))
  assert isinstance(error, tf.errors.InvalidArgumentError)


def test_reference_silently_drops_extra_columns_of_unknown_width_logits():
  kind_logits = _predict_with_unknown_width(diff.reference_multi_head,
                                            _FIVE_WIDE)
  np.testing.assert_array_equal(kind_logits, [[1., 2., 3.], [6., 7., 8.]])


def test_default_head_chooses_the_served_head():
  for default_head, served in (('kind', 3), ('clicks', 2)):
    with tf.Graph().as_default():
      spec = MultiHead(
          _heads(), default_head=default_head).create_estimator_spec(
              features={}, mode=PREDICT,
              logits={name: tf.constant(value)
                      for name, value in _LOGITS.items()})
      outputs = spec.export_outputs
      assert outputs['serving_default'] is outputs[default_head]
      assert outputs['serving_default'].scores.shape[-1] == served


def test_unknown_default_head_is_refused_naming_it():
  error = _error(lambda: MultiHead(_heads(), default_head='kinds'))
  assert type(error) is ValueError
  assert "default_head 'kinds' is not one of the heads" in str(error)


def test_reference_has_no_default_head_and_serves_the_first():
  error = _error(lambda: tf.estimator.MultiHead(_heads(), default_head='kind'))
  assert type(error) is TypeError
  spec = _spec(diff.reference_multi_head, PREDICT, labels=None)
  assert spec.export_outputs['serving_default'] is (
      spec.export_outputs['clicks'])


# Differences found while testing, not on the deliberate list.


def test_unknown_rank_logits_work_where_reference_raises_value_error():
  def predict(make):
    with tf.Graph().as_default():
      logits = tf.compat.v1.placeholder(tf.float32)  # Rank unknown.
      spec = make(_heads()).create_estimator_spec(
          features={}, mode=PREDICT, logits=logits)
      with tf.compat.v1.Session() as session:
        return session.run(spec.predictions[('kind', 'logits')],
                           {logits: _FIVE_WIDE[:, :4]})
  error = _error(lambda: predict(diff.reference_multi_head))
  assert type(error) is ValueError
  assert 'unknown TensorShape' in str(error)
  np.testing.assert_array_equal(predict(diff.our_multi_head),
                                [[1., 2., 3.], [6., 7., 8.]])


def test_loss_without_features_works_where_reference_raises():
  reference = _error(
      lambda: diff.reference_multi_head(_heads()).loss(_LABELS, _LOGITS))
  assert type(reference) is AttributeError
  ours = diff.our_multi_head(_heads()).loss(_LABELS, _LOGITS)
  assert float(ours) == pytest.approx(float(
      diff.reference_multi_head(_heads()).loss(_LABELS, _LOGITS, _FEATURES)))


def test_numpy_head_weights_work_where_reference_raises():
  weights = np.array([1., 2.])
  reference = _error(lambda: diff.reference_multi_head(_heads(), weights))
  assert type(reference) is ValueError  # The truth value of an array.
  ours = diff.our_multi_head(_heads(), weights).loss(_LABELS, _LOGITS,
                                                      _FEATURES)
  expected = diff.reference_multi_head(_heads(), [1., 2.]).loss(
      _LABELS, _LOGITS, _FEATURES)
  assert float(ours) == pytest.approx(float(expected))
