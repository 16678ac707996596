"""The TF 1.x example programs train, evaluate, predict and export on TF 2.15.

Each program under `examples/tf1_*.py` is TF 1.x code with only its imports
changed. Its `run` is what its `main` runs; one short run per program (a
module fixture) backs the tests, which check what TF 1.x promised: the merged
loss is the weighted sum of the heads' losses (plus regularization), the
metric keys are those TF 1.x reported, predictions are keyed
`(head, key)`, and the SavedModel serves what `predict` returned. The last
tests run each program as a script, as `python -m` would.
"""
import contextlib
import importlib
import io
import pathlib
import runpy
import sys

import numpy as np
import pytest
import tensorflow as tf

from examples import tf1_canned_estimator
from examples import tf1_custom_optimizer
from examples import tf1_custom_train_op_fn
from examples import tf1_shop as shop

pytestmark = pytest.mark.xdist_group('contrib')

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / 'examples'

STEPS = 3
NUM_TEST = 64  # shop.load_data's default test split.
BINARY_METRICS = ['accuracy', 'accuracy_baseline', 'auc',
                  'auc_precision_recall', 'average_loss', 'label/mean',
                  'precision', 'prediction/mean', 'recall']
REGRESSION_METRICS = ['average_loss', 'label/mean', 'prediction/mean']
MULTI_CLASS_METRICS = ['accuracy', 'average_loss']
CLASSIFIER_PREDICTIONS = ['all_class_ids', 'all_classes', 'class_ids',
                          'classes', 'logits', 'probabilities']


def _keys(head, metrics):
  return [f'{metric}/{head}' for metric in metrics + ['loss']]


def _run(module, tmp_path_factory, **kwargs):
  root = tmp_path_factory.mktemp(module.__name__.rsplit('.', 1)[-1])
  return module.run(steps=STEPS, model_dir=str(root / 'model'),
                    export_dir=str(root / 'export'), **kwargs)


@pytest.fixture(scope='module')
def train_op_fn_run(tmp_path_factory):
  return _run(tf1_custom_train_op_fn, tmp_path_factory)


@pytest.fixture(scope='module')
def optimizer_run(tmp_path_factory):
  return _run(tf1_custom_optimizer, tmp_path_factory)


@pytest.fixture(scope='module', params=tf1_canned_estimator.ESTIMATORS)
def canned_run(request, tmp_path_factory):
  return _run(tf1_canned_estimator, tmp_path_factory,
              estimator_kind=request.param)


def _weighted_sum(metrics, module):
  return sum(weight * metrics[f'loss/{head}']
             for head, weight in zip(module.HEADS, module.HEAD_WEIGHTS))


def _served(results, signature='predict', count=3):
  """What the exported model's `signature` answers for the first items."""
  _, test = shop.load_data()
  loaded = tf.saved_model.load(results.export_path.decode())
  function = loaded.signatures[signature]
  # `predict` names its input `examples`; classify and regress, `inputs`.
  (input_name,) = function.structured_input_signature[1]
  served = function(**{input_name: tf.constant(
      shop.serialized_examples(test.features, count))})
  return loaded, {key: value.numpy() for key, value in served.items()}


def _assert_served_as_predicted(results, count=3):
  _, served = _served(results, count=count)
  assert sorted(served) == sorted(
      f'{head}/{key}' for head, key in results.predictions[0])
  for head, key in results.predictions[0]:
    column = np.stack([results.predictions[i][(head, key)]
                       for i in range(count)])
    if column.dtype.kind in 'SUO':
      np.testing.assert_array_equal(served[f'{head}/{key}'], column)
    else:
      np.testing.assert_allclose(served[f'{head}/{key}'], column, rtol=1e-5,
                                 atol=1e-6, err_msg=f'{head}/{key}')


# 1. A custom model_fn with tf.layers and train_op_fn.


def test_train_op_fn_program_merged_loss_is_the_weighted_sum(
    train_op_fn_run):
  metrics = train_op_fn_run.metrics
  assert metrics['loss'] == pytest.approx(
      _weighted_sum(metrics, tf1_custom_train_op_fn), rel=1e-5)
  assert metrics['global_step'] == STEPS


def test_train_op_fn_program_reports_the_tf1_metric_keys(train_op_fn_run):
  assert sorted(train_op_fn_run.metrics) == sorted(
      ['global_step', 'loss'] + _keys('category', MULTI_CLASS_METRICS) +
      _keys('bought', BINARY_METRICS))


def test_train_op_fn_program_predicts_keyed_by_head_and_key(train_op_fn_run):
  predictions = train_op_fn_run.predictions
  assert len(predictions) == NUM_TEST
  assert sorted(predictions[0]) == sorted(
      [('category', key) for key in CLASSIFIER_PREDICTIONS] +
      [('bought', key) for key in CLASSIFIER_PREDICTIONS + ['logistic']])
  np.testing.assert_allclose(
      predictions[0][('category', 'probabilities')].sum(), 1., rtol=1e-5)


def test_train_op_fn_program_exports_every_heads_signatures(
    train_op_fn_run):
  loaded, _ = _served(train_op_fn_run)
  assert sorted(loaded.signatures) == [
      'bought', 'bought/classification', 'bought/predict',
      'bought/regression', 'category', 'category/classification',
      'category/predict', 'predict', 'serving_default']


def test_train_op_fn_program_serves_what_it_predicted(train_op_fn_run):
  _assert_served_as_predicted(train_op_fn_run)


def test_train_op_fn_program_serves_the_first_head_by_default(
    train_op_fn_run):
  _, served = _served(train_op_fn_run, signature='serving_default', count=2)
  expected = np.stack([train_op_fn_run.predictions[i][
      ('category', 'probabilities')] for i in range(2)])
  np.testing.assert_allclose(served['scores'], expected, rtol=1e-5)


# 2. The same with optimizer=, one logits tensor and regularization.


def test_optimizer_program_merged_loss_is_the_weighted_sum_plus_l2(
    optimizer_run):
  metrics = optimizer_run.metrics
  regularization = metrics['regularization_loss/revenue_tags_units_sold']
  assert regularization > 0
  assert metrics['loss'] == pytest.approx(
      _weighted_sum(metrics, tf1_custom_optimizer) + regularization,
      rel=1e-5)
  assert metrics['global_step'] == STEPS


def test_optimizer_program_reports_the_tf1_metric_keys(optimizer_run):
  tags = ['auc', 'auc_precision_recall', 'average_loss',
          'accuracy/positive_threshold_0.5',
          'precision/positive_threshold_0.5',
          'recall/positive_threshold_0.5',
          # The tags head has a label_vocabulary: its class metrics name the
          # class, as TF 1.x's did.
          'probability_mean/gift', 'auc/gift', 'auc_precision_recall/gift']
  assert sorted(optimizer_run.metrics) == sorted(
      ['global_step', 'loss', 'regularization_loss/revenue_tags_units_sold']
      + _keys('revenue', REGRESSION_METRICS) + _keys('tags', tags) +
      _keys('units_sold', REGRESSION_METRICS))


def test_optimizer_program_predicts_keyed_by_head_and_key(optimizer_run):
  first = optimizer_run.predictions[0]
  assert sorted(first) == [
      ('revenue', 'predictions'), ('tags', 'logits'),
      ('tags', 'probabilities'), ('units_sold', 'logits'),
      ('units_sold', 'predictions')]
  np.testing.assert_allclose(first[('units_sold', 'predictions')],
                             np.exp(first[('units_sold', 'logits')]),
                             rtol=1e-5)


def test_optimizer_program_serves_what_it_predicted(optimizer_run):
  _assert_served_as_predicted(optimizer_run)


def test_optimizer_program_serves_the_tag_names(optimizer_run):
  _, served = _served(optimizer_run, signature='tags/classification',
                      count=1)
  np.testing.assert_array_equal(served['classes'],
                                [[b'gift', b'fragile', b'bulky']])


# 3. TF 1.x canned estimators given head=contrib.multi_head(...).


def test_canned_program_merged_loss_is_the_weighted_sum(canned_run):
  metrics = canned_run.metrics
  assert metrics['loss'] == pytest.approx(
      _weighted_sum(metrics, tf1_canned_estimator), rel=1e-5)
  assert metrics['global_step'] == STEPS


def test_canned_program_reports_the_tf1_metric_keys(canned_run):
  assert sorted(canned_run.metrics) == sorted(
      ['global_step', 'loss'] + _keys('bought', BINARY_METRICS) +
      _keys('return_rate', REGRESSION_METRICS) +
      _keys('category', MULTI_CLASS_METRICS))


def test_canned_program_predicts_keyed_by_head_and_key(canned_run):
  first = canned_run.predictions[0]
  assert len(canned_run.predictions) == NUM_TEST
  assert sorted(key for head, key in first if head == 'return_rate') == [
      'logits', 'predictions']
  assert 0. < first[('return_rate', 'predictions')][0] < 1.


def test_canned_program_serves_what_it_predicted(canned_run):
  _assert_served_as_predicted(canned_run)


# Each program as a script.


@pytest.mark.parametrize('program, argv', [
    ('tf1_custom_train_op_fn.py', []),
    ('tf1_custom_optimizer.py', []),
    ('tf1_canned_estimator.py', ['--estimator=linear']),
])
def test_program_runs_as_a_script(program, argv, tmp_path, monkeypatch):
  # The demo defines absl flags named --steps, --model_dir and --export_dir;
  # with it imported (as it may be in this worker), the program must still
  # get its own arguments.
  importlib.import_module('examples.demo')
  monkeypatch.setattr(sys, 'argv', [program, '--steps=1',
                                    f'--model_dir={tmp_path / "model"}',
                                    f'--export_dir={tmp_path / "export"}']
                      + argv)
  printed = io.StringIO()
  verbosity = tf.compat.v1.logging.get_verbosity()
  try:
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as done:
      runpy.run_path(str(EXAMPLES / program), run_name='__main__')
  finally:
    tf.compat.v1.logging.set_verbosity(verbosity)
  assert done.value.code in (None, 0)
  lines = printed.getvalue().splitlines()
  assert lines[0].startswith('loss ') and ' = ' in lines[0]
  assert '  global_step: 1.0000' in lines
  assert lines[-1].startswith(f'exported to {tmp_path / "export"}')
