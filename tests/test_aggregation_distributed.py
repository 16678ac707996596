"""The random and stateful aggregators mirrored and under `TPUEstimator`.

Mirrored over two CPUs (in replica context, as `Estimator` builds a
model_fn), every replica draws the same order, thresholds and weights from
the global step, gives the single-device direction, and GradVac's targets
are one mirrored variable, the same on both devices and saved once. Under
`TPUEstimator(use_tpu=False)`, a model trained along GradVac's direction
moves as the NumPy formula says, its targets in the checkpoint, continued by
a second `train` call.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import aggregation
from tensorflow_multihead.aggregation import projection
from tests import aggregation_formulas as formulas
from tests.support import aggregation_mirrored_job as job
from tests.support import cluster

# With the other distributed tests, on one worker: processes of their own.
pytestmark = pytest.mark.xdist_group('distributed')

TIMEOUT_SECS = 300


@pytest.fixture(scope='module')
def mirrored(tmp_path_factory):
  directory = tmp_path_factory.mktemp('aggregation_mirrored')
  result = directory / 'result.json'
  completed = subprocess.run(
      [sys.executable, '-m', 'tests.support.aggregation_mirrored_job',
       str(result), str(directory / 'model.ckpt')],
      cwd=cluster.ROOT, env=cluster.environment(), capture_output=True,
      text=True, timeout=TIMEOUT_SECS, check=False)
  assert completed.returncode == 0, completed.stdout + completed.stderr
  return json.loads(result.read_text())


@pytest.mark.parametrize('name', sorted(job.AGGREGATORS))
def test_every_replica_gets_the_single_device_direction(mirrored, name):
  single = job.AGGREGATORS[name]()  # eagerly: steps 0, 1, 2
  for step in mirrored['steps']:
    first, second = step[name]
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, single.aggregate(job.JACOBIAN),
                               rtol=1e-12, atol=1e-14)


def test_mirrored_gradvac_targets_are_one_variable_on_both_devices(mirrored):
  assert mirrored['replicas'] == 2
  on_first, on_second = mirrored['device_targets']
  np.testing.assert_array_equal(on_first, on_second)
  targets = np.zeros([4, 4])
  for step in range(job.STEPS):
    order = projection.visiting_order(4, [job.SEED, step]).numpy()
    _, targets = formulas.gradvac(job.JACOBIAN, order, targets, 0.3)
  np.testing.assert_allclose(on_first, targets, rtol=1e-9, atol=1e-12)


def test_mirrored_state_is_saved_once(mirrored):
  # The global step gives the draws: no counter of their own.
  assert mirrored['saved'] == ['global_step', 'gradvac/cosine_targets']


# TPUEstimator(use_tpu=False): three heads pulling a shared w to their points.
POINTS = np.array([[1., 0., 0.], [-1., 1., 0.], [0., -1., 1.]], np.float32)
LEARNING_RATE = 0.5
SEED = 9


def _model_fn(features, labels, mode, params):
  del features, labels, params
  shared = tf.compat.v1.get_variable('w', [3],
                                     initializer=tf.zeros_initializer())
  losses = [0.5 * tf.reduce_sum(tf.square(shared - point)) for point in POINTS]
  jacobian = tf.stack([tf.gradients(loss, shared)[0] for loss in losses])
  direction = aggregation.GradVac(0.3, seed=SEED).aggregate(jacobian)
  train_op = tf.compat.v1.train.GradientDescentOptimizer(
      LEARNING_RATE).apply_gradients(
          [(direction, shared)],
          global_step=tf.compat.v1.train.get_global_step())
  return tf.compat.v1.estimator.tpu.TPUEstimatorSpec(
      mode=mode, loss=tf.add_n(losses), train_op=train_op)


def _input_fn(params):
  zeros = np.zeros([8, 1], np.float32)
  return tf.data.Dataset.from_tensor_slices(({'x': zeros}, zeros)).repeat(
  ).batch(params['batch_size'], drop_remainder=True)


def _simulated(steps):
  """`(w, targets)` after `steps` steps along GradVac, in NumPy."""
  shared, targets = np.zeros(3), np.zeros([3, 3])
  for step in range(steps):
    jacobian = shared - POINTS.astype(np.float64)
    order = projection.visiting_order(3, [SEED, step]).numpy()
    direction, targets = formulas.gradvac(jacobian, order, targets, 0.3)
    shared = shared - LEARNING_RATE * direction
  return shared, targets


def test_tpu_estimator_trains_along_gradvac_and_checkpoints_its_targets(
    tmp_path):
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
  tpu = tf.compat.v1.estimator.tpu
  estimator = tpu.TPUEstimator(
      model_fn=_model_fn,
      config=tpu.RunConfig(model_dir=str(tmp_path),
                           tpu_config=tpu.TPUConfig(iterations_per_loop=1)),
      use_tpu=False, train_batch_size=8)
  for steps in (2, 4):  # the second call restores the first's targets
    estimator.train(_input_fn, max_steps=steps)
    shared, targets = _simulated(steps)
    np.testing.assert_allclose(estimator.get_variable_value('w'), shared,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        estimator.get_variable_value('gradvac/cosine_targets'), targets,
        rtol=1e-5, atol=1e-6)
  # Not the targets a fresh start would give on the last two steps.
  assert np.abs(_simulated(2)[1] - targets).max() > 1e-2
