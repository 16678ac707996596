"""Learned loss weighting under `MirroredStrategy` (issue 9, item 5).

Each method trains the linear three-headed model of
`tests/support/distributed_job.py` for a few steps mirrored over two CPU
devices of one process (`BATCH` rows a replica), and again on one device
with both replicas' rows in one batch. The weighting's state is mirrored
and updated in replica context (each replica computes the same new state
from the replicas' mean losses and gradients), so the two runs must end with
the same state, the same model and the same EVAL weights: a mirrored step is
the single-device step on both batches.
"""
import numpy as np
import pytest

from tensorflow_multihead import weighting
from tests import test_distributed as distributed
from tests.support import cluster
from tests.support import distributed_job as job

# With the other distributed tests, on one worker: their jobs, run at the same
# time as these, would share the same two cores and outrun their time limits.
pytestmark = pytest.mark.xdist_group('distributed')

STEPS = 4
BATCH = 8
REPLICAS = 2
METHODS = sorted(job.LOSS_WEIGHTINGS)
# Five jobs at once on two cores: more time than the distributed tests' own.
TIMEOUT_SECS = 300
STATE_NAMES = {
    'uncertainty': {'log_variances'},
    'dynamic_weight_average': {'window_sums', 'window_steps', 'window_means',
                               'complete_windows'},
    'gradnorm': {'weights', 'initial_losses', 'has_initial_losses'},
    'random': {'weights'},
    'famo': {'logits', 'adam_m', 'adam_v', 'adam_steps', 'previous_losses',
             'has_previous_losses'},
}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """`{(method, 'mirrored' or 'single'): result}`.

  One layout's jobs at a time (one a method, at once): ten processes at
  once on two cores left the mirrored ones stalled past their deadline.
  """
  directory = tmp_path_factory.mktemp('weighting_runs')
  layouts = {
      'mirrored': ['--devices', str(REPLICAS), '--batch', str(BATCH)],
      'single': ['--batch', str(REPLICAS * BATCH)],
  }
  results = {}
  for layout, args in layouts.items():
    with cluster.jobs(TIMEOUT_SECS) as (started, deadline):
      for method in METHODS:
        name = f'{method}-{layout}'
        started.append(cluster.Job(
            name, directory,
            ['local', '--model-dir', str(directory / name), '--steps',
             str(STEPS), '--loss-weighting', method, '--skip-export'] + args))
      results.update({tuple(each.name.split('-')): each.result(deadline)
                      for each in started})
  return results


@pytest.mark.parametrize('method', METHODS)
def test_mirrored_training_checkpoints_one_copy_of_the_state(runs, method):
  mirrored = runs[method, 'mirrored']
  assert mirrored['global_step'] == STEPS
  # Not one entry a replica: the mirrored variable saves once.
  assert set(mirrored['loss_weighting']) == STATE_NAMES[method]


@pytest.mark.parametrize('method', METHODS)
def test_mirrored_state_equals_the_single_device_state(runs, method):
  mirrored = runs[method, 'mirrored']['loss_weighting']
  single = runs[method, 'single']['loss_weighting']
  for name in STATE_NAMES[method]:
    np.testing.assert_allclose(mirrored[name], single[name], rtol=1e-5,
                               atol=1e-6, err_msg=name)


@pytest.mark.parametrize('method', METHODS)
def test_the_state_moved_from_its_initial_value(runs, method):
  state = runs[method, 'single']['loss_weighting']
  moved = {
      'uncertainty': lambda: np.abs(state['log_variances']).min() > 1e-3,
      'dynamic_weight_average': lambda: state['complete_windows'] == STEPS,
      'gradnorm': lambda: np.abs(np.array(state['weights']) - 1.).min() > 1e-3,
      # Drawn for global step STEPS: as the draw of step 0 it is not.
      'random': lambda: not np.allclose(
          state['weights'], weighting.RandomLossWeighting(seed=3).draw(
              3, step=0).numpy()),
      # Updated at every step after the first: STEPS - 1 Adam steps.
      'famo': lambda: state['adam_steps'] == STEPS - 1 and np.abs(
          state['logits']).min() > 1e-3,
  }[method]
  assert moved(), state


@pytest.mark.parametrize('method', METHODS)
def test_mirrored_model_equals_the_single_device_model(runs, method):
  distributed._assert_same_weights(
      distributed._weights(runs[method, 'mirrored']),
      distributed._weights(runs[method, 'single']), atol=1e-6)


@pytest.mark.parametrize('method', METHODS)
def test_mirrored_evaluation_reports_the_single_device_weights(runs, method):
  mirrored = runs[method, 'mirrored']['eval']
  single = runs[method, 'single']['eval']
  keys = [f'loss_weight/{name}' for name in job.HEAD_NAMES]
  assert set(keys) <= set(mirrored)
  np.testing.assert_allclose([mirrored[key] for key in keys],
                             [single[key] for key in keys], rtol=1e-5)
  np.testing.assert_allclose(mirrored['loss'], single['loss'], rtol=1e-5)
