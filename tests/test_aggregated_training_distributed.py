"""Aggregated training under `MirroredStrategy` equals one device's.

The job (`tests/support/aggregated_training_mirrored_job.py`) runs in a process of
its own, whose devices are fixed when TensorFlow starts: a few steps of a
trunk under three heads mirrored over two CPUs, and on one device with both
replicas' rows in one batch, over variables and over a representation, with
`SUM_OVER_BATCH_SIZE` through `optimizer=` and `SUM` through `train_op_fn=`.
Its aggregator is neither linear nor scale-free: the runs end alike only if
the replicas aggregate the Jacobian of the whole batch, scaled as the loss
is, and each trains on its share of the direction.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.support import aggregated_training_mirrored_job as job

pytestmark = pytest.mark.xdist_group('distributed')

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  directory = tmp_path_factory.mktemp('aggregation_mirrored')
  result = directory / 'result.json'
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = os.pathsep.join(
      [str(ROOT)] + [p for p in [env.get('PYTHONPATH')] if p])
  completed = subprocess.run(
      [sys.executable, '-m', 'tests.support.aggregated_training_mirrored_job',
       str(result), str(directory / 'models')], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=900, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  return json.loads(result.read_text())


@pytest.mark.parametrize('name', sorted(job.CONFIGURATIONS))
def test_mirrored_training_equals_the_single_device_training(runs, name):
  mirrored, single = runs[f'{name}/mirrored'], runs[f'{name}/single']
  assert mirrored['global_step'] == single['global_step'] == job.STEPS
  for variable in job.VARIABLES:
    np.testing.assert_allclose(
        mirrored['variables'][variable], single['variables'][variable],
        rtol=1e-5, atol=1e-6, err_msg=variable)


@pytest.mark.parametrize('name', sorted(job.CONFIGURATIONS))
def test_the_shared_trunk_trained(runs, name):
  trained = np.array(runs[f'{name}/single']['variables']['trunk/kernel'])
  assert np.abs(trained - job.INITIAL['trunk/kernel']).max() > 1e-3
