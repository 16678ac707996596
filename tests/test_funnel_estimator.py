"""A click -> conversion -> purchase funnel in real Estimators (issue 15).

One linear model (weights from zero, so any two trainings that mean the
same arithmetic end alike) with a funnel of two `ConditionalHead`s beside
a regression head is trained once by `tf.estimator.Estimator`. On that
checkpoint:

* its evaluation equals reference heads reading the same checkpoint:
  `tf.estimator.MultiHead` of bare heads, the conditional ones fed the
  joint logits (float64 textbook formula), and a bare `BinaryClassHead`
  per view, fed the conditional logits of the rows whose given label is 1;
* its export serves the joint and the conditional heads, loaded back as a
  SavedModel and run; `export_heads=` may name a view, and
  `serving_default='all'` serves the views' predictions too;
* `TPUEstimator(use_tpu=False)` trains, evaluates and predicts alike.
"""
import shutil

import numpy as np
import pytest
import tensorflow as tf

import tensorflow_multihead as tmh
from tests.support import receivers

pytestmark = pytest.mark.xdist_group('funnel_estimator')

ROWS = 96
BATCH = 16
STEPS = 6
N_FEATURES = 4
EVENTS = ('click', 'conversion', 'purchase')
VIEWS = {'conversion_given_click': ('conversion', 'click'),
         'purchase_given_conversion': ('purchase', 'conversion')}
HEAD_WEIGHTS = [1., 2., 2., 0.5]
LEARNING_RATE = 0.5


def _data():
  """Each event only after the one before it; `value` a regression label."""
  rng = np.random.default_rng(15)
  x = rng.normal(size=[ROWS, N_FEATURES]).astype(np.float32)
  noise = rng.normal(size=[ROWS, 3])
  click = x[:, 0] + noise[:, 0] > 0
  conversion = click & (x[:, 1] + noise[:, 1] > -0.5)
  purchase = conversion & (x[:, 2] + noise[:, 2] > 0)
  labels = {name: event[:, None].astype(np.int64) for name, event in
            zip(EVENTS, (click, conversion, purchase))}
  labels['value'] = (2. * x[:, 3:] + 0.1 * noise[:, :1]).astype(np.float32)
  return {'x': x}, labels


def _ours(**export_options):
  return tmh.MultiHead(
      [tf.estimator.BinaryClassHead(name='click'),
       tmh.ConditionalHead(tf.estimator.BinaryClassHead(name='conversion'),
                           given='click'),
       tmh.ConditionalHead(tf.estimator.BinaryClassHead(name='purchase'),
                           given='conversion'),
       tf.estimator.RegressionHead(name='value')],
      head_weights=HEAD_WEIGHTS, **export_options)


def _logits(features):
  """`[rows, 4]` from zero weights: click, conversion, purchase, value."""
  zeros = tf.compat.v1.zeros_initializer()
  kernel = tf.compat.v1.get_variable('kernel', [N_FEATURES, 4],
                                     initializer=zeros)
  bias = tf.compat.v1.get_variable('bias', [4], initializer=zeros)
  return tf.matmul(features['x'], kernel) + bias


def _train_op_fn(loss):
  return tf.compat.v1.train.GradientDescentOptimizer(LEARNING_RATE).minimize(
      loss, global_step=tf.compat.v1.train.get_global_step())


def _model_fn(features, labels, mode):
  return _ours().create_estimator_spec(
      features=features, mode=mode, logits=_logits(features), labels=labels,
      train_op_fn=_train_op_fn)


def _chosen_exports_model_fn(features, labels, mode, params):
  """`_model_fn`, its `MultiHead` given `params` (export options)."""
  return _ours(**params).create_estimator_spec(
      features=features, mode=mode, logits=_logits(features), labels=labels,
      train_op_fn=_train_op_fn)


def _tpu_model_fn(features, labels, mode, params):
  del params
  return _ours().create_tpu_estimator_spec(
      features=features, mode=mode, logits=_logits(features), labels=labels,
      train_op_fn=_train_op_fn)


def _textbook_joint(logits, count):
  """The logit of the product of the first `count` sigmoids, in float64."""
  p = tf.math.reduce_prod(
      tf.math.sigmoid(tf.cast(logits[:, :count], tf.float64)), axis=1,
      keepdims=True)
  return tf.cast(tf.math.log(p) - tf.math.log1p(-p), tf.float32)


def _reference_model_fn(features, labels, mode):
  """`tf.estimator.MultiHead` of bare heads, on the joint logits by hand."""
  logits = _logits(features)
  head = tf.estimator.MultiHead(
      [tf.estimator.BinaryClassHead(name=name) for name in EVENTS] +
      [tf.estimator.RegressionHead(name='value')], head_weights=HEAD_WEIGHTS)
  return head.create_estimator_spec(
      features=features, mode=mode, labels=labels, train_op_fn=_train_op_fn,
      logits={'click': logits[:, :1], 'conversion': _textbook_joint(logits, 2),
              'purchase': _textbook_joint(logits, 3),
              'value': logits[:, 3:]})


def _view_model_fn(features, labels, mode, params):
  """A bare head on one view's conditional logits, its rows cut by hand."""
  event, given = VIEWS[params['view']]
  column = EVENTS.index(event)
  rows = labels[given][:, 0] > 0
  return tf.estimator.BinaryClassHead(
      name=params['view']).create_estimator_spec(
          features=features, mode=mode, train_op_fn=_train_op_fn,
          logits=tf.boolean_mask(_logits(features)[:, column:column + 1],
                                 rows),
          labels=tf.boolean_mask(labels[event], rows))


def _input_fn(params=None, repeat=False):
  batch = (params or {}).get('batch_size', BATCH)
  dataset = tf.data.Dataset.from_tensor_slices(_data())
  return (dataset.repeat() if repeat else dataset).batch(
      batch, drop_remainder=True)


def _train_input_fn(params=None):
  return _input_fn(params, repeat=True)


_serving_input_fn = receivers.examples_receiver_fn(N_FEATURES)


def _estimator(model_dir, model_fn=_model_fn, params=None):
  return tf.estimator.Estimator(model_fn=model_fn, model_dir=model_dir,
                                params=params)


def _tpu_estimator(model_dir):
  tpu = tf.compat.v1.estimator.tpu
  return tpu.TPUEstimator(
      model_fn=_tpu_model_fn,
      config=tpu.RunConfig(model_dir=model_dir,
                           tpu_config=tpu.TPUConfig(iterations_per_loop=1)),
      use_tpu=False, export_to_tpu=False, train_batch_size=BATCH,
      eval_batch_size=BATCH, predict_batch_size=BATCH)


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
  directory = str(tmp_path_factory.mktemp('funnel_estimator') / 'model')
  _estimator(directory).train(_train_input_fn, steps=STEPS)
  return directory


@pytest.fixture(scope='module')
def metrics(model_dir):
  return _estimator(model_dir).evaluate(_input_fn)


def _examples():
  return tf.constant([tf.train.Example(features=tf.train.Features(feature={
      'x': tf.train.Feature(float_list=tf.train.FloatList(value=row))}))
                      .SerializeToString() for row in _data()[0]['x']])


def _run(signature):
  return {key: value.numpy()
          for key, value in signature(examples=_examples()).items()}


@pytest.fixture(scope='module')
def served(model_dir, tmp_path_factory):
  """The export's `predict` signature run on the data, and its signatures."""
  export_dir = _estimator(model_dir).export_saved_model(
      str(tmp_path_factory.mktemp('funnel_export')), _serving_input_fn)
  signatures = tf.saved_model.load(export_dir.decode()).signatures
  return _run(signatures['predict']), set(signatures)


CHOSEN_EXPORTS = {'export_heads': ['conversion_given_click', 'value'],
                  'serving_default': 'all'}


@pytest.fixture(scope='module')
def served_chosen(model_dir, tmp_path_factory):
  """The `CHOSEN_EXPORTS` export of the checkpoint: its signatures' keys,
  and its `serving_default` and `predict` run on the data."""
  export_dir = _estimator(model_dir, _chosen_exports_model_fn,
                          CHOSEN_EXPORTS).export_saved_model(
                              str(tmp_path_factory.mktemp('funnel_chosen')),
                              _serving_input_fn)
  signatures = tf.saved_model.load(export_dir.decode()).signatures
  return set(signatures), _run(signatures['serving_default']), _run(
      signatures['predict'])


def test_every_batch_has_rows_in_and_out_of_each_view():
  _, labels = _data()
  for given in ('click', 'conversion'):
    per_batch = labels[given].reshape(-1, BATCH)
    assert np.all(per_batch.any(axis=1) & ~per_batch.all(axis=1)), given


def test_training_moves_the_weights_of_every_head(model_dir):
  kernel = _estimator(model_dir).get_variable_value('kernel')
  assert np.all(np.abs(kernel).max(axis=0) > 1e-3)


@pytest.fixture(scope='module')
def references(model_dir):
  """The reference heads' evaluations of the checkpoint, per model_fn."""
  results = {'joint': _estimator(model_dir, _reference_model_fn).evaluate(
      _input_fn)}
  for view in VIEWS:
    results[view] = _estimator(model_dir, _view_model_fn,
                               {'view': view}).evaluate(_input_fn)
    results[view][f'loss/{view}'] = results[view].pop('loss')
  return results


def test_joint_heads_evaluate_as_reference_heads_on_the_joint_logits(
    metrics, references):
  for key, value in references['joint'].items():
    np.testing.assert_allclose(metrics[key], value, rtol=1e-6, err_msg=key)


@pytest.mark.parametrize('view', sorted(VIEWS))
def test_views_evaluate_as_a_bare_head_on_their_rows(metrics, references,
                                                     view):
  for key, value in references[view].items():
    np.testing.assert_allclose(metrics[key], value, rtol=1e-6, err_msg=key)


def test_evaluation_has_exactly_the_references_keys(metrics, references):
  keys = set()
  for reference in references.values():
    keys |= set(reference)
  assert set(metrics) == keys
  assert 'auc/purchase_given_conversion' in keys


def test_the_export_serves_joint_and_conditional_heads(served):
  _, signatures = served
  for name in ('conversion', 'conversion_given_click', 'purchase',
               'purchase_given_conversion'):
    assert {name, f'{name}/classification', f'{name}/regression',
            f'{name}/predict'} <= signatures, name


def test_served_joint_probabilities_are_products_along_the_chain(served):
  outputs, _ = served
  click = outputs['click/logistic']
  conversion = click * outputs['conversion_given_click/logistic']
  np.testing.assert_allclose(outputs['conversion/logistic'], conversion,
                             rtol=1e-6)
  np.testing.assert_allclose(
      outputs['purchase/logistic'],
      conversion * outputs['purchase_given_conversion/logistic'], rtol=1e-6)


def test_served_outputs_are_the_estimators_predictions(model_dir, served):
  outputs, _ = served
  predicted = list(_estimator(model_dir).predict(_input_fn))
  for name in ('conversion', 'conversion_given_click', 'value'):
    key = 'predictions' if name == 'value' else 'logistic'
    np.testing.assert_allclose(
        outputs[f'{name}/{key}'],
        np.stack([row[name, key] for row in predicted]), rtol=1e-6)


def test_export_heads_naming_a_view_export_exactly_its_signatures(
    served_chosen):
  signatures, _, _ = served_chosen
  assert signatures == {
      'serving_default', 'predict', 'conversion_given_click',
      'conversion_given_click/classification',
      'conversion_given_click/regression', 'conversion_given_click/predict',
      'value', 'value/regression', 'value/predict'}


def test_serving_default_all_answers_every_head_and_view_as_predict(
    served, served_chosen):
  full_predict, _ = served
  _, serving_default, predict = served_chosen
  assert sorted(serving_default) == sorted(predict) == sorted(full_predict)
  assert {'conversion_given_click/logistic',
          'purchase_given_conversion/probabilities',
          'conversion/logistic', 'value/predictions'} <= set(serving_default)
  for key, value in full_predict.items():
    np.testing.assert_array_equal(serving_default[key], value, err_msg=key)


def test_tpu_estimator_evaluates_and_predicts_as_the_estimator(model_dir,
                                                               metrics):
  tpu_estimator = _tpu_estimator(model_dir)
  on_tpu_path = tpu_estimator.evaluate(_input_fn, steps=ROWS // BATCH)
  assert set(on_tpu_path) == set(metrics)
  for key, value in metrics.items():
    np.testing.assert_allclose(on_tpu_path[key], value, rtol=1e-6,
                               err_msg=key)
  first = next(tpu_estimator.predict(_input_fn))
  plain = next(_estimator(model_dir).predict(_input_fn))
  assert set(first) == set(plain)
  np.testing.assert_allclose(first['conversion_given_click', 'logistic'],
                             plain['conversion_given_click', 'logistic'])


def test_tpu_estimator_trains_as_the_estimator(model_dir, tmp_path):
  copies = {}
  for side in ('tpu', 'plain'):
    copies[side] = str(tmp_path / side)
    shutil.copytree(model_dir, copies[side])
  _tpu_estimator(copies['tpu']).train(_train_input_fn, steps=2)
  _estimator(copies['plain']).train(_train_input_fn, steps=2)
  for name in ('kernel', 'bias', 'global_step'):
    np.testing.assert_allclose(
        _estimator(copies['tpu']).get_variable_value(name),
        _estimator(copies['plain']).get_variable_value(name), rtol=1e-6,
        err_msg=name)
