"""`examples/conflicting_heads.py` runs and reports what it promises.

Issue 14, item 5. One tiny run of its `main` (one seed, a few steps, fixed
weights and UPGrad) backs the table tests; the data, the error measure and
the verdict are checked on known values, the verdict on numbers made up to
be better, worse or mixed.
"""
import contextlib
import doctest
import io

import numpy as np
import pytest
import tensorflow as tf

from examples import conflicting_heads

pytestmark = pytest.mark.xdist_group('conflicting_heads_example')

STEPS = 3
WAYS = ('fixed', 'upgrad')
ARGS = ['--seeds', '1', '--steps', str(STEPS), '--ways', ','.join(WAYS),
        '--train_rows', '256', '--test_rows', '512']
ROWS = ('price', 'demand', 'churn', 'mean', 'worst')


@pytest.fixture(scope='module')
def printed_run(tmp_path_factory):
  """`(by_seed, stdout, model_dir)` of one tiny run of `main`."""
  output = io.StringIO()
  model_dir = tmp_path_factory.mktemp('conflicting_heads')
  with contextlib.redirect_stdout(output):
    by_seed = conflicting_heads.main(ARGS + ['--model_dir', str(model_dir)])
  return by_seed, output.getvalue(), model_dir


def test_the_tasks_partly_oppose_each_other():
  # On unit vectors x = e_i, each truth gives its direction's entry i.
  truth = conflicting_heads.true_values(np.eye(conflicting_heads.FEATURES))
  a = np.arctanh(truth['price'] / 10.)
  b = np.arctanh(truth['demand'])
  c = np.arctanh(np.log(truth['churn'] / (1. - truth['churn'])) / 3.)
  for direction in (a, b, c):
    np.testing.assert_allclose(np.linalg.norm(direction), 1., atol=1e-9)
  np.testing.assert_allclose([a @ b, a @ c, b @ c], [-0.6, -0.6, 0.36],
                             atol=1e-9)


def test_the_labels_follow_the_truth_with_the_stated_noise():
  _, labels, truth = conflicting_heads.make_data(20000, seed=3)
  price_noise = labels['price'][:, 0] - truth['price']
  demand_noise = labels['demand'][:, 0] - truth['demand']
  assert price_noise.std() == pytest.approx(2., rel=0.03)
  assert demand_noise.std() == pytest.approx(0.1, rel=0.03)
  churn = labels['churn'][:, 0]
  assert set(np.unique(churn)) == {0, 1}
  error = np.sqrt(truth['churn'].mean() * (1 - truth['churn'].mean()) /
                  20000)
  assert abs(churn.mean() - truth['churn'].mean()) < 4 * error
  # The price loss dwarfs the others: its label variance is ~100 times.
  assert labels['price'].var() > 50 * labels['demand'].var()


def test_the_truth_scores_no_error_and_its_mean_an_error_of_one():
  _, _, truth = conflicting_heads.make_data(1000, seed=0)
  perfect = conflicting_heads.relative_errors(truth, truth)
  assert perfect == dict.fromkeys(ROWS, 0.)
  constant = conflicting_heads.relative_errors(
      {name: np.full_like(values, values.mean())
       for name, values in truth.items()}, truth)
  for row in ROWS:
    assert constant[row] == pytest.approx(1., abs=1e-12)


def test_it_trains_each_way_the_steps_asked(printed_run):
  _, stdout, model_dir = printed_run
  assert (f'[conflicting_heads] seed 0: training fixed, upgrad, {STEPS} '
          'steps each') in stdout
  for way in WAYS:
    checkpoint = tf.train.latest_checkpoint(str(model_dir / 'seed_0' / way))
    assert checkpoint.endswith(f'model.ckpt-{STEPS}')


def test_upgrad_trains_the_trunk_another_way(printed_run):
  _, _, model_dir = printed_run
  kernels = [tf.train.load_variable(str(model_dir / 'seed_0' / way),
                                    'trunk/kernel') for way in WAYS]
  assert kernels[0].shape == (conflicting_heads.FEATURES,
                              conflicting_heads.TRUNK_UNITS)
  assert not np.allclose(kernels[0], kernels[1])


def test_prints_a_row_per_head_and_summary_and_a_column_per_way(printed_run):
  by_seed, stdout, _ = printed_run
  lines = stdout.splitlines()
  start = next(index for index, line in enumerate(lines)
               if line.startswith('error / sd(truth), 1 seeds'))
  assert lines[start].split()[-2:] == list(WAYS)
  rows = lines[start + 1:start + 1 + len(ROWS)]
  assert [row.split()[0] for row in rows] == list(ROWS)
  for row, line in zip(ROWS, rows):
    cells = line.split()[1:]
    assert cells[1::3] == ['±'] * len(WAYS)
    for way, mean, sd in zip(WAYS, cells[0::3], cells[2::3]):
      assert float(mean) == pytest.approx(by_seed[0][way][row], abs=5e-4)
      assert float(sd) == 0.
  verdict = lines[start + len(ROWS) + 2]
  assert verdict.startswith(('upgrad helps: ', 'upgrad does not help: '))


def test_the_errors_are_the_heads_then_their_mean_and_worst(printed_run):
  by_seed, _, _ = printed_run
  for way in WAYS:
    errors = by_seed[0][way]
    assert list(errors) == list(ROWS)
    heads = [errors[name] for name in conflicting_heads.HEAD_NAMES]
    assert all(np.isfinite(heads)) and min(heads) > 0.
    assert errors['mean'] == pytest.approx(np.mean(heads))
    assert errors['worst'] == max(heads)


def test_a_seed_gives_the_same_numbers_again(printed_run, tmp_path):
  by_seed, _, _ = printed_run
  again = conflicting_heads.train_and_score(
      'upgrad', 0, conflicting_heads.parse_args(ARGS), str(tmp_path))
  assert again == by_seed[0]['upgrad']


def _made_up(fixed, other, seeds=4):
  """`{seed: {'fixed': ..., 'other': ...}}`, `other` jittered by seed."""
  return {seed: {'fixed': dict(fixed),
                 'other': {row: value + 0.001 * (-1)**seed
                           for row, value in other.items()}}
          for seed in range(seeds)}


def test_a_way_worse_on_the_mean_does_not_help():
  by_seed = _made_up(
      {'price': .1, 'demand': .3, 'churn': .4, 'mean': .267, 'worst': .4},
      {'price': .3, 'demand': .3, 'churn': .4, 'mean': .333, 'worst': .4})
  assert conflicting_heads.verdicts(by_seed) == (
      'other does not help: mean error 0.333 against 0.267 with fixed, '
      'worst head 0.400 against 0.400; worse on price')


def test_a_way_better_on_the_mean_and_worst_head_helps():
  by_seed = _made_up(
      {'price': .1, 'demand': .5, 'churn': .4, 'mean': .333, 'worst': .5},
      {'price': .1, 'demand': .2, 'churn': .4, 'mean': .233, 'worst': .4})
  verdict = conflicting_heads.verdicts(by_seed)
  assert verdict.startswith('other helps: mean error 0.233 against 0.333')
  assert verdict.endswith('; better on demand')


def test_a_better_mean_bought_with_a_worse_worst_head_does_not_help():
  by_seed = _made_up(
      {'price': .3, 'demand': .3, 'churn': .3, 'mean': .3, 'worst': .3},
      {'price': .0, 'demand': .0, 'churn': .6, 'mean': .2, 'worst': .6})
  assert conflicting_heads.verdicts(by_seed).startswith(
      'other does not help: ')


def test_differences_within_the_seeds_noise_are_not_called_either_way():
  by_seed = {seed: {'fixed': {'mean': .3, 'worst': .4},
                    'other': {'mean': .3 + 0.05 * (-1)**seed, 'worst': .4}}
             for seed in range(4)}
  assert conflicting_heads.compare(by_seed, 'other', 'mean') == 'same'
  assert conflicting_heads.verdicts(by_seed).startswith(
      'other does not help: ')


def test_ways_without_fixed_weights_are_refused():
  with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
    conflicting_heads.parse_args(['--ways', 'upgrad,mgda'])


def test_docstring_examples_hold():
  failures, tried = doctest.testmod(conflicting_heads)
  assert tried >= 4 and failures == 0
