"""`examples/missing_labels.py` runs and reports what it promises (issue 8).

One short run of its `main` (a few training steps) backs every test: the
printed table has a row per head and metric and a column per way, and the
numbers say what the example teaches, whatever the model learned in so few
steps: the naive model's own conversion metrics count unclicked rows as
non-conversions, while `MaskedHead`'s cover the clicked rows alone.
"""
import contextlib
import io

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
