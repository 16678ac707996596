"""Fixed loss weights against learned ones, on one three-headed model.

The same network (one shared hidden layer, one linear output per head) is
trained six times on the same generated data, its heads' losses merged by
`tensorflow_multihead.MultiHead`:

  fixed         head_weights=[1, 1, 1]
  uncertainty   loss_weighting=weighting.Uncertainty()
  dwa           loss_weighting=weighting.DynamicWeightAverage(window=...)
  gradnorm      loss_weighting=weighting.GradNorm(shared_variables=...)
  random        loss_weighting=weighting.RandomLossWeighting(seed=...)
  famo          loss_weighting=weighting.FAMO()

The data has three tasks of very different scales, so that equal weights
let one loss drown the others:

  demand   regression, labels of unit scale, little noise
  price    regression, labels ten times larger, noisy
  churn    binary classification

From the repository root:

  python -m examples.learned_weights               # 600 steps each, seed 0
  python -m examples.learned_weights --seeds=5     # mean +- sd, seeds 0-4
  python -m examples.learned_weights --steps=2000 --model_dir=/tmp/weights

It prints, for each head, its held-out metrics and final loss weight under
each weighting, side by side. A seed fixes the data drawn, the initial
weights and the order of the batches, so one machine prints the same table
for it every run. With `--seeds=N` each cell is the mean +- the (sample)
standard deviation over seeds 0 to N-1, and below the table, for each
metric, which weightings did better or worse than fixed weights: by more
than twice the standard error of their difference over the same seeds.
"""
import argparse
import os
import statistics
import tempfile

# TensorFlow reads this when it loads; without it, its C++ start-up chatter
# buries the example's own output.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf

from tensorflow_multihead import MultiHead
from tensorflow_multihead import weighting

from examples import seeds as over_seeds

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
# Whether a metric is better higher (else lower).
HIGHER_IS_BETTER = {'average_loss': False, 'accuracy': True, 'auc': True}
# Each weighting, made for a seed.
WEIGHTINGS = {
    'fixed': lambda seed: None,
    'uncertainty': lambda seed: weighting.Uncertainty(),
    'dwa': lambda seed: weighting.DynamicWeightAverage(
        temperature=2., window=STEPS_PER_EPOCH),
    'gradnorm': lambda seed: weighting.GradNorm(
        alpha=1.5, shared_variables=[SHARED_KERNEL], learning_rate=0.001),
    'random': lambda seed: weighting.RandomLossWeighting(seed=seed),
    'famo': lambda seed: weighting.FAMO(),
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
  """A shared hidden layer, then the heads' logits.

  `params`: `weighting` (a key of `WEIGHTINGS`) and `seed`.
  """
  seed = params['seed']
  head = MultiHead(make_heads(),
                   loss_weighting=WEIGHTINGS[params['weighting']](seed))
  # Initializers seeded here: unseeded, they draw differently every run.
  hidden = tf.compat.v1.layers.dense(
      features['x'], HIDDEN_UNITS, tf.nn.relu, name='shared',
      kernel_initializer=tf.compat.v1.glorot_uniform_initializer(seed=seed))
  logits = tf.compat.v1.layers.dense(
      hidden, head.logits_dimension, name='logits',
      kernel_initializer=tf.compat.v1.glorot_uniform_initializer(
          seed=seed + 1))
  optimizer = None
  if mode == tf.estimator.ModeKeys.TRAIN:
    optimizer = tf.keras.optimizers.legacy.Adam(LEARNING_RATE)
  return head.create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      optimizer=optimizer,
      trainable_variables=tf.compat.v1.trainable_variables())


def _input_fn(data, batch_size, shuffle_seed=None):
  """Batches of `data`; shuffled and repeated with a `shuffle_seed`."""
  def input_fn():
    dataset = tf.data.Dataset.from_tensor_slices(data)
    if shuffle_seed is not None:
      dataset = dataset.shuffle(TRAIN_ROWS, seed=shuffle_seed).repeat()
    return dataset.batch(batch_size)
  return input_fn


def train_and_evaluate(name, steps, model_dir, seed=0):
  """Trains under weighting `name`; returns `{head: {metric: value}}`.

  Each head's entries hold `TABLE_METRICS` on the held-out rows and its
  `loss_weight`: the learned one (EVAL's `loss_weight/<head>`), or 1.
  """
  config = tf.estimator.RunConfig(model_dir=model_dir, tf_random_seed=seed,
                                  log_step_count_steps=steps + 1)
  estimator = tf.estimator.Estimator(
      model_fn, config=config, params={'weighting': name, 'seed': seed})
  # Seeds apart for the two splits (the tasks are the same).
  estimator.train(_input_fn(make_data(TRAIN_ROWS, 2 * seed + 1), BATCH_SIZE,
                            shuffle_seed=seed), steps=steps)
  results = estimator.evaluate(_input_fn(make_data(TEST_ROWS, 2 * seed + 2),
                                         TEST_ROWS))
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
  rows = [[head, metric] + [_cell(results[name][head][metric])
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


def _cell(value):
  """A number with 4 decimals, or text (such as 'mean ± sd') as it is."""
  return value if isinstance(value, str) else f'{value:.4f}'


def run(steps=600, model_dir=None, weightings=tuple(WEIGHTINGS), seed=0):
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
      print(f'[learned_weights] {name}: training {steps} steps, seed {seed}',
            flush=True)
      results[name] = train_and_evaluate(name, steps,
                                         os.path.join(root, name), seed)
  return results, format_table(results)


def run_seeds(seeds, steps=600, model_dir=None, weightings=tuple(WEIGHTINGS)):
  """`run` for each of `seeds`; returns `({seed: results}, table)`.

  Seed `s` trains in `model_dir/seed_<s>/<name>`; the table shows the mean
  +- standard deviation of each cell over the seeds, then `verdicts`.
  """
  by_seed = {}
  for seed in seeds:
    by_seed[seed], _ = run(steps, model_dir and os.path.join(
        model_dir, f'seed_{seed}'), weightings, seed)
  return by_seed, '\n\n'.join([format_table(summarize(by_seed)),
                               verdicts(by_seed)])


def summarize(by_seed):
  """`{seed: results}` -> `{weighting: {head: {metric: 'mean ± sd'}}}`.

  >>> summarize({0: {'fixed': {'demand': {'auc': 0.5}}},
  ...            1: {'fixed': {'demand': {'auc': 0.7}}}})
  {'fixed': {'demand': {'auc': '0.600 ± 0.141'}}}
  """
  return over_seeds.summarize(by_seed, digits=3)


def verdicts(by_seed, baseline='fixed'):
  """Which weightings beat `baseline` on which metric, over paired seeds.

  A weighting is better (worse) on a metric if its mean difference to the
  baseline, seed by seed, is better (worse) by more than twice its standard
  error; otherwise it does not differ clearly.

  >>> print(verdicts({seed: {'fixed': {'demand': {'auc': 0.5}},
  ...                        'famo': {'demand': {'auc': 0.6 + seed / 100}}}
  ...                 for seed in range(3)}))
  demand auc: better than fixed: famo
  """
  first = next(iter(by_seed.values()))
  lines = []
  for head, metrics in first[baseline].items():
    for metric in metrics:
      if metric not in HIGHER_IS_BETTER:
        continue
      found = {'better': [], 'worse': [], 'not clearly different': []}
      for name in first:
        if name != baseline:
          found[_compare(by_seed, name, baseline, head, metric)].append(name)
      parts = [f'{kind} than {baseline}: {", ".join(names)}'
               if kind != 'not clearly different' else
               f'{kind}: {", ".join(names)}'
               for kind, names in found.items() if names]
      lines.append(f'{head} {metric}: ' + '; '.join(parts))
  return '\n'.join(lines)


def _compare(by_seed, name, baseline, head, metric):
  differences = [results[name][head][metric] - results[baseline][head][metric]
                 for results in by_seed.values()]
  if not HIGHER_IS_BETTER[metric]:
    differences = [-difference for difference in differences]
  mean = statistics.fmean(differences)
  error = statistics.stdev(differences) / len(differences)**0.5
  if mean > 2 * error:
    return 'better'
  if mean < -2 * error:
    return 'worse'
  return 'not clearly different'


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=600,
                      help='Training steps under each weighting.')
  parser.add_argument('--seed', type=int, default=0,
                      help='The seed of the data, initial weights and batch '
                      'order (without --seeds).')
  parser.add_argument('--seeds', type=int, default=None,
                      help='Train with seeds 0 to SEEDS-1 and print the mean '
                      '+- sd of each figure (at least 2).')
  parser.add_argument('--weightings', default=','.join(WEIGHTINGS),
                      help='The comma-separated weightings to compare, of '
                      f'{",".join(WEIGHTINGS)} (default: all).')
  parser.add_argument('--model_dir', help='Where to keep the checkpoints '
                      '(a subdirectory a weighting); default: temporary.')
  args = parser.parse_args(argv)
  if args.steps < 1:
    parser.error('--steps must be positive')
  if args.seeds is not None and args.seeds < 2:
    parser.error('--seeds must be at least 2, for a standard deviation')
  weightings = tuple(name.strip() for name in args.weightings.split(',')
                     if name.strip())
  unknown = [name for name in weightings if name not in WEIGHTINGS]
  if unknown or not weightings:
    parser.error(f'unknown --weightings {unknown}; choose from '
                 f'{",".join(WEIGHTINGS)}')
  if args.seeds is not None and 'fixed' not in weightings:
    parser.error('--seeds compares with fixed weights: include fixed')
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
  if args.seeds is None:
    _, table = run(args.steps, args.model_dir, weightings, args.seed)
  else:
    _, table = run_seeds(range(args.seeds), args.steps, args.model_dir,
                         weightings)
  print(table)


if __name__ == '__main__':
  main()
