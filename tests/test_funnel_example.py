"""`examples/funnel.py` runs and reports what it promises (issue 15, item 5).

One tiny run of its `main` (two seeds, a few steps, small data) backs the
table tests; the data, the metrics and the way each model's probabilities
are read are checked on known values.
"""
import contextlib
import doctest
import io

import numpy as np
import pytest

from examples import funnel

pytestmark = pytest.mark.xdist_group('funnel_example')

ARGS = ['--seeds', '2', '--steps', '3', '--train_rows', '1000',
        '--test_rows', '2000']


@pytest.fixture(scope='module')
def printed_run(tmp_path_factory):
  output = io.StringIO()
  model_dir = tmp_path_factory.mktemp('funnel_example')
  with contextlib.redirect_stdout(output):
    summary, per_seed = funnel.main(ARGS + ['--model_dir', str(model_dir)])
  return summary, per_seed, output.getvalue(), model_dir


def test_conversions_are_rare_and_only_after_clicks():
  _, labels, truth = funnel.make_data(20000, seed=3)
  click, conversion = labels['click'][:, 0], labels['conversion'][:, 0]
  assert np.all(conversion <= click)
  assert 0.015 < conversion.mean() < 0.05
  np.testing.assert_array_equal(labels['masked_conversion'][:, 0],
                                np.where(click == 1, conversion, -1))
  # The labels follow the true probabilities: within 4 standard errors.
  for rate, probability in ((click, truth['click']),
                            (conversion, truth['conversion'])):
    error = np.sqrt(probability.mean() * (1 - probability.mean()) / 20000)
    assert abs(rate.mean() - probability.mean()) < 4 * error
  np.testing.assert_allclose(truth['conversion'],
                             truth['click'] * truth['cvr'])


def test_auc_is_the_share_of_positive_negative_pairs_ranked_right():
  rng = np.random.default_rng(0)
  labels = rng.random(200) < 0.3
  scores = np.round(rng.random(200), 1)  # Many ties.
  positive, negative = scores[labels], scores[~labels]
  pairs = (positive[:, None] > negative[None, :]) + 0.5 * (
      positive[:, None] == negative[None, :])
  assert funnel.auc(labels, scores) == pytest.approx(pairs.mean(), abs=1e-12)


def _predictions(click, conversion, conditional=None):
  predictions = {('click', 'logistic'): click[:, None],
                 ('conversion', 'logistic'): conversion[:, None]}
  if conditional is not None:
    predictions['conversion_given_click', 'logistic'] = conditional[:, None]
  return predictions


def test_each_way_reads_the_cvr_and_the_conversion_probability_it_has():
  click, cvr = np.array([.5, .2]), np.array([.4, .1])
  naive = funnel.predicted_probabilities('naive', _predictions(click, cvr))
  masked = funnel.predicted_probabilities('masked', _predictions(click, cvr))
  conditional = funnel.predicted_probabilities(
      'conditional', _predictions(click, click * cvr, cvr))
  np.testing.assert_allclose(naive[1:], [cvr, cvr])
  np.testing.assert_allclose(masked[1:], [cvr, click * cvr])
  np.testing.assert_allclose(conditional[1:], [cvr, click * cvr])


def test_the_true_probabilities_score_no_error():
  _, labels, truth = funnel.make_data(5000, seed=1)
  scores = funnel.scores(
      'conditional',
      _predictions(truth['click'], truth['conversion'], truth['cvr']),
      labels, truth)
  assert scores['cvr_mae'] == scores['conversion_mae'] == 0.
  clicked = labels['click'][:, 0] == 1
  observed = labels['conversion'][clicked, 0].mean()
  assert scores['cvr_calibration'] == pytest.approx(
      truth['cvr'][clicked].mean() / observed)
  assert 0.75 < scores['cvr_auc'] < 0.95


def test_prints_a_row_per_metric_and_a_column_per_way(printed_run):
  summary, _, printed, _ = printed_run
  lines = printed.splitlines()
  header = next(index for index, line in enumerate(lines)
                if line.startswith('mean ± sd over 2 seeds'))
  assert lines[header].split()[-3:] == list(funnel.WAYS)
  rows = lines[header + 1:]
  assert [row[:28].strip() for row in rows] == [
      title for _, title, _ in funnel.METRICS]
  cells = rows[0][28:].split()
  assert float(cells[0]) == pytest.approx(
      summary['naive']['cvr_auc'][0], abs=5e-4)
  assert float(cells[-1]) == pytest.approx(
      summary['conditional']['cvr_auc'][1], abs=5e-4)


def test_the_summary_is_mean_and_sd_over_the_seeds(printed_run):
  summary, per_seed, _, _ = printed_run
  assert len(per_seed) == 2
  for way in funnel.WAYS:
    for key, _, _ in funnel.METRICS:
      values = [results[way][key] for results in per_seed]
      assert summary[way][key] == pytest.approx(
          (np.mean(values), np.std(values, ddof=1)))
      assert np.isfinite(values).all()
    assert 0. <= summary[way]['cvr_auc'][0] <= 1.


def test_a_seed_gives_the_same_numbers_again(printed_run, tmp_path):
  _, per_seed, _, _ = printed_run
  again = funnel.run_seed(0, funnel.parse_args(ARGS), str(tmp_path))
  assert again == per_seed[0]


def test_docstring_examples_hold():
  failures, tried = doctest.testmod(funnel)
  assert tried >= 3 and failures == 0
