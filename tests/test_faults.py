"""Faults in a real cluster: killed tasks come back, a NaN loss stops cleanly.

Issue 7, item 7. The loopback `TF_CONFIG` clusters of
`tests/test_distributed.py` (a chief, a worker and a parameter server on
127.0.0.1, each a process of `tests/support/distributed_job.py`, our
`MultiHead` of three heads over a linear model), with real faults:

* The chief is killed with SIGKILL mid-training and started again: it
  resumes from its last checkpoint (not from step 0, nor from the step the
  parameter server had reached), trains to the target step, and its final
  checkpoint restores and exports a model that serves. No checkpoint is ever
  left unreadable, neither at the kill nor at the end.
* A worker is killed with SIGKILL mid-training and started again: it rejoins
  the running training where it was, and the global step moves on with each
  of its steps to the target (the chief held back meanwhile, so that its
  steps are the only ones).
* A training batch whose `value` labels are NaN makes that step's merged
  loss NaN: the chief stops with `NanLossDuringTrainingError`, as it does
  with `tf.estimator.MultiHead`, and the checkpoints before that step are
  intact and equal to the reference's. (The chief's checkpoint saver runs
  before Estimator's NaN check, so with a checkpoint every step, the NaN
  step's own checkpoint is saved too, NaN in the `value` head's weights:
  the same with the reference.)

A task is slowed down (`--step-delay`) only to be sure that it is still
training when it is killed; the tests wait by polling files the tasks write,
with a deadline on every wait, and kill every process they start.
"""
import glob
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tests.support import cluster
from tests.support import distributed_job as job

pytestmark = pytest.mark.xdist_group('faults')

BATCH = 8
# Besides the optimizer's hyper-parameters.
MODEL_VARIABLES = {'kernel', 'bias', 'global_step'}

# The chief, slowed down, killed two steps or more past a checkpoint of step
# `KILL_AFTER_CHECKPOINT` or later (it saves every `CHECKPOINT_STEPS`);
# restarted, it trains to `CHIEF_STEPS`.
CHIEF_STEPS = 60
CHECKPOINT_STEPS = 5
KILL_AFTER_CHECKPOINT = 10
SLOW_STEP_SECS = 0.1

# The worker, slowed down, killed after `KILL_WORKER_AFTER_STEPS` of its
# steps. The chief is held back until the restarted worker has ended, so
# that the workers alone take the global step to `WORKER_STEPS`.
WORKER_STEPS = 100
KILL_WORKER_AFTER_STEPS = 5

# The batch whose `value` labels are NaN: the step from global step
# `NAN_BATCH` to `NAN_BATCH + 1` has a NaN merged loss.
NAN_BATCH = 3
NAN_MAX_STEPS = 20
# The `value` head's column of the linear model's logits.
VALUE_COLUMN = 1 + job.N_KINDS


# What the tasks leave behind.


def _checkpoint_step(path):
  return int(re.fullmatch(r'.*model\.ckpt-(\d+)', path).group(1))


def _latest_checkpoint_step(model_dir):
  latest = tf.train.latest_checkpoint(str(model_dir))
  return -1 if latest is None else _checkpoint_step(latest)


def _checkpoints(model_dir):
  """Every checkpoint on disk, by step: each `.index` file's prefix."""
  prefixes = [path[:-len('.index')]
              for path in glob.glob(os.path.join(model_dir, '*.index'))]
  return {_checkpoint_step(prefix): prefix for prefix in prefixes}


def _read_checkpoint(prefix):
  """Reads every variable of a checkpoint, which fails if it is damaged."""
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()}


def _assert_all_checkpoints_readable(model_dir):
  """Every checkpoint on disk, and each the state file lists, reads whole.

  Returns:
    `{step: {variable: value}}` of the checkpoints on disk.
  """
  on_disk = {step: _read_checkpoint(prefix)
             for step, prefix in _checkpoints(model_dir).items()}
  state = tf.train.get_checkpoint_state(str(model_dir))
  listed = [_checkpoint_step(path)
            for path in state.all_model_checkpoint_paths]
  assert listed and set(listed) <= set(on_disk)
  assert _checkpoint_step(state.model_checkpoint_path) == max(listed)
  for step, variables in on_disk.items():
    assert MODEL_VARIABLES <= set(variables), step
  return on_disk


def _read_json(path):
  return json.loads(path.read_text()) if path.exists() else None


def _progress(path):
  """A task's last reported progress, or zero steps if none yet."""
  return _read_json(path) or {'steps_run': 0, 'global_step': 0}


def _cluster_args(model_dir, max_steps, *extra):
  return ['cluster', '--model-dir', str(model_dir), '--steps', str(max_steps),
          '--batch', str(BATCH), *extra]


def _linear_logits(checkpoint, x):
  variables = _read_checkpoint(checkpoint)
  return x @ variables['kernel'] + variables['bias']


# The chief, killed and restarted.


@pytest.fixture(scope='module')
def chief_restart(tmp_path_factory):
  """A chief and a parameter server; the chief killed, then started again."""
  directory = tmp_path_factory.mktemp('chief_restart')
  model_dir = directory / 'model'
  configs = cluster.tf_configs(['chief', 'ps'], with_evaluator=False)
  args = _cluster_args(model_dir, CHIEF_STEPS, '--save-checkpoints-steps',
                       CHECKPOINT_STEPS)
  progress = directory / 'chief_progress.json'
  with cluster.jobs() as (started, deadline):
    started.append(cluster.Job('ps', directory, args, configs['ps']))
    chief = cluster.Job(
        'chief', directory,
        args + ['--step-delay', SLOW_STEP_SECS, '--progress-file', progress],
        configs['chief'])
    started.append(chief)

    def between_checkpoints():
      # Killed a step or more after a checkpoint, the chief loses the steps
      # since then; the parameter server still holds their global step.
      latest = _latest_checkpoint_step(model_dir)
      return (latest >= KILL_AFTER_CHECKPOINT and
              _progress(progress)['global_step'] >= latest + 2)

    cluster.wait_until(between_checkpoints, chief, deadline,
                       f'it trained past step {KILL_AFTER_CHECKPOINT}')
    killed = {'status': chief.kill(), 'progress': _progress(progress),
              'result': _read_json(chief.result_path),
              'steps_on_disk': set(_checkpoints(model_dir)),
              'latest': _latest_checkpoint_step(model_dir)}
    restarted = cluster.Job(
        'chief_restarted', directory,
        args + ['--progress-file', directory / 'restarted_progress.json'],
        configs['chief'])
    started.append(restarted)
    result = restarted.result(deadline)
    # Read while the parameter server, which writes the checkpoints' shards,
    # still runs, but idle.
    checkpoints = _assert_all_checkpoints_readable(model_dir)
  return {'model_dir': model_dir, 'killed': killed, 'restarted': result,
          'checkpoints': checkpoints}


def test_chief_is_killed_mid_training(chief_restart):
  killed = chief_restart['killed']
  assert killed['status'] == -9  # SIGKILL.
  assert killed['result'] is None  # It never got to write one.
  # Its progress is written just after the step's checkpoint.
  assert KILL_AFTER_CHECKPOINT <= killed['latest'] <= (
      killed['progress']['global_step'] + 1)
  assert killed['progress']['global_step'] < CHIEF_STEPS
  assert max(killed['steps_on_disk']) < CHIEF_STEPS


def test_no_checkpoint_is_left_unreadable_by_the_kill(chief_restart):
  killed = chief_restart['killed']
  assert set(range(0, killed['latest'] + 1, CHECKPOINT_STEPS)) <= (
      killed['steps_on_disk'])
  for step in killed['steps_on_disk']:
    variables = chief_restart['checkpoints'][step]
    assert variables['global_step'] == step
    assert np.isfinite(variables['kernel']).all(), step


def test_restarted_chief_resumes_from_its_last_checkpoint(chief_restart):
  restarted = chief_restart['restarted']
  resumed_from = chief_restart['killed']['latest']
  # The parameter server still held the variables, its global step perhaps
  # past the checkpoint's; the new chief restores the checkpoint over them.
  assert restarted['start_step'] == resumed_from
  steps = restarted['global_steps']
  assert steps == list(range(resumed_from + 1, CHIEF_STEPS + 1))
  assert restarted['steps_run'] == CHIEF_STEPS - resumed_from


def test_restarted_chief_trains_to_the_target_step(chief_restart):
  restarted = chief_restart['restarted']
  assert restarted['global_step'] == CHIEF_STEPS
  assert restarted['checkpoint'].endswith(f'model.ckpt-{CHIEF_STEPS}')


def test_no_checkpoint_is_unreadable_after_the_restart(chief_restart):
  checkpoints = chief_restart['checkpoints']
  assert max(checkpoints) == CHIEF_STEPS
  assert chief_restart['killed']['steps_on_disk'] < set(checkpoints)
  for step, variables in checkpoints.items():
    assert variables['global_step'] == step
    assert np.isfinite(variables['kernel']).all(), step


def test_final_checkpoint_restores_and_exports_a_model_that_serves(
    chief_restart, tmp_path):
  model_dir = chief_restart['model_dir']
  checkpoint = chief_restart['restarted']['checkpoint']
  estimator = tf.estimator.Estimator(
      model_fn=job.model_fn, model_dir=str(model_dir),
      params={'head': 'ours', 'learning_rate': job.LEARNING_RATE,
              'train_op_fn': False})
  export_dir = estimator.export_saved_model(
      str(tmp_path / 'export'), job.serving_input_fn,
      checkpoint_path=checkpoint).decode()
  served = job.run_signatures(export_dir)['predict']
  x = job.make_data()[0]['x'][:job.SERVING_ROWS]
  logits = _linear_logits(checkpoint, x)
  assert np.abs(logits).max() > 0.1  # Trained, not zeros.
  np.testing.assert_allclose(served['click/logits'], logits[:, :1],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(served['kind/logits'], logits[:, 1:4],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(served['value/predictions'], logits[:, 4:],
                             rtol=1e-5, atol=1e-6)


# A worker, killed and restarted.


@pytest.fixture(scope='module')
def worker_restart(tmp_path_factory):
  """A chief, a worker and a parameter server; the worker killed, restarted.

  The worker starts once the chief has initialized the variables (as in
  test_distributed.py). The chief takes no step until the restarted worker
  has ended: the workers alone train, and after the kill, the restarted one.
  """
  directory = tmp_path_factory.mktemp('worker_restart')
  model_dir = directory / 'model'
  configs = cluster.tf_configs(['chief', 'worker', 'ps'], with_evaluator=False)
  args = _cluster_args(model_dir, WORKER_STEPS)
  ready_file, hold_file = directory / 'chief_ready', directory / 'release'
  progress = {name: directory / f'{name}_progress.json'
              for name in ('worker', 'worker_restarted')}
  with cluster.jobs() as (started, deadline):
    started.append(cluster.Job('ps', directory, args, configs['ps']))
    chief = cluster.Job(
        'chief', directory,
        args + ['--ready-file', ready_file, '--hold-file', hold_file],
        configs['chief'])
    started.append(chief)
    cluster.wait_until(ready_file.exists, chief, deadline,
                       f'it wrote {ready_file}')
    first = cluster.Job(
        'worker', directory, args + ['--step-delay', SLOW_STEP_SECS,
                                     '--progress-file', progress['worker']],
        configs['worker'])
    started.append(first)
    cluster.wait_until(
        lambda: _progress(progress['worker'])['steps_run'] >= (
            KILL_WORKER_AFTER_STEPS), first, deadline,
        f'it ran {KILL_WORKER_AFTER_STEPS} steps')
    killed = {'status': first.kill(),
              'progress': _progress(progress['worker'])}
    second = cluster.Job(
        'worker_restarted', directory,
        args + ['--progress-file', progress['worker_restarted']],
        configs['worker'])
    started.append(second)
    results = {'worker_restarted': second.result(deadline)}
    hold_file.write_text('released\n')
    results['chief'] = chief.result(deadline)
  return {'model_dir': model_dir, 'killed': killed, **results}


def test_worker_is_killed_mid_training(worker_restart):
  killed = worker_restart['killed']
  assert killed['status'] == -9  # SIGKILL.
  assert killed['progress']['steps_run'] >= KILL_WORKER_AFTER_STEPS
  assert killed['progress']['global_step'] < WORKER_STEPS


def test_restarted_worker_rejoins_where_the_training_was(worker_restart):
  restarted = worker_restart['worker_restarted']
  killed_at = worker_restart['killed']['progress']['global_step']
  # The killed worker may have finished one more step than it reported.
  assert killed_at <= restarted['start_step'] <= killed_at + 1


def test_global_step_moves_on_with_each_step_of_the_restarted_worker(
    worker_restart):
  restarted = worker_restart['worker_restarted']
  # The chief held back, the killed worker gone: its steps alone count.
  assert restarted['global_steps'] == list(
      range(restarted['start_step'] + 1, WORKER_STEPS + 1))
  assert restarted['steps_run'] == WORKER_STEPS - restarted['start_step']


def test_training_with_the_restarted_worker_reaches_the_target_step(
    worker_restart):
  chief = worker_restart['chief']
  # Released, the chief takes one step, sees the target passed, stops.
  assert chief['steps_run'] == 1
  assert chief['global_step'] == WORKER_STEPS + 1
  checkpoints = _assert_all_checkpoints_readable(worker_restart['model_dir'])
  assert max(checkpoints) == chief['global_step']


# A NaN loss, with our MultiHead and with the reference's.


@pytest.fixture(scope='module')
def nan_loss(tmp_path_factory):
  """A chief and a parameter server per head, a checkpoint saved each step.

  Both clusters run at once; each chief meets the NaN batch `NAN_BATCH`.
  """
  directory = tmp_path_factory.mktemp('nan_loss')
  runs = {}
  with cluster.jobs() as (started, deadline):
    chiefs = {}
    for head in ('ours', 'reference'):
      model_dir = directory / head
      configs = cluster.tf_configs(['chief', 'ps'], with_evaluator=False)
      args = _cluster_args(model_dir, NAN_MAX_STEPS, '--head', head,
                           '--save-checkpoints-steps', 1,
                           '--nan-at-step', NAN_BATCH)
      started.append(cluster.Job(f'{head}_ps', directory, args,
                                 configs['ps']))
      chiefs[head] = cluster.Job(f'{head}_chief', directory, args,
                                 configs['chief'])
      started.append(chiefs[head])
    for head, chief in chiefs.items():
      runs[head] = {'error': chief.failure(deadline),
                    'model_dir': directory / head}
  for run in runs.values():
    run['checkpoints'] = _assert_all_checkpoints_readable(run['model_dir'])
  return runs


@pytest.mark.parametrize('head', ['ours', 'reference'])
def test_nan_loss_stops_training_with_nan_loss_during_training_error(
    nan_loss, head):
  assert nan_loss[head]['error'] == {
      'error_type': 'NanLossDuringTrainingError',
      'error': 'NaN loss during training.'}


def test_checkpoints_before_the_nan_step_are_intact(nan_loss):
  ours = nan_loss['ours']['checkpoints']
  reference = nan_loss['reference']['checkpoints']
  for step in range(NAN_BATCH + 1):
    for name in ('kernel', 'bias'):
      assert np.isfinite(ours[step][name]).all(), (step, name)
      np.testing.assert_allclose(ours[step][name], reference[step][name],
                                 rtol=0, atol=1e-6, err_msg=f'{step} {name}')
  assert np.abs(ours[NAN_BATCH]['kernel']).max() > 0.01  # It trained.


def test_nan_step_checkpoint_is_the_last_as_with_the_reference(nan_loss):
  nan_step = NAN_BATCH + 1
  for head, run in nan_loss.items():
    assert sorted(run['checkpoints']) == list(range(nan_step + 1)), head
    assert _latest_checkpoint_step(run['model_dir']) == nan_step, head
  ours = nan_loss['ours']['checkpoints'][nan_step]
  reference = nan_loss['reference']['checkpoints'][nan_step]
  # Only the `value` head met NaN labels: NaN reached its weights alone.
  value_kernel = np.zeros_like(ours['kernel'], bool)
  value_kernel[:, VALUE_COLUMN] = True
  value_bias = np.arange(len(ours['bias'])) == VALUE_COLUMN
  for name, is_value in (('kernel', value_kernel), ('bias', value_bias)):
    np.testing.assert_array_equal(np.isnan(ours[name]), is_value, name)
    np.testing.assert_allclose(ours[name], reference[name], rtol=0,
                               atol=1e-6, err_msg=name)  # NaNs compare equal.
