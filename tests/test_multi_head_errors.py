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

from tensorflow_multihead import contrib
from tensorflow_multihead import MultiHead
from tests import differential as diff
from tests.support import tf1_reference

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


_LOGITS_FOR_NO_HEAD = {**_LOGITS, 'cliks': _LOGITS['clicks']}


@pytest.mark.parametrize('call', sorted(_calls()) + ['predictions'])
def test_logits_for_no_head_are_refused_naming_the_key(call):
  calls = _calls(logits=_LOGITS_FOR_NO_HEAD)
  calls['predictions'] = lambda make: make(_heads()).predictions(
      _LOGITS_FOR_NO_HEAD)
  error = _error(lambda: calls[call](diff.our_multi_head))
  assert type(error) is ValueError
  assert "logits has values for unknown head(s): ['cliks']" in str(error)
  assert "The heads are: ['clicks', 'kind']" in str(error)


def test_reference_ignores_logits_for_no_head():
  multi_head = diff.reference_multi_head(_heads())
  assert float(multi_head.loss(_LABELS, _LOGITS_FOR_NO_HEAD, _FEATURES)) == (
      pytest.approx(float(multi_head.loss(_LABELS, _LOGITS, _FEATURES))))


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


def test_prediction_key_no_head_has_is_refused_listing_the_heads_keys():
  error = _error(lambda: diff.our_multi_head(_heads()).predictions(
      _LOGITS, keys=['logistics']))
  assert type(error) is ValueError
  assert "No head has the predictions ['logistics']" in str(error)
  assert ("The heads have: {'clicks': ['all_class_ids', 'all_classes', "
          "'class_ids', 'classes', 'logistic', 'logits', 'probabilities'], "
          "'kind': ['all_class_ids', 'all_classes', 'class_ids', 'classes', "
          "'logits', 'probabilities']}") in str(error)


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


@pytest.mark.parametrize('width', [5, 3])
def test_unknown_width_logits_of_another_width_fail_naming_heads_and_widths(
    width):
  error = _error(lambda: _predict_with_unknown_width(
      diff.our_multi_head, _FIVE_WIDE[:, :width]))
  assert isinstance(error, tf.errors.InvalidArgumentError)
  assert ('Could not split logits among the heads [clicks, kind] with '
          'individual logits dimensions: [1, 3]. The last dimension of the '
          f'logits tensor should equal 4 but is:] [{width}]') in error.message


def test_unknown_width_logits_of_the_right_width_are_split():
  np.testing.assert_array_equal(
      _predict_with_unknown_width(diff.our_multi_head, _FIVE_WIDE[:, :4]),
      [[1., 2., 3.], [6., 7., 8.]])


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


# Heads of different loss_reductions merge as in the reference: they
# evaluate, predict and export; reading `loss_reduction`, as TRAIN does,
# raises.


def _mixed_reduction_heads():
  return [tf.estimator.BinaryClassHead(name='clicks'),
          tf.estimator.RegressionHead(
              name='value', loss_reduction=tf.losses.Reduction.SUM)]


_MIXED_LOGITS = {'clicks': _LOGITS['clicks'],
                 'value': np.array([[0.5], [3.]], np.float32)}
_MIXED_LABELS = {'clicks': _LABELS['clicks'],
                 'value': np.array([[1.], [2.]], np.float32)}


def test_mixed_loss_reduction_property_raises_value_error_like_reference():
  errors = _errors(lambda make: make(_mixed_reduction_heads()).loss_reduction)
  assert type(errors['reference']) is ValueError
  assert type(errors['ours']) is ValueError
  assert str(errors['reference']) == (
      'The loss_reduction must be the same for different heads. '
      "Given: ['sum_over_batch_size', 'sum']")
  assert str(errors['ours']) == str(errors['reference']) + (
      " (by head: {'clicks': 'sum_over_batch_size', 'value': 'sum'}).")


def _mixed_spec_values(make, mode):
  """Runs the mixed heads' EVAL or PREDICT spec; returns its values."""
  with tf.Graph().as_default():
    spec = make(_mixed_reduction_heads()).create_estimator_spec(
        features={}, mode=mode,
        logits={name: tf.constant(value)
                for name, value in _MIXED_LOGITS.items()},
        labels=None if mode == PREDICT else _MIXED_LABELS)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.local_variables_initializer())
      values = {'predictions': session.run(spec.predictions)}
      if mode == EVAL:
        session.run({key: update for key, (_, update)
                     in spec.eval_metric_ops.items()})
        values['loss'] = session.run(spec.loss)
        values['metrics'] = session.run(
            {key: value for key, (value, _) in spec.eval_metric_ops.items()})
      else:
        values['export_outputs'] = {
            key: session.run(fields) for key, (_, fields) in
            diff.export_output_tensors(spec.export_outputs).items()}
      return values


@pytest.mark.parametrize('mode', [EVAL, PREDICT])
def test_mixed_loss_reduction_evaluates_and_predicts_like_reference(mode):
  ours = _mixed_spec_values(diff.our_multi_head, mode)
  reference = _mixed_spec_values(diff.reference_multi_head, mode)
  diff.assert_same_results(ours, reference)
  if mode == EVAL:
    # clicks: the batch mean of the log loss; value: (0.5 - 1)**2 + 1**2.
    assert ours['metrics']['loss/value'] == pytest.approx(1.25)


def test_mixed_loss_reduction_loss_and_metrics_like_reference_in_eager():
  results = {}
  for side, make in diff.IMPLEMENTATIONS.items():
    multi_head = make(_mixed_reduction_heads())
    metrics = multi_head.update_metrics(multi_head.metrics(), _FEATURES,
                                        _MIXED_LOGITS, _MIXED_LABELS)
    results[side] = {
        'loss': float(multi_head.loss(_MIXED_LABELS, _MIXED_LOGITS,
                                      _FEATURES)),
        'loss_means': {key: float(metrics[key].result())
                       for key in ('loss/clicks', 'loss/value')}}
  diff.assert_same_results(results['ours'], results['reference'])


def test_tensorflow_estimators_own_mixed_loss_reduction_test_passes():
  """TF Estimator's `MultiHeadForEstimator.test_loss_reduction_must_be_same`.

  Its situation, run against both: two multi-label heads, one reducing by
  `SUM_OVER_BATCH_SIZE` and one by `AUTO`; TRAIN, in graph mode, with
  neither an optimizer nor a `train_op_fn`: the reduction error comes first.
  """
  def train(make):
    with tf.Graph().as_default():
      multi_head = make([
          tf.estimator.MultiLabelHead(
              n_classes=2, name='head1',
              loss_reduction=tf.losses.Reduction.SUM_OVER_BATCH_SIZE),
          tf.estimator.MultiLabelHead(
              n_classes=3, name='head2',
              loss_reduction=tf.losses.Reduction.AUTO)])
      multi_head.create_estimator_spec(
          features={'x': np.array(((42,),), dtype=np.int32)},
          mode=TRAIN,
          logits={'head1': np.array([[-10., 10.], [-15., 10.]], np.float32),
                  'head2': np.array([[20., -20., 20.], [-30., 20., -20.]],
                                    np.float32)},
          labels={'head1': np.array([[1, 0], [1, 1]], dtype=np.int64),
                  'head2': np.array([[0, 1, 0], [1, 1, 0]], dtype=np.int64)})

  error = _assert_both_raise(ValueError, train)
  assert 'must be the same' in str(error)
  assert "{'head1': 'sum_over_batch_size', 'head2': 'auto'}" in str(error)


def _mixed_train_spec(make, spec_method='create_estimator_spec'):
  with tf.Graph().as_default():
    tf.compat.v1.train.get_or_create_global_step()
    return getattr(make(_mixed_reduction_heads()), spec_method)(
        features={}, mode=TRAIN, logits=_MIXED_LOGITS, labels=_MIXED_LABELS,
        train_op_fn=_no_op_train_op_fn)


def test_mixed_loss_reduction_train_raises_value_error_like_reference():
  error = _assert_both_raise(ValueError, _mixed_train_spec)
  assert 'The loss_reduction must be the same for different heads' in str(
      error)


def test_mixed_loss_reduction_tpu_train_spec_raises_value_error():
  error = _error(lambda: _mixed_train_spec(diff.our_multi_head,
                                           'create_tpu_estimator_spec'))
  assert type(error) is ValueError
  assert 'The loss_reduction must be the same for different heads' in str(
      error)


def test_nested_multi_head_of_mixed_reductions_is_named_when_read():
  outer = MultiHead([MultiHead(_mixed_reduction_heads()),
                     tf.estimator.MultiClassHead(3, name='kind')])
  error = _error(lambda: outer.loss_reduction)
  assert type(error) is ValueError
  assert str(error).startswith(
      "Head 'clicks_value': The loss_reduction must be the same")


# Labels for no head are ignored, as the reference ignores them.


_LABELS_FOR_NO_HEAD = {**_LABELS, 'cliks': _LABELS['clicks'],
                       'price': np.array([[1.], [2.]], np.float32)}


def _values(result):
  """Numbers from a loss, a spec or a metrics dict, for comparing."""
  if isinstance(result, dict):
    return {key: float(metric.result()) for key, metric in result.items()}
  if isinstance(result, tf.estimator.EstimatorSpec):
    with tf.compat.v1.Session(graph=result.loss.graph) as session:
      session.run(tf.compat.v1.local_variables_initializer())
      return float(session.run(result.loss))
  return float(result)


@pytest.mark.parametrize('call', sorted(_calls()))
def test_labels_for_no_head_are_ignored_like_reference(call):
  with_extra = _calls(labels=_LABELS_FOR_NO_HEAD)[call]
  without = _calls()[call]
  ours = _values(with_extra(diff.our_multi_head))
  assert ours == _values(without(diff.our_multi_head))
  diff.assert_same_results(ours,
                           _values(with_extra(diff.reference_multi_head)))


# An error raised inside a head names that head: same type, the head's own
# message whole after "Head '<name>': ", chained to the head's error.


def _two_heads_of_one_class():
  return [tf.estimator.MultiClassHead(3, name='kind'),
          tf.estimator.MultiClassHead(
              3, label_vocabulary=['ant', 'bee', 'cat'], name='topic')]


_ONE_CLASS_LOGITS = {'kind': np.zeros((2, 3), np.float32),
                     'topic': np.zeros((2, 3), np.float32)}
_ONE_CLASS_LABELS = {'kind': np.array([[2], [0]]),
                     'topic': np.array([[b'bee'], [b'ant']])}
# Each case: which head is given what, that the head refuses.
_HEAD_INPUT_ERRORS = {
    'logits_shape': ('kind', 'logits', np.zeros((2, 2), np.float32)),
    'label_width': ('topic', 'labels', np.array([[b'bee', b'ant']] * 2)),
    'string_labels_without_vocabulary': (
        'kind', 'labels', np.array([[b'bee'], [b'ant']])),
    'integer_labels_for_a_vocabulary': ('topic', 'labels',
                                        np.array([[1], [0]])),
    'label_out_of_range': ('kind', 'labels', np.array([[5], [0]])),
}


def _head_input_calls(case):
  name, what, value = _HEAD_INPUT_ERRORS[case]
  logits, labels = dict(_ONE_CLASS_LOGITS), dict(_ONE_CLASS_LABELS)
  (logits if what == 'logits' else labels)[name] = value

  def spec(make, mode, method='create_estimator_spec'):
    with tf.Graph().as_default():
      return getattr(make(_two_heads_of_one_class()), method)(
          features={}, mode=mode,
          logits={key: tf.constant(value) for key, value in logits.items()},
          labels={key: tf.constant(value) for key, value in labels.items()},
          train_op_fn=_no_op_train_op_fn)

  calls = {
      'loss': lambda make: make(_two_heads_of_one_class()).loss(
          labels, logits, {}),
      'update_metrics': lambda make: make(
          _two_heads_of_one_class()).update_metrics(
              make(_two_heads_of_one_class()).metrics(), {}, logits, labels),
      'eval_spec': lambda make: spec(make, EVAL),
      'train_spec': lambda make: spec(make, TRAIN),
  }
  if what == 'logits':
    calls['predictions'] = lambda make: make(
        _two_heads_of_one_class()).predictions(logits)
    calls['predict_spec'] = lambda make: spec(make, PREDICT)
  return name, calls


def _assert_names_the_head(error, name):
  """`error` is the head's own error, renamed and chained."""
  cause = error.__cause__
  assert type(cause) is type(error)
  assert str(error) == f"Head '{name}': {cause}"


_HEAD_INPUT_CALLS = [
    (case, call) for case in sorted(_HEAD_INPUT_ERRORS)
    for call in sorted(_head_input_calls(case)[1])]


@pytest.mark.parametrize('case, call', _HEAD_INPUT_CALLS)
def test_error_inside_a_head_names_it_as_the_same_type_as_reference(case,
                                                                    call):
  name, calls = _head_input_calls(case)
  errors = _errors(calls[call])
  assert type(errors['ours']) is type(errors['reference'])
  _assert_names_the_head(errors['ours'], name)
  # The head's message is whole; op errors differ only in op names.
  first_line = str(errors['reference']).splitlines()[0]
  assert first_line in str(errors['ours'])


@pytest.mark.parametrize('case', sorted(_HEAD_INPUT_ERRORS))
def test_error_inside_a_head_names_it_in_the_tpu_spec(case):
  name, _ = _head_input_calls(case)
  logits, labels = dict(_ONE_CLASS_LOGITS), dict(_ONE_CLASS_LABELS)
  _, what, value = _HEAD_INPUT_ERRORS[case]
  (logits if what == 'logits' else labels)[name] = value
  with tf.Graph().as_default():
    error = _error(lambda: MultiHead(
        _two_heads_of_one_class()).create_tpu_estimator_spec(
            features={}, mode=EVAL, logits=logits, labels=labels))
  _assert_names_the_head(error, name)


def test_label_out_of_range_known_in_a_graph_is_an_op_error_naming_the_head():
  _, calls = _head_input_calls('label_out_of_range')
  error = _error(lambda: calls['eval_spec'](diff.our_multi_head))
  assert type(error) is tf.errors.InvalidArgumentError
  assert error.message.startswith(
      "Head 'kind': Labels must be <= n_classes - 1")
  assert error.op is error.__cause__.op


class _FailingHead(tf.estimator.RegressionHead):
  """A regression head whose method (or property) `failing` raises `error`."""

  def __init__(self, failing, error, name):
    super().__init__(name=name)
    self._failing = failing
    self._error = error

  @property
  def loss_reduction(self):
    self._fail_in('loss_reduction')
    return super().loss_reduction

  def _fail_in(self, method):
    if method == self._failing:
      raise self._error


def _failing_in(method):
  def call(self, *args, **kwargs):
    self._fail_in(method)  # pylint: disable=protected-access
    return getattr(tf.estimator.RegressionHead, method)(self, *args, **kwargs)
  return call


for _method in ('loss', 'predictions', 'metrics', 'update_metrics'):
  setattr(_FailingHead, _method, _failing_in(_method))


_VALUE_LOGITS = {'kind': _LOGITS['kind'],
                 'value': np.array([[1.], [2.]], np.float32)}
_VALUE_LABELS = {'kind': _LABELS['kind'],
                 'value': np.array([[1.], [0.]], np.float32)}
_PUBLIC_CALLS = {
    'loss': lambda head: head.loss(_VALUE_LABELS, _VALUE_LOGITS, {}),
    'predictions': lambda head: head.predictions(_VALUE_LOGITS),
    'metrics': lambda head: head.metrics(),
    'update_metrics': lambda head: head.update_metrics(
        head.metrics(), {}, _VALUE_LOGITS, _VALUE_LABELS),
    'loss_reduction': lambda head: head.loss_reduction,
}


@pytest.mark.parametrize('method', sorted(_PUBLIC_CALLS))
@pytest.mark.parametrize('error', [
    RuntimeError('broken'), KeyError('broken'),
    tf.errors.InvalidArgumentError(None, None, 'broken'),
    tf.errors.OpError(None, None, 'broken', tf.errors.UNKNOWN)],
                         ids=['runtime', 'key', 'invalid_argument', 'op'])
def test_every_public_method_names_the_head_an_error_came_from(method, error):
  multi_head = MultiHead([tf.estimator.MultiClassHead(3, name='kind'),
                          _FailingHead(method, error, name='value')])
  raised = _error(lambda: _PUBLIC_CALLS[method](multi_head))
  assert type(raised) is type(error)
  assert raised.__cause__ is error
  assert "Head 'value': " in str(raised)
  assert 'broken' in str(raised)


class _TwoArgumentError(Exception):

  def __init__(self, code, text):
    super().__init__(f'{code}: {text}')


def test_an_error_not_built_from_a_message_is_raised_as_it_is():
  error = _TwoArgumentError(7, 'broken')
  multi_head = MultiHead([_FailingHead('loss', error, name='value')])
  assert _error(lambda: multi_head.loss(
      {'value': _VALUE_LABELS['value']}, {'value': _VALUE_LOGITS['value']},
      {})) is error


def test_a_nested_multi_heads_error_names_both_heads():
  inner = MultiHead(_two_heads_of_one_class())
  outer = MultiHead([inner, tf.estimator.RegressionHead(name='value')])
  logits = {'kind_topic': {**_ONE_CLASS_LOGITS,
                           'kind': np.zeros((2, 2), np.float32)},
            'value': _VALUE_LOGITS['value']}
  error = _error(lambda: outer.predictions(logits))
  assert type(error) is ValueError
  assert str(error).startswith(
      "Head 'kind_topic': Head 'kind': logits shape must be")


def test_a_tf1_head_is_refused_saying_what_to_use_instead():
  tf1_heads = {
      'contrib': contrib.regression_head(name='price'),
      'tf1.15': tf1_reference.modules()[0].regression_head(name='price'),
  }
  for tf1_head in tf1_heads.values():
    heads = [tf.estimator.MultiClassHead(3, name='kind'), tf1_head]
    reference = diff.reference_multi_head(heads)  # Takes it, fails later.
    assert type(_error(lambda: reference.loss(  # pylint: disable=cell-var-from-loop
        {'kind': _LABELS['kind'], 'price': _VALUE_LABELS['value']},
        {'kind': _LOGITS['kind'], 'price': _VALUE_LOGITS['value']},
        {}))) is AttributeError
    error = _error(lambda: MultiHead(heads))  # pylint: disable=cell-var-from-loop
    assert type(error) is TypeError
    assert 'heads[1] is not a Head' in str(error)
    assert 'It is a TF 1.x head' in str(error)
    assert 'tensorflow_multihead.contrib.multi_head' in str(error)
    assert 'tf.estimator heads' in str(error)


def test_a_tf1_optimizer_is_refused_saying_what_to_use_instead():
  def train(make):
    with tf.Graph().as_default():
      bias = tf.compat.v1.get_variable('bias', initializer=[0.])
      make(_heads()).create_estimator_spec(
          features={}, mode=TRAIN,
          logits={name: tf.constant(value) + bias
                  for name, value in _LOGITS.items()},
          labels=_LABELS, trainable_variables=[bias],
          optimizer=tf.compat.v1.train.AdagradOptimizer(0.1))

  error = _assert_both_raise(ValueError, train)
  assert str(error).startswith(
      'The given optimizer is not a tf.keras.optimizers.Optimizer instance.')
  assert 'It is a TF 1.x optimizer' in str(error)
  assert 'tf.keras.optimizers.legacy' in str(error)
  assert 'train_op_fn=' in str(error)


# `predictions(keys=...)` takes a list or tuple.


@pytest.mark.parametrize('keys', ['probabilities', b'probabilities'],
                         ids=['str', 'bytes'])
def test_predictions_refuse_a_bare_string_as_tf_estimator_heads_do(keys):
  head = tf.estimator.MultiClassHead(3, name='kind')
  assert type(_error(lambda: head.predictions(_LOGITS['kind'], keys=keys))) is (
      ValueError)
  error = _error(lambda: diff.our_multi_head(_heads()).predictions(
      _LOGITS, keys=keys))
  assert type(error) is ValueError
  assert 'keys must be a list or tuple' in str(error)
  assert f'keys=[{keys!r}]' in str(error)


def test_reference_multi_head_ignores_keys_even_a_bare_string():
  predictions = diff.reference_multi_head(_heads()).predictions(
      _LOGITS, keys='probabilities')
  assert len(predictions) == 13


def test_predictions_take_keys_as_a_tuple():
  predictions = diff.our_multi_head(_heads()).predictions(
      _LOGITS, keys=('probabilities',))
  assert sorted(predictions) == [('clicks', 'probabilities'),
                                 ('kind', 'probabilities')]
