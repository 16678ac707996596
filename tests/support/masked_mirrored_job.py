"""A click + conversion model mirrored over two CPUs, in a process of its own.

The `MaskedHead` distribution test starts this module as a program, since a
process's CPU devices are fixed once TensorFlow starts::

  python -m tests.support.masked_mirrored_job RESULT.json --model-dir DIR \\
      --head masked|by_hand

It trains, evaluates and exports under `MirroredStrategy` over two CPU
devices, with `distributed_job`'s linear model from zero weights and data,
and a conversion label only on clicked rows (-1 elsewhere):

* `masked`: our `MultiHead` of a click head and a `MaskedHead` conversion
  head, given every row;
* `by_hand`: `tf.estimator.MultiHead` of the bare heads, whose model_fn cuts
  the conversion logits and labels to the clicked rows itself.

It writes the final weights, the eval metrics and the exported signatures'
outputs as JSON to RESULT (or the error, and exits with 1).
"""
import argparse
import functools
import json
import os
import sys
import traceback

import numpy as np
import tensorflow as tf

import tensorflow_multihead as tmh
from tests.support import distributed_job as job

REPLICAS = 2
BATCH = 8  # Rows per replica.
STEPS = 4


def make_data():
  """`distributed_job`'s rows; conversion: kind 0 among clicked rows."""
  features, labels = job.make_data()
  click = labels['click']
  conversion = np.where(click == 1, (labels['kind'] == 0).astype(np.int64), -1)
  return features, {'click': click, 'conversion': conversion}


def _head(kind):
  click = tf.estimator.BinaryClassHead(name='click')
  conversion = tf.estimator.BinaryClassHead(name='conversion')
  if kind == 'masked':
    return tmh.MultiHead(
        [click, tmh.MaskedHead(conversion, missing_label=-1)])
  return tf.estimator.MultiHead([click, conversion])


def _cut_by_hand(logits, labels):
  clicked = labels['click'][:, 0] > 0
  return ({'click': logits[:, :1],
           'conversion': tf.boolean_mask(logits[:, 1:], clicked)},
          {'click': labels['click'],
           'conversion': tf.boolean_mask(labels['conversion'], clicked)})


def model_fn(features, labels, mode, params):
  zeros = tf.compat.v1.zeros_initializer()
  kernel = tf.compat.v1.get_variable('kernel', [job.N_FEATURES, 2],
                                     initializer=zeros)
  bias = tf.compat.v1.get_variable('bias', [2], initializer=zeros)
  logits = tf.matmul(features['x'], kernel) + bias
  if params['head'] == 'by_hand' and labels is not None:
    logits, labels = _cut_by_hand(logits, labels)
  optimizer = None
  if mode == tf.estimator.ModeKeys.TRAIN:
    optimizer = tf.keras.optimizers.legacy.SGD(job.LEARNING_RATE)
    optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()
  return _head(params['head']).create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      optimizer=optimizer,
      trainable_variables=tf.compat.v1.trainable_variables())


def _input_fn(repeat):
  dataset = tf.data.Dataset.from_tensor_slices(make_data())
  return (dataset.repeat() if repeat else dataset).batch(
      BATCH, drop_remainder=True)


def run(args):
  session_config, train_distribute, eval_distribute = (
      job._mirrored_over_cpus(REPLICAS))  # pylint: disable=protected-access
  estimator = tf.estimator.Estimator(
      model_fn=model_fn, params={'head': args.head},
      config=tf.estimator.RunConfig(
          model_dir=args.model_dir, session_config=session_config,
          train_distribute=train_distribute, eval_distribute=eval_distribute))
  estimator.train(functools.partial(_input_fn, True), steps=STEPS)
  metrics = estimator.evaluate(functools.partial(_input_fn, False))
  export_dir = estimator.export_saved_model(
      os.path.join(args.model_dir, 'export'), job.serving_input_fn).decode()
  return {
      'weights': {name: estimator.get_variable_value(name).tolist()
                  for name in ('kernel', 'bias')},
      'eval': {key: float(value) for key, value in metrics.items()},
      'signatures': job.run_signatures(export_dir),
  }


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('result')
  parser.add_argument('--model-dir', required=True)
  parser.add_argument('--head', choices=('masked', 'by_hand'), required=True)
  args = parser.parse_args(argv)
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.WARN)
  try:
    result, status = run(args), 0
  except Exception as error:  # pylint: disable=broad-except
    traceback.print_exc()
    result, status = {'error': f'{type(error).__name__}: {error}'}, 1
  with open(args.result, 'w') as result_file:
    json.dump(result, result_file)
  return status


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
