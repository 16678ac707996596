"""A TF 1.x custom `model_fn`: `tf.layers`, two contrib heads, `train_op_fn`.

One network reads an item's four measurements and answers two questions, each
through its own logits layer and head: the department the item is in
(`multi_class_head`) and whether the visitor buys it
(`binary_classification_head`). `multi_head` merges the heads, weighting the
purchase loss by half, and trains the merged loss with the `train_op_fn` the
`model_fn` passes it.

This program was written for TF 1.x. It runs on TF 2.15 with two lines
changed, and no other:

  -import tensorflow as tf
  -from tensorflow.contrib import estimator as contrib
  +import tensorflow.compat.v1 as tf
  +from tensorflow_multihead import contrib

From the repository root:

  python -m examples.tf1_custom_train_op_fn --steps=500
"""
import sys

import tensorflow.compat.v1 as tf
from tensorflow_multihead import contrib

from examples import tf1_shop as shop

parser = shop.argument_parser()

# The parsed command line, set under __main__ (as the TF 1.x tutorials did).
FLAGS = None

HEADS = ('category', 'bought')
HEAD_WEIGHTS = (1., 0.5)


def model_fn(features, labels, mode, params):
  """Two logits layers on shared hidden layers, merged by `multi_head`."""
  head = contrib.multi_head(
      [contrib.multi_class_head(n_classes=3, name='category'),
       contrib.binary_classification_head(name='bought')],
      head_weights=HEAD_WEIGHTS)

  net = tf.feature_column.input_layer(features, params['feature_columns'])
  for units in params['hidden_units']:
    net = tf.layers.dense(net, units=units, activation=tf.nn.relu)
  logits = {
      'category': tf.layers.dense(net, units=3, name='category_logits'),
      'bought': tf.layers.dense(net, units=1, name='bought_logits'),
  }

  def train_op_fn(loss):
    optimizer = tf.train.AdagradOptimizer(
        learning_rate=params['learning_rate'])
    return optimizer.minimize(loss, global_step=tf.train.get_global_step())

  return head.create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      train_op_fn=train_op_fn)


def run(steps, batch_size=32, model_dir=None, export_dir=None):
  """Trains, evaluates, predicts and exports; returns what each gave."""
  estimator = tf.estimator.Estimator(
      model_fn=model_fn, model_dir=model_dir,
      config=tf.estimator.RunConfig(tf_random_seed=1),
      params={'feature_columns': shop.feature_columns(),
              'hidden_units': [16, 16], 'learning_rate': 0.1})
  return shop.train_evaluate_predict_export(
      estimator, HEADS, steps, batch_size, export_dir)


def main(argv):
  del argv  # parsed by argparse before tf.app.run
  results = run(FLAGS.steps, FLAGS.batch_size, FLAGS.model_dir,
                FLAGS.export_dir)
  shop.print_results(results, HEADS, HEAD_WEIGHTS)


if __name__ == '__main__':
  tf.logging.set_verbosity(tf.logging.INFO)
  # Parsed here, the TF 1.x tutorials' way, and not by tf.app.run: absl
  # would hand a flag of the same name that any other imported module
  # defined (--steps, --model_dir) to that module instead of to us.
  FLAGS = parser.parse_args()
  tf.app.run(main=main, argv=sys.argv[:1])
