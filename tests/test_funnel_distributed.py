"""`ConditionalHead` under `MirroredStrategy` over two CPUs (issue 15).

Two child processes (`tests/support/funnel_mirrored_job.py`) train,
evaluate and export the same click -> conversion model mirrored over two
CPU devices: one with our `ConditionalHead`, one with
`tf.estimator.MultiHead` of bare heads whose model_fn computes the joint
logits and cuts the conditional view's rows by hand. They end with the same
weights, metrics (but `accuracy_baseline`, which the fused heads compute
over every replica's rows) and served outputs: each replica computes the
joint loss over its rows and the view over its clicked rows, as the
hand-made model does, and the replicas' gradients are summed.
"""

import numpy as np
import pytest

from tests.differential import assert_same_results
from tests.support import funnel_mirrored_job as job
from tests.support import mirrored_pair

pytestmark = pytest.mark.xdist_group('funnel_distributed')

TIMEOUT_SECS = 300
HEADS = ('funnel', 'by_hand')


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Both jobs, run at once; each one's JSON result."""
  directory = tmp_path_factory.mktemp('funnel_mirrored')
  return mirrored_pair.results('tests.support.funnel_mirrored_job', HEADS,
                               directory, TIMEOUT_SECS)


def test_every_replica_batch_has_clicked_and_unclicked_rows():
  """So the hand-cut view has rows, and `loss/<view>` counts, everywhere."""
  features, labels = job.make_data()
  del features
  clicks = labels['click'].reshape(-1, job.BATCH)
  assert np.all(clicks.any(axis=1) & ~clicks.all(axis=1))
  assert labels['conversion'].sum() > 0


def test_mirrored_training_ends_with_the_hand_made_models_weights(runs):
  for name in ('kernel', 'bias'):
    ours = np.array(runs['funnel']['weights'][name])
    np.testing.assert_allclose(ours, runs['by_hand']['weights'][name],
                               rtol=0, atol=1e-6, err_msg=name)
  assert np.abs(runs['funnel']['weights']['kernel']).max() > 0.01


def test_mirrored_evaluation_equals_the_hand_made_models(runs):
  ours, by_hand = runs['funnel']['eval'], runs['by_hand']['eval']
  assert set(ours) == set(by_hand)
  assert {'auc/conversion_given_click', 'loss/conversion_given_click',
          'auc/conversion', 'loss/conversion'} <= set(ours)
  for key in by_hand:
    if not key.startswith('accuracy_baseline/'):
      np.testing.assert_allclose(ours[key], by_hand[key], rtol=1e-5,
                                 err_msg=key)


def test_mirrored_export_serves_what_the_hand_made_model_serves(runs):
  ours, by_hand = runs['funnel']['signatures'], runs['by_hand']['signatures']
  assert 'conversion_given_click/predict' in ours
  assert_same_results(ours, by_hand, rtol=1e-5, atol=1e-6)
