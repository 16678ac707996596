"""Trains `MultiHead` a few steps on endless input with a Keras optimizer.

`python -m tests.support.endless_training MODEL_DIR STEPS` prints the global
step the checkpoint ends at, then exits. The optimizer is a fresh
`tf.keras.optimizers.legacy.Adagrad` whose `iterations` nobody set to the
global step: with `tf.estimator.MultiHead` this run never ends, since the
global step never moves and the input never runs out. The test runs it in a
process of its own, under a timeout, so that a hang fails the test instead
of stalling the suite.
"""
import sys

import tensorflow as tf

from tests import estimator_fixtures as fx


def model_fn(features, labels, mode):
  head = fx.our_multi_head()
  logits = tf.keras.layers.Dense(head.logits_dimension)(features['x'])
  optimizer = None
  if mode == tf.estimator.ModeKeys.TRAIN:
    optimizer = tf.keras.optimizers.legacy.Adagrad(fx.LEARNING_RATE)
  return head.create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      optimizer=optimizer,
      trainable_variables=tf.compat.v1.trainable_variables())


def main(model_dir, steps):
  estimator = tf.estimator.Estimator(model_fn,
                                     config=fx.run_config(model_dir))
  estimator.train(fx.train_input_fn(), steps=steps)
  print(estimator.get_variable_value('global_step'))


if __name__ == '__main__':
  main(sys.argv[1], int(sys.argv[2]))
