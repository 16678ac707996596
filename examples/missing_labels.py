"""Click and conversion, when conversions are known only after a click.

An ad is shown; the user clicks it or not; only a user who clicked can
convert, so the conversion label exists on clicked rows only. One network
learns both with a `MultiHead`, in two ways:

  naive       the missing conversion labels are written as 0 ("did not
              convert"), so the conversion head learns P(click and convert)
  MaskedHead  they are written as -1, and `MaskedHead(..., missing_label=-1)`
              leaves those rows out of the conversion loss and metrics, so
              the head learns P(convert | click), what the bid needs

The data is generated (a click and a conversion model with known formulas),
so nothing is downloaded. From the repository root:

  python -m examples.missing_labels             # under a minute, seed 0
  python -m examples.missing_labels --seeds 5   # mean +- sd, seeds 0-4
  python -m examples.missing_labels --steps 2000

It trains both models, then prints each head's held-out metrics: as each
model reports them, and both models' conversion metrics on the clicked rows
alone, read with a `MaskedHead` from the same checkpoints. A seed fixes the
data, the initial weights and the order of the batches, so one machine
prints the same table for it every run; with `--seeds N` each cell is the
mean +- the (sample) standard deviation over seeds 0 to N-1.
"""
import argparse
import os
import sys
import tempfile

# TensorFlow reads this when it loads; without it, its C++ start-up chatter
# buries the example's output.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf

from tensorflow_multihead import MaskedHead
from tensorflow_multihead import MultiHead

from examples import seeds as over_seeds

N_FEATURES = 4
NOT_CLICKED = -1
WAYS = ('naive', 'masked')
COLUMN_TITLES = {'naive': 'naive (no click = 0)',
                 'masked': 'MaskedHead (no click = -1)'}
CLICK_METRICS = ('auc', 'average_loss', 'label/mean')
CONVERSION_METRICS = ('auc', 'average_loss', 'accuracy', 'prediction/mean',
                      'label/mean')


def _sigmoid(values):
  return 1. / (1. + np.exp(-values))


def make_data(rows, seed):
  """Returns features `x` and labels `click`, `conversion` (-1: no click).

  A click is likelier for a relevant ad (x0) in a high slot (x1); a
  conversion for a cheap product (x2) that users of this kind like (x3).
  A high slot also draws clicks from users who will not buy: x1 lowers the
  conversion rate of the clicks it brings.
  """
  rng = np.random.default_rng(seed)
  x = rng.normal(size=[rows, N_FEATURES]).astype(np.float32)
  clicks = rng.random(rows) < _sigmoid(1.5 * x[:, 0] + x[:, 1] - 1.)
  converts = rng.random(rows) < _sigmoid(
      -1.5 * x[:, 2] + x[:, 3] - 1.2 * x[:, 1] + 0.5)
  conversion = np.where(clicks, converts, NOT_CLICKED)
  return {'x': x}, {'click': clicks[:, np.newaxis].astype(np.int64),
                    'conversion': conversion[:, np.newaxis].astype(np.int64)}


def naive_labels(labels):
  """The naive way: a missing conversion label becomes a 0."""
  return dict(labels, conversion=np.maximum(labels['conversion'], 0))


def make_head(way):
  click = tf.estimator.BinaryClassHead(name='click')
  conversion = tf.estimator.BinaryClassHead(name='conversion')
  if way == 'masked':
    conversion = MaskedHead(conversion, missing_label=NOT_CLICKED)
  return MultiHead([click, conversion])


def model_fn(features, labels, mode, params):
  """One hidden layer shared by both heads; Adagrad on the summed loss."""
  head = make_head(params['way'])
  # Initializers seeded here: unseeded, Keras draws differently every run.
  seed = params['seed']
  hidden = tf.keras.layers.Dense(
      16, tf.nn.relu, kernel_initializer=tf.keras.initializers.GlorotUniform(
          seed=seed))(features['x'])
  logits = tf.keras.layers.Dense(
      head.logits_dimension,
      kernel_initializer=tf.keras.initializers.GlorotUniform(
          seed=seed + 1))(hidden)
  optimizer = tf.keras.optimizers.legacy.Adagrad(params['learning_rate'])
  return head.create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      optimizer=optimizer,
      trainable_variables=tf.compat.v1.trainable_variables())


def _input_fn(data, batch_size, shuffle_seed=None):
  """Batches of `data`; shuffled and repeated with a `shuffle_seed`."""
  dataset = tf.data.Dataset.from_tensor_slices(data)
  if shuffle_seed is not None:
    dataset = dataset.shuffle(1000, seed=shuffle_seed).repeat()
  return dataset.batch(batch_size)


def _estimator(way, model_dir, learning_rate, seed):
  return tf.estimator.Estimator(
      model_fn=model_fn, model_dir=os.path.join(model_dir, way),
      params={'way': way, 'learning_rate': learning_rate, 'seed': seed},
      config=tf.estimator.RunConfig(tf_random_seed=seed))


def run(steps, model_dir, batch_size=64, learning_rate=0.1, seed=0,
        train_rows=4000, test_rows=2000):
  """Trains both ways; returns their held-out metrics.

  Returns:
    `{way: {'reported': metrics, 'clicked': metrics}}`: the metrics each
    model reports on its own held-out labels, and those of its checkpoint
    read through the `MaskedHead`, whose conversion metrics cover the
    clicked rows alone.
  """
  # Seeds apart for the two splits, and for each seed's.
  features, labels = make_data(train_rows, 2 * seed)
  test_features, test_labels = make_data(test_rows, 2 * seed + 1)
  own_labels = {'naive': naive_labels, 'masked': lambda labels: labels}
  results = {}
  for way in WAYS:
    estimator = _estimator(way, model_dir, learning_rate, seed)
    estimator.train(lambda: _input_fn(  # pylint: disable=cell-var-from-loop
        (features, own_labels[way](labels)), batch_size, shuffle_seed=seed),
                    steps=steps)
    reported = estimator.evaluate(lambda: _input_fn(  # pylint: disable=cell-var-from-loop
        (test_features, own_labels[way](test_labels)), batch_size))
    # The heads own no variables: any head reads any checkpoint.
    reader = tf.estimator.Estimator(
        model_fn=model_fn, model_dir=estimator.model_dir,
        params={'way': 'masked', 'learning_rate': learning_rate,
                'seed': seed})
    clicked = reader.evaluate(
        lambda: _input_fn((test_features, test_labels), batch_size))
    results[way] = {'reported': reported, 'clicked': clicked}
  return results


def run_seeds(seeds, steps, model_dir, batch_size=64, learning_rate=0.1):
  """`run` for each of `seeds` (in `model_dir/seed_<s>`); `{seed: results}`."""
  return {seed: run(steps, os.path.join(model_dir, f'seed_{seed}'),
                    batch_size, learning_rate, seed) for seed in seeds}


def summarize(by_seed):
  """`{seed: results}` -> the results' shape, each value `'mean ± sd'`.

  >>> summarize({0: {'naive': {'reported': {'auc/click': 0.8}}},
  ...            1: {'naive': {'reported': {'auc/click': 0.9}}}})
  {'naive': {'reported': {'auc/click': '0.8500 ± 0.0707'}}}
  """
  return over_seeds.summarize(by_seed, digits=4)


def _cell(value):
  return f'{value:>28}' if isinstance(value, str) else f'{value:28.4f}'


def report(results):
  """The results as a table: one row per head and metric, one column a way.

  A value is a number, or text such as `summarize`'s `'mean ± sd'`.
  """
  lines = [f'{"":36}' + ''.join(f'{COLUMN_TITLES[way]:>28}' for way in WAYS)]

  def section(title, source, head, metrics):
    lines.append(title)
    for metric in metrics:
      key = f'{metric}/{head}'
      lines.append(f'  {key:34}' + ''.join(
          _cell(results[way][source][key]) for way in WAYS))

  section('click, all rows:', 'reported', 'click', CLICK_METRICS)
  section('conversion, as each model reports it:', 'reported', 'conversion',
          CONVERSION_METRICS)
  section('conversion, on the clicked rows only:', 'clicked', 'conversion',
          CONVERSION_METRICS)
  return '\n'.join(lines)


def main(argv):
  """Runs the example with command-line arguments; returns its results."""
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n', maxsplit=1)[0])
  parser.add_argument('--steps', type=int, default=1000)
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--learning_rate', type=float, default=0.1)
  parser.add_argument('--seed', type=int, default=0,
                      help='The seed of the data, initial weights and batch '
                      'order (without --seeds).')
  parser.add_argument('--seeds', type=int, default=None,
                      help='Train with seeds 0 to SEEDS-1 and print the mean '
                      '+- sd of each figure (at least 2).')
  parser.add_argument('--model_dir', default=None,
                      help='Checkpoint directory; a temporary one if unset.')
  args = parser.parse_args(argv)
  if args.seeds is not None and args.seeds < 2:
    parser.error('--seeds must be at least 2, for a standard deviation')
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
  with tempfile.TemporaryDirectory() as scratch:
    model_dir = args.model_dir or scratch
    if args.seeds is None:
      results = run(args.steps, model_dir, args.batch_size,
                    args.learning_rate, args.seed)
      print(report(results))
    else:
      results = run_seeds(range(args.seeds), args.steps, model_dir,
                          args.batch_size, args.learning_rate)
      print(report(summarize(results)))
  return results


if __name__ == '__main__':
  main(sys.argv[1:])
