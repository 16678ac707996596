"""Hypothesis draws head mixes; ours must match `tf.estimator.MultiHead`.

Where `test_multi_head_differential` walks a fixed list of seeded mixes,
these tests let Hypothesis compose the mixes itself (head kinds and
options, weights, logits form and rank, regularization, how logits are fed
and how TRAIN trains) and shrink any mix on which the two multi-heads
disagree to a minimal one.

How many examples run depends on the Hypothesis profile
(`tests/hypothesis_profiles.py`): CI's 'ci' profile runs the counts planned
in `_CI_PLAN`, the default 'dev' profile a tenth of them. Each test's
examples are split into shards, pytest tests of their own with their own
seeds, so that xdist spreads them over its workers. Runs are derandomized so
that CI is repeatable; pytest's summary says how many examples ran.
"""
import pathlib
import zlib

import hypothesis
from hypothesis import strategies as st
import pytest

from tests import differential as diff
from tests import hypothesis_profiles as profiles

_WEIGHTS = st.floats(min_value=0.1, max_value=3., allow_nan=False,
                     allow_infinity=False).map(lambda weight: round(weight, 2))


@st.composite
def head_specs(draw, name, rank):
  """A `HeadSpec` named `name` that the reference accepts at `rank`."""
  kind = draw(st.sampled_from(diff.KINDS))
  width = 1
  if kind == diff.MULTI_CLASS:
    width = draw(st.integers(3, 4))
  elif kind == diff.MULTI_LABEL:
    width = draw(st.integers(2, 4))
  elif kind in (diff.REGRESSION, diff.POISSON):
    width = draw(st.integers(1, 3))
  sparse = kind == diff.MULTI_LABEL and rank == 2 and draw(st.booleans())
  vocabulary = None
  if kind in (diff.BINARY, diff.MULTI_CLASS) or sparse:
    if draw(st.booleans()):
      vocabulary = diff.VOCABULARY[:max(width, 2)]
  thresholds = ()
  if kind in (diff.BINARY, diff.MULTI_LABEL):
    thresholds = tuple(sorted(draw(
        st.sets(st.sampled_from(diff.THRESHOLDS), max_size=2))))
  class_metrics = ()
  if kind == diff.MULTI_LABEL:
    class_metrics = tuple(sorted(draw(
        st.sets(st.integers(0, width - 1), max_size=2))))
  flat = (width == 1 and kind != diff.MULTI_LABEL and draw(st.booleans()))
  weighted = draw(st.booleans())
  return diff.HeadSpec(
      kind=kind, name=name, width=width, vocabulary=vocabulary,
      weight_column=f'{name}_weight' if weighted else None,
      thresholds=thresholds, class_metrics=class_metrics,
      sparse_labels=sparse, flat_labels=flat)


@st.composite
def mixes(draw, max_heads=3):
  """A `Mix` of 1 to `max_heads` heads with everything else drawn too."""
  names = draw(st.lists(st.sampled_from(diff.HEAD_NAMES), min_size=1,
                        max_size=max_heads, unique=True))
  rank = draw(st.sampled_from([2, 3]))
  heads = tuple(draw(head_specs(name, rank)) for name in names)
  head_weights = draw(st.none() | st.tuples(*[_WEIGHTS] * len(heads)))
  regularization = draw(
      st.none() | st.lists(_WEIGHTS, min_size=1, max_size=2).map(tuple))
  batch_shape = ((2, draw(st.integers(1, 3))) if rank == 3
                 else (draw(st.integers(1, 5)),))
  return diff.Mix(
      heads=heads, head_weights=head_weights,
      dict_logits=draw(st.booleans()), batch_shape=batch_shape,
      regularization=regularization,
      loss_reduction=draw(st.sampled_from([diff.SUM_OVER_BATCH_SIZE,
                                           diff.SUM])),
      data_seed=draw(st.integers(0, 2**16)))


@st.composite
def graph_options(draw, mix):
  """How to feed the logits (constant or placeholder) and how to train."""
  unknown = (None,) * len(mix.batch_shape)
  logits_shape = draw(st.sampled_from(
      [None, unknown + (mix.logits_dimension,), unknown + (None,)]))
  return diff.GraphOptions(
      logits_shape=logits_shape,
      train_with=draw(st.sampled_from(['train_op_fn', 'optimizer'])),
      update_ops=draw(st.booleans()))


# Examples each test runs under the 'ci' profile, and its number of shards.
# Seconds per example on an idle 2-core machine (each compares the reference
# with ours fused and not): eager loss and metrics 0.56, eager predictions
# 0.04, graph TRAIN 1.1, EVAL (over several batches) 6, PREDICT 0.28. The
# cheap tests take the most examples, so that CI's 1,000 examples take about
# 300 s in all (EVAL's fixed mixes are in test_multi_head_differential and
# test_fused_differential); no shard should take over a minute.
_CI_PLAN = {
    'eager_loss_and_metrics': (100, 2),
    'eager_predictions': (600, 1),
    diff.TRAIN: (60, 2),
    diff.EVAL: (12, 2),
    diff.PREDICT: (240, 2),
}


def _shards(*plans):
  """pytest params, one per shard of each plan in `_CI_PLAN` named."""
  params = []
  for plan in plans:
    ci_examples, shards = _CI_PLAN[plan]
    params += [
        pytest.param(plan, ci_examples // shards, id=f'{plan}-{shard + 1}')
        for shard in range(shards)]
  return params


def _run_examples(request, ci_examples, check):
  """Runs `check(data)` as a Hypothesis test for the loaded profile.

  The shard's test id seeds it, so that shards draw different examples. The
  number of examples run is recorded for pytest's summary.
  """
  examples = profiles.examples_for(ci_examples)
  passed = []

  @hypothesis.settings(max_examples=examples)
  @hypothesis.seed(zlib.crc32(request.node.name.encode()))
  @hypothesis.given(data=st.data())
  def run(data):
    check(data)
    passed.append(True)

  run()
  request.node.user_properties.append(
      (profiles.EXAMPLES_PROPERTY, len(passed)))
  assert len(passed) >= examples


@pytest.mark.parametrize('plan, ci_examples',
                         _shards('eager_loss_and_metrics'))
def test_drawn_mix_loss_and_metrics_match_reference_eagerly(
    request, plan, ci_examples):
  del plan  # Only names the shard.
  _run_examples(request, ci_examples, lambda data: diff.assert_same_in_eager(
      data.draw(mixes(max_heads=4), label='mix'), parts=('loss', 'metrics')))


@pytest.mark.parametrize('plan, ci_examples', _shards('eager_predictions'))
def test_drawn_mix_predictions_match_reference_eagerly(
    request, plan, ci_examples):
  del plan  # Only names the shard.
  _run_examples(request, ci_examples, lambda data: diff.assert_same_in_eager(
      data.draw(mixes(max_heads=4), label='mix'), parts=('predictions',)))


@pytest.mark.parametrize('mode, ci_examples',
                         _shards(diff.TRAIN, diff.EVAL, diff.PREDICT))
def test_drawn_mix_matches_reference_in_graph(request, mode, ci_examples):

  def check(data):
    mix = data.draw(mixes(), label='mix')
    options = data.draw(graph_options(mix), label='options')
    reference = diff.assert_same_in_graph(mix, mode, options)
    assert {name for name, _ in reference['predictions']} == set(
        mix.head_names)

  _run_examples(request, ci_examples, check)


def test_ci_profile_runs_at_least_1000_examples():
  planned = {profile: sum(profiles.examples_for(ci_examples // shards, profile)
                          * shards for ci_examples, shards in _CI_PLAN.values())
             for profile in (profiles.CI, profiles.DEFAULT)}
  assert planned[profiles.CI] >= profiles.CI_MINIMUM
  # The default run stays quick: about a tenth of CI's examples.
  assert planned[profiles.DEFAULT] <= planned[profiles.CI] // 8


def test_ci_runs_the_ci_profile():
  ci_script = pathlib.Path(__file__).resolve().parent.parent / '.ci' / 'run'
  assert (f'{profiles.VARIABLE}={profiles.CI} python3.11 run.py test'
          in ci_script.read_text())
