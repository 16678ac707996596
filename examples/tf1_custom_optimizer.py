"""A TF 1.x custom `model_fn` whose merged head trains with `optimizer=`.

One network reads an item's four measurements and makes three predictions
through one logits layer, which `multi_head` splits among its heads: the
revenue of a sale (`regression_head`), the tags that apply to the item
(`multi_label_head`) and the units it sold (`poisson_regression_head`). The
`model_fn` hands the head a TF 1.x optimizer, which minimizes the weighted
sum of the heads' losses plus the layers' L2 regularization losses.

This program was written for TF 1.x. It runs on TF 2.15 with two lines
changed, and no other:

  -import tensorflow as tf
  -from tensorflow.contrib import estimator as contrib
  +import tensorflow.compat.v1 as tf
  +from tensorflow_multihead import contrib

From the repository root:

  python -m examples.tf1_custom_optimizer --steps=500
"""
import sys

import tensorflow.compat.v1 as tf
from tensorflow_multihead import contrib

from examples import tf1_shop as shop

parser = shop.argument_parser()

# The parsed command line, set under __main__ (as the TF 1.x tutorials did).
FLAGS = None

HEADS = ('revenue', 'tags', 'units_sold')
HEAD_WEIGHTS = (1., 2., 0.5)


def model_fn(features, labels, mode, params):
  """One logits layer of `head.logits_dimension` units, split by the head."""
  head = contrib.multi_head(
      [contrib.regression_head(name='revenue'),
       contrib.multi_label_head(n_classes=len(shop.TAGS),
                                label_vocabulary=list(shop.TAGS),
                                thresholds=[0.5],
                                classes_for_class_based_metrics=['gift'],
                                name='tags'),
       contrib.poisson_regression_head(name='units_sold')],
      head_weights=HEAD_WEIGHTS)

  regularizer = tf.keras.regularizers.l2(params['l2'])
  net = tf.feature_column.input_layer(features, params['feature_columns'])
  for units in params['hidden_units']:
    net = tf.layers.dense(net, units=units, activation=tf.nn.relu,
                          kernel_regularizer=regularizer)
  logits = tf.layers.dense(net, units=head.logits_dimension,
                           kernel_regularizer=regularizer)

  return head.create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      optimizer=tf.train.AdagradOptimizer(
          learning_rate=params['learning_rate']),
      regularization_losses=tf.losses.get_regularization_losses())


def run(steps, batch_size=32, model_dir=None, export_dir=None):
  """Trains, evaluates, predicts and exports; returns what each gave."""
  estimator = tf.estimator.Estimator(
      model_fn=model_fn, model_dir=model_dir,
      config=tf.estimator.RunConfig(tf_random_seed=1),
      params={'feature_columns': shop.feature_columns(),
              'hidden_units': [16], 'learning_rate': 0.1, 'l2': 1e-3})
  return shop.train_evaluate_predict_export(
      estimator, HEADS, steps, batch_size, export_dir)


def main(argv):
  del argv  # parsed by argparse before tf.app.run
  results = run(FLAGS.steps, FLAGS.batch_size, FLAGS.model_dir,
                FLAGS.export_dir)
  shop.print_results(
      results, HEADS, HEAD_WEIGHTS,
      extra_loss_keys=['regularization_loss/revenue_tags_units_sold'])


if __name__ == '__main__':
  tf.logging.set_verbosity(tf.logging.INFO)
  # Parsed here, the TF 1.x tutorials' way, and not by tf.app.run: absl
  # would hand a flag of the same name that any other imported module
  # defined (--steps, --model_dir) to that module instead of to us.
  FLAGS = parser.parse_args()
  tf.app.run(main=main, argv=sys.argv[:1])
