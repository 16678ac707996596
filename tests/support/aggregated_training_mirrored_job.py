"""Aggregated training mirrored over two CPUs and on one, as a program.

    python -m tests.support.aggregated_training_mirrored_job RESULT.json DIRECTORY

For each configuration in `CONFIGURATIONS` (representation or variables
mode, loss reduction, `optimizer=` or `train_op_fn=`) it trains a tanh trunk
under three heads (regressions `a` and `b`, one fused group, and a binary
`c`) for `STEPS` steps with `aggregation_cases.UnitRows`, twice: mirrored
over two CPU devices, `BATCH` rows a replica, and on one device with both
replicas' rows in one batch. It writes every run's final variables as JSON.
`UnitRows` is neither linear nor unchanged by scaling, so the runs agree
only if every replica aggregates the single device's Jacobian and trains on
its share. A process of its own: its devices are fixed once TensorFlow
starts.
"""
import json
import os
import sys

import numpy as np
import tensorflow as tf

from tensorflow_multihead import MultiHead
from tests import aggregation_cases as cases

ROWS, FEATURES, UNITS = 64, 3, 4
BATCH, REPLICAS, STEPS = 8, 2, 3
SUM = tf.losses.Reduction.SUM
MEAN = tf.losses.Reduction.SUM_OVER_BATCH_SIZE
# name: (mode, loss reduction, trainer, learning rate)
CONFIGURATIONS = {
    'variables_mean_optimizer': ('variables', MEAN, 'optimizer', 0.2),
    'representation_mean_optimizer': ('representation', MEAN, 'optimizer',
                                      0.2),
    'variables_sum_train_op_fn': ('variables', SUM, 'train_op_fn', 0.02),
    'representation_sum_train_op_fn': ('representation', SUM, 'train_op_fn',
                                       0.02),
}
VARIABLES = ('trunk/kernel', 'trunk/bias', 'out/kernel', 'out/bias')

_RNG = np.random.RandomState(17)
X = _RNG.normal(size=(ROWS, FEATURES)).astype(np.float32)
LABELS = {
    'a': (X[:, :1] - X[:, 1:2]).astype(np.float32),
    'b': (2. * X[:, 2:3] + 1.).astype(np.float32),
    'c': (X[:, :1] + X[:, 2:3] > 0).astype(np.int64),
}
INITIAL = {
    'trunk/kernel': _RNG.normal(size=(FEATURES, UNITS)).astype(np.float32),
    'trunk/bias': 0.1 * _RNG.normal(size=UNITS).astype(np.float32),
    'out/kernel': _RNG.normal(size=(UNITS, 3)).astype(np.float32),
    'out/bias': np.zeros(3, np.float32),
}


def _input_fn(batch):
  return tf.data.Dataset.from_tensor_slices(({'x': X}, LABELS)).repeat().batch(
      batch, drop_remainder=True)


def _model_fn(features, labels, mode, params):
  kind, reduction, trainer, learning_rate = CONFIGURATIONS[params['name']]
  variables = {}
  for name in VARIABLES:
    scope, short = name.split('/')
    with tf.compat.v1.variable_scope(scope):
      variables[name] = tf.compat.v1.get_variable(
          short, initializer=tf.constant(INITIAL[name]))
  representation = tf.tanh(
      tf.matmul(features['x'], variables['trunk/kernel']) +
      variables['trunk/bias'], name='representation')
  logits = tf.matmul(representation, variables['out/kernel']) + variables[
      'out/bias']
  config = ({'shared_representation': 'representation'}
            if kind == 'representation' else
            {'shared_variables': ['trunk/kernel', 'trunk/bias']})
  head = MultiHead(
      [tf.estimator.RegressionHead(name='a', loss_reduction=reduction),
       tf.estimator.RegressionHead(name='b', loss_reduction=reduction),
       tf.estimator.BinaryClassHead(name='c', loss_reduction=reduction)],
      head_weights=[1., 0.5, 2.],
      gradient_aggregation=cases.UnitRows(**config))
  trainable = tf.compat.v1.trainable_variables()
  if trainer == 'optimizer':
    optimizer = tf.keras.optimizers.legacy.SGD(learning_rate)
    return head.create_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels,
        optimizer=optimizer, trainable_variables=trainable)

  def train_op_fn(loss):
    return tf.compat.v1.train.GradientDescentOptimizer(
        learning_rate).minimize(
            loss, global_step=tf.compat.v1.train.get_global_step())

  return head.create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      train_op_fn=train_op_fn)


def _train(name, directory, session_config, mirrored):
  strategy = (tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
              if mirrored else None)
  config = tf.estimator.RunConfig(
      model_dir=directory, session_config=session_config,
      train_distribute=strategy)
  estimator = tf.estimator.Estimator(_model_fn, config=config,
                                     params={'name': name})
  estimator.train(lambda: _input_fn(BATCH if mirrored else BATCH * REPLICAS),
                  steps=STEPS)
  return {'global_step': int(estimator.get_variable_value('global_step')),
          'variables': {variable: estimator.get_variable_value(
              variable).tolist() for variable in VARIABLES}}


def main(result_path, directory):
  # Before anything else starts TensorFlow, or CPU:1 is missing.
  session_config = tf.compat.v1.ConfigProto(device_count={'CPU': REPLICAS})
  results = {}
  for name in CONFIGURATIONS:
    for layout in ('mirrored', 'single'):
      results[f'{name}/{layout}'] = _train(
          name, os.path.join(directory, f'{name}_{layout}'), session_config,
          layout == 'mirrored')
  with open(result_path, 'w', encoding='utf-8') as stream:
    json.dump(results, stream)
  return 0


if __name__ == '__main__':
  sys.exit(main(*sys.argv[1:]))
