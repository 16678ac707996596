"""Conversion given click, three ways: naive, MaskedHead, ConditionalHead.

An ad is shown (an impression); the user clicks it or not; only a click can
convert, and conversions are rare. The impressions are generated, so the
true P(click) and P(conversion | click) of every row are known. One network
(a shared hidden layer, a click logit and a conversion logit) learns both,
under a `MultiHead` of a click head and a conversion head written three
ways:

  naive        conversion, an ordinary head over every impression (0 where
               not clicked): it learns P(conversion); its output is also
               taken as the CVR, as a naive model's is
  masked       MaskedHead(conversion, missing_label=-1): trained on the
               clicked rows only; it learns P(conversion | click), and
               P(conversion) = P(click) * CVR from the two heads
  conditional  ConditionalHead(conversion, given='click') (ESMM, Ma et al.,
               SIGIR 2018): trained through P(click) * CVR on every
               impression; serves both, `conversion` and
               `conversion_given_click`

It reports, on held-out impressions, as mean ± sd over seeds (each seed
draws its own data and initial weights):

  CVR AUC, clicked rows         ranking of the conversions among clicks
  CVR MAE, all impressions      |predicted - true P(conversion | click)|,
                                where the CVR is used to bid: everywhere
  P(conv) MAE, all impressions  |predicted - true P(conversion)|
  CVR calibration, clicked      mean predicted CVR / conversion rate
  P(conv) calibration, all      mean predicted P(conversion) / rate

From the repository root:

  python -m examples.funnel                 # 5 seeds, 2 CPU minutes
  python -m examples.funnel --seeds 10 --steps 3000
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

from tensorflow_multihead import ConditionalHead
from tensorflow_multihead import MaskedHead
from tensorflow_multihead import MultiHead

from examples import seeds as over_seeds

N_FEATURES = 6
HIDDEN_UNITS = 16
NOT_CLICKED = -1
WAYS = ('naive', 'masked', 'conditional')
# (key, row title, digits) of the table, in order.
METRICS = (
    ('cvr_auc', 'CVR AUC, clicked rows', 3),
    ('cvr_mae', 'CVR MAE, all impressions', 4),
    ('conversion_mae', 'P(conv) MAE, all impressions', 5),
    ('cvr_calibration', 'CVR calibration, clicked', 3),
    ('conversion_calibration', 'P(conv) calibration, all', 3),
)


def _sigmoid(values):
  return 1. / (1. + np.exp(-values))


def true_probabilities(x):
  """`(P(click), P(conversion | click))` of rows `x`, by fixed formulas.

  A relevant ad (x0) in a high slot (x1) is clicked more; a cheap product
  (x2) that users of this kind like (x3) converts more, and a high slot
  brings clicks that convert less. About one impression in four is clicked,
  one click in nine converts: 3 % of impressions.
  """
  click = _sigmoid(1.2 * x[:, 0] + 0.8 * x[:, 1] - 1.4)
  conversion = _sigmoid(-1.2 * x[:, 2] + 0.8 * x[:, 3] - 0.9 * x[:, 1] +
                        0.5 * x[:, 0] * x[:, 3] - 2.7)
  return click, conversion


def make_data(rows, seed):
  """`(features, labels, truth)` of `rows` generated impressions.

  `labels`: `click`, `conversion` (0 or 1 on every row, 1 only after a
  click) and `masked_conversion` (-1 where not clicked). `truth`: the true
  `click`, `cvr` and `conversion` probabilities of each row.

  >>> features, labels, truth = make_data(1000, seed=0)
  >>> bool(np.all(labels['conversion'] <= labels['click']))
  True
  >>> sorted(np.unique(labels['masked_conversion']).tolist())
  [-1, 0, 1]
  """
  rng = np.random.default_rng(seed)
  x = rng.normal(size=[rows, N_FEATURES]).astype(np.float32)
  p_click, p_cvr = true_probabilities(x)
  click = rng.random(rows) < p_click
  conversion = click & (rng.random(rows) < p_cvr)
  column = lambda values: values[:, np.newaxis].astype(np.int64)
  labels = {'click': column(click), 'conversion': column(conversion),
            'masked_conversion': column(np.where(click, conversion,
                                                 NOT_CLICKED))}
  truth = {'click': p_click, 'cvr': p_cvr, 'conversion': p_click * p_cvr}
  return {'x': x}, labels, truth


def make_head(way):
  click = tf.estimator.BinaryClassHead(name='click')
  conversion = tf.estimator.BinaryClassHead(name='conversion')
  if way == 'masked':
    conversion = MaskedHead(conversion, missing_label=NOT_CLICKED)
  elif way == 'conditional':
    conversion = ConditionalHead(conversion, given='click')
  return MultiHead([click, conversion])


def model_fn(features, labels, mode, params):
  """A hidden layer shared by both heads; Adam on the summed loss."""
  head = make_head(params['way'])
  # Seeded initializers: the layers' default ones ignore the graph's seed.
  initializer = tf.compat.v1.initializers.glorot_uniform
  hidden = tf.compat.v1.layers.dense(
      features['x'], HIDDEN_UNITS, tf.nn.relu,
      kernel_initializer=initializer(seed=params['seed']))
  logits = tf.compat.v1.layers.dense(
      hidden, head.logits_dimension,
      kernel_initializer=initializer(seed=params['seed'] + 1))
  optimizer = None
  if mode == tf.estimator.ModeKeys.TRAIN:
    optimizer = tf.keras.optimizers.legacy.Adam(params['learning_rate'])
  return head.create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      optimizer=optimizer,
      trainable_variables=tf.compat.v1.trainable_variables())


def _labels_for(way, labels):
  conversion = labels['masked_conversion' if way == 'masked'
                      else 'conversion']
  return {'click': labels['click'], 'conversion': conversion}


def predicted_probabilities(way, predictions):
  """`(P(click), CVR, P(conversion))` as the `way` model predicts them."""
  click = predictions['click', 'logistic'][:, 0]
  conversion = predictions['conversion', 'logistic'][:, 0]
  if way == 'naive':
    return click, conversion, conversion
  if way == 'masked':
    return click, conversion, click * conversion
  return (click, predictions['conversion_given_click', 'logistic'][:, 0],
          conversion)


def auc(labels, scores):
  """The ROC AUC: the chance a positive outscores a negative (ties: half).

  >>> auc(np.array([0, 1, 0, 1]), np.array([.1, .9, .4, .4]))
  0.875
  """
  labels = labels.astype(bool)
  order = np.argsort(scores, kind='mergesort')
  ranks = np.empty(len(scores))
  sorted_scores = scores[order]
  # Average ranks over ties.
  _, first, counts = np.unique(sorted_scores, return_index=True,
                               return_counts=True)
  for start, count in zip(first, counts):
    ranks[order[start:start + count]] = start + (count + 1) / 2.
  positives, negatives = labels.sum(), (~labels).sum()
  return float((ranks[labels].sum() - positives * (positives + 1) / 2.) /
               (positives * negatives))


def scores(way, predictions, labels, truth):
  """The table's metrics of one model on the held-out rows."""
  _, cvr, conversion = predicted_probabilities(way, predictions)
  clicked = labels['click'][:, 0] == 1
  converted = labels['conversion'][:, 0]
  return {
      'cvr_auc': auc(converted[clicked], cvr[clicked]),
      'cvr_mae': float(np.mean(np.abs(cvr - truth['cvr']))),
      'conversion_mae': float(np.mean(np.abs(conversion -
                                             truth['conversion']))),
      'cvr_calibration': float(cvr[clicked].mean() /
                               converted[clicked].mean()),
      'conversion_calibration': float(conversion.mean() / converted.mean()),
  }


def _input_fn(features, labels, batch_size, seed, train):
  def input_fn():
    dataset = tf.data.Dataset.from_tensor_slices(
        (features, labels) if labels is not None else features)
    if train:
      dataset = dataset.shuffle(10000, seed=seed).repeat()
    return dataset.batch(batch_size)
  return input_fn


def run_seed(seed, args, model_dir):
  """Trains the three ways on one seed's data; returns their scores."""
  features, labels, _ = make_data(args.train_rows, seed)
  test_features, test_labels, test_truth = make_data(args.test_rows,
                                                     seed + 1000)
  results = {}
  for way in WAYS:
    estimator = tf.estimator.Estimator(
        model_fn=model_fn, model_dir=os.path.join(model_dir, f'{way}_{seed}'),
        params={'way': way, 'learning_rate': args.learning_rate,
                'seed': seed},
        config=tf.estimator.RunConfig(tf_random_seed=seed,
                                      log_step_count_steps=args.steps + 1))
    estimator.train(_input_fn(features, _labels_for(way, labels),
                              args.batch_size, seed, train=True),
                    steps=args.steps)
    batches = estimator.predict(
        _input_fn(test_features, None, 4096, seed, train=False),
        yield_single_examples=False)
    predictions = {}
    for batch in batches:
      for key, value in batch.items():
        predictions.setdefault(key, []).append(value)
    predictions = {key: np.concatenate(values)
                   for key, values in predictions.items()}
    results[way] = scores(way, predictions, test_labels, test_truth)
  return results


def summarize(per_seed):
  """`{way: {metric: (mean, sd)}}` over the seeds' results (sd: ddof=1)."""
  summary = {}
  for way in WAYS:
    summary[way] = {}
    for key, _, _ in METRICS:
      summary[way][key] = over_seeds.mean_sd(
          results[way][key] for results in per_seed)
  return summary


def format_table(summary, seeds):
  """The summary as text: a row per metric, a column per way.

  >>> print(format_table({way: {'cvr_auc': (.5, .01)} for way in WAYS}, 5))
  mean ± sd over 5 seeds                    naive             masked        conditional
  CVR AUC, clicked rows             0.500 ± 0.010      0.500 ± 0.010      0.500 ± 0.010
  """
  lines = [f'{f"mean ± sd over {seeds} seeds":28}' +
           ''.join(f'{way:>19}' for way in WAYS)]
  for key, title, digits in METRICS:
    if key not in summary[WAYS[0]]:
      continue
    cells = [f'{summary[way][key][0]:.{digits}f} ± '
             f'{summary[way][key][1]:.{digits}f}' for way in WAYS]
    lines.append(f'{title:28}' + ''.join(f'{cell:>19}' for cell in cells))
  return '\n'.join(lines)


def parse_args(argv):
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n', maxsplit=1)[0])
  parser.add_argument('--seeds', type=int, default=5)
  parser.add_argument('--steps', type=int, default=2000)
  parser.add_argument('--train_rows', type=int, default=20000)
  parser.add_argument('--test_rows', type=int, default=20000)
  parser.add_argument('--batch_size', type=int, default=256)
  parser.add_argument('--learning_rate', type=float, default=0.01)
  parser.add_argument('--model_dir', default=None,
                      help='Checkpoint directory; a temporary one if unset.')
  args = parser.parse_args(argv)
  if args.seeds < 1 or args.steps < 1:
    parser.error('--seeds and --steps must be positive')
  return args


def main(argv):
  """Runs the example with command-line arguments; returns its summary."""
  args = parse_args(argv)
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
  with tempfile.TemporaryDirectory() as scratch:
    per_seed = []
    for seed in range(args.seeds):
      print(f'[funnel] seed {seed}: training {", ".join(WAYS)}', flush=True)
      per_seed.append(run_seed(seed, args, args.model_dir or scratch))
  summary = summarize(per_seed)
  print(format_table(summary, args.seeds))
  return summary, per_seed


if __name__ == '__main__':
  main(sys.argv[1:])
