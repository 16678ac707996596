"""Two ways of one mirrored model, each in a process of its own.

`masked_mirrored_job` and `funnel_mirrored_job` each train, evaluate and
export one small model two ways (ours, and the reference with the rows cut
by hand) under `MirroredStrategy` over two CPU devices, and their tests
compare the two. What they share is here: the job's run and command line
(`run`, `main`), and the test's fixture starting both jobs at once
(`results`).
"""
import argparse
import functools
import json
import os
import pathlib
import subprocess
import sys
import traceback

import tensorflow as tf

from tests.support import distributed_job as job

ROOT = pathlib.Path(__file__).resolve().parents[2]
REPLICAS = 2
BATCH = 8  # Rows per replica.
STEPS = 4


def _input_fn(make_data, repeat):
  dataset = tf.data.Dataset.from_tensor_slices(make_data())
  return (dataset.repeat() if repeat else dataset).batch(
      BATCH, drop_remainder=True)


def estimator_spec(head, features, mode, logits, labels):
  """`head`'s spec, trained (in TRAIN) by SGD at the job's learning rate.

  The optimizer counts its steps with the global step, which the reference
  heads need to be told.
  """
  optimizer = None
  if mode == tf.estimator.ModeKeys.TRAIN:
    optimizer = tf.keras.optimizers.legacy.SGD(job.LEARNING_RATE)
    optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()
  return head.create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      optimizer=optimizer,
      trainable_variables=tf.compat.v1.trainable_variables())


def run(model_fn, make_data, head, model_dir):
  """Trains `STEPS` steps, evaluates and exports; returns what it saw."""
  session_config, train_distribute, eval_distribute = (
      job._mirrored_over_cpus(REPLICAS))  # pylint: disable=protected-access
  estimator = tf.estimator.Estimator(
      model_fn=model_fn, params={'head': head},
      config=tf.estimator.RunConfig(
          model_dir=model_dir, session_config=session_config,
          train_distribute=train_distribute, eval_distribute=eval_distribute))
  estimator.train(functools.partial(_input_fn, make_data, True), steps=STEPS)
  metrics = estimator.evaluate(functools.partial(_input_fn, make_data, False))
  export_dir = estimator.export_saved_model(
      os.path.join(model_dir, 'export'), job.serving_input_fn).decode()
  return {
      'weights': {name: estimator.get_variable_value(name).tolist()
                  for name in ('kernel', 'bias')},
      'eval': {key: float(value) for key, value in metrics.items()},
      'signatures': job.run_signatures(export_dir),
  }


def main(argv, model_fn, make_data, heads, description):
  """The job's program: `RESULT --model-dir DIR --head <one of heads>`.

  Writes `run`'s result as JSON to RESULT, or the error (and returns 1).
  """
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument('result')
  parser.add_argument('--model-dir', required=True)
  parser.add_argument('--head', choices=heads, required=True)
  args = parser.parse_args(argv)
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.WARN)
  try:
    result, status = run(model_fn, make_data, args.head, args.model_dir), 0
  except Exception as error:  # pylint: disable=broad-except
    traceback.print_exc()
    result, status = {'error': f'{type(error).__name__}: {error}'}, 1
  with open(args.result, 'w') as result_file:
    json.dump(result, result_file)
  return status


def results(module, heads, directory, timeout_secs):
  """Runs `python -m module` for each of `heads` at once; their results.

  A job that fails, or runs past `timeout_secs`, fails the test with its
  log's tail.
  """
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=str(ROOT))
  processes = {}
  try:
    for head in heads:
      log = open(directory / f'{head}.log', 'w')  # pylint: disable=consider-using-with
      processes[head] = (subprocess.Popen(
          [sys.executable, '-m', module, str(directory / f'{head}.json'),
           '--model-dir', str(directory / head), '--head', head],
          cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log)
    for head, (process, log) in processes.items():
      status = process.wait(timeout=timeout_secs)
      log.close()
      assert status == 0, (directory / f'{head}.log').read_text()[-3000:]
  finally:
    for process, log in processes.values():
      if process.poll() is None:
        process.kill()
        process.wait()
      log.close()
  return {head: json.loads((directory / f'{head}.json').read_text())
          for head in heads}
