"""`MaskedHead` in real Estimators (issue 8, items 3 and 5).

A click + conversion model whose conversion labels exist on clicked rows
only (-1 elsewhere) is trained once with our `MultiHead` of a `BinaryClassHead`
and a masked one. Its conversion metrics then equal those of the bare
`BinaryClassHead` evaluated on the clicked rows of the same checkpoint (each
batch cut to its clicked rows). The same checkpoint also serves the
exports, with and without masks, and `TPUEstimator(use_tpu=False)`. A
`DNNEstimator` takes a `MaskedHead` as its head.
"""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

import tensorflow_multihead as tmh
from tests.support import receivers

pytestmark = pytest.mark.xdist_group('masked_estimator')

ROWS = 96
BATCH = 16
STEPS = 6
N_FEATURES = 4


def _data(seed=3):
  """Features `x`; labels `click` and `conversion` (-1 where not clicked)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=[ROWS, N_FEATURES]).astype(np.float32)
  noise = rng.normal(size=[ROWS, 2])
  click = (x[:, :1] + noise[:, :1] > 0).astype(np.int64)
  converted = (x[:, 1:2] + noise[:, 1:] > 0.3).astype(np.int64)
  return {'x': x}, {'click': click,
                    'conversion': np.where(click == 1, converted, -1)}


def _masked_multi_head():
  return tmh.MultiHead([
      tf.estimator.BinaryClassHead(name='click'),
      tmh.MaskedHead(tf.estimator.BinaryClassHead(name='conversion'),
                     missing_label=-1)])


def _unmasked_multi_head():
  return tmh.MultiHead([tf.estimator.BinaryClassHead(name='click'),
                        tf.estimator.BinaryClassHead(name='conversion')])


def _logits(features):
  return tf.compat.v1.layers.dense(features['x'], 2, name='logits')


def _train_op_fn(loss):
  return tf.compat.v1.train.GradientDescentOptimizer(0.2).minimize(
      loss, global_step=tf.compat.v1.train.get_global_step())


def _model_fn(features, labels, mode, params):
  return params['head']().create_estimator_spec(
      features=features, mode=mode, logits=_logits(features), labels=labels,
      train_op_fn=_train_op_fn)


def _conversion_model_fn(features, labels, mode):
  """The bare reference head on the conversion logits."""
  return tf.estimator.BinaryClassHead(name='conversion').create_estimator_spec(
      features=features, mode=mode, logits=_logits(features)[:, 1:2],
      labels=labels, train_op_fn=_train_op_fn)


def _dataset(data=None):
  return tf.data.Dataset.from_tensor_slices(data or _data()).batch(BATCH)


def _clicked_rows(features, labels):
  """A batch cut to its clicked rows, with the conversion labels only."""
  clicked = labels['click'][:, 0] > 0
  return ({'x': tf.boolean_mask(features['x'], clicked)},
          tf.boolean_mask(labels['conversion'], clicked))


_serving_input_fn = receivers.examples_receiver_fn(N_FEATURES)


def _estimator(model_dir, head=None, model_fn=_model_fn):
  params = {'head': head} if head else None
  return tf.estimator.Estimator(
      model_fn=model_fn, model_dir=model_dir, params=params,
      config=tf.estimator.RunConfig(tf_random_seed=11))


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
  directory = str(tmp_path_factory.mktemp('masked_estimator'))
  _estimator(directory, _masked_multi_head).train(
      lambda: _dataset().repeat(), steps=STEPS)
  return directory


@pytest.fixture(scope='module')
def masked_metrics(model_dir):
  return _estimator(model_dir, _masked_multi_head).evaluate(_dataset)


def test_every_batch_of_the_data_has_clicked_and_unclicked_rows():
  clicks = _data()[1]['click'].reshape(-1, BATCH)
  assert np.all((clicks.sum(axis=1) > 0) & (clicks.sum(axis=1) < BATCH))


def test_conversion_metrics_equal_the_bare_head_on_clicked_rows(
    model_dir, masked_metrics):
  reference = _estimator(model_dir, model_fn=_conversion_model_fn).evaluate(
      lambda: _dataset().map(_clicked_rows))
  assert masked_metrics['global_step'] == reference['global_step'] == STEPS
  conversion_keys = [key for key in reference if key.endswith('/conversion')]
  assert len(conversion_keys) == 9
  for key in conversion_keys:
    np.testing.assert_allclose(masked_metrics[key], reference[key],
                               rtol=1e-6, err_msg=key)
  # The mean of the batches' losses, as the reference Estimator's `loss`.
  np.testing.assert_allclose(masked_metrics['loss/conversion'],
                             reference['loss'], rtol=1e-6)
  assert 0. < masked_metrics['auc/conversion'] < 1.


def test_an_eval_batch_without_clicks_leaves_conversion_metrics_alone(
    model_dir, masked_metrics):
  no_clicks = {'x': _data()[0]['x'][:BATCH]}, {
      'click': np.zeros([BATCH, 1], np.int64),
      'conversion': np.full([BATCH, 1], -1)}
  metrics = _estimator(model_dir, _masked_multi_head).evaluate(
      lambda: _dataset().concatenate(_dataset(no_clicks)))
  for key, value in masked_metrics.items():
    if key.endswith('/conversion'):
      np.testing.assert_allclose(metrics[key], value, rtol=1e-6, err_msg=key)
  assert metrics['label/mean/click'] < masked_metrics['label/mean/click']


def _signature_defs(export_dir):
  """Each signature's keys, dtypes, shapes and method, without tensor names.

  Graph-internal tensor names are not part of a signature's contract, and
  they differ when the unmasked heads are fused into one group.
  """
  saved_model = saved_model_pb2.SavedModel()
  with open(f'{export_dir}/saved_model.pb', 'rb') as proto:
    saved_model.ParseFromString(proto.read())
  (meta_graph,) = saved_model.meta_graphs
  signatures = dict(meta_graph.signature_def)
  for signature in signatures.values():
    for tensor in (*signature.inputs.values(), *signature.outputs.values()):
      tensor.ClearField('name')
  return signatures


def test_export_signatures_equal_those_without_masks(model_dir, tmp_path):
  exports = {
      name: _estimator(model_dir, head).export_saved_model(
          str(tmp_path / name), _serving_input_fn).decode()
      for name, head in (('masked', _masked_multi_head),
                         ('unmasked', _unmasked_multi_head))}
  masked, unmasked = (_signature_defs(exports[name])
                      for name in ('masked', 'unmasked'))
  assert set(masked) == {
      'serving_default', 'predict', 'click', 'click/classification',
      'click/regression', 'click/predict', 'conversion',
      'conversion/classification', 'conversion/regression',
      'conversion/predict'}
  assert masked == unmasked
  x = _data()[0]['x'][:3]
  examples = [tf.train.Example(features=tf.train.Features(feature={
      'x': tf.train.Feature(float_list=tf.train.FloatList(value=row))}))
              .SerializeToString() for row in x]
  served = {name: tf.saved_model.load(path).signatures['predict'](
      examples=tf.constant(examples)) for name, path in exports.items()}
  for key, value in served['unmasked'].items():
    np.testing.assert_array_equal(served['masked'][key], value, err_msg=key)


# TPUEstimator, on the CPU.


def _tpu_model_fn(features, labels, mode, params):
  del params
  return _masked_multi_head().create_tpu_estimator_spec(
      features=features, mode=mode, logits=_logits(features), labels=labels,
      train_op_fn=_train_op_fn)


def _tpu_input_fn(params):
  return tf.data.Dataset.from_tensor_slices(_data()).repeat().batch(
      params['batch_size'], drop_remainder=True)


def test_tpu_estimator_on_cpu_evaluates_as_the_plain_estimator(tmp_path):
  tpu = tf.compat.v1.estimator.tpu
  tpu_estimator = tpu.TPUEstimator(
      model_fn=_tpu_model_fn, use_tpu=False, train_batch_size=BATCH,
      eval_batch_size=BATCH, predict_batch_size=BATCH,
      config=tpu.RunConfig(model_dir=str(tmp_path),
                           tpu_config=tpu.TPUConfig(iterations_per_loop=1)))
  tpu_estimator.train(_tpu_input_fn, steps=3)
  on_tpu_path = tpu_estimator.evaluate(_tpu_input_fn, steps=ROWS // BATCH)
  plain = _estimator(str(tmp_path), _masked_multi_head).evaluate(_dataset)
  assert set(on_tpu_path) == set(plain)
  for key, value in plain.items():
    np.testing.assert_allclose(on_tpu_path[key], value, rtol=1e-6,
                               err_msg=key)
  prediction = next(tpu_estimator.predict(_tpu_input_fn))
  assert prediction[('conversion', 'probabilities')].shape == (2,)


# A canned estimator with a MaskedHead as its head.


def _dnn(model_dir, head):
  return tf.estimator.DNNEstimator(
      head=head, hidden_units=[4], model_dir=model_dir,
      feature_columns=[tf.feature_column.numeric_column('x', [N_FEATURES])],
      config=tf.estimator.RunConfig(tf_random_seed=5))


def _conversions(data):
  features, labels = data
  return features, labels['conversion']


def test_dnn_estimator_with_a_masked_head_equals_the_bare_head_on_clicks(
    tmp_path):
  model_dir = str(tmp_path)
  masked = _dnn(model_dir, tmh.MaskedHead(
      tf.estimator.BinaryClassHead(name='conversion'), missing_label=-1))
  masked.train(lambda: _dataset(_conversions(_data())).repeat(), steps=STEPS)
  ours = masked.evaluate(lambda: _dataset(_conversions(_data())))
  bare = _dnn(model_dir, tf.estimator.BinaryClassHead(name='conversion'))
  reference = bare.evaluate(lambda: _dataset().map(_clicked_rows))
  assert set(ours) == set(reference)
  for key, value in reference.items():
    np.testing.assert_allclose(ours[key], value, rtol=1e-6, err_msg=key)
  predict_input = lambda: _dataset(_data()[0])  # pylint: disable=unnecessary-lambda-assignment
  predictions = list(masked.predict(predict_input))
  assert len(predictions) == ROWS  # Every row, clicked or not.
  for ours_row, bare_row in zip(predictions, bare.predict(predict_input)):
    np.testing.assert_array_equal(ours_row['probabilities'],
                                  bare_row['probabilities'])
