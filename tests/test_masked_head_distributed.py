"""`MaskedHead` under `MirroredStrategy` over two CPUs (issue 8, item 3).

Two child processes (`tests/support/masked_mirrored_job.py`) train,
evaluate and export the same click + conversion model mirrored over two CPU
devices: one with a `MaskedHead` conversion head given every row, one with
`tf.estimator.MultiHead` whose model_fn cuts the conversion rows by hand.
They end with the same weights, metrics (but `accuracy_baseline`, which the
fused heads compute over every replica's rows) and served outputs: each
replica averages the conversion loss over its own clicked rows, as the
hand-cut model does (and as PyTorch's DistributedDataParallel does with
`ignore_index`), then the replicas' gradients are summed.
"""

import numpy as np
import pytest

from tests.differential import assert_same_results
from tests.support import masked_mirrored_job as job
from tests.support import mirrored_pair

pytestmark = pytest.mark.xdist_group('masked_distributed')

TIMEOUT_SECS = 240


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Both jobs, run at once; each one's JSON result."""
  directory = tmp_path_factory.mktemp('masked_mirrored')
  return mirrored_pair.results('tests.support.masked_mirrored_job',
                               ('masked', 'by_hand'), directory, TIMEOUT_SECS)


def test_every_replica_batch_has_clicked_and_unclicked_rows():
  """So the hand-cut model's `loss/conversion` counts every batch too."""
  conversion = job.make_data()[1]['conversion'].reshape(-1, job.BATCH)
  assert np.all((conversion != -1).any(axis=1))
  assert np.all((conversion == -1).any(axis=1))


def test_mirrored_training_ends_with_the_hand_cut_models_weights(runs):
  for name in ('kernel', 'bias'):
    ours = np.array(runs['masked']['weights'][name])
    np.testing.assert_allclose(ours, runs['by_hand']['weights'][name],
                               rtol=0, atol=1e-7, err_msg=name)
  assert np.abs(runs['masked']['weights']['kernel']).max() > 0.01


def _baseline_keys(metrics):
  return {key for key in metrics if key.startswith('accuracy_baseline/')}


def test_mirrored_evaluation_equals_the_hand_cut_models(runs):
  ours, by_hand = runs['masked']['eval'], runs['by_hand']['eval']
  assert set(ours) == set(by_hand)
  assert {'auc/conversion', 'loss/conversion', 'auc/click'} <= set(ours)
  for key in set(by_hand) - _baseline_keys(by_hand):
    np.testing.assert_allclose(ours[key], by_hand[key], rtol=1e-6,
                               err_msg=key)


def test_mirrored_accuracy_baseline_counts_every_replicas_rows(runs):
  """The click and masked conversion heads are one fused group.

  Its baseline is max(mean, 1 - mean) of the label mean over every
  replica's rows; `tf.estimator.MultiHead` takes the baseline's total from
  one replica's labels (see `tests/test_fusion_distributed.py`).
  """
  ours = runs['masked']['eval']
  assert _baseline_keys(ours) == {'accuracy_baseline/click',
                                  'accuracy_baseline/conversion'}
  for key in _baseline_keys(ours):
    label_mean = ours['label/mean/' + key.split('/')[-1]]
    np.testing.assert_allclose(ours[key], max(label_mean, 1. - label_mean),
                               rtol=1e-6, err_msg=key)


def test_mirrored_export_serves_what_the_hand_cut_model_serves(runs):
  ours, by_hand = runs['masked']['signatures'], runs['by_hand']['signatures']
  assert 'conversion/predict' in ours
  assert_same_results(ours, by_hand, rtol=1e-6)
