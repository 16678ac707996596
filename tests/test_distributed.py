"""MultiHead across devices and processes: issue 4, item 4.

Every Estimator job runs in a child process (`tests/support/distributed_job.py`)
that this file starts, waits for with a time limit, and always ends:

* (a) `MirroredStrategy` over two CPU devices of one process (its sessions
  get `device_count={'CPU': 2}`), for training and evaluation, with the
  head's optimizer path. Our `MultiHead` and `tf.estimator.MultiHead` end
  with the same weights, metrics and exports; and the scaling is the right
  one: the input_fn's batch goes to each replica, so one mirrored step sees
  two batches, and it equals one single-device step on both batches together
  only because the head halves each replica's `SUM_OVER_BATCH_SIZE` loss
  before the replicas' gradients are summed.
* (b) A chief, a worker, a parameter server and an evaluator on 127.0.0.1
  running `tf.estimator.train_and_evaluate` from `TF_CONFIG`, the variables
  on the parameter server, the evaluator exporting the final model.
* (c) `MultiWorkerMirroredStrategy` across a chief and a worker process (and
  an evaluator), which Estimator in TF 2.15 runs through its distribute
  coordinator: synchronous, equal to the single-device run.

The model is linear from zero weights on fixed data, so the runs can be
compared number for number.
"""
import glob
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.support import cluster
from tests.support import distributed_job as job

pytestmark = pytest.mark.xdist_group('distributed')

STEPS = 4
BATCH = 8  # Rows per input_fn batch, i.e. per replica.
REPLICAS = 2
CLUSTER_MAX_STEPS = 20

# What a MultiHead of the job's three heads reports in EVAL (Estimator's
# `evaluate` adds `global_step`; the eval summaries do not).
EVAL_KEYS = {
    'accuracy/click', 'accuracy_baseline/click', 'auc/click',
    'auc_precision_recall/click', 'average_loss/click', 'label/mean/click',
    'loss/click', 'precision/click', 'prediction/mean/click',
    'recall/click',
    'accuracy/kind', 'average_loss/kind', 'loss/kind',
    'average_loss/value', 'label/mean/value', 'loss/value',
    'prediction/mean/value',
    'loss',
}
SIGNATURE_KEYS = {
    'serving_default', 'predict',
    'click', 'click/classification', 'click/regression', 'click/predict',
    'kind', 'kind/classification', 'kind/predict',
    'value', 'value/regression', 'value/predict',
}


def _run_cluster(directory, strategy, trainers, max_steps,
                 start_worker_when_chief_is_ready=False):
  """Runs a cluster with an evaluator; returns each task's result.

  Every task but the parameter server ends by itself; the parameter server
  serves until it is stopped, after the others. With
  `start_worker_when_chief_is_ready`, the worker starts once the chief has
  initialized the variables, and the chief's first step waits for the
  worker's (see `distributed_job._FirstStepAfterPeers`).
  """
  model_dir = directory / 'model'
  ready_file = directory / 'chief_ready'
  configs = cluster.tf_configs(trainers, with_evaluator=True)
  common = ['cluster', '--model-dir', str(model_dir), '--strategy', strategy,
            '--steps', str(max_steps), '--batch', str(BATCH)]
  later = {'worker'} if start_worker_when_chief_is_ready else set()
  with cluster.jobs() as (started, deadline):
    for task in [task for task in configs if task not in later]:
      extra = []
      if task == 'chief' and later:
        extra = ['--ready-file', str(ready_file)]
      started.append(
          cluster.Job(task, directory, common + extra, configs[task]))
    if later:
      (chief,) = [each for each in started if each.name == 'chief']
      cluster.wait_until(ready_file.exists, chief, deadline,
                         f'it wrote {ready_file}')
      started.append(
          cluster.Job('worker', directory, common, configs['worker']))
    results = {started_job.name: started_job.result(deadline)
               for started_job in started if started_job.name != 'ps'}
  results['model_dir'] = model_dir
  return results


# Reading what the jobs left behind.


def _weights(result, key='weights'):
  return {name: np.array(value) for name, value in result[key].items()}


def _assert_same_weights(actual, expected, atol):
  assert set(actual) == set(expected) == {'kernel', 'bias'}
  for name in expected:
    np.testing.assert_allclose(actual[name], expected[name], rtol=0,
                               atol=atol, err_msg=name)


def _assert_same_metrics(actual, expected, rtol, skip=()):
  assert set(actual) == set(expected)
  for key in set(expected) - set(skip):
    np.testing.assert_allclose(actual[key], expected[key], rtol=rtol,
                               err_msg=key)


def _final_eval_metrics(model_dir):
  """The scalar metrics of the evaluator's last evaluation, from its events."""
  steps = {}
  for path in glob.glob(os.path.join(model_dir, 'eval', 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      scalars = {value.tag: value.simple_value for value in event.summary.value
                 if value.WhichOneof('value') == 'simple_value'}
      if scalars:
        steps.setdefault(event.step, {}).update(scalars)
  last = max(steps)
  return last, steps[last]


# (a) MirroredStrategy over two logical CPUs.


@pytest.fixture(scope='module')
def local_runs(tmp_path_factory):
  """Four local jobs, run at once, `STEPS` steps each from zero weights.

  * `ours`, `reference`: mirrored over 2 CPUs, `BATCH` rows a replica,
    with our `MultiHead` and with `tf.estimator.MultiHead`.
  * `single`: one device, `REPLICAS * BATCH` rows a step.
  * `unscaled_half_rate`: mirrored like `ours`, but the head gets a
    `train_op_fn`, so it leaves the loss unscaled, and half the learning rate.
  """
  directory = tmp_path_factory.mktemp('local_runs')
  mirrored = ['--devices', str(REPLICAS), '--batch', str(BATCH)]
  runs = {
      'ours': mirrored,
      'reference': mirrored + ['--head', 'reference'],
      'single': ['--batch', str(REPLICAS * BATCH)],
      'unscaled_half_rate': mirrored + [
          '--train-op-fn', '--learning-rate', str(job.LEARNING_RATE / 2)],
  }
  with cluster.jobs() as (started, deadline):
    for name, args in runs.items():
      started.append(cluster.Job(
          name, directory,
          ['local', '--model-dir', str(directory / name),
           '--steps', str(STEPS)] + args))
    return {started_job.name: started_job.result(deadline)
            for started_job in started}


def test_mirrored_estimator_calls_model_fn_once_per_replica_with_whole_batches(
    local_runs):
  ours = local_runs['ours']
  per_replica = {'batch': BATCH, 'replicas': REPLICAS}
  assert ours['model_fn_calls'] == [
      dict(per_replica, mode='train'), dict(per_replica, mode='train'),
      dict(per_replica, mode='eval'), dict(per_replica, mode='eval'),
      {'mode': 'infer', 'batch': None, 'replicas': 1},  # The export.
  ]
  # One input pipeline feeds both replicas, a whole batch each.
  assert ours['input_contexts'] == [
      {'num_replicas_in_sync': REPLICAS, 'num_input_pipelines': 1,
       'input_pipeline_id': 0}] * 2


def test_mirrored_training_checkpoints_its_last_step(local_runs):
  ours = local_runs['ours']
  assert ours['global_step'] == STEPS
  assert ours['checkpoint'].endswith(f'model.ckpt-{STEPS}')
  assert os.path.exists(ours['checkpoint'] + '.index')


def test_mirrored_weights_equal_the_reference_multi_heads(local_runs):
  ours = _weights(local_runs['ours'])
  assert np.abs(ours['kernel']).max() > 0.05  # Training moved them.
  _assert_same_weights(ours, _weights(local_runs['reference']), atol=1e-7)


def test_mirrored_step_equals_a_single_device_step_on_both_replicas_batches(
    local_runs):
  _assert_same_weights(_weights(local_runs['ours']),
                       _weights(local_runs['single']), atol=1e-6)


def test_head_halves_each_replicas_loss_for_the_optimizer(local_runs):
  # Unscaled, the summed replica gradients are twice the single-device one:
  # only half the learning rate gives the single-device weights back.
  _assert_same_weights(_weights(local_runs['unscaled_half_rate']),
                       _weights(local_runs['single']), atol=1e-6)


def test_mirrored_evaluation_reports_every_heads_metrics(local_runs):
  assert set(local_runs['ours']['eval']) == EVAL_KEYS | {'global_step'}
  assert local_runs['ours']['eval']['global_step'] == STEPS


def test_mirrored_evaluation_equals_the_reference_multi_heads(local_runs):
  _assert_same_metrics(local_runs['ours']['eval'],
                       local_runs['reference']['eval'], rtol=1e-6)


def test_mirrored_evaluation_equals_single_device_evaluation(local_runs):
  _assert_same_metrics(local_runs['ours']['eval'],
                       local_runs['single']['eval'], rtol=1e-5,
                       skip=['accuracy_baseline/click'])


def test_mirrored_accuracy_baseline_counts_one_replicas_rows_only(local_runs):
  """TF's `BinaryClassHead` metric, not the multi-head's, under mirroring.

  `accuracy_baseline` sets its total from the label mean's, which under
  MirroredStrategy keeps the first replica's best constant-guess count (its
  rows are batches 0, 2, 4, 6), while its count has every replica's rows.
  """
  clicks = job.make_data()[1]['click'].reshape(-1, BATCH)
  first_replica = clicks[0::REPLICAS]
  positives = first_replica.sum()
  expected = max(positives, first_replica.size - positives) / clicks.size
  assert (positives, expected) == (15, 17 / 64)
  assert local_runs['ours']['eval']['accuracy_baseline/click'] == expected
  assert local_runs['reference']['eval']['accuracy_baseline/click'] == expected
  assert local_runs['single']['eval']['accuracy_baseline/click'] == 36 / 64


def test_mirrored_export_serves_the_reference_multi_heads_signatures(
    local_runs):
  ours = local_runs['ours']['signatures']
  reference = local_runs['reference']['signatures']
  assert set(ours) == set(reference) == SIGNATURE_KEYS
  for key, outputs in reference.items():
    assert set(ours[key]) == set(outputs), key
    for name, values in outputs.items():
      if isinstance(np.array(values).flat[0], str):
        assert ours[key][name] == values, (key, name)
      else:
        np.testing.assert_allclose(ours[key][name], values, rtol=1e-6,
                                   err_msg=f'{key}: {name}')
  assert len(ours['predict']['value/predictions']) == job.SERVING_ROWS


# (b) Chief, worker, parameter server and evaluator on loopback.


@pytest.fixture(scope='module')
def ps_cluster(tmp_path_factory):
  return _run_cluster(tmp_path_factory.mktemp('ps_cluster'),
                      'parameter_server', ['chief', 'worker', 'ps'],
                      CLUSTER_MAX_STEPS, start_worker_when_chief_is_ready=True)


def test_cluster_chief_trains_to_max_steps_and_checkpoints(ps_cluster):
  chief = ps_cluster['chief']
  # The worker's steps count too, so the chief may see the step pass the
  # limit before it stops.
  assert chief['global_step'] >= CLUSTER_MAX_STEPS
  assert chief['checkpoint'].endswith(f'model.ckpt-{chief["global_step"]}')
  assert os.path.exists(chief['checkpoint'] + '.index')


def test_cluster_chief_and_worker_train_one_replica_each(ps_cluster):
  for task in ('chief', 'worker'):
    calls = ps_cluster[task]['model_fn_calls']
    assert calls == [{'mode': 'train', 'batch': BATCH, 'replicas': 1}], task
  # The chief's first step waited for the worker's first one.
  assert ps_cluster['worker']['steps_run'] >= 1


def test_cluster_keeps_the_variables_on_the_parameter_server(ps_cluster):
  graph = (ps_cluster['model_dir'] / 'graph.pbtxt').read_text()
  for variable in ('kernel', 'bias', 'global_step'):
    node = re.search(
        rf'name: "{variable}"\n  op: "VarHandleOp"\n  device: "(.*)"', graph)
    assert node.group(1) == '/job:ps/task:0', variable


def test_cluster_evaluator_reports_every_heads_metrics(ps_cluster):
  step, metrics = _final_eval_metrics(ps_cluster['model_dir'])
  assert step == ps_cluster['chief']['global_step']
  assert set(metrics) == EVAL_KEYS


def test_cluster_evaluator_exports_a_model_that_serves(ps_cluster):
  (export_dir,) = ps_cluster['evaluator']['exports']
  outputs = job.run_signatures(export_dir)
  assert set(outputs) == SIGNATURE_KEYS
  probabilities = np.array(outputs['predict']['click/probabilities'])
  assert probabilities.shape == (job.SERVING_ROWS, 2)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1., rtol=1e-6)


# (c) MultiWorkerMirroredStrategy across two processes.


@pytest.fixture(scope='module')
def multi_worker_cluster(tmp_path_factory):
  return _run_cluster(tmp_path_factory.mktemp('multi_worker_cluster'),
                      'multi_worker', ['chief', 'worker'], STEPS)


def test_multi_worker_runs_one_replica_per_worker_in_sync(
    multi_worker_cluster):
  for index, task in enumerate(('chief', 'worker')):
    result = multi_worker_cluster[task]
    assert result['model_fn_calls'] == [
        {'mode': 'train', 'batch': BATCH, 'replicas': REPLICAS}], task
    assert result['input_contexts'] == [
        {'num_replicas_in_sync': REPLICAS, 'num_input_pipelines': REPLICAS,
         'input_pipeline_id': index}], task
    assert result['steps_run'] == STEPS, task
  assert multi_worker_cluster['chief']['global_step'] == STEPS


def test_multi_worker_weights_equal_a_single_device_run(
    multi_worker_cluster, local_runs):
  # Each worker reads its own half of the rows (see `train_input_fn`), so a
  # step covers the rows of one single-device batch twice as large.
  single = _weights(local_runs['single'])
  chief = multi_worker_cluster['chief']
  _assert_same_weights(_weights(chief), single, atol=1e-6)
  for task in ('chief', 'worker'):
    _assert_same_weights(
        _weights(multi_worker_cluster[task], 'final_weights'), single,
        atol=1e-6)


def test_multi_worker_evaluator_equals_single_device_evaluation(
    multi_worker_cluster, local_runs):
  step, metrics = _final_eval_metrics(multi_worker_cluster['model_dir'])
  assert step == STEPS
  expected = dict(local_runs['single']['eval'])
  del expected['global_step']
  _assert_same_metrics(metrics, expected, rtol=1e-5)
  (export_dir,) = multi_worker_cluster['evaluator']['exports']
  assert set(job.run_signatures(export_dir)) == SIGNATURE_KEYS


def test_multi_worker_strategy_cannot_be_built_on_the_evaluator(tmp_path):
  """Why the job builds no strategy on the evaluator task (README note)."""
  (config,) = [
      tf_config for task, tf_config in cluster.tf_configs(
          ['chief', 'worker'], with_evaluator=True).items()
      if task == 'evaluator']
  build = subprocess.run(
      [sys.executable, '-c',
       'import tensorflow as tf\n'
       'tf.distribute.experimental.MultiWorkerMirroredStrategy()'],
      cwd=tmp_path, env=cluster.environment(config), capture_output=True,
      text=True, timeout=cluster.TIMEOUT_SECS, check=False)
  assert build.returncode == 1
  assert build.stderr.rstrip().endswith("KeyError: 'evaluator'")
