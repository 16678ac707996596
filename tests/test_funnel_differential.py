"""`ConditionalHead` equals bare reference heads, fused or not (issue 15).

For each funnel of `tests/funnel_differential.py`, over three batches, ours
gives what the reference `tf.estimator.BinaryClassHead`s give: applied to
the joint logits (a float64 textbook formula) over every labelled row for
`<name>`, and to the conditional logits of the rows whose given label is 1,
cut by `tf.boolean_mask`, for `<name>_given_<given>`. Merged loss, its
gradient with respect to every head's logits, predictions and metrics
after all batches agree within 1e-6 relative, through the `Head` API
(eager) and through the TRAIN, EVAL and PREDICT specs (graph), with
`fuse_heads` on and off.
"""
import pytest

from tests import funnel_differential as fd

# Each option of `Case` in at least one: the given head masked (with and
# without a vocabulary) or weighted, the conditional head masked or
# weighted, chains, sequence logits.
CASES = {
    'plain': fd.Case(),
    'weighted_and_masked': fd.Case(given_weight=True, masked=True,
                                   weight=True, seed=1),
    'given_masked': fd.Case(given_masked=True),
    'vocabulary': fd.Case(vocabulary=True, given_masked=True, seed=2),
    'chain_of_three': fd.Case(chain=3, masked=True, seed=3),
    'rank_3': fd.Case(rank=3, weight=True, seed=4),
}

FUSE = (True, False)


@pytest.fixture(scope='module')
def references():
  return {name: fd.reference(case, fd.make_batches(case))
          for name, case in CASES.items()}


@pytest.mark.parametrize('fuse_heads', FUSE, ids=['fused', 'alone'])
@pytest.mark.parametrize('name', sorted(CASES))
def test_head_api_equals_the_reference_heads(name, fuse_heads, references):
  case = CASES[name]
  fd.assert_same(fd.run_eager(case, fd.make_batches(case), fuse_heads),
                 references[name])


@pytest.mark.parametrize('fuse_heads', FUSE, ids=['fused', 'alone'])
@pytest.mark.parametrize('name', sorted(CASES))
def test_specs_equal_the_reference_heads(name, fuse_heads, references):
  case = CASES[name]
  ours = fd.run_graph(case, fd.make_batches(case), fuse_heads)
  ours.pop('export_outputs')
  fd.assert_same(ours, references[name])


def test_the_reference_sees_both_kinds_of_rows():
  """Each batch has rows in and out of every view, and conversions."""
  for case in CASES.values():
    for batch in fd.make_batches(case):
      clicked = batch.known['click'] & batch.happened['click']
      assert 0 < clicked.sum() < clicked.size
      assert batch.happened['conversion'].any() or case.seed, case
