"""`MaskedHead` equals its wrapped head on the labelled rows alone (issue 8).

For every `tf.estimator` head type, rank-2 and rank-3 logits, with and
without a weight column, unlabelled rows marked by `missing_label`, by
`mask_key` or by both, and 0 %, 40 % and 100 % of rows unlabelled:
`MaskedHead(head)` fed every row gives the same per-batch loss, the same
gradient with respect to the full logits, and the same metrics after three
batches as a bare `head` fed only the labelled rows (`tf.boolean_mask`), and
the same predictions on every row. Eagerly through `loss` and
`update_metrics`; in a graph through EVAL `EstimatorSpec`s with row
dimensions unknown until run time, as an Estimator builds them.

The unlabelled rows hold what the reference would refuse or turn into NaN
(see `tests/masked_differential.py`), so equality also shows that none of
it reaches the wrapped head, its loss or its gradient.

Graph cases are grouped by head type (one `xdist_group` each): cases that
differ only in the share of unlabelled rows run in one shared graph.
"""
import dataclasses
import functools
import itertools

import numpy as np
import pytest

from tests import masked_differential as md
from tests.differential import assert_same_results
from tests.differential import BINARY
from tests.differential import MULTI_CLASS
from tests.differential import MULTI_LABEL

MISSING = (0., 0.4, 1.)


def _case_id(case):
  parts = [case.kind, f'rank{case.rank}', case.weight or 'unweighted',
           case.marking, f'{int(case.missing * 100)}pct']
  if case.vocabulary:
    parts.insert(1, 'vocabulary')
  if case.sparse:
    parts.insert(1, 'sparse')
  return '-'.join(parts)


def _weight_shape(rank, weighted):
  """`[D0, ..., DN]` weights for rank 2, `[D0, ..., DN, 1]` for rank 3."""
  if not weighted:
    return None
  return 'rows' if rank == 2 else 'rows_1'


EAGER_CASES = [
    md.Case(kind, rank=rank, weight=_weight_shape(rank, weighted),
            marking=marking, missing=missing)
    for kind, rank, weighted, marking, missing in itertools.product(
        md.KINDS, (2, 3), (False, True), md.MARKINGS, MISSING)]
# String labels with a vocabulary, and sparse multi-label class ids.
VARIANT_CASES = [
    md.Case(kind, rank=rank, weight=_weight_shape(rank, True),
            marking=marking, missing=missing, vocabulary=True)
    for kind, rank, marking, missing in itertools.product(
        (BINARY, MULTI_CLASS), (2, 3), md.MARKINGS, (0.4, 1.))] + [
    md.Case(MULTI_LABEL, marking=marking, missing=missing, sparse=True,
            weight='rows_1')
    for marking, missing in itertools.product(md.MARKINGS, (0.4, 1.))]


def _graph_case(kind, rank, marking, missing):
  """Weights alternate so each kind meets every weight shape in a graph.

  With `missing_label`: `[D0, ..., DN, 1]` weights at rank 2, `[D0, ...,
  DN]` at rank 3; with `mask_key`, none at rank 2, `[D0, ..., DN, 1]` at
  rank 3; with both, `[D0, ..., DN]` at rank 2, none at rank 3.
  """
  weights = {md.MISSING_LABEL: ('rows_1', 'rows'),
             md.MASK_KEY: (None, 'rows_1'),
             md.BOTH: ('rows', None)}
  return md.Case(kind, rank=rank, weight=weights[marking][rank - 2],
                 marking=marking, missing=missing)


GRAPH_CASES = [
    pytest.param(_graph_case(kind, rank, marking, missing),
                 marks=pytest.mark.xdist_group(f'masked_graph_{kind}'))
    for kind, rank, marking, missing in itertools.product(
        md.KINDS, (2, 3), (md.MISSING_LABEL, md.MASK_KEY), MISSING)] + [
    pytest.param(dataclasses.replace(case, rank=2),
                 marks=pytest.mark.xdist_group(f'masked_graph_{case.kind}'))
    for case in VARIANT_CASES
    if case.marking == md.BOTH and case.rank == 2]


@functools.lru_cache(maxsize=None)
def _graph_results(shared):
  """Every share of unlabelled rows of `shared`, run in one graph."""
  cases = [dataclasses.replace(shared, missing=missing)
           for missing in MISSING]
  return dict(zip(MISSING, md.run_graph(cases)))


def _assert_unlabelled_rows_get_no_gradient(case, ours):
  for batch, gradient in zip(md.make_batches(case), ours['gradient']):
    assert np.all(np.isfinite(gradient))
    assert np.all(gradient[~batch.keep] == 0.)
    if case.missing == 1.:
      assert not np.any(gradient)


def _assert_no_label_means_zero_loss(case, ours):
  if case.missing == 1.:
    assert [float(loss) for loss in ours['loss']] == [0.] * md.BATCHES


@pytest.mark.parametrize('case', EAGER_CASES + VARIANT_CASES, ids=_case_id)
def test_eager_masked_head_is_the_reference_on_labelled_rows(case):
  ours, reference = md.run_eager(case)
  assert_same_results(ours, reference)
  _assert_unlabelled_rows_get_no_gradient(case, ours)
  _assert_no_label_means_zero_loss(case, ours)


@pytest.mark.parametrize('case', GRAPH_CASES, ids=_case_id)
def test_graph_masked_head_is_the_reference_on_labelled_rows(case):
  ours, reference = _graph_results(
      dataclasses.replace(case, missing=0.))[case.missing]
  assert_same_results(ours, reference)
  _assert_unlabelled_rows_get_no_gradient(case, ours)
  _assert_no_label_means_zero_loss(case, ours)


def test_the_unlabelled_rows_would_break_the_bare_head():
  """Shows the suite's data is hostile: the sentinel fails the label check."""
  case = md.Case(BINARY, marking=md.MISSING_LABEL, missing=0.4)
  batch = md.make_batches(case)[0]
  with pytest.raises(ValueError, match='Labels must be >= 0'):
    case.reference_head().loss(batch.labels, batch.logits, batch.features)


def test_the_suite_covers_every_head_type_rank_weight_marking_and_share():
  covered = {(case.kind, case.rank, case.weight is not None, case.marking,
              case.missing) for case in EAGER_CASES}
  assert len(covered) == 6 * 2 * 2 * 3 * 3
  graph = {(param.values[0].kind, param.values[0].rank,
            param.values[0].weight) for param in GRAPH_CASES}
  for kind in md.KINDS:
    assert {weight for each, _, weight in graph if each == kind} == set(
        md.WEIGHTS)
