"""Heads in conflict over a shared trunk: fixed weights against aggregation.

Three heads read one small trunk (a dense layer of `TRUNK_UNITS` units, too
few for all three to have their own), each through a hidden layer of its
own. The data is generated, so every row's true value is known:

  price   regression, y = 10 tanh(x . a) + noise of sd 2: a loss 60 to 100
          times the others', whose gradient drowns theirs in a plain sum
  demand  regression, y = tanh(x . b) + 0.1 noise, with b partly opposed
          to a (their cosine is -0.6)
  churn   binary, P(churn) = sigmoid(3 tanh(x . c)), c partly opposed to a
          too (cosine -0.6; with b: 0.36)

The same network is trained, a `tf.estimator.Estimator` with Adam, under
each of these ways of training the trunk (`MultiHead`'s arguments):

  fixed          nothing: the plain sum of the losses
  pcgrad         gradient_aggregation=aggregation.PCGrad(shared_variables=T)
  mgda           gradient_aggregation=aggregation.MGDA(shared_variables=T)
  cagrad         gradient_aggregation=aggregation.CAGrad(c=0.5,
                                                         shared_variables=T)
  upgrad         gradient_aggregation=aggregation.UPGrad(shared_variables=T)
  upgrad_rep     gradient_aggregation=aggregation.UPGrad(
                     shared_representation=<the trunk's output>)
  famo           loss_weighting=weighting.FAMO()

with `T` the trunk's kernel and bias. Each head's own layers get their plain
gradient under every way.

It reports each head's error against the truth on held-out rows, as a
fraction of the truth's spread: the root mean squared difference between
the prediction (the churn probability) and the true value, over the true
values' standard deviation (0 is perfect, 1 as good as always predicting
the mean); then their mean over the heads and the worst head's. Each cell
is the mean ± sd over seeds; a seed draws the data, the initial weights and
the batch order, so one machine prints the same table for it every run.
Below the table, a verdict per way against fixed weights, computed from
the paired differences over the seeds.

From the repository root:

  python -m examples.conflicting_heads              # 5 seeds, 300 steps
  python -m examples.conflicting_heads --seeds 10 --steps 1000
  python -m examples.conflicting_heads --ways fixed,upgrad,mgda
"""
import argparse
import os
import statistics
import sys
import tempfile

# TensorFlow reads this when it loads; without it, its C++ start-up chatter
# buries the example's output.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf

from tensorflow_multihead import MultiHead
from tensorflow_multihead import aggregation
from tensorflow_multihead import weighting

from examples import seeds as over_seeds

FEATURES = 6
TRUNK_UNITS = 3
HEAD_UNITS = 8
HEAD_NAMES = ('price', 'demand', 'churn')
TRUNK_VARIABLES = ('trunk/kernel', 'trunk/bias')
TRUNK_OUTPUT = 'trunk/Tanh'
# The table's rows after the heads' own: their mean and the worst.
SUMMARY_ROWS = ('mean', 'worst')
# Each way of training the trunk, made for a seed: (gradient_aggregation,
# loss_weighting).
WAYS = {
    'fixed': lambda seed: (None, None),
    'pcgrad': lambda seed: (aggregation.PCGrad(
        seed=seed, shared_variables=TRUNK_VARIABLES), None),
    'mgda': lambda seed: (aggregation.MGDA(
        shared_variables=TRUNK_VARIABLES), None),
    'cagrad': lambda seed: (aggregation.CAGrad(
        c=0.5, shared_variables=TRUNK_VARIABLES), None),
    'upgrad': lambda seed: (aggregation.UPGrad(
        shared_variables=TRUNK_VARIABLES), None),
    'upgrad_rep': lambda seed: (aggregation.UPGrad(
        shared_representation=TRUNK_OUTPUT), None),
    'famo': lambda seed: (None, weighting.FAMO()),
}


def _unit(vector):
  vector = np.asarray(vector, np.float64)
  return vector / np.linalg.norm(vector)


# The tasks' directions (unit vectors), the same for every seed: b and c
# each partly opposed to a (cosine -0.6); b . c = 0.36.
_A = _unit([1., 0., 0., 0., 0., 0.])
_B = -0.6 * _A + 0.8 * _unit([0., 1., 0., 0., 0., 0.])
_C = -0.6 * _A + 0.8 * _unit([0., 0., 1., 0., 0., 0.])


def true_values(x):
  """`{head: the true value of each row}`: price, demand, P(churn)."""
  return {'price': 10. * np.tanh(x @ _A),
          'demand': np.tanh(x @ _B),
          'churn': 1. / (1. + np.exp(-3. * np.tanh(x @ _C)))}


def make_data(rows, seed):
  """`(features, labels, truth)` of `rows` generated rows.

  >>> features, labels, truth = make_data(4, seed=1)
  >>> features['x'].shape, sorted(labels) == sorted(truth) == sorted(HEAD_NAMES)
  ((4, 6), True)
  """
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(rows, FEATURES))
  truth = true_values(x)
  column = lambda values, dtype: values[:, np.newaxis].astype(dtype)
  labels = {
      'price': column(truth['price'] + 2. * rng.normal(size=rows),
                      np.float32),
      'demand': column(truth['demand'] + 0.1 * rng.normal(size=rows),
                       np.float32),
      'churn': column(rng.random(rows) < truth['churn'], np.int64),
  }
  return {'x': x.astype(np.float32)}, labels, truth


def make_heads():
  return [tf.estimator.RegressionHead(name='price'),
          tf.estimator.RegressionHead(name='demand'),
          tf.estimator.BinaryClassHead(name='churn')]


def model_fn(features, labels, mode, params):
  """The trunk, a hidden layer a head, their logits; Adam on the loss.

  `params`: `way` (a key of `WAYS`), `seed` and `learning_rate`.
  """
  seed = params['seed']
  gradient_aggregation, loss_weighting = WAYS[params['way']](seed)
  head = MultiHead(make_heads(), gradient_aggregation=gradient_aggregation,
                   loss_weighting=loss_weighting)
  # Seeded initializers: the layers' default ones ignore the graph's seed.
  initializer = tf.compat.v1.initializers.glorot_uniform
  trunk = tf.compat.v1.layers.dense(
      features['x'], TRUNK_UNITS, tf.tanh, name='trunk',
      kernel_initializer=initializer(seed=seed))
  logits = {}
  for index, name in enumerate(HEAD_NAMES):
    hidden = tf.compat.v1.layers.dense(
        trunk, HEAD_UNITS, tf.nn.relu, name=f'{name}/hidden',
        kernel_initializer=initializer(seed=seed + 1 + 2 * index))
    logits[name] = tf.compat.v1.layers.dense(
        hidden, 1, name=f'{name}/logit',
        kernel_initializer=initializer(seed=seed + 2 + 2 * index))
  optimizer = None
  if mode == tf.estimator.ModeKeys.TRAIN:
    optimizer = tf.keras.optimizers.legacy.Adam(params['learning_rate'])
  return head.create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      optimizer=optimizer,
      trainable_variables=tf.compat.v1.trainable_variables())


def relative_errors(predictions, truth):
  """`{head: RMS(prediction - truth) / sd(truth)}`, then mean and worst.

  >>> truth = {'price': np.array([0., 2.]), 'demand': np.array([1., -1.]),
  ...          'churn': np.array([.2, .4])}
  >>> errors = relative_errors({'price': np.array([1., 3.]),
  ...                           'demand': np.array([1., -1.]),
  ...                           'churn': np.array([.3, .3])}, truth)
  >>> {key: round(value, 3) for key, value in errors.items()}
  {'price': 1.0, 'demand': 0.0, 'churn': 1.0, 'mean': 0.667, 'worst': 1.0}
  """
  errors = {name: float(np.sqrt(np.mean(np.square(
      predictions[name] - truth[name]))) / np.std(truth[name]))
            for name in HEAD_NAMES}
  errors['mean'] = statistics.fmean(errors[name] for name in HEAD_NAMES)
  errors['worst'] = max(errors[name] for name in HEAD_NAMES)
  return errors


def _input_fn(features, labels, batch_size, seed=None):
  """Batches of the rows; shuffled and repeated with a `seed`."""
  def input_fn():
    dataset = tf.data.Dataset.from_tensor_slices(
        features if labels is None else (features, labels))
    if seed is not None:
      dataset = dataset.shuffle(len(features['x']), seed=seed).repeat()
    return dataset.batch(batch_size)
  return input_fn


def _predicted_values(estimator, features):
  """`{head: the predicted value of each row}` (churn: its probability)."""
  batches = estimator.predict(_input_fn(features, None, len(features['x'])),
                              yield_single_examples=False)
  predictions = next(iter(batches))
  return {'price': predictions['price', 'predictions'][:, 0],
          'demand': predictions['demand', 'predictions'][:, 0],
          'churn': predictions['churn', 'logistic'][:, 0]}


def train_and_score(way, seed, args, model_dir):
  """Trains under `way` on seed `seed`'s data; returns `relative_errors`."""
  features, labels, _ = make_data(args.train_rows, 2 * seed + 1)
  test_features, _, test_truth = make_data(args.test_rows, 2 * seed + 2)
  config = tf.estimator.RunConfig(model_dir=model_dir, tf_random_seed=seed,
                                  log_step_count_steps=args.steps + 1)
  estimator = tf.estimator.Estimator(
      model_fn, config=config,
      params={'way': way, 'seed': seed, 'learning_rate': args.learning_rate})
  estimator.train(_input_fn(features, labels, args.batch_size, seed=seed),
                  steps=args.steps)
  return relative_errors(_predicted_values(estimator, test_features),
                         test_truth)


def run_seeds(args, model_dir=None):
  """`{seed: {way: errors}}` over seeds `0 .. args.seeds - 1`."""
  with tempfile.TemporaryDirectory() as scratch:
    root = model_dir or scratch
    by_seed = {}
    for seed in range(args.seeds):
      print(f'[conflicting_heads] seed {seed}: training {", ".join(args.ways)}'
            f', {args.steps} steps each', flush=True)
      by_seed[seed] = {way: train_and_score(
          way, seed, args, os.path.join(root, f'seed_{seed}', way))
                       for way in args.ways}
  return by_seed


def format_table(by_seed):
  """A row per head (then mean and worst), a column per way: mean ± sd.

  >>> print(format_table({0: {'fixed': {'price': 0.5}, 'mgda': {'price': 1.}},
  ...                     1: {'fixed': {'price': 0.7}, 'mgda': {'price': 1.}}}))
  error / sd(truth), 2 seeds          fixed           mgda
  price                       0.600 ± 0.141  1.000 ± 0.000
  """
  runs = list(by_seed.values())
  ways = list(runs[0])
  rows = list(runs[0][ways[0]])
  header = [f'error / sd(truth), {len(runs)} seeds'] + ways
  lines = [[row] + ['{:.3f} ± {:.3f}'.format(*over_seeds.mean_sd(
      run[way][row] for run in runs)) for way in ways] for row in rows]
  widths = [max(len(line[index]) for line in [header] + lines)
            for index in range(len(header))]
  return '\n'.join(
      '  '.join(cell.ljust(width) if index == 0 else cell.rjust(width)
                for index, (cell, width) in enumerate(zip(line, widths)))
      for line in [header] + lines)


def compare(by_seed, way, row, baseline='fixed'):
  """'better', 'worse' or 'same': `way`'s error on `row` against `baseline`.

  Better (worse) when the mean of the paired differences, seed by seed, is
  lower (higher) than 0 by more than twice its standard error; with one seed
  the difference alone decides.
  """
  differences = [run[way][row] - run[baseline][row]
                 for run in by_seed.values()]
  mean, sd = over_seeds.mean_sd(differences)
  margin = 2. * sd / len(differences)**0.5
  if mean < -margin:
    return 'better'
  if mean > margin:
    return 'worse'
  return 'same'


def verdicts(by_seed, baseline='fixed'):
  """A plain-words verdict a way, against `baseline`, from the numbers.

  A way helps when its mean error over the heads is clearly lower than the
  baseline's and its worst head's is not clearly higher; otherwise it does
  not help. The heads it is clearly better or worse on follow.

  >>> by_seed = {seed: {'fixed': {'price': .2, 'mean': .5, 'worst': .9},
  ...                   'mgda': {'price': .4 + seed / 100, 'mean': .6,
  ...                            'worst': .6}}
  ...            for seed in range(3)}
  >>> print(verdicts(by_seed))  # doctest: +NORMALIZE_WHITESPACE
  mgda does not help: mean error 0.600 against 0.500 with fixed,
  worst head 0.600 against 0.900; worse on price
  """
  runs = list(by_seed.values())
  heads = [row for row in runs[0][baseline] if row not in SUMMARY_ROWS]
  lines = []
  for way in runs[0]:
    if way == baseline:
      continue
    helps = (compare(by_seed, way, 'mean', baseline) == 'better' and
             compare(by_seed, way, 'worst', baseline) != 'worse')
    figures = {row: [statistics.fmean(run[name][row] for run in runs)
                     for name in (way, baseline)]
               for row in SUMMARY_ROWS}
    line = (f'{way} {"helps" if helps else "does not help"}: mean error '
            f'{figures["mean"][0]:.3f} against {figures["mean"][1]:.3f} with '
            f'{baseline}, worst head {figures["worst"][0]:.3f} against '
            f'{figures["worst"][1]:.3f}')
    for kind in ('better', 'worse'):
      named = [head for head in heads
               if compare(by_seed, way, head, baseline) == kind]
      if named:
        line += f'; {kind} on {", ".join(named)}'
    lines.append(line)
  return '\n'.join(lines)


def parse_args(argv):
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n', maxsplit=1)[0])
  parser.add_argument('--seeds', type=int, default=5,
                      help='Train with seeds 0 to SEEDS-1.')
  parser.add_argument('--steps', type=int, default=300,
                      help='Training steps under each way.')
  parser.add_argument('--ways', default=','.join(WAYS),
                      help='The comma-separated ways to compare, of '
                      f'{",".join(WAYS)} (default: all; fixed is needed).')
  parser.add_argument('--train_rows', type=int, default=2048)
  parser.add_argument('--test_rows', type=int, default=4096)
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--learning_rate', type=float, default=0.01)
  parser.add_argument('--model_dir', default=None,
                      help='Checkpoint directory; a temporary one if unset.')
  args = parser.parse_args(argv)
  if args.seeds < 1 or args.steps < 1:
    parser.error('--seeds and --steps must be positive')
  args.ways = tuple(way.strip() for way in args.ways.split(',')
                    if way.strip())
  unknown = [way for way in args.ways if way not in WAYS]
  if unknown or 'fixed' not in args.ways:
    parser.error(f'--ways: unknown {unknown}, or no fixed; choose from '
                 f'{",".join(WAYS)}')
  return args


def main(argv):
  """Runs the example; returns `{seed: {way: errors}}`."""
  args = parse_args(argv)
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
  by_seed = run_seeds(args, args.model_dir)
  print(format_table(by_seed))
  print()
  print(verdicts(by_seed))
  return by_seed


if __name__ == '__main__':
  main(sys.argv[1:])
