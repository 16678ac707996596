"""Fused heads give exactly what `tf.estimator.MultiHead` gives.

`MultiHead(..., fuse_heads=True)` computes heads of one type together; with
`fuse_heads=False` it builds each head's graph on its own. Both must match
the reference on every case of `tests/fused_cases.py`: groups of 2 to 64
heads of each fusable type with their thresholds, label vocabularies, weight
columns, `n_classes` and `label_dimension` varied from head to head, rank 2
and 3 logits given as a dict or one tensor, and mixes where some heads fuse
and others (a head alone of its kind, a `BinaryClassHead` subclass, heads
with a `loss_fn`) must not.

Each case runs, where its `modes` say so:

* `train`: `create_estimator_spec` in TRAIN: loss, the loss `train_op_fn`
  gets, every summary (`loss`, `loss/<head>`, `regularization_loss`), the
  logits bias after one step, update ops, predictions, TRAIN metric keys.
* `eval`: EVAL over several batches from an iterator, as
  `Estimator.evaluate` feeds them: each batch's loss and predictions and
  every metric's value after each batch (they accumulate).
* `predict`: predictions and every export output (key, class, tensors).
* `eager`: `loss` (without and with `mode=TRAIN`), `predictions`, and
  `metrics()` updated by `update_metrics` batch after batch.

Every dict must have the reference's keys exactly, no more, no fewer; every
value must agree within `diff.RTOL` (relative) and have the
reference's dtype. The reference runs once per case and mode; its tests of
both `fuse_heads` settings share one xdist group.
"""
import pytest

from tests import differential as diff
from tests import fused_cases

FUSE_HEADS = [pytest.param(False, id='per_head'),
              pytest.param(True, id='fused')]


def _case_mode_params(pairs):
  return [pytest.param(case, mode, id=f'{case.id}-{mode}',
                       marks=pytest.mark.xdist_group(f'fused-{case.id}-{mode}'))
          for case, mode in pairs]


def _assert_every_head_is_there(case, mode, reference):
  """The reference results name every head, so comparing them covers it."""
  names = set(case.mix.head_names)
  if mode in ('eval', 'eager'):
    predictions = reference['predictions'][-1]
    metrics = reference['metrics'][-1]
    assert {key.split('/')[-1] for key in metrics
            if key.startswith('loss/')} == names
    assert {key.split('/')[-1] for key in metrics
            if key.startswith('average_loss/')} == names
  else:
    predictions = reference['predictions']
  assert {name for name, _ in predictions} == names
  if mode == 'train':
    assert set(reference['summaries']) == (
        {'loss'} | {f'loss/{name}' for name in names}
        | ({'regularization_loss'} if case.mix.regularization else set()))
  if mode == 'predict':
    assert names <= set(reference['export_outputs'])
    assert {f'{name}/predict' for name in names} <= set(
        reference['export_outputs'])


@pytest.mark.parametrize('fuse_heads', FUSE_HEADS)
@pytest.mark.parametrize('case, mode',
                         _case_mode_params(fused_cases.mode_params()))
def test_matches_reference(case, mode, fuse_heads):
  reference = fused_cases.reference_results(case, mode)
  _assert_every_head_is_there(case, mode, reference)
  ours = fused_cases.our_results(case, mode, fuse_heads)
  diff.assert_same_results(ours, reference, rtol=diff.RTOL,
                           atol=diff.ATOL,
                           path=f'ours(fuse_heads={fuse_heads})')


def test_cases_cover_every_fusable_type_and_option():
  mixes = [case.mix for case in fused_cases.CASES]
  specs = [head for mix in mixes for head in mix.heads]
  assert set(diff.KINDS) | {diff.DOUBLED_BINARY} == {
      head.kind for head in specs}
  group_sizes = {kind: {sum(head.kind == kind for head in mix.heads)
                        for mix in mixes} for kind in diff.KINDS}
  for kind, sizes in group_sizes.items():
    assert min(sizes - {0, 1}) <= 4 and max(sizes) >= 8, (kind, sizes)
  assert max(max(sizes) for sizes in group_sizes.values()) == 24
  for option in ('vocabulary', 'weight_column', 'thresholds', 'class_metrics',
                 'sparse_labels', 'flat_labels', 'loss_fn'):
    assert any(getattr(head, option) for head in specs), option
  assert {len(mix.batch_shape) for mix in mixes} == {1, 2}
  assert {mix.dict_logits for mix in mixes} == {True, False}
  assert {mix.loss_reduction for mix in mixes} == {
      diff.SUM, diff.SUM_OVER_BATCH_SIZE}
  assert {case.options.static_batches for case in fused_cases.CASES} == {
      True, False}
  assert min(case.batch_count for case in fused_cases.CASES
             if 'eval' in case.modes) >= 2
  ids = [case.id for case in fused_cases.CASES]
  assert len(set(ids)) == len(ids)


@pytest.mark.xdist_group(f'fused-{fused_cases.BINARY_SMALL.id}-eval')
def test_accumulating_eager_reference_equals_the_reference_graph_eval():
  """The eager reference's tweak only makes it accumulate as EVAL does."""
  case = fused_cases.BINARY_SMALL
  eager = fused_cases.reference_results(case, 'eager')
  graph = fused_cases.reference_results(case, 'eval')
  diff.assert_same_results(eager['metrics'], graph['metrics'],
                           rtol=diff.RTOL, atol=diff.ATOL)
  first, last = eager['metrics'][0], eager['metrics'][-1]
  assert first['auc/binary_0'] != last['auc/binary_0']
