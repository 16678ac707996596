"""A click -> conversion funnel mirrored over two CPUs, in a process of its own.

The `ConditionalHead` distribution test starts this module as a program,
since a process's CPU devices are fixed once TensorFlow starts::

  python -m tests.support.funnel_mirrored_job RESULT.json --model-dir DIR \\
      --head funnel|by_hand

It trains, evaluates and exports under `MirroredStrategy` over two CPU
devices, with `distributed_job`'s linear model from zero weights and data,
a conversion (kind 0) only after a click:

* `funnel`: our `MultiHead` of a click head and a `ConditionalHead`
  conversion head given click;
* `by_hand`: `tf.estimator.MultiHead` of bare heads: click; conversion, fed
  the joint logits that the model_fn computes (float64 textbook formula);
  and `conversion_given_click` with a loss weight of 0, fed the conditional
  logits and labels that the model_fn cuts to the clicked rows (every row
  when there are no labels, to export).

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
VIEW = 'conversion_given_click'


def make_data():
  """`distributed_job`'s rows; conversion: kind 0 among the clicked rows."""
  features, labels = job.make_data()
  click = labels['click']
  conversion = (click == 1) & (labels['kind'] == 0)
  return features, {'click': click, 'conversion': conversion.astype(np.int64)}


def _binary(name):
  return tf.estimator.BinaryClassHead(name=name)


def _funnel_head():
  return tmh.MultiHead([_binary('click'), tmh.ConditionalHead(
      _binary('conversion'), given='click')])


def _by_hand(logits, labels):
  """The reference multi-head and its logits and labels, cut by hand."""
  click, conditional = logits[:, :1], logits[:, 1:]
  p = tf.math.sigmoid(tf.cast(click, tf.float64)) * tf.math.sigmoid(
      tf.cast(conditional, tf.float64))
  joint = tf.cast(tf.math.log(p) - tf.math.log1p(-p), tf.float32)
  head = tf.estimator.MultiHead(
      [_binary('click'), _binary('conversion'), _binary(VIEW)],
      head_weights=[1., 1., 0.])
  logits = {'click': click, 'conversion': joint, VIEW: conditional}
  if labels is not None:
    clicked = labels['click'][:, 0] > 0
    logits[VIEW] = tf.boolean_mask(conditional, clicked)
    labels = dict(labels, **{VIEW: tf.boolean_mask(labels['conversion'],
                                                   clicked)})
  return head, logits, labels


def model_fn(features, labels, mode, params):
  zeros = tf.compat.v1.zeros_initializer()
  kernel = tf.compat.v1.get_variable('kernel', [job.N_FEATURES, 2],
                                     initializer=zeros)
  bias = tf.compat.v1.get_variable('bias', [2], initializer=zeros)
  logits = tf.matmul(features['x'], kernel) + bias
  if params['head'] == 'by_hand':
    head, logits, labels = _by_hand(logits, labels)
  else:
    head = _funnel_head()
  optimizer = None
  if mode == tf.estimator.ModeKeys.TRAIN:
    optimizer = tf.keras.optimizers.legacy.SGD(job.LEARNING_RATE)
    optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()
  return head.create_estimator_spec(
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
  parser.add_argument('--head', choices=('funnel', 'by_hand'), required=True)
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
