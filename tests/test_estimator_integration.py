"""`MultiHead` under `tf.estimator`, side by side with `tf.estimator.MultiHead`.

Every model here is trained once, a few steps, with our head.  The same
checkpoint is then evaluated, predicted and exported under our head and under
the reference's (heads own no variables, so one checkpoint serves both), and
the numbers are compared with each other and with values recomputed in numpy
from the checkpoint's weights.

The problem (see `estimator_fixtures`): heads `clicks` (binary, string
labels), `color` (3 classes) and `value` (regression weighted by feature `w`),
with head weights 1, 0.5 and 2, on 64 rows evaluated in 4 batches of 16.
"""
import types

import numpy as np
import pytest
import tensorflow as tf

import tensorflow_multihead
from tests import estimator_fixtures as fx

pytestmark = pytest.mark.xdist_group('estimator')

TRAIN_STEPS = 3
CANNED_TRAIN_STEPS = 2
REGULARIZATION_KEY = f'regularization_loss/{fx.MULTI_HEAD_NAME}'
EXPECTED_METRIC_KEYS = frozenset({
    'global_step', 'loss',
    'loss/clicks', 'loss/color', 'loss/value',
    'accuracy/clicks', 'accuracy_baseline/clicks', 'auc/clicks',
    'auc_precision_recall/clicks', 'average_loss/clicks', 'label/mean/clicks',
    'precision/clicks', 'prediction/mean/clicks', 'recall/clicks',
    'accuracy/color', 'average_loss/color',
    'average_loss/value', 'label/mean/value', 'prediction/mean/value',
})
EXPECTED_PREDICTION_KEYS = frozenset(
    [('clicks', key) for key in (
        'logits', 'logistic', 'probabilities', 'class_ids', 'classes',
        'all_class_ids', 'all_classes')] +
    [('color', key) for key in (
        'logits', 'probabilities', 'class_ids', 'classes', 'all_class_ids',
        'all_classes')] +
    [('value', 'predictions')])
EXPECTED_SIGNATURE_KEYS = (
    'clicks', 'clicks/classification', 'clicks/predict', 'clicks/regression',
    'color', 'color/classification', 'color/predict',
    'predict', 'serving_default',
    'value', 'value/predict', 'value/regression')


# Helpers.


def _assert_same_metrics(ours, reference):
  assert sorted(ours) == sorted(reference)
  for key in reference:
    np.testing.assert_allclose(ours[key], reference[key], rtol=1e-5,
                               err_msg=key)


def _assert_same_arrays(ours, reference, what):
  assert sorted(map(str, ours)) == sorted(map(str, reference))
  for key in reference:
    if np.asarray(reference[key]).dtype.kind in 'OSU':
      np.testing.assert_array_equal(ours[key], reference[key],
                                    err_msg=f'{what} {key}')
    else:
      np.testing.assert_allclose(ours[key], reference[key], rtol=1e-5,
                                 err_msg=f'{what} {key}')


def _weighted_head_sum(metrics):
  return sum(weight * metrics[f'loss/{name}']
             for name, weight in zip(fx.HEAD_NAMES, fx.HEAD_WEIGHTS))


def _stacked(rows):
  """Turns Estimator.predict's list of row dicts into a dict of arrays."""
  return {key: np.stack([row[key] for row in rows]) for key in rows[0]}


def _per_row_losses(logits):
  """Each head's unreduced loss for every row, from each head's logits."""
  features, labels = fx.make_data()
  z = logits['clicks'][:, 0].astype(np.float64)
  clicked = (labels['clicks'][:, 0] == b'yes').astype(np.float64)
  scores = logits['color'].astype(np.float64)
  shift = scores.max(axis=1, keepdims=True)
  log_norm = (shift + np.log(np.exp(scores - shift).sum(
      axis=1, keepdims=True)))[:, 0]
  color = labels['color'][:, 0]
  value_error = labels['value'][:, 0] - logits['value'][:, 0]
  return {
      'clicks': np.maximum(z, 0) - z * clicked + np.log1p(np.exp(-abs(z))),
      'color': log_norm - scores[np.arange(fx.N_ROWS), color],
      # Weighted, as RegressionHead does with its weight_column.
      'value': features['w'][:, 0] * value_error ** 2,
  }


def _checkpoint_logits(checkpoint, as_dict):
  """Each head's logits, computed in numpy from the checkpoint's layers."""
  features, _ = fx.make_data()

  def dense(layer):
    kernel = tf.train.load_variable(checkpoint, f'{layer}/kernel')
    bias = tf.train.load_variable(checkpoint, f'{layer}/bias')
    return features['x'] @ kernel + bias

  if as_dict:
    return {name: dense(f'logits_{name}') for name in fx.HEAD_NAMES}
  # One layer, its columns split in head order: 1 for clicks, 3 for color,
  # 1 for value.
  all_logits = dense('logits')
  return {'clicks': all_logits[:, :1], 'color': all_logits[:, 1:4],
          'value': all_logits[:, 4:]}


def _regularization(checkpoint, as_dict):
  layers = ([f'logits_{name}' for name in fx.HEAD_NAMES] if as_dict
            else ['logits'])
  squares = sum(np.sum(tf.train.load_variable(checkpoint, f'{layer}/kernel')
                       ** 2) for layer in layers)
  return fx.REGULARIZATION_SCALE * 0.5 * squares


def _trainable_values(checkpoint):
  names = [name for name, _ in tf.train.list_variables(checkpoint)
           if name.startswith('logits')]
  return {name: tf.train.load_variable(checkpoint, name) for name in names}


def _run_signature(signature, examples):
  (input_name,) = signature.structured_input_signature[1]
  outputs = signature(**{input_name: tf.constant(examples)})
  return {key: value.numpy() for key, value in outputs.items()}


# A custom model_fn under tf.estimator.Estimator.


@pytest.fixture(scope='module', params=['dict_logits', 'tensor_logits'])
def custom(request, tmp_path_factory):
  """Trains once with our head; `tensor_logits` also adds regularization."""
  as_dict = request.param == 'dict_logits'
  regularize = not as_dict
  model_dir = tmp_path_factory.mktemp(f'custom_{request.param}')
  train_losses = []
  ours = tf.estimator.Estimator(
      fx.make_model_fn(fx.our_multi_head, as_dict, regularize, train_losses),
      config=fx.run_config(model_dir))
  ours.train(fx.train_input_fn(), steps=TRAIN_STEPS)
  reference = tf.estimator.Estimator(
      fx.make_model_fn(fx.reference_multi_head, as_dict, regularize),
      config=fx.run_config(model_dir))
  return types.SimpleNamespace(
      as_dict=as_dict, regularized=regularize, model_dir=str(model_dir),
      checkpoint=ours.latest_checkpoint(), train_losses=train_losses,
      ours=ours, reference=reference)


@pytest.fixture(scope='module')
def custom_metrics(custom):
  return {
      side: estimator.evaluate(fx.eval_input_fn(), name=side,
                               checkpoint_path=custom.checkpoint)
      for side, estimator in (('ours', custom.ours),
                              ('reference', custom.reference))}


@pytest.fixture(scope='module')
def custom_predictions(custom):
  return {
      side: _stacked(list(estimator.predict(
          fx.predict_input_fn(), checkpoint_path=custom.checkpoint)))
      for side, estimator in (('ours', custom.ours),
                              ('reference', custom.reference))}


@pytest.fixture(scope='module')
def custom_servables(custom, tmp_path_factory):
  """Exports the checkpoint under each head and loads both SavedModels."""
  loaded = {}
  for side, estimator in (('ours', custom.ours),
                          ('reference', custom.reference)):
    export_dir = tmp_path_factory.mktemp(f'export_{side}')
    path = estimator.export_saved_model(
        str(export_dir), fx.serving_input_receiver_fn(),
        checkpoint_path=custom.checkpoint)
    loaded[side] = tf.saved_model.load(path.decode())
  return loaded


@pytest.fixture(scope='module')
def one_more_step(custom, tmp_path_factory):
  """One training step from the checkpoint under each head, warm started."""
  results = {}
  for side, multi_head_fn in (('ours', fx.our_multi_head),
                              ('reference', fx.reference_multi_head)):
    losses = []
    estimator = tf.estimator.Estimator(
        fx.make_model_fn(multi_head_fn, custom.as_dict, custom.regularized,
                         losses),
        config=fx.run_config(tmp_path_factory.mktemp(f'step_{side}')),
        warm_start_from=custom.checkpoint)
    estimator.train(fx.train_input_fn(), steps=1)
    results[side] = types.SimpleNamespace(
        losses=losses,
        variables=_trainable_values(estimator.latest_checkpoint()))
  return results


def test_training_runs_the_requested_steps_and_records_each_loss(custom):
  assert tf.train.load_variable(custom.checkpoint, 'global_step') == (
      TRAIN_STEPS)
  assert len(custom.train_losses) == TRAIN_STEPS
  assert all(np.isfinite(custom.train_losses))


def test_training_step_loss_is_weighted_sum_of_first_batch_head_losses(
    custom, one_more_step):
  # The warm-started step reads rows 0-15 with the checkpoint's weights.
  losses = _per_row_losses(_checkpoint_logits(custom.checkpoint,
                                              custom.as_dict))
  batch = slice(0, fx.BATCH_SIZE)
  expected = sum(weight * losses[name][batch].mean()
                 for name, weight in zip(fx.HEAD_NAMES, fx.HEAD_WEIGHTS))
  if custom.regularized:
    expected += _regularization(custom.checkpoint, custom.as_dict)
  np.testing.assert_allclose(one_more_step['ours'].losses, [expected],
                             rtol=1e-5)


def test_training_step_loss_and_updated_weights_equal_reference(
    one_more_step):
  ours, reference = one_more_step['ours'], one_more_step['reference']
  np.testing.assert_allclose(ours.losses, reference.losses, rtol=1e-6)
  _assert_same_arrays(ours.variables, reference.variables, 'variable')


def test_training_step_changes_every_weight(custom, one_more_step):
  before = _trainable_values(custom.checkpoint)
  after = one_more_step['ours'].variables
  assert sorted(after) == sorted(before)
  for name in before:
    assert not np.allclose(after[name], before[name]), name


def test_eval_metric_keys_are_loss_and_every_head_metric(custom,
                                                         custom_metrics):
  expected = set(EXPECTED_METRIC_KEYS)
  if custom.regularized:
    expected.add(REGULARIZATION_KEY)
  assert set(custom_metrics['ours']) == expected


def test_eval_metrics_equal_reference_on_the_same_checkpoint(custom_metrics):
  _assert_same_metrics(custom_metrics['ours'], custom_metrics['reference'])


def test_eval_global_step_is_the_checkpoint_step(custom_metrics):
  assert custom_metrics['ours']['global_step'] == TRAIN_STEPS


def test_eval_loss_is_weighted_sum_of_head_losses_plus_regularization(
    custom, custom_metrics):
  metrics = custom_metrics['ours']
  expected = _weighted_head_sum(metrics)
  if custom.regularized:
    expected += metrics[REGULARIZATION_KEY]
  np.testing.assert_allclose(metrics['loss'], expected, rtol=1e-5)


def test_eval_regularization_loss_is_the_l2_penalty_of_the_checkpoint(
    custom, custom_metrics):
  if not custom.regularized:
    assert REGULARIZATION_KEY not in custom_metrics['ours']
    return
  np.testing.assert_allclose(
      custom_metrics['ours'][REGULARIZATION_KEY],
      _regularization(custom.checkpoint, custom.as_dict), rtol=1e-5)


def test_eval_metrics_equal_values_recomputed_from_the_checkpoint(
    custom, custom_metrics):
  features, labels = fx.make_data()
  logits = _checkpoint_logits(custom.checkpoint, custom.as_dict)
  losses = _per_row_losses(logits)
  weight = features['w'][:, 0]
  clicks_logits = logits['clicks'][:, 0]
  clicked = labels['clicks'][:, 0] == b'yes'
  value = labels['value'][:, 0]
  predicted_value = logits['value'][:, 0]
  expected = {
      'loss/clicks': losses['clicks'].mean(),
      'average_loss/clicks': losses['clicks'].mean(),
      'accuracy/clicks': np.mean((clicks_logits > 0) == clicked),
      'label/mean/clicks': clicked.mean(),
      'prediction/mean/clicks': np.mean(1 / (1 + np.exp(-clicks_logits))),
      'loss/color': losses['color'].mean(),
      'average_loss/color': losses['color'].mean(),
      'accuracy/color': np.mean(
          np.argmax(logits['color'], axis=1) == labels['color'][:, 0]),
      # SUM_OVER_BATCH_SIZE divides by the rows; average_loss by the weights.
      'loss/value': losses['value'].sum() / fx.N_ROWS,
      'average_loss/value': losses['value'].sum() / weight.sum(),
      'label/mean/value': np.sum(weight * value) / weight.sum(),
      'prediction/mean/value': (
          np.sum(weight * predicted_value) / weight.sum()),
  }
  metrics = custom_metrics['ours']
  for key, value in expected.items():
    np.testing.assert_allclose(metrics[key], value, rtol=1e-4, err_msg=key)


def test_predictions_are_keyed_by_head_name_and_prediction_key(
    custom_predictions):
  assert set(custom_predictions['ours']) == EXPECTED_PREDICTION_KEYS


def test_predictions_equal_reference_on_the_same_checkpoint(
    custom_predictions):
  _assert_same_arrays(custom_predictions['ours'],
                      custom_predictions['reference'], 'prediction')


def test_predicted_logits_are_the_checkpoint_layers_split_in_head_order(
    custom, custom_predictions):
  expected = _checkpoint_logits(custom.checkpoint, custom.as_dict)
  predictions = custom_predictions['ours']
  np.testing.assert_allclose(predictions[('clicks', 'logits')],
                             expected['clicks'], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(predictions[('color', 'logits')],
                             expected['color'], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(predictions[('value', 'predictions')],
                             expected['value'], rtol=1e-5, atol=1e-6)


def test_predicted_classes_follow_the_logits(custom_predictions):
  predictions = custom_predictions['ours']
  clicked = predictions[('clicks', 'logits')][:, 0] > 0
  np.testing.assert_array_equal(
      predictions[('clicks', 'classes')][:, 0],
      np.where(clicked, b'yes', b'no').astype(object))
  np.testing.assert_array_equal(
      predictions[('color', 'class_ids')][:, 0],
      np.argmax(predictions[('color', 'logits')], axis=1))


def test_estimator_predict_keys_select_tuple_keys_like_reference(custom):
  chosen = [('color', 'class_ids'), ('value', 'predictions')]
  ours, reference = (
      _stacked(list(estimator.predict(
          fx.predict_input_fn(), predict_keys=chosen,
          checkpoint_path=custom.checkpoint)))
      for estimator in (custom.ours, custom.reference))
  assert set(ours) == set(chosen)
  _assert_same_arrays(ours, reference, 'prediction')


def test_export_has_every_head_signature_like_reference(custom_servables):
  ours = sorted(custom_servables['ours'].signatures)
  assert ours == list(EXPECTED_SIGNATURE_KEYS)
  assert ours == sorted(custom_servables['reference'].signatures)


@pytest.mark.parametrize('signature_key', EXPECTED_SIGNATURE_KEYS)
def test_exported_signature_outputs_equal_reference(custom_servables,
                                                    signature_key):
  examples = fx.serialized_examples(fx.make_data()[0]['x'])
  ours, reference = (
      _run_signature(custom_servables[side].signatures[signature_key],
                     examples) for side in ('ours', 'reference'))
  _assert_same_arrays(ours, reference, signature_key)


def test_serving_default_serves_the_first_head_classification(
    custom_servables, custom_predictions):
  examples = fx.serialized_examples(fx.make_data()[0]['x'])
  outputs = _run_signature(
      custom_servables['ours'].signatures['serving_default'], examples)
  assert sorted(outputs) == ['classes', 'scores']
  np.testing.assert_array_equal(
      outputs['classes'], np.array([[b'no', b'yes']] * fx.N_ROWS, object))
  np.testing.assert_allclose(
      outputs['scores'],
      custom_predictions['ours'][('clicks', 'probabilities')], rtol=1e-5)


def test_served_head_outputs_equal_estimator_predictions(
    custom_servables, custom_predictions):
  examples = fx.serialized_examples(fx.make_data()[0]['x'])
  signatures = custom_servables['ours'].signatures
  predictions = custom_predictions['ours']
  np.testing.assert_allclose(
      _run_signature(signatures['clicks/regression'], examples)['outputs'],
      predictions[('clicks', 'logistic')], rtol=1e-5)
  np.testing.assert_allclose(
      _run_signature(signatures['color/classification'], examples)['scores'],
      predictions[('color', 'probabilities')], rtol=1e-5)
  np.testing.assert_allclose(
      _run_signature(signatures['value'], examples)['outputs'],
      predictions[('value', 'predictions')], rtol=1e-5)


def test_served_merged_predict_signature_holds_every_head_prediction(
    custom_servables, custom_predictions):
  examples = fx.serialized_examples(fx.make_data()[0]['x'])
  outputs = _run_signature(custom_servables['ours'].signatures['predict'],
                           examples)
  expected = {f'{name}/{key}': value
              for (name, key), value in custom_predictions['ours'].items()}
  _assert_same_arrays(outputs, expected, 'predict')


# Heads of different loss_reductions: the checkpoint evaluates and exports
# as under the reference; training refuses them, as the reference does.


def _mixed_reduction_multi_head(multi_head_class):
  heads = fx.make_heads()
  heads[2] = tf.estimator.RegressionHead(
      weight_column='w', name='value',
      loss_reduction=tf.losses.Reduction.SUM)
  return multi_head_class(heads, head_weights=list(fx.HEAD_WEIGHTS))


@pytest.fixture(scope='module')
def mixed_reduction(custom, tmp_path_factory):
  """Evaluates, exports and tries to train under each side's mixed heads."""
  examples = fx.serialized_examples(fx.make_data()[0]['x'])
  results = {}
  for side, multi_head_class in (('ours', tensorflow_multihead.MultiHead),
                                 ('reference', tf.estimator.MultiHead)):
    model_fn = fx.make_model_fn(
        lambda cls=multi_head_class: _mixed_reduction_multi_head(cls),
        custom.as_dict, custom.regularized)
    estimator = tf.estimator.Estimator(
        model_fn, config=fx.run_config(custom.model_dir))
    export_dir = estimator.export_saved_model(
        str(tmp_path_factory.mktemp(f'mixed_export_{side}')),
        fx.serving_input_receiver_fn(), checkpoint_path=custom.checkpoint)
    signatures = tf.saved_model.load(export_dir.decode()).signatures
    # Training would fail while the graph is built, before any checkpoint;
    # a directory of its own keeps the shared one safe all the same.
    trainer = tf.estimator.Estimator(model_fn, config=fx.run_config(
        tmp_path_factory.mktemp(f'mixed_train_{side}')))
    with pytest.raises(Exception) as train_error:
      trainer.train(fx.train_input_fn(), steps=1)
    results[side] = types.SimpleNamespace(
        metrics=estimator.evaluate(fx.eval_input_fn(), name=f'mixed_{side}',
                                   checkpoint_path=custom.checkpoint),
        served={key: _run_signature(signatures[key], examples)
                for key in EXPECTED_SIGNATURE_KEYS},
        train_error=train_error.value)
  return results


def test_mixed_loss_reductions_evaluate_the_checkpoint_like_reference(
    mixed_reduction, custom_metrics):
  ours = mixed_reduction['ours'].metrics
  _assert_same_metrics(ours, mixed_reduction['reference'].metrics)
  # The summed regression loss is 16 batch means of 16 rows: 16 times more.
  np.testing.assert_allclose(ours['loss/value'],
                             custom_metrics['ours']['loss/value'] * 16,
                             rtol=1e-5)


def test_mixed_loss_reductions_export_like_reference(mixed_reduction):
  for key in EXPECTED_SIGNATURE_KEYS:
    _assert_same_arrays(mixed_reduction['ours'].served[key],
                        mixed_reduction['reference'].served[key], key)


def test_mixed_loss_reductions_refuse_training_like_reference(
    mixed_reduction):
  for side in ('ours', 'reference'):
    error = mixed_reduction[side].train_error
    assert type(error) is ValueError, side
    assert str(error).startswith(
        'The loss_reduction must be the same for different heads. Given: '
        "['sum_over_batch_size', 'sum_over_batch_size', 'sum']"), side


# Canned estimators given head=MultiHead(...).


def _dnn(head, model_dir):
  return tf.estimator.DNNEstimator(
      head=head, hidden_units=[4], feature_columns=fx.numeric_columns(),
      config=fx.run_config(model_dir))


def _linear(head, model_dir):
  return tf.estimator.LinearEstimator(
      head=head, feature_columns=fx.numeric_columns(),
      config=fx.run_config(model_dir))


def _dnn_linear_combined(head, model_dir):
  return tf.estimator.DNNLinearCombinedEstimator(
      head=head, linear_feature_columns=fx.numeric_columns(),
      dnn_feature_columns=fx.numeric_columns(), dnn_hidden_units=[4],
      config=fx.run_config(model_dir))


def _baseline(head, model_dir):
  return tf.estimator.BaselineEstimator(head=head,
                                        config=fx.run_config(model_dir))


def _v1_dnn_linear_combined(head, model_dir):
  # The TF1 estimator calls `head.create_estimator_spec(features, mode,
  # labels, train_op_fn, logits)` and reads `head.logits_dimension`: a v2
  # head serves it through `train_op_fn`.
  return tf.compat.v1.estimator.DNNLinearCombinedEstimator(
      head=head, linear_feature_columns=fx.numeric_columns(),
      dnn_feature_columns=fx.numeric_columns(), dnn_hidden_units=[4],
      config=fx.run_config(model_dir))


# BaselineEstimator cannot train on two or more features: it asserts that
# their batch sizes agree inside the control dependencies of its bias
# variable, whose initializer then reads the not yet initialized iterator.
# `w` alone (the regression weight) is enough for it.
CANNED = {
    'DNNEstimator': (_dnn, ('x', 'w')),
    'LinearEstimator': (_linear, ('x', 'w')),
    'DNNLinearCombinedEstimator': (_dnn_linear_combined, ('x', 'w')),
    'BaselineEstimator': (_baseline, ('w',)),
    'v1.DNNLinearCombinedEstimator': (_v1_dnn_linear_combined, ('x', 'w')),
}


@pytest.fixture(scope='module', params=sorted(CANNED))
def canned(request, tmp_path_factory):
  """Trains a canned estimator once with our head, evaluates under both."""
  build, feature_keys = CANNED[request.param]
  model_dir = tmp_path_factory.mktemp(request.param)
  ours = build(fx.our_multi_head(), model_dir)
  ours.train(fx.train_input_fn(feature_keys), steps=CANNED_TRAIN_STEPS)
  reference = build(fx.reference_multi_head(), model_dir)
  checkpoint = ours.latest_checkpoint()
  sides = {'ours': ours, 'reference': reference}
  return types.SimpleNamespace(
      checkpoint=checkpoint,
      metrics={
          side: estimator.evaluate(
              fx.eval_input_fn(feature_keys), name=side,
              checkpoint_path=checkpoint)
          for side, estimator in sides.items()},
      predictions={
          side: _stacked(list(estimator.predict(
              fx.predict_input_fn(feature_keys), checkpoint_path=checkpoint)))
          for side, estimator in sides.items()})


def test_canned_estimator_trains_the_requested_steps(canned):
  assert tf.train.load_variable(canned.checkpoint, 'global_step') == (
      CANNED_TRAIN_STEPS)
  assert canned.metrics['ours']['global_step'] == CANNED_TRAIN_STEPS


def test_canned_eval_metric_keys_are_loss_and_every_head_metric(canned):
  assert set(canned.metrics['ours']) == EXPECTED_METRIC_KEYS


def test_canned_eval_metrics_equal_reference_on_the_same_checkpoint(canned):
  _assert_same_metrics(canned.metrics['ours'], canned.metrics['reference'])


def test_canned_eval_loss_is_weighted_sum_of_head_losses(canned):
  metrics = canned.metrics['ours']
  np.testing.assert_allclose(metrics['loss'], _weighted_head_sum(metrics),
                             rtol=1e-5)


def test_canned_eval_head_losses_match_their_average_losses(canned):
  # Unweighted heads: the mean of 4 equal batch means is the mean.  The
  # weighted head: loss/value sums w * error over rows, average_loss divides
  # that sum by the sum of the weights instead.
  metrics = canned.metrics['ours']
  weight_sum = fx.make_data()[0]['w'].sum()
  for name in ('clicks', 'color'):
    np.testing.assert_allclose(metrics[f'loss/{name}'],
                               metrics[f'average_loss/{name}'], rtol=1e-5)
  np.testing.assert_allclose(
      metrics['loss/value'] * fx.N_ROWS / weight_sum,
      metrics['average_loss/value'], rtol=1e-5)


def test_canned_eval_head_losses_equal_values_from_predicted_logits(canned):
  predictions = canned.predictions['ours']
  losses = _per_row_losses({
      'clicks': predictions[('clicks', 'logits')],
      'color': predictions[('color', 'logits')],
      'value': predictions[('value', 'predictions')]})
  metrics = canned.metrics['ours']
  np.testing.assert_allclose(metrics['loss/clicks'], losses['clicks'].mean(),
                             rtol=1e-4)
  np.testing.assert_allclose(metrics['loss/color'], losses['color'].mean(),
                             rtol=1e-4)
  np.testing.assert_allclose(metrics['loss/value'],
                             losses['value'].sum() / fx.N_ROWS, rtol=1e-4)


def test_canned_predictions_equal_reference_on_the_same_checkpoint(canned):
  assert set(canned.predictions['ours']) == EXPECTED_PREDICTION_KEYS
  _assert_same_arrays(canned.predictions['ours'],
                      canned.predictions['reference'], 'prediction')
