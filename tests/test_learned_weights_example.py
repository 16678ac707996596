"""`examples/learned_weights.py` runs as a user runs it (issue 9, item 7).

One short run of the program as `python -m examples.learned_weights`, a few
steps a weighting (module fixture), backs the tests: it prints a column per
weighting and a row per head and metric, and the weights it prints follow
the methods' rules after so few steps.
"""
import doctest
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from examples import learned_weights

pytestmark = pytest.mark.xdist_group('learned_weights_example')

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = 3
COLUMNS = ['fixed', 'uncertainty', 'dwa', 'gradnorm']


@pytest.fixture(scope='module')
def printed(tmp_path_factory):
  """`(stdout, {(head, metric): {weighting: value}}, model_dir)`."""
  model_dir = tmp_path_factory.mktemp('learned_weights')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  completed = subprocess.run(
      [sys.executable, '-m', 'examples.learned_weights', f'--steps={STEPS}',
       f'--model_dir={model_dir}'],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
      check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  lines = completed.stdout.splitlines()
  start = next(index for index, line in enumerate(lines)
               if line.startswith('head '))
  header, *rows = [line.split() for line in lines[start:]]
  assert header == ['head', 'metric'] + COLUMNS
  table = {(row[0], row[1]): dict(zip(COLUMNS, map(float, row[2:])))
           for row in rows}
  return completed.stdout, table, model_dir


def test_docstring_examples_hold():
  failures, tried = doctest.testmod(
      learned_weights, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert (failures, tried > 0) == (0, True)


def test_it_trains_each_weighting_the_steps_asked(printed):
  stdout, _, model_dir = printed
  for name in COLUMNS:
    assert f'[learned_weights] {name}: training {STEPS} steps' in stdout
    checkpoint = tf.train.latest_checkpoint(str(model_dir / name))
    assert checkpoint.endswith(f'model.ckpt-{STEPS}')


def test_it_prints_every_heads_metrics_and_weight(printed):
  _, table, _ = printed
  assert list(table) == [
      ('demand', 'average_loss'), ('demand', 'loss_weight'),
      ('price', 'average_loss'), ('price', 'loss_weight'),
      ('churn', 'average_loss'), ('churn', 'accuracy'), ('churn', 'auc'),
      ('churn', 'loss_weight')]
  for values in table.values():
    assert all(np.isfinite(value) for value in values.values())


def _weights(table, column):
  return np.array([table[head, 'loss_weight'][column]
                   for head in learned_weights.HEAD_NAMES])


def test_printed_weights_follow_each_method_after_a_few_steps(printed):
  _, table, model_dir = printed
  assert (_weights(table, 'fixed') == 1.).all()
  # Fewer steps than two windows (of an epoch each): every weight is 1.
  assert STEPS < 2 * learned_weights.STEPS_PER_EPOCH
  assert (_weights(table, 'dwa') == 1.).all()
  np.testing.assert_allclose(_weights(table, 'gradnorm').sum(), 3.,
                             atol=2e-4)
  log_variances = tf.train.load_variable(
      str(model_dir / 'uncertainty'),
      'demand_price_churn/loss_weighting/log_variances')
  assert np.abs(log_variances).min() > 0  # Trained away from 0.
  np.testing.assert_allclose(_weights(table, 'uncertainty'),
                             0.5 * np.exp(-log_variances), atol=5e-5)
