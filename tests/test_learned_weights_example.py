"""`examples/learned_weights.py` runs as a user runs it (issue 9, item 7).

One short run of the program as `python -m examples.learned_weights`, a few
steps a weighting (module fixture), backs the tests: it prints a column per
weighting and a row per head and metric, and the weights it prints follow
the methods' rules after so few steps.

It is seeded (issue 13, item 5): two runs with one seed, in this process
and in another, give the same figures to the last bit, and `--seeds=N`
prints each figure's mean and standard deviation over those runs, with a
verdict per metric against fixed weights.
"""
import doctest
import os
import pathlib
import statistics
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from examples import learned_weights
from tensorflow_multihead import weighting

pytestmark = pytest.mark.xdist_group('learned_weights_example')

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = 3
COLUMNS = ['fixed', 'uncertainty', 'dwa', 'gradnorm', 'random', 'famo']
# The seeded runs: a few steps of two weightings.
SEEDED_STEPS = 4
SEEDED = ('fixed', 'famo')


def _run_program(*args):
  """Runs `python -m examples.learned_weights ARGS`; returns its stdout."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  completed = subprocess.run(
      [sys.executable, '-m', 'examples.learned_weights', *args],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
      check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  return completed.stdout


def _table_lines(stdout):
  lines = stdout.splitlines()
  start = next(index for index, line in enumerate(lines)
               if line.startswith('head '))
  end = lines.index('', start) if '' in lines[start:] else len(lines)
  return lines[start:end], lines[end + 1:]


@pytest.fixture(scope='module')
def printed(tmp_path_factory):
  """`(stdout, {(head, metric): {weighting: value}}, model_dir)`."""
  model_dir = tmp_path_factory.mktemp('learned_weights')
  stdout = _run_program(f'--steps={STEPS}', f'--model_dir={model_dir}')
  header, *rows = [line.split() for line in _table_lines(stdout)[0]]
  assert header == ['head', 'metric'] + COLUMNS
  table = {(row[0], row[1]): dict(zip(COLUMNS, map(float, row[2:])))
           for row in rows}
  return stdout, table, model_dir


@pytest.fixture(scope='module')
def seeded_runs():
  """`{run: results}`: seed 0 twice and seed 1, in this process."""
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
  return {name: learned_weights.run(SEEDED_STEPS, weightings=SEEDED,
                                    seed=seed)[0]
          for name, seed in (('first', 0), ('again', 0), ('other', 1))}


@pytest.fixture(scope='module')
def printed_seeds():
  """`(table lines, verdict lines)` of `--seeds=2` in another process."""
  return _table_lines(_run_program(
      '--seeds=2', f'--steps={SEEDED_STEPS}',
      f'--weightings={",".join(SEEDED)}'))


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


def test_famo_and_random_weights_follow_their_rules(printed):
  _, table, model_dir = printed
  np.testing.assert_allclose(_weights(table, 'random'), weighting.
                             RandomLossWeighting(seed=0).draw(3, STEPS),
                             atol=5e-5)
  logits = tf.train.load_variable(
      str(model_dir / 'famo'), 'demand_price_churn/loss_weighting/logits')
  # Updated after every step but the first.
  assert np.abs(logits).min() > 0
  np.testing.assert_allclose(_weights(table, 'famo'),
                             np.exp(logits) / np.exp(logits).sum(), atol=5e-5)


def test_two_runs_with_one_seed_give_identical_figures(seeded_runs):
  assert seeded_runs['first'] == seeded_runs['again']
  assert seeded_runs['first'] != seeded_runs['other']


def _mean_and_sd(cell):
  mean, plus_minus, sd = cell
  assert plus_minus == '±'
  return float(mean), float(sd)


def test_seeds_table_holds_the_mean_and_sd_of_the_runs_of_each_seed(
    seeded_runs, printed_seeds):
  # Printed by another process: so every process computes alike.
  header, *rows = [line.split() for line in printed_seeds[0]]
  assert header == ['head', 'metric'] + list(SEEDED)
  assert len(rows) == 8
  for head, metric, *cells in rows:
    for name, cell in zip(SEEDED, zip(*[iter(cells)] * 3)):
      values = [seeded_runs[run][name][head][metric]
                for run in ('first', 'other')]
      np.testing.assert_allclose(
          _mean_and_sd(cell),
          [statistics.fmean(values), statistics.stdev(values)], atol=6e-4,
          err_msg=f'{head} {metric} {name}')


def test_seeds_verdicts_name_each_metric_against_fixed_weights(
    printed_seeds):
  verdicts = printed_seeds[1]
  assert [line.split(':')[0] for line in verdicts] == [
      'demand average_loss', 'price average_loss', 'churn average_loss',
      'churn accuracy', 'churn auc']
  for line in verdicts:
    assert 'famo' in line
    assert ('better than fixed' in line or 'worse than fixed' in line or
            'not clearly different' in line)


def test_seeds_verdicts_follow_the_paired_differences():
  by_seed = {seed: {'fixed': {'demand': {'average_loss': 1.,
                                         'auc': 0.7}},
                    'famo': {'demand': {'average_loss': 0.5 + seed / 100,
                                        'auc': 0.7 + (-1)**seed / 100}}}
             for seed in range(4)}
  assert learned_weights.verdicts(by_seed).splitlines() == [
      'demand average_loss: better than fixed: famo',
      'demand auc: not clearly different: famo']
