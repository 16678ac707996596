"""One Estimator job with a `MultiHead`, run in a process of its own.

The distributed tests start this module as a program, one process a job or
cluster task, because a process's devices and `TF_CONFIG` are fixed once
TensorFlow starts::

  python -m tests.support.distributed_job local RESULT.json --model-dir DIR \\
      [--head ours|reference] [--devices 2] [--batch 8] [--steps 4] \\
      [--learning-rate 0.1] [--train-op-fn] \\
      [--loss-weighting uncertainty|dynamic_weight_average|gradnorm|random|
      famo] \\
      [--skip-export]
  TF_CONFIG='{...}' python -m tests.support.distributed_job cluster \\
      RESULT.json --model-dir DIR [--strategy parameter_server|multi_worker] \\
      [--steps 20] [--ready-file PATH] [--save-checkpoints-steps N] \\
      [--step-delay SECS] [--progress-file PATH] [--hold-file PATH] \\
      [--nan-at-step K]

`local` trains, evaluates and (unless `--skip-export`) exports in this one
process. With
`--devices 2` it runs its sessions with two CPU devices and mirrors training
and evaluation over them with `MirroredStrategy`. With `--loss-weighting`,
our `MultiHead` learns its loss weights (`tensorflow_multihead.weighting`),
and the result holds the weighting's variables too.

`cluster` runs `tf.estimator.train_and_evaluate` as the task that `TF_CONFIG`
names (chief, worker, ps or evaluator); the evaluator exports the final model
through a `FinalExporter`. A parameter server serves until it is killed.

Both write what they saw as JSON to RESULT; on an error, its type and message
(and the process exits with status 1).

For the fault tests (`tests/test_faults.py`), a cluster task can be slowed
down (`--step-delay`, a pause before each of its steps: a long training run
in small), held back from training until a file appears (`--hold-file`),
report its progress after every step (`--progress-file`), save checkpoints
often (`--save-checkpoints-steps`, all of them kept) and meet a batch whose
regression labels are NaN (`--nan-at-step`).

The model is linear, its weights start at zero, and the data is fixed, so two
runs that mean the same arithmetic end with the same weights.
"""
import argparse
import functools
import glob
import json
import os
import sys
import time
import traceback

import numpy as np
import tensorflow as tf

import tensorflow_multihead
from tensorflow_multihead import weighting
from tests.support import receivers

ROWS = 64
N_FEATURES = 3
N_KINDS = 3
HEAD_NAMES = ('click', 'kind', 'value')
HEAD_WEIGHTS = (1., 0.5, 2.)
LEARNING_RATE = 0.1
EXPORTER_NAME = 'multihead'
# What exported signatures are fed: serialized `tf.train.Example`s.
SERVING_ROWS = 4

# What this process's `model_fn` and `input_fn`s were called with, in order.
_MODEL_FN_CALLS = []
_INPUT_CONTEXTS = []


def make_data(seed=11):
  """Returns `(features, labels)`: numpy arrays of `ROWS` rows."""
  rng = np.random.RandomState(seed)
  x = rng.normal(size=(ROWS, N_FEATURES)).astype(np.float32)
  noise = rng.normal(size=(ROWS, 1)).astype(np.float32)
  labels = {
      'click': (x[:, :1] + noise > 0).astype(np.int64),
      'kind': np.argmax(x + noise, axis=1).reshape(-1, 1).astype(np.int64),
      'value': (2. * x[:, 1:2] - x[:, 2:3] + 0.1 * noise).astype(np.float32),
  }
  return {'x': x}, labels


# The learned loss weightings `--loss-weighting` names; a window of one step,
# so that a few steps complete several (GradNorm's shared variable: the
# kernel that every head's logits come from).
LOSS_WEIGHTINGS = {
    'uncertainty': lambda: weighting.Uncertainty(),
    'dynamic_weight_average': lambda: weighting.DynamicWeightAverage(
        window=1),
    'gradnorm': lambda: weighting.GradNorm(
        alpha=1., shared_variables=['kernel'], learning_rate=0.1),
    'random': lambda: weighting.RandomLossWeighting(seed=3),
    'famo': lambda: weighting.FAMO(learning_rate=0.1),
}


def make_multi_head(kind, loss_weighting=None):
  """Returns our `MultiHead` or, for `kind='reference'`, TF's.

  `loss_weighting` names one of `LOSS_WEIGHTINGS` for ours.
  """
  heads = [
      tf.estimator.BinaryClassHead(name=HEAD_NAMES[0]),
      tf.estimator.MultiClassHead(n_classes=N_KINDS, name=HEAD_NAMES[1]),
      tf.estimator.RegressionHead(name=HEAD_NAMES[2]),
  ]
  multi_head_class = {
      'ours': tensorflow_multihead.MultiHead,
      'reference': tf.estimator.MultiHead,
  }[kind]
  if loss_weighting:
    return multi_head_class(heads, head_weights=list(HEAD_WEIGHTS),
                            loss_weighting=LOSS_WEIGHTINGS[loss_weighting]())
  return multi_head_class(heads, head_weights=list(HEAD_WEIGHTS))


def _record_input_context(input_context):
  if input_context is not None:
    _INPUT_CONTEXTS.append({
        'num_replicas_in_sync': input_context.num_replicas_in_sync,
        'num_input_pipelines': input_context.num_input_pipelines,
        'input_pipeline_id': input_context.input_pipeline_id,
    })


def train_input_fn(batch_size, input_context=None, nan_at_batch=None):
  """Cycles through the data in order, `batch_size` rows a batch.

  Where a strategy runs one input pipeline per worker, pipeline `i` of `n`
  reads rows `i`, `i + n`, ... So when each of `n` workers takes one batch a
  step, a step covers the same rows as one batch `n` times as large.

  With `nan_at_batch`, that batch (counted from 0) has NaN `value` labels,
  so the loss of the step that reads it is NaN.
  """
  _record_input_context(input_context)
  dataset = tf.data.Dataset.from_tensor_slices(make_data())
  if input_context is not None:
    dataset = dataset.shard(input_context.num_input_pipelines,
                            input_context.input_pipeline_id)
  dataset = dataset.repeat().batch(batch_size, drop_remainder=True)
  if nan_at_batch is None:
    return dataset
  return dataset.enumerate().map(
      functools.partial(_nan_values_in_batch, nan_at_batch))


def _nan_values_in_batch(nan_at_batch, index, batch):
  features, labels = batch
  value = labels['value']
  labels = dict(labels, value=tf.where(
      tf.equal(index, nan_at_batch), tf.fill(tf.shape(value), float('nan')),
      value))
  return features, labels


def eval_input_fn(batch_size, input_context=None):
  """The data once, `batch_size` rows a batch."""
  _record_input_context(input_context)
  dataset = tf.data.Dataset.from_tensor_slices(make_data())
  return dataset.batch(batch_size, drop_remainder=True)


serving_input_fn = receivers.examples_receiver_fn(N_FEATURES)


def model_fn(features, labels, mode, params):
  """A linear model from zeros, trained as the canned estimators train.

  `params`: `head` ('ours' or 'reference'), `learning_rate`,
  `train_op_fn`: if true, the head gets a `train_op_fn` that minimizes the
  loss as given instead of the optimizer itself, and optionally
  `loss_weighting`: a key of `LOSS_WEIGHTINGS`.
  """
  head = make_multi_head(params['head'], params.get('loss_weighting'))
  _MODEL_FN_CALLS.append({
      'mode': mode,
      'batch': features['x'].shape[0],
      'replicas': tf.distribute.get_strategy().num_replicas_in_sync,
  })
  zeros = tf.compat.v1.zeros_initializer()
  kernel = tf.compat.v1.get_variable(
      'kernel', [N_FEATURES, head.logits_dimension], initializer=zeros)
  bias = tf.compat.v1.get_variable(
      'bias', [head.logits_dimension], initializer=zeros)
  logits = tf.matmul(features['x'], kernel) + bias
  variables = tf.compat.v1.trainable_variables()
  optimizer = train_op_fn = None
  if mode == tf.estimator.ModeKeys.TRAIN:
    optimizer = tf.keras.optimizers.legacy.SGD(params['learning_rate'])
    # The optimizer then counts the global step, as in the canned estimators.
    optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()
    if params['train_op_fn']:
      optimizer, train_op_fn = None, functools.partial(
          _minimize, optimizer, variables)
  return head.create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      optimizer=optimizer, trainable_variables=variables,
      train_op_fn=train_op_fn)


def _minimize(optimizer, variables, loss):
  return optimizer.get_updates(loss, variables)[0]


def serving_examples():
  """The first `SERVING_ROWS` rows as serialized `tf.train.Example`s."""
  x = make_data()[0]['x'][:SERVING_ROWS]
  return [
      tf.train.Example(features=tf.train.Features(feature={
          'x': tf.train.Feature(float_list=tf.train.FloatList(value=row)),
      })).SerializeToString() for row in x]


def run_signatures(export_dir):
  """Loads a SavedModel and runs each signature on `serving_examples()`.

  Returns:
    `{signature key: {output key: nested list}}`.
  """
  loaded = tf.saved_model.load(export_dir)
  examples = tf.constant(serving_examples())
  outputs = {}
  for key, signature in loaded.signatures.items():
    (input_name,) = signature.structured_input_signature[1]
    result = signature(**{input_name: examples})
    outputs[key] = {name: _plain(value) for name, value in result.items()}
  return outputs


def _plain(value):
  """A tensor or numpy value as JSON: numbers, or strings for bytes."""
  value = np.asarray(value)
  if value.dtype.kind in 'SO':
    return np.vectorize(lambda item: item.decode())(value).tolist()
  return value.tolist()


def _params(args):
  return {'head': args.head, 'learning_rate': args.learning_rate,
          'train_op_fn': args.train_op_fn,
          'loss_weighting': args.loss_weighting}


def _weights(estimator):
  return {name: _plain(estimator.get_variable_value(name))
          for name in ('kernel', 'bias')}


def _loss_weighting_state(estimator):
  """The learned loss weighting's variables (not their optimizer slots)."""
  state = {}
  for name in estimator.get_variable_names():
    short_name = name.partition('/loss_weighting/')[2]
    if short_name and '/' not in short_name:
      state[short_name] = _plain(estimator.get_variable_value(name))
  return state


def _mirrored_over_cpus(devices):
  """Returns a session config with `devices` CPUs and strategies over them.

  Returns:
    `(session_config, train_distribute, eval_distribute)`, all `None` for
    one device.
  """
  if devices == 1:
    return None, None, None
  # Splitting the CPU with `tf.config.set_logical_device_configuration`
  # instead leaves the first mirrored training step hanging in TF 2.15.
  session_config = tf.compat.v1.ConfigProto(device_count={'CPU': devices})
  names = [f'/cpu:{index}' for index in range(devices)]
  return (session_config, tf.distribute.MirroredStrategy(names),
          tf.distribute.MirroredStrategy(names))


def run_local(args):
  """Trains, evaluates and exports (unless told not to) in this process."""
  session_config, train_distribute, eval_distribute = _mirrored_over_cpus(
      args.devices)
  config = tf.estimator.RunConfig(
      model_dir=args.model_dir, session_config=session_config,
      train_distribute=train_distribute, eval_distribute=eval_distribute)
  estimator = tf.estimator.Estimator(
      model_fn=model_fn, config=config, params=_params(args))
  estimator.train(functools.partial(train_input_fn, args.batch),
                  steps=args.steps)
  metrics = estimator.evaluate(functools.partial(eval_input_fn, args.batch))
  result = {
      'model_fn_calls': _MODEL_FN_CALLS,
      'input_contexts': _INPUT_CONTEXTS,
      'global_step': int(estimator.get_variable_value('global_step')),
      'checkpoint': tf.train.latest_checkpoint(args.model_dir),
      'weights': _weights(estimator),
      'loss_weighting': _loss_weighting_state(estimator),
      'eval': {key: _plain(value) for key, value in metrics.items()},
  }
  if not args.skip_export:
    export_dir = estimator.export_saved_model(
        os.path.join(args.model_dir, 'export'), serving_input_fn).decode()
    result.update(export_dir=export_dir,
                  signatures=run_signatures(export_dir))
  return result


def _cluster_strategy(name, task_type):
  """The `train_distribute` for a cluster task, `None` for parameter servers.

  The evaluator gets none: it evaluates on its own, and building a
  `MultiWorkerMirroredStrategy` there raises `KeyError: 'evaluator'`, since
  the evaluator is not in the `TF_CONFIG` cluster.
  """
  if name == 'multi_worker' and task_type != 'evaluator':
    return tf.distribute.experimental.MultiWorkerMirroredStrategy()
  return None


class _TrainingWatch(tf.estimator.SessionRunHook):
  """Counts the training steps this process runs; keeps its last weights.

  With a `progress_file`, it also keeps the global step when the session
  starts (for a chief, the step of the checkpoint it restored) and after each
  of this process's steps, and rewrites that file after every step with
  `{"steps_run": ..., "global_step": ...}` (whole: written aside, then moved).
  """

  def __init__(self, progress_file=None):
    self.steps = 0
    self.weights = None
    self.start_step = None
    self.global_steps = []
    self._progress_file = progress_file

  def begin(self):
    self._global_step = tf.compat.v1.train.get_global_step()

  def after_create_session(self, session, coord):
    del coord  # Unused.
    if self._progress_file:
      self.start_step = int(session.run(self._global_step))

  def after_run(self, run_context, run_values):
    del run_values  # The global step is read after the step, below.
    self.steps += 1
    if self._progress_file:
      self.global_steps.append(
          int(run_context.session.run(self._global_step)))
      written = f'{self._progress_file}.part'
      with open(written, 'w') as progress:
        json.dump({'steps_run': self.steps,
                   'global_step': self.global_steps[-1]}, progress)
      os.replace(written, self._progress_file)

  def end(self, session):
    # Read here, this is what this process's own replica holds at the end.
    self.weights = {
        variable.op.name: _plain(session.run(variable))
        for variable in tf.compat.v1.trainable_variables()}


class _StepDelay(tf.estimator.SessionRunHook):
  """Pauses before each step: a long training run, slowed down to be seen."""

  def __init__(self, seconds):
    self._seconds = seconds

  def before_run(self, run_context):
    del run_context  # Unused.
    time.sleep(self._seconds)


class _HoldUntilFile(tf.estimator.SessionRunHook):
  """Takes no step until `hold_file` exists: the other tasks train alone."""

  def __init__(self, hold_file, timeout_secs=300):
    self._hold_file = hold_file
    self._timeout_secs = timeout_secs

  def before_run(self, run_context):
    del run_context  # Unused.
    deadline = time.monotonic() + self._timeout_secs
    while not os.path.exists(self._hold_file):
      if time.monotonic() > deadline:
        raise TimeoutError(f'{self._hold_file} did not appear within '
                           f'{self._timeout_secs} s.')
      time.sleep(0.05)


class _FirstStepAfterPeers(tf.estimator.SessionRunHook):
  """Writes `ready_file` once the variables are initialized, then waits.

  The chief waits before its first step until another task has taken one.
  A worker that asks the cluster for its variables before the chief has
  initialized them retries only after 30 s (a fixed TensorFlow interval), so
  a cluster manager that starts the worker after `ready_file` appears and
  this wait make sure the worker joins in, quickly.
  """

  def __init__(self, ready_file, timeout_secs=300):
    self._ready_file = ready_file
    self._timeout_secs = timeout_secs

  def after_create_session(self, session, coord):
    del coord  # Unused.
    with open(self._ready_file, 'w') as ready:
      ready.write('ready\n')
    global_step = tf.compat.v1.train.get_global_step()
    deadline = time.monotonic() + self._timeout_secs
    while session.run(global_step) == 0:
      if time.monotonic() > deadline:
        raise TimeoutError(
            f'No other task trained within {self._timeout_secs} s.')
      time.sleep(0.05)


def run_cluster(args):
  """Runs `train_and_evaluate` as the `TF_CONFIG` task; returns what it did."""
  task = json.loads(os.environ['TF_CONFIG'])['task']
  checkpoints = {}
  if args.save_checkpoints_steps:
    checkpoints = {'save_checkpoints_steps': args.save_checkpoints_steps,
                   'keep_checkpoint_max': 0}  # 0 keeps them all.
  config = tf.estimator.RunConfig(
      model_dir=args.model_dir,
      train_distribute=_cluster_strategy(args.strategy, task['type']),
      # Workers start at once instead of waiting 5 s per task index.
      experimental_max_worker_delay_secs=0, **checkpoints)
  estimator = tf.estimator.Estimator(
      model_fn=model_fn, config=config, params=_params(args))
  watch = _TrainingWatch(args.progress_file)
  hooks = [watch]
  if args.ready_file:
    hooks.append(_FirstStepAfterPeers(args.ready_file))
  if args.step_delay:
    hooks.append(_StepDelay(args.step_delay))
  if args.hold_file:
    hooks.append(_HoldUntilFile(args.hold_file))
  train_spec = tf.estimator.TrainSpec(
      functools.partial(train_input_fn, args.batch,
                        nan_at_batch=args.nan_at_step),
      max_steps=args.steps, hooks=hooks)
  eval_spec = tf.estimator.EvalSpec(
      functools.partial(eval_input_fn, args.batch), steps=None,
      exporters=[tf.estimator.FinalExporter(EXPORTER_NAME, serving_input_fn)],
      start_delay_secs=0, throttle_secs=1)
  tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)
  result = {
      'task': task,
      'model_fn_calls': _MODEL_FN_CALLS,
      'input_contexts': _INPUT_CONTEXTS,
      'steps_run': watch.steps,
      'start_step': watch.start_step,
      'global_steps': watch.global_steps,
      'final_weights': watch.weights,
  }
  if task['type'] == 'evaluator':
    result['exports'] = sorted(glob.glob(
        os.path.join(args.model_dir, 'export', EXPORTER_NAME, '*')))
  if task['type'] == 'chief':  # The one task that saves to `model_dir`.
    result['checkpoint'] = tf.train.latest_checkpoint(args.model_dir)
    result['global_step'] = int(estimator.get_variable_value('global_step'))
    result['weights'] = _weights(estimator)
  return result


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('job', choices=('local', 'cluster'))
  parser.add_argument('result', help='Where to write the JSON result.')
  parser.add_argument('--model-dir', required=True)
  parser.add_argument('--head', choices=('ours', 'reference'), default='ours')
  parser.add_argument('--devices', type=int, default=1)
  parser.add_argument('--batch', type=int, default=8,
                      help='Rows per input_fn batch.')
  parser.add_argument('--steps', type=int, default=4,
                      help='Training steps (`local`) or max_steps.')
  parser.add_argument('--learning-rate', type=float, default=LEARNING_RATE)
  parser.add_argument('--train-op-fn', action='store_true',
                      help='Hand the head a train_op_fn, not the optimizer.')
  parser.add_argument('--skip-export', action='store_true',
                      help='`local`: train and evaluate only.')
  parser.add_argument('--loss-weighting', choices=sorted(LOSS_WEIGHTINGS),
                      help='Our MultiHead learns its loss weights this way.')
  parser.add_argument('--ready-file',
                      help='A chief writes it when its variables are '
                      'initialized, then takes its first step only after '
                      'another task has taken one.')
  parser.add_argument('--strategy', default='parameter_server',
                      choices=('parameter_server', 'multi_worker'))
  parser.add_argument('--save-checkpoints-steps', type=int,
                      help='Save every N steps and keep every checkpoint.')
  parser.add_argument('--step-delay', type=float, default=0.,
                      help='Seconds this task pauses before each step.')
  parser.add_argument('--progress-file',
                      help='Rewritten after each step with the steps run '
                      'and the global step, as JSON.')
  parser.add_argument('--hold-file',
                      help='The task takes no step until this file exists.')
  parser.add_argument('--nan-at-step', type=int,
                      help='The training batch (from 0) whose `value` '
                      'labels are NaN.')
  return parser.parse_args(argv)


def main(argv):
  args = parse_args(argv)
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.WARN)
  run = {'local': run_local, 'cluster': run_cluster}[args.job]
  try:
    result, status = run(args), 0
  except Exception as error:  # pylint: disable=broad-except
    traceback.print_exc()
    result = {'error_type': type(error).__name__, 'error': str(error)}
    status = 1
  with open(args.result, 'w') as result_file:
    json.dump(result, result_file, indent=1)
  return status


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
