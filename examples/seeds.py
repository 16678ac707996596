"""Figures over several seeds, as the examples print them: mean ± sd.

The standard deviation is the sample one (n - 1), 0 for a single seed.

>>> mean_sd([1., 2., 4.])
(2.3333333333333335, 1.5275252316519468)
>>> summarize({0: {'fixed': {'auc': 0.5}}, 1: {'fixed': {'auc': 0.7}}})
{'fixed': {'auc': '0.600 ± 0.141'}}
"""
import statistics


def mean_sd(values):
  """`(mean, sd)` of `values`, as plain floats."""
  values = [float(value) for value in values]  # NumPy's, as plain floats.
  sd = statistics.stdev(values) if len(values) > 1 else 0.
  return statistics.fmean(values), sd


def summarize(by_seed, digits=3):
  """`{seed: results}` -> the results' nesting of dicts, each number
  replaced by its `'mean ± sd'` over the seeds, to `digits` decimals."""
  runs = list(by_seed.values())

  def leaf_or_branch(values):
    if isinstance(values[0], dict):
      return {key: leaf_or_branch([value[key] for value in values])
              for key in values[0]}
    mean, sd = mean_sd(values)
    return f'{mean:.{digits}f} ± {sd:.{digits}f}'

  return leaf_or_branch(runs)
