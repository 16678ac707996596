"""Evaluates fused heads under `MirroredStrategy` over two CPUs, as a program.

    python -m tests.support.fused_mirrored_job RESULT.json MODEL_DIR

Trains a linear model of three binary and two regression heads for a few
steps on one device, then evaluates that checkpoint mirrored over two CPU
devices with `tf.estimator.MultiHead`, with ours fused and with ours per
head, and writes the three metric dicts as JSON. A process of its own,
since its devices are fixed once TensorFlow starts.
"""
import json
import sys

import numpy as np
import tensorflow as tf

import tensorflow_multihead

ROWS, BATCH = 64, 8


def _heads():
  return [tf.estimator.BinaryClassHead(name='a'),
          tf.estimator.BinaryClassHead(name='b', thresholds=[0.4]),
          tf.estimator.BinaryClassHead(name='c'),
          tf.estimator.RegressionHead(name='r'),
          tf.estimator.RegressionHead(name='s')]


SIDES = {
    'reference': lambda: tf.estimator.MultiHead(_heads()),
    'fused': lambda: tensorflow_multihead.MultiHead(_heads()),
    'per_head': lambda: tensorflow_multihead.MultiHead(_heads(),
                                                       fuse_heads=False),
}


def _input_fn():
  rng = np.random.RandomState(3)
  x = rng.normal(size=(ROWS, 3)).astype(np.float32)
  labels = {name: (x[:, i % 3:i % 3 + 1] > 0).astype(np.int64)
            for i, name in enumerate('abc')}
  labels.update(r=x[:, :1] * 2., s=x[:, 1:2] - x[:, 2:3])
  return tf.data.Dataset.from_tensor_slices(({'x': x}, labels)).batch(
      BATCH, drop_remainder=True)


def _model_fn(features, labels, mode, params):
  head = SIDES[params['side']]()
  logits = tf.compat.v1.layers.dense(features['x'], head.logits_dimension)

  def train_op_fn(loss):
    return tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(
        loss, global_step=tf.compat.v1.train.get_global_step())

  return head.create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      train_op_fn=train_op_fn)


def main(result_path, model_dir):
  # Both before anything else starts TensorFlow, or CPU:1 is missing.
  session_config = tf.compat.v1.ConfigProto(device_count={'CPU': 2})
  mirrored = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  tf.estimator.Estimator(
      _model_fn, model_dir=model_dir, params={'side': 'reference'},
      config=tf.estimator.RunConfig(session_config=session_config)).train(
          lambda: _input_fn().repeat(), steps=3)
  results = {}
  for side in SIDES:
    config = tf.estimator.RunConfig(session_config=session_config,
                                    eval_distribute=mirrored)
    estimator = tf.estimator.Estimator(_model_fn, model_dir=model_dir,
                                       params={'side': side}, config=config)
    results[side] = {key: float(value) for key, value in
                     estimator.evaluate(_input_fn).items()}
  with open(result_path, 'w', encoding='utf-8') as stream:
    json.dump(results, stream)
  return 0


if __name__ == '__main__':
  sys.exit(main(*sys.argv[1:]))
