"""The demo CLI trains, evaluates, exports and serves a three-headed model.

One in-process run (module fixture) backs most tests; two tests run the CLI
as a subprocess, as `python3.11 run.py demo` does.
"""
import doctest
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from examples import demo

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SEED = 7
NUM_REQUESTS = 4
HEADS = ('cultivar', 'alcohol', 'vivid')
# What MultiHead exports: the first head's default as serving_default, every
# head's outputs as `<head>` (its default) and `<head>/<kind>`, plus the
# merged `predict`.
EXPECTED_SIGNATURES = [
    'alcohol', 'alcohol/predict', 'alcohol/regression',
    'cultivar', 'cultivar/classification', 'cultivar/predict',
    'predict', 'serving_default',
    'vivid', 'vivid/classification', 'vivid/predict', 'vivid/regression',
]

pytestmark = pytest.mark.xdist_group('demo')


def _run_demo(root):
  return demo.run_demo(steps=200, model_dir=str(root / 'model'),
                       export_dir=str(root / 'export'), seed=SEED,
                       num_requests=NUM_REQUESTS)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  return _run_demo(tmp_path_factory.mktemp('demo'))


@pytest.fixture(scope='module')
def data():
  return demo.load_wine_data(SEED)


@pytest.fixture(scope='module')
def held_out(data):
  return data.test


def _table_rows(table):
  header, *rows = table.splitlines()
  return header.split(), [row.split() for row in rows]


def test_docstring_examples_hold():
  failures, tried = doctest.testmod(
      demo, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert (failures, tried > 0) == (0, True)


def test_split_is_stratified_and_deterministic():
  first, second = demo.load_wine_data(SEED), demo.load_wine_data(SEED)
  np.testing.assert_array_equal(first.test.labels['cultivar'],
                                second.test.labels['cultivar'])
  assert np.bincount(first.test.labels['cultivar'][:, 0]).tolist() == [
      15, 18, 12]
  assert len(first.train.features) == 11


def test_metrics_table_has_one_row_per_head_in_order(run):
  header, rows = _table_rows(run['metrics_table'])
  assert header[:2] == ['head', 'kind']
  assert [row[0] for row in rows] == list(HEADS)


def test_metrics_table_shows_the_evaluated_values(run):
  header, rows = _table_rows(run['metrics_table'])
  cultivar = dict(zip(header, rows[0]))
  assert float(cultivar['accuracy']) == pytest.approx(
      run['metrics']['cultivar']['accuracy'], abs=5e-5)
  assert cultivar['auc'] == '-'


def test_each_head_reports_the_metrics_of_its_kind(run):
  assert {head: sorted(values) for head, values in run['metrics'].items()} == {
      'cultivar': ['accuracy', 'average_loss', 'loss'],
      'alcohol': ['average_loss', 'label/mean', 'loss', 'prediction/mean'],
      'vivid': ['accuracy', 'accuracy_baseline', 'auc',
                'auc_precision_recall', 'average_loss', 'label/mean', 'loss',
                'precision', 'prediction/mean', 'recall'],
  }


def test_every_head_metric_is_finite(run):
  for head in HEADS:
    for name, value in run['metrics'][head].items():
      assert math.isfinite(value), (head, name)


def test_merged_loss_is_the_sum_of_unit_weighted_head_losses(run):
  head_losses = [run['metrics'][head]['loss'] for head in HEADS]
  assert run['eval_results']['loss'] == pytest.approx(sum(head_losses),
                                                      rel=1e-5)


def test_cultivar_accuracy_is_well_above_the_majority_share(run, held_out):
  majority_share = np.bincount(held_out.labels['cultivar'][:, 0]).max() / len(
      held_out.labels['cultivar'])
  assert majority_share == pytest.approx(0.4)
  assert run['metrics']['cultivar']['accuracy'] > 0.75


def test_vivid_ranks_far_better_than_chance(run):
  assert run['metrics']['vivid']['auc'] > 0.85


def test_alcohol_beats_predicting_the_training_mean(run, data):
  mean_guess_error = np.mean(
      (data.test.labels['alcohol'] - data.alcohol_mean) ** 2)
  assert run['metrics']['alcohol']['average_loss'] < 0.85 * mean_guess_error


def test_training_ran_the_requested_steps(run):
  assert run['eval_results']['global_step'] == 200


def test_export_is_a_saved_model_with_every_head_signature(run):
  assert tf.saved_model.contains_saved_model(run['export_path'])
  assert run['signature_names'] == EXPECTED_SIGNATURES


def test_default_signature_classifies_cultivar(run):
  answer = run['answers']['serving_default']
  assert answer['classes'].shape == (NUM_REQUESTS, 3)
  assert answer['classes'][0].tolist() == [b'0', b'1', b'2']
  assert answer['scores'].shape == (NUM_REQUESTS, 3)
  np.testing.assert_allclose(answer['scores'].sum(axis=1), 1., rtol=1e-5)


def test_alcohol_signature_regresses_in_percent_by_volume(run):
  outputs = run['answers']['alcohol']['outputs']
  assert outputs.shape == (NUM_REQUESTS, 1)
  # Wines in the data set hold 11 to 15 % alcohol.
  assert np.all((outputs > 10.) & (outputs < 16.))


def test_vivid_classification_signature_scores_both_classes(run):
  answer = run['answers']['vivid/classification']
  assert answer['classes'].shape == (NUM_REQUESTS, 2)
  assert answer['scores'].shape == (NUM_REQUESTS, 2)
  np.testing.assert_allclose(answer['scores'].sum(axis=1), 1., rtol=1e-5)


def test_predict_signature_merges_every_head_output(run):
  merged = run['answers']['predict']
  assert sorted(merged) == [
      'alcohol/predictions',
      'cultivar/all_class_ids', 'cultivar/all_classes', 'cultivar/class_ids',
      'cultivar/classes', 'cultivar/logits', 'cultivar/probabilities',
      'vivid/all_class_ids', 'vivid/all_classes', 'vivid/class_ids',
      'vivid/classes', 'vivid/logistic', 'vivid/logits',
      'vivid/probabilities']
  assert merged['cultivar/probabilities'].shape == (NUM_REQUESTS, 3)
  assert merged['alcohol/predictions'].shape == (NUM_REQUESTS, 1)
  assert merged['vivid/logistic'].shape == (NUM_REQUESTS, 1)


def test_predict_signature_agrees_with_the_head_signatures(run):
  answers = run['answers']
  merged = answers['predict']
  np.testing.assert_allclose(merged['cultivar/probabilities'],
                             answers['serving_default']['scores'], rtol=1e-5)
  np.testing.assert_allclose(merged['alcohol/predictions'],
                             answers['alcohol']['outputs'], rtol=1e-5)
  np.testing.assert_allclose(merged['vivid/probabilities'],
                             answers['vivid/classification']['scores'],
                             rtol=1e-5)


def test_answers_are_reported_next_to_held_out_truth(run, held_out):
  for head in HEADS:
    np.testing.assert_array_equal(run['truth'][head],
                                  held_out.labels[head][:NUM_REQUESTS])
  header, rows = _table_rows(run['answers_table'])
  assert header[:3] == ['wine', 'cultivar', 'served']
  assert [row[1] for row in rows] == [
      str(label) for label in held_out.labels['cultivar'][:NUM_REQUESTS, 0]]


def test_reference_multi_head_gives_the_same_run(run, tmp_path, monkeypatch):
  monkeypatch.setattr(demo, 'MultiHead', tf.estimator.MultiHead)
  reference = _run_demo(tmp_path)
  assert reference['eval_results'] == pytest.approx(run['eval_results'],
                                                    rel=1e-5)
  assert reference['signature_names'] == run['signature_names']
  for name, outputs in reference['answers'].items():
    assert sorted(outputs) == sorted(run['answers'][name])
    for key, value in outputs.items():
      if value.dtype == object:
        np.testing.assert_array_equal(value, run['answers'][name][key])
      else:
        np.testing.assert_allclose(value, run['answers'][name][key],
                                   rtol=1e-5, atol=1e-6)


def _run_cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run([sys.executable, '-m', 'examples.demo', *args],
                        cwd=REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=300, check=False)


def test_cli_prints_a_metrics_row_for_every_head(tmp_path):
  completed = _run_cli('--steps=20', '--num_requests=2',
                       f'--model_dir={tmp_path / "model"}',
                       f'--export_dir={tmp_path / "export"}')
  assert completed.returncode == 0, completed.stderr
  lines = completed.stdout.splitlines()
  header_at = next(i for i, line in enumerate(lines)
                   if line.startswith('head '))
  assert [line.split()[0] for line in lines[header_at + 1:header_at + 4]] == (
      list(HEADS))
  assert lines[-1].startswith('done: cultivar accuracy ')
  assert tf.saved_model.contains_saved_model(
      str(next((tmp_path / 'export').iterdir())))


def test_cli_rejects_a_head_weight_count_that_does_not_match(tmp_path):
  completed = _run_cli('--head_weights=1,2',
                       f'--model_dir={tmp_path / "model"}')
  assert completed.returncode == 1
  assert '--head_weights needs 3 numbers' in completed.stderr
  assert not (tmp_path / 'model').exists()
