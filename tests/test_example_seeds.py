"""`examples/seeds.py`: the mean ± sd every example prints over seeds."""
import doctest
import statistics

from examples import seeds


def test_docstring_examples_hold():
  failures, tried = doctest.testmod(seeds)
  assert tried >= 2 and failures == 0


def test_sd_is_the_sample_one_and_zero_for_one_seed():
  values = [0.25, 0.5, 1.5]
  assert seeds.mean_sd(values) == (statistics.fmean(values),
                                   statistics.stdev(values))
  assert seeds.mean_sd([0.7]) == (0.7, 0.)


def test_summarize_keeps_any_nesting_and_rounds_to_the_digits_asked():
  by_seed = {0: {'masked': {'eval': {'auc': 0.8}, 'loss': 1.}},
             3: {'masked': {'eval': {'auc': 0.9}, 'loss': 3.}}}
  assert seeds.summarize(by_seed, digits=2) == {
      'masked': {'eval': {'auc': '0.85 ± 0.07'}, 'loss': '2.00 ± 1.41'}}
