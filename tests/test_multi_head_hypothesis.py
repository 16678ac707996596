"""Hypothesis draws head mixes; ours must match `tf.estimator.MultiHead`.

Where `test_multi_head_differential` walks a fixed list of seeded mixes,
these tests let Hypothesis compose the mixes itself (head kinds and
options, weights, logits form and rank, regularization, how logits are fed
and how TRAIN trains) and shrink any mix on which the two multi-heads
disagree to a minimal one. Runs are derandomized so that CI is repeatable.
"""
import hypothesis
from hypothesis import strategies as st
import pytest

from tests import differential as diff

_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                 suppress_health_check=[hypothesis.HealthCheck.too_slow])

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


@hypothesis.settings(max_examples=30, **_SETTINGS)
@hypothesis.given(mix=mixes(max_heads=4))
def test_drawn_mix_loss_and_metrics_match_reference_eagerly(mix):
  diff.assert_same_in_eager(mix, parts=('loss', 'metrics'))


@hypothesis.settings(max_examples=30, **_SETTINGS)
@hypothesis.given(mix=mixes(max_heads=4))
def test_drawn_mix_predictions_match_reference_eagerly(mix):
  diff.assert_same_in_eager(mix, parts=('predictions',))


@pytest.mark.parametrize('mode, max_examples', [
    (diff.TRAIN, 15), (diff.EVAL, 5), (diff.PREDICT, 15)])
def test_drawn_mix_matches_reference_in_graph(mode, max_examples):

  @hypothesis.settings(max_examples=max_examples, **_SETTINGS)
  @hypothesis.given(data=st.data())
  def check(data):
    mix = data.draw(mixes(), label='mix')
    options = data.draw(graph_options(mix), label='options')
    reference = diff.assert_same_in_graph(mix, mode, options)
    assert {name for name, _ in reference['predictions']} == set(
        mix.head_names)

  check()
