"""Fused groups under a real Estimator, TPUEstimator and SavedModel.

One linear model feeds seven heads that form three fused groups (binary,
multi-class, regression). It is trained once; then the same checkpoint is
evaluated, predicted and exported with `tf.estimator.MultiHead`, with ours
fused (the default) and with ours per head (`fuse_heads=False`), and, fused,
through `TPUEstimator(use_tpu=False)`. Everything must agree (heads own no
variables, so one checkpoint restores under any of them).
"""
import numpy as np
import pytest
import tensorflow as tf

import tensorflow_multihead as tmh
from tests.support import receivers

pytestmark = pytest.mark.xdist_group('fusion_estimator')

ROWS, BATCH = 48, 16
VOCABULARY = ('no', 'yes')


def _heads():
  estimator = tf.estimator
  return [
      estimator.BinaryClassHead(name='click', weight_column='w',
                                thresholds=[0.3]),
      estimator.BinaryClassHead(name='like', label_vocabulary=list(VOCABULARY)),
      estimator.BinaryClassHead(name='share'),
      estimator.MultiClassHead(3, name='topic'),
      estimator.MultiClassHead(3, name='mood', weight_column='w'),
      estimator.RegressionHead(name='time'),
      estimator.RegressionHead(name='spend', weight_column='w'),
  ]


MULTI_HEADS = {
    'reference': lambda: tf.estimator.MultiHead(_heads()),
    'fused': lambda: tmh.MultiHead(_heads()),
    'per_head': lambda: tmh.MultiHead(_heads(), fuse_heads=False),
}


def _data():
  rng = np.random.default_rng(11)
  x = rng.normal(size=(ROWS, 4)).astype(np.float32)
  labels = {
      'click': (x[:, :1] > 0).astype(np.int64),
      'like': np.where(x[:, 1:2] > 0, b'yes', b'no'),
      'share': (x[:, 2:3] + x[:, :1] > 0).astype(np.int64),
      'topic': (np.abs(x[:, 1:2] * 2).astype(np.int64) % 3),
      'mood': (np.abs(x[:, 3:4] * 2).astype(np.int64) % 3),
      'time': x[:, 2:3] * 2.,
      'spend': x[:, 3:4] - x[:, :1],
  }
  weights = rng.uniform(0.5, 2., size=(ROWS, 1)).astype(np.float32)
  return {'x': x, 'w': weights}, labels


def _input_fn(params=None):
  batch = (params or {}).get('batch_size', BATCH)
  dataset = tf.data.Dataset.from_tensor_slices(_data())
  return dataset.batch(batch, drop_remainder=True)


def _logits(features):
  width = tmh.MultiHead(_heads()).logits_dimension
  return tf.compat.v1.layers.dense(features['x'], width, name='logits')


def _train_op_fn(loss):
  return tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(
      loss, global_step=tf.compat.v1.train.get_global_step())


def _model_fn(side):
  def model_fn(features, labels, mode):
    return MULTI_HEADS[side]().create_estimator_spec(
        features=features, mode=mode, logits=_logits(features),
        labels=labels, train_op_fn=_train_op_fn)
  return model_fn


def _tpu_model_fn(features, labels, mode, params):
  del params
  return tmh.MultiHead(_heads()).create_tpu_estimator_spec(
      features=features, mode=mode, logits=_logits(features), labels=labels,
      train_op_fn=_train_op_fn)


_serving_input_fn = receivers.examples_receiver_fn(4)


@pytest.fixture(scope='module')
def estimators(tmp_path_factory):
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
  model_dir = str(tmp_path_factory.mktemp('fused_model'))
  trained = tf.estimator.Estimator(_model_fn('fused'), model_dir=model_dir)
  trained.train(lambda: _input_fn().repeat(), steps=5)
  return {side: tf.estimator.Estimator(_model_fn(side), model_dir=model_dir)
          for side in MULTI_HEADS}, model_dir


@pytest.fixture(scope='module')
def evaluations(estimators):
  by_side, _ = estimators
  return {side: estimator.evaluate(_input_fn)
          for side, estimator in by_side.items()}


def _assert_same_metrics(ours, reference):
  assert set(ours) == set(reference)
  for key, value in reference.items():
    np.testing.assert_allclose(ours[key], value, rtol=1e-6, err_msg=key)


def test_fused_training_reached_its_step(estimators):
  by_side, _ = estimators
  assert by_side['fused'].get_variable_value('global_step') == 5


@pytest.mark.parametrize('side', ['fused', 'per_head'])
def test_evaluation_equals_the_reference_on_one_checkpoint(evaluations, side):
  _assert_same_metrics(evaluations[side], evaluations['reference'])
  assert 'auc_precision_recall/like' in evaluations[side]
  assert 'accuracy/positive_threshold_0.3/click' in evaluations[side]


def test_evaluation_under_tpu_estimator_equals_the_reference(estimators,
                                                            evaluations):
  _, model_dir = estimators
  tpu = tf.compat.v1.estimator.tpu
  tpu_estimator = tpu.TPUEstimator(
      model_fn=_tpu_model_fn,
      config=tpu.RunConfig(model_dir=model_dir,
                           tpu_config=tpu.TPUConfig(iterations_per_loop=1)),
      use_tpu=False, train_batch_size=BATCH, eval_batch_size=BATCH,
      predict_batch_size=BATCH)
  _assert_same_metrics(tpu_estimator.evaluate(_input_fn, steps=ROWS // BATCH),
                       evaluations['reference'])


def test_predictions_equal_the_reference(estimators):
  by_side, _ = estimators
  predicted = {side: list(by_side[side].predict(_input_fn))
               for side in ('reference', 'fused')}
  assert len(predicted['fused']) == ROWS
  assert set(predicted['fused'][0]) == set(predicted['reference'][0])
  for ours, theirs in zip(predicted['fused'], predicted['reference']):
    for key, value in theirs.items():
      if np.asarray(value).dtype.kind == 'f':
        np.testing.assert_allclose(ours[key], value, rtol=1e-6,
                                   err_msg=str(key))
      else:
        np.testing.assert_array_equal(ours[key], value, err_msg=str(key))


def _serialized_examples():
  features, _ = _data()
  return [tf.train.Example(features=tf.train.Features(feature={
      'x': tf.train.Feature(float_list=tf.train.FloatList(value=row))
  })).SerializeToString() for row in features['x'][:5]]


def _call(signature, examples):
  # Classify and regress signatures take `inputs`, the others `examples`.
  (input_name,) = signature.structured_input_signature[1]
  return signature(**{input_name: examples})


def test_exported_signatures_serve_what_the_reference_serves(estimators,
                                                             tmp_path):
  by_side, _ = estimators
  outputs = {}
  for side in ('reference', 'fused'):
    path = by_side[side].export_saved_model(str(tmp_path / side),
                                            _serving_input_fn)
    signatures = tf.saved_model.load(path).signatures
    examples = tf.constant(_serialized_examples())
    outputs[side] = {
        name: {key: value.numpy() for key, value in
               _call(signature, examples).items()}
        for name, signature in signatures.items()}
  assert set(outputs['fused']) == set(outputs['reference'])
  assert {'like', 'like/regression', 'topic/predict',
          'spend'} <= set(outputs['fused'])
  for name, values in outputs['reference'].items():
    assert set(outputs['fused'][name]) == set(values), name
    for key, value in values.items():
      if value.dtype.kind == 'f':
        np.testing.assert_allclose(outputs['fused'][name][key], value,
                                   rtol=1e-6, err_msg=f'{name} {key}')
      else:
        np.testing.assert_array_equal(outputs['fused'][name][key], value,
                                      err_msg=f'{name} {key}')
