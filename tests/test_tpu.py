"""MultiHead under TPUEstimator: `create_tpu_estimator_spec` on the CPU.

`tf.compat.v1.estimator.tpu.TPUEstimator(use_tpu=False)` runs the TPU code
path of a model_fn on the CPU: it takes a `TPUEstimatorSpec` whose metrics are
a `(metric_fn, tensors)` pair. These tests train, evaluate, predict and export
through it, and check the numbers against a plain `tf.estimator.Estimator`
reading the same checkpoint.
"""
import numpy as np
import pytest
import tensorflow as tf

import tensorflow_multihead as tmh
from tests.support import receivers

pytestmark = pytest.mark.xdist_group('tpu')

BATCH = 8
ROWS = 32


def _data():
  rng = np.random.default_rng(7)
  x = rng.normal(size=(ROWS, 4)).astype(np.float32)
  labels = {
      'click': (x[:, :1] > 0).astype(np.int64),
      'kind': (np.abs(x[:, 1:2] * 2).astype(np.int64) % 3),
      'value': (x[:, 2:3] * 3 + 1).astype(np.float32),
  }
  return {'x': x}, labels


def _heads():
  return tmh.MultiHead(
      [tf.estimator.BinaryClassHead(name='click'),
       tf.estimator.MultiClassHead(n_classes=3, name='kind'),
       tf.estimator.RegressionHead(name='value')],
      head_weights=[1., 2., 0.5])


def _input_fn(params):
  features, labels = _data()
  dataset = tf.data.Dataset.from_tensor_slices((features, labels))
  return dataset.repeat().batch(params['batch_size'], drop_remainder=True)


def _logits(features):
  return tf.compat.v1.layers.dense(
      features['x'], _heads().logits_dimension, name='logits')


def _train_op_fn(loss):
  return tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(
      loss, global_step=tf.compat.v1.train.get_global_step())


def _tpu_model_fn(features, labels, mode, params):
  del params
  return _heads().create_tpu_estimator_spec(
      features=features, mode=mode, logits=_logits(features), labels=labels,
      train_op_fn=_train_op_fn)


def _plain_model_fn(features, labels, mode):
  return _heads().create_estimator_spec(
      features=features, mode=mode, logits=_logits(features), labels=labels,
      train_op_fn=_train_op_fn)


_serving_input_fn = receivers.examples_receiver_fn(4)


@pytest.fixture(scope='module')
def estimators(tmp_path_factory):
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
  model_dir = str(tmp_path_factory.mktemp('tpu_model'))
  tpu = tf.compat.v1.estimator.tpu
  tpu_estimator = tpu.TPUEstimator(
      model_fn=_tpu_model_fn,
      config=tpu.RunConfig(model_dir=model_dir,
                           tpu_config=tpu.TPUConfig(iterations_per_loop=1)),
      use_tpu=False, export_to_tpu=False, train_batch_size=BATCH,
      eval_batch_size=BATCH, predict_batch_size=BATCH)
  tpu_estimator.train(_input_fn, steps=3)
  plain = tf.estimator.Estimator(model_fn=_plain_model_fn, model_dir=model_dir)
  return tpu_estimator, plain


def _plain_input_fn():
  return _input_fn({'batch_size': BATCH})


def test_create_tpu_estimator_spec_returns_a_tpu_spec_with_a_metric_fn():
  features, labels = _data()
  with tf.Graph().as_default():
    spec = _heads().create_tpu_estimator_spec(
        features={'x': tf.constant(features['x'])},
        mode=tf.estimator.ModeKeys.EVAL,
        logits=tf.zeros([ROWS, 5]), labels=labels)
    assert isinstance(spec, tf.compat.v1.estimator.tpu.TPUEstimatorSpec)
    metric_fn, tensors = spec.eval_metrics
    assert {'loss/click', 'loss/kind', 'loss/value'} <= set(tensors)
    assert all(tf.is_tensor(tensor) for tensor in tensors.values())
    metrics = metric_fn(**tensors)
  assert {'loss/click', 'auc/click', 'accuracy/kind',
          'average_loss/value'} <= set(metrics)


def test_training_under_tpu_estimator_reaches_the_asked_step(estimators):
  tpu_estimator, _ = estimators
  assert tpu_estimator.get_variable_value('global_step') == 3


def test_evaluation_matches_plain_estimator_on_same_checkpoint(estimators):
  tpu_estimator, plain = estimators
  on_tpu_path = tpu_estimator.evaluate(_input_fn, steps=2)
  on_plain_path = plain.evaluate(_plain_input_fn, steps=2)
  assert set(on_tpu_path) == set(on_plain_path)
  for key, value in on_plain_path.items():
    np.testing.assert_allclose(on_tpu_path[key], value, rtol=1e-6, err_msg=key)


def test_evaluation_loss_is_the_weighted_sum_of_head_losses(estimators):
  tpu_estimator, _ = estimators
  metrics = tpu_estimator.evaluate(_input_fn, steps=2)
  weighted = (metrics['loss/click'] + 2 * metrics['loss/kind'] +
              0.5 * metrics['loss/value'])
  np.testing.assert_allclose(metrics['loss'], weighted, rtol=1e-5)
  assert metrics['global_step'] == 3


def test_prediction_matches_plain_estimator(estimators):
  tpu_estimator, plain = estimators
  take = 4
  on_tpu_path = [p for _, p in zip(range(take),
                                    tpu_estimator.predict(_input_fn))]
  on_plain_path = [p for _, p in zip(range(take),
                                     plain.predict(_plain_input_fn))]
  assert set(on_tpu_path[0]) == set(on_plain_path[0])
  assert ('kind', 'probabilities') in on_tpu_path[0]
  for ours, theirs in zip(on_tpu_path, on_plain_path):
    for key, value in theirs.items():
      np.testing.assert_array_equal(ours[key], value, err_msg=str(key))


def test_export_serves_every_head(estimators, tmp_path):
  tpu_estimator, _ = estimators
  path = tpu_estimator.export_saved_model(str(tmp_path), _serving_input_fn)
  signatures = tf.saved_model.load(path).signatures
  assert set(signatures) == {
      'serving_default', 'predict', 'click', 'click/classification',
      'click/regression', 'click/predict', 'kind', 'kind/classification',
      'kind/predict', 'value', 'value/regression', 'value/predict'}


def test_reference_multi_head_has_no_tpu_path():
  reference = tf.estimator.MultiHead(
      [tf.estimator.BinaryClassHead(name='click')])
  assert not hasattr(reference, 'create_tpu_estimator_spec')
  with pytest.raises(NotImplementedError):
    reference._create_tpu_estimator_spec(  # pylint: disable=protected-access
        features={}, mode=tf.estimator.ModeKeys.PREDICT,
        logits=tf.zeros([2, 1]))
