"""`examples/missing_labels.py` runs and reports what it promises (issue 8).

One short run of its `main` (a few training steps) backs every test: the
printed table has a row per head and metric and a column per way, and the
numbers say what the example teaches, whatever the model learned in so few
steps: the naive model's own conversion metrics count unclicked rows as
non-conversions, while `MaskedHead`'s cover the clicked rows alone.

It is seeded (issue 13, item 5): a `--seeds 2` run repeats the first run's
figures exactly for seed 0, and prints each figure's mean and standard
deviation over the two seeds.
"""
import contextlib
import io
import statistics

import numpy as np
import pytest

from examples import missing_labels

pytestmark = pytest.mark.xdist_group('masked_example')

STEPS = 3
TEST_ROWS = 2000  # `run`'s default held-out rows.


@pytest.fixture(scope='module')
def printed_run(tmp_path_factory):
  output = io.StringIO()
  with contextlib.redirect_stdout(output):
    results = missing_labels.main(
        ['--steps', str(STEPS),
         '--model_dir', str(tmp_path_factory.mktemp('missing_labels'))])
  return results, output.getvalue()


@pytest.fixture(scope='module')
def printed_seeds(tmp_path_factory):
  output = io.StringIO()
  with contextlib.redirect_stdout(output):
    by_seed = missing_labels.main(
        ['--steps', str(STEPS), '--seeds', '2',
         '--model_dir', str(tmp_path_factory.mktemp('missing_seeds'))])
  return by_seed, output.getvalue()


def test_data_has_conversions_on_clicked_rows_only():
  _, labels = missing_labels.make_data(500, seed=1)
  clicked = labels['click'][:, 0] == 1
  assert set(np.unique(labels['conversion'][clicked])) == {0, 1}
  assert set(np.unique(labels['conversion'][~clicked])) == {-1}
  assert set(np.unique(
      missing_labels.naive_labels(labels)['conversion'])) == {0, 1}


def test_prints_a_row_per_head_and_metric_and_a_column_per_way(printed_run):
  _, printed = printed_run
  lines = printed.splitlines()
  assert 'naive (no click = 0)' in lines[0]
  assert 'MaskedHead (no click = -1)' in lines[0]
  assert [line for line in lines[1:] if not line.startswith(' ')] == [
      'click, all rows:', 'conversion, as each model reports it:',
      'conversion, on the clicked rows only:']
  rows = [line.split() for line in lines[1:] if line.startswith('  ')]
  assert len(rows) == 3 + 5 + 5
  assert rows[0][0] == 'auc/click'
  assert all(len(row) == 3 for row in rows)
  results, _ = printed_run
  assert float(rows[0][2]) == pytest.approx(
      results['masked']['reported']['auc/click'], abs=5e-5)


def test_both_models_trained_the_asked_steps(printed_run):
  results, _ = printed_run
  for way in missing_labels.WAYS:
    assert results[way]['reported']['global_step'] == STEPS


def test_naive_model_counts_unclicked_rows_as_non_conversions(printed_run):
  results, _ = printed_run
  naive = results['naive']
  clicked_rate = naive['clicked']['label/mean/conversion']
  click_rate = naive['reported']['label/mean/click']
  np.testing.assert_allclose(naive['reported']['label/mean/conversion'],
                             clicked_rate * click_rate, rtol=1e-5)


def test_masked_model_reports_the_clicked_rows_alone(printed_run):
  results, _ = printed_run
  masked = results['masked']
  for metric in missing_labels.CONVERSION_METRICS:
    key = f'{metric}/conversion'
    assert masked['reported'][key] == masked['clicked'][key], key
  assert masked['clicked']['label/mean/conversion'] == results['naive'][
      'clicked']['label/mean/conversion']


def test_held_out_rows_are_counted_once_each(printed_run):
  results, _ = printed_run
  click_rate = results['masked']['reported']['label/mean/click']
  assert 0.2 < click_rate < 0.5
  # The click label's mean over 2000 rows is a multiple of 1/2000.
  assert abs(click_rate * TEST_ROWS - round(click_rate * TEST_ROWS)) < 1e-3


def test_a_seed_gives_the_same_figures_in_every_run(printed_run,
                                                     printed_seeds):
  results, _ = printed_run
  by_seed, _ = printed_seeds
  assert by_seed[0] == results  # Bit for bit, in a later run.
  assert by_seed[1] != results


def test_seeds_table_holds_the_mean_and_sd_over_the_seeds(printed_seeds):
  by_seed, printed = printed_seeds
  rows = [line.split() for line in printed.splitlines()[1:]
          if line.startswith('  ')]
  assert len(rows) == 3 + 5 + 5
  sources = ['reported'] * 8 + ['clicked'] * 5
  for (key, *cells), source in zip(rows, sources):
    for way, cell in zip(missing_labels.WAYS, zip(*[iter(cells)] * 3)):
      mean, plus_minus, sd = cell
      assert plus_minus == '±'
      values = [by_seed[seed][way][source][key] for seed in (0, 1)]
      assert float(mean) == pytest.approx(statistics.fmean(values), abs=6e-5)
      assert float(sd) == pytest.approx(statistics.stdev(values), abs=6e-5)
