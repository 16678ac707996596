"""Fixed loss weights against learned ones, on one three-headed model.

The same network (one shared hidden layer, one linear output per head) is
trained four times on the same generated data, its heads' losses merged by
`tensorflow_multihead.MultiHead`:

  fixed         head_weights=[1, 1, 1]
  uncertainty   loss_weighting=weighting.Uncertainty()
  dwa           loss_weighting=weighting.DynamicWeightAverage(window=...)
  gradnorm      loss_weighting=weighting.GradNorm(shared_variables=...)

The data has three tasks of very different scales, so that equal weights
let one loss drown the others:

  demand   regression, labels of unit scale, little noise
  price    regression, labels ten times larger, noisy
  churn    binary classification

From the repository root:

  python -m examples.learned_weights               # 600 steps each
  python -m examples.learned_weights --steps=2000 --model_dir=/tmp/weights

It prints, for each head, its held-out metrics and final loss weight under
each weighting, side by side.
"""
import argparse
import os
import tempfile

# TensorFlow reads this when it loads; without it, its C++ start-up chatter
# buries the example's own output.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf

from tensorflow_multihead import MultiHead
from tensorflow_multihead import weighting

FEATURES = 6
HIDDEN_UNITS = 16
TRAIN_ROWS = 1024
TEST_ROWS = 512
BATCH_SIZE = 64
STEPS_PER_EPOCH = TRAIN_ROWS // BATCH_SIZE
LEARNING_RATE = 0.01
HEAD_NAMES = ('demand', 'price', 'churn')
SHARED_KERNEL = 'shared/kernel'
# The rows of the table: each head's metrics, then its final loss weight.
TABLE_METRICS = {
    'demand': ('average_loss',),
    'price': ('average_loss',),
    'churn': ('average_loss', 'accuracy', 'auc'),
}
WEIGHTINGS = {
    'fixed': lambda: None,
    'uncertainty': weighting.Uncertainty,
    'dwa': lambda: weighting.DynamicWeightAverage(
        temperature=2., window=STEPS_PER_EPOCH),
    'gradnorm': lambda: weighting.GradNorm(
        alpha=1.5, shared_variables=[SHARED_KERNEL], learning_rate=0.001),
}


def make_data(rows, seed):
  """Generates `(features, labels)` of `rows` rows; the tasks are fixed.

  >>> features, labels = make_data(4, seed=1)
  >>> features['x'].shape, sorted(labels)
  ((4, 6), ['churn', 'demand', 'price'])
  """
  tasks = np.random.RandomState(0)  # The same tasks for every split.
  demand_coefficients = tasks.normal(size=(FEATURES, 1))
  price_coefficients = tasks.normal(size=(FEATURES, 1))
  churn_coefficients = tasks.normal(size=(FEATURES, 1))
  rng = np.random.RandomState(seed)
  x = rng.normal(size=(rows, FEATURES))
  churn_logits = 2. * np.tanh(x @ churn_coefficients)
  labels = {
      'demand': x @ demand_coefficients + 0.1 * rng.normal(size=(rows, 1)),
      'price': 10. * np.tanh(x @ price_coefficients) +
               3. * rng.normal(size=(rows, 1)),
      'churn': (rng.uniform(size=(rows, 1)) <
                1. / (1. + np.exp(-churn_logits))).astype(np.int64),
  }
  labels = {name: value.astype(np.float32) if value.dtype == np.float64
            else value for name, value in labels.items()}
  return {'x': x.astype(np.float32)}, labels


def make_heads():
  return [tf.estimator.RegressionHead(name='demand'),
          tf.estimator.RegressionHead(name='price'),
          tf.estimator.BinaryClassHead(name='churn')]


def model_fn(features, labels, mode, params):
  """A shared hidden layer, then the heads' logits; `params['weighting']`."""
  head = MultiHead(make_heads(),
                   loss_weighting=WEIGHTINGS[params['weighting']]())
  hidden = tf.compat.v1.layers.dense(features['x'], HIDDEN_UNITS, tf.nn.relu,
                                     name='shared')
  logits = tf.compat.v1.layers.dense(hidden, head.logits_dimension,
                                     name='logits')
  optimizer = None
  if mode == tf.estimator.ModeKeys.TRAIN:
    optimizer = tf.keras.optimizers.legacy.Adam(LEARNING_RATE)
    optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()
  return head.create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      optimizer=optimizer,
      trainable_variables=tf.compat.v1.trainable_variables())


def _input_fn(data, batch_size, repeat):
  def input_fn():
    dataset = tf.data.Dataset.from_tensor_slices(data)
    if repeat:
      dataset = dataset.shuffle(TRAIN_ROWS, seed=0).repeat()
    return dataset.batch(batch_size)
  return input_fn


def train_and_evaluate(name, steps, model_dir, seed=0):
  """Trains under weighting `name`; returns `{head: {metric: value}}`.

  Each head's entries hold `TABLE_METRICS` on the held-out rows and its
  `loss_weight`: the learned one (EVAL's `loss_weight/<head>`), or 1.
  """
  config = tf.estimator.RunConfig(model_dir=model_dir, tf_random_seed=seed,
                                  log_step_count_steps=steps + 1)
  estimator = tf.estimator.Estimator(model_fn, config=config,
                                     params={'weighting': name})
  estimator.train(_input_fn(make_data(TRAIN_ROWS, seed + 1), BATCH_SIZE,
                            repeat=True), steps=steps)
  results = estimator.evaluate(_input_fn(make_data(TEST_ROWS, seed + 2),
                                         TEST_ROWS, repeat=False))
  return {
      head: dict({metric: float(results[f'{metric}/{head}'])
                  for metric in TABLE_METRICS[head]},
                 loss_weight=float(results.get(f'loss_weight/{head}', 1.)))
      for head in HEAD_NAMES}


def format_table(results):
  """Renders `{weighting: {head: {metric: value}}}`, a column a weighting.

  >>> print(format_table({'fixed': {'demand': {'loss_weight': 1.}},
  ...                     'gradnorm': {'demand': {'loss_weight': 0.25}}}))
  head    metric          fixed  gradnorm
  demand  loss_weight    1.0000    0.2500
  """
  names = list(results)
  first = results[names[0]]
  header = ['head', 'metric'] + names
  rows = [[head, metric] + [f'{results[name][head][metric]:.4f}'
                            for name in names]
          for head in first for metric in first[head]]
  widths = [max(len(row[index]) for row in [header] + rows)
            for index in range(len(header))]
  lines = []
  for row in [header] + rows:
    cells = [cell.ljust(width) if index < 2 else cell.rjust(width)
             for index, (cell, width) in enumerate(zip(row, widths))]
    lines.append('  '.join(cells))
  return '\n'.join(lines)


def run(steps=600, model_dir=None, weightings=tuple(WEIGHTINGS)):
  """Trains and evaluates under each weighting; returns results and table.

  Each weighting trains in `model_dir/<name>` (a temporary directory, removed
  at the end, if `model_dir` is `None`).

  Returns:
    `(results, table)`: `{weighting: {head: {metric: value}}}` and its text.
  """
  with tempfile.TemporaryDirectory() as scratch:
    root = model_dir or scratch
    results = {}
    for name in weightings:
      print(f'[learned_weights] {name}: training {steps} steps', flush=True)
      results[name] = train_and_evaluate(name, steps,
                                         os.path.join(root, name))
  return results, format_table(results)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=600,
                      help='Training steps under each weighting.')
  parser.add_argument('--model_dir', help='Where to keep the checkpoints '
                      '(a subdirectory a weighting); default: temporary.')
  args = parser.parse_args(argv)
  if args.steps < 1:
    parser.error('--steps must be positive')
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
  _, table = run(args.steps, args.model_dir)
  print(table)


if __name__ == '__main__':
  main()
