"""A TF 1.x canned estimator given `head=contrib.multi_head(...)`.

No `model_fn` here: a canned estimator builds the network, and the merged
head tells it what to learn. Three heads share it: whether the visitor buys
the item (`binary_classification_head`), the share of its sales that come
back (`logistic_regression_head`) and its department (`multi_class_head`),
the purchase loss weighted twice. `--estimator` picks the canned estimator:
`dnn` (`tf.estimator.DNNEstimator`), `linear` (`LinearEstimator`) or
`dnn_linear` (`DNNLinearCombinedEstimator`).

This program was written for TF 1.x. It runs on TF 2.15 with two lines
changed, and no other:

  -import tensorflow as tf
  -from tensorflow.contrib import estimator as contrib
  +import tensorflow.compat.v1 as tf
  +from tensorflow_multihead import contrib

From the repository root:

  python -m examples.tf1_canned_estimator --estimator=dnn_linear --steps=500
"""
import sys

import tensorflow.compat.v1 as tf
from tensorflow_multihead import contrib

from examples import tf1_shop as shop

ESTIMATORS = ('dnn', 'linear', 'dnn_linear')

parser = shop.argument_parser()
parser.add_argument('--estimator', default='dnn', choices=ESTIMATORS,
                    help='which canned estimator to train')

# The parsed command line, set under __main__ (as the TF 1.x tutorials did).
FLAGS = None

HEADS = ('bought', 'return_rate', 'category')
HEAD_WEIGHTS = (2., 1., 1.)


def make_head():
  return contrib.multi_head(
      [contrib.binary_classification_head(name='bought'),
       contrib.logistic_regression_head(name='return_rate'),
       contrib.multi_class_head(n_classes=3, name='category')],
      head_weights=HEAD_WEIGHTS)


def make_estimator(kind, model_dir=None):
  """The canned estimator `kind`, with the merged head."""
  columns = shop.feature_columns()
  config = tf.estimator.RunConfig(tf_random_seed=1)
  if kind == 'dnn':
    return tf.estimator.DNNEstimator(
        head=make_head(), hidden_units=[16, 16], feature_columns=columns,
        optimizer=tf.train.AdagradOptimizer(learning_rate=0.1),
        model_dir=model_dir, config=config)
  if kind == 'linear':
    return tf.estimator.LinearEstimator(
        head=make_head(), feature_columns=columns,
        optimizer=tf.train.FtrlOptimizer(learning_rate=0.1),
        model_dir=model_dir, config=config)
  return tf.estimator.DNNLinearCombinedEstimator(
      head=make_head(), linear_feature_columns=columns,
      dnn_feature_columns=columns, dnn_hidden_units=[16],
      model_dir=model_dir, config=config)


def run(steps, batch_size=32, model_dir=None, export_dir=None,
        estimator_kind='dnn'):
  """Trains, evaluates, predicts and exports; returns what each gave."""
  estimator = make_estimator(estimator_kind, model_dir)
  return shop.train_evaluate_predict_export(
      estimator, HEADS, steps, batch_size, export_dir)


def main(argv):
  del argv  # parsed by argparse before tf.app.run
  results = run(FLAGS.steps, FLAGS.batch_size, FLAGS.model_dir,
                FLAGS.export_dir, FLAGS.estimator)
  shop.print_results(results, HEADS, HEAD_WEIGHTS)


if __name__ == '__main__':
  tf.logging.set_verbosity(tf.logging.INFO)
  # Parsed here, the TF 1.x tutorials' way, and not by tf.app.run: absl
  # would hand a flag of the same name that any other imported module
  # defined (--steps, --model_dir) to that module instead of to us.
  FLAGS = parser.parse_args()
  tf.app.run(main=main, argv=sys.argv[:1])
