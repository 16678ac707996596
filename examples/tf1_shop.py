"""Data, input functions and reports shared by the TF 1.x example programs.

The `tf1_*` examples are TF 1.x programs that run on TF 2.15 with only their
imports changed; like the `iris_data.py` of TF 1.x's getting-started guide,
this module holds their data. Every listed item of a small online shop has
four measurements and six things to learn about it, one per contrib head:

  category     which of 3 departments it is in      multi_class_head
  bought       did the visitor buy it                binary_classification_head
  revenue      the revenue of a sale, in $100        regression_head
  tags         which of 3 tags apply to it           multi_label_head
  units_sold   units sold last week (a count)        poisson_regression_head
  return_rate  the share of sales returned           logistic_regression_head

The data is drawn from fixed formulas plus noise, so nothing is downloaded.
"""
import argparse
import collections
import os

import numpy as np
import tensorflow.compat.v1 as tf

FEATURE_NAMES = ('price', 'rating', 'weight', 'discount')
TAGS = ('gift', 'fragile', 'bulky')

Split = collections.namedtuple('Split', ['features', 'labels'])
# What an example program's `run` returns: `estimator.evaluate`'s metrics,
# `estimator.predict`'s predictions and `export_saved_model`'s path.
Results = collections.namedtuple(
    'Results', ['metrics', 'predictions', 'export_path'])


def load_data(num_train=256, num_test=64, seed=0):
  """Returns `(train, test)` splits of features and labels dicts."""
  rng = np.random.RandomState(seed)
  total = num_train + num_test
  x = rng.normal(size=(total, len(FEATURE_NAMES))).astype(np.float32)
  price, rating, weight, discount = x.T
  noise = rng.normal(scale=0.3, size=(total, 6)).astype(np.float32)
  department_scores = np.stack(
      [price + noise[:, 0], rating - price, weight + noise[:, 1]], axis=1)
  bought = (rating + discount - price + noise[:, 2] > 0).astype(np.int64)
  tags = np.stack([discount > 0.5, weight < -0.3, weight > 0.3],
                  axis=1).astype(np.int64)
  units_sold = rng.poisson(np.exp(0.5 * rating + 0.3 * discount))
  labels = {
      'category': np.argmax(department_scores, axis=1)[:, None],
      'bought': bought[:, None],
      'revenue': (1. + 0.5 * price - 0.3 * discount + noise[:, 3])[:, None],
      'tags': tags,
      'units_sold': units_sold.astype(np.float32)[:, None],
      'return_rate': 1. / (1. + np.exp(rating - 0.5 * weight + noise[:, 4])),
  }
  labels['revenue'] = labels['revenue'].astype(np.float32)
  labels['return_rate'] = labels['return_rate'].astype(np.float32)[:, None]
  features = {name: x[:, [i]] for i, name in enumerate(FEATURE_NAMES)}

  def split(part):
    return Split({k: v[part] for k, v in features.items()},
                 {k: v[part] for k, v in labels.items()})

  return split(slice(0, num_train)), split(slice(num_train, total))


def argument_parser():
  """The command line every example program takes; programs may add to it."""
  parser = argparse.ArgumentParser()
  parser.add_argument('--steps', default=200, type=int, help='training steps')
  parser.add_argument('--batch_size', default=32, type=int, help='batch size')
  parser.add_argument('--model_dir', default=None, help='checkpoints go here')
  parser.add_argument('--export_dir', default=None,
                      help='the SavedModel goes under here')
  return parser


def train_evaluate_predict_export(estimator, heads, steps, batch_size,
                                  export_dir=None):
  """Runs `estimator` through its life on the shop data; returns `Results`.

  The export goes under `export_dir`, or `<model_dir>/export`.
  """
  train, test = load_data()
  estimator.train(
      input_fn=lambda: train_input_fn(train.features, train.labels, heads,
                                      batch_size),
      steps=steps)
  metrics = estimator.evaluate(
      input_fn=lambda: eval_input_fn(test.features, test.labels, heads,
                                     batch_size))
  predictions = list(estimator.predict(
      input_fn=lambda: eval_input_fn(test.features, None, heads, batch_size)))
  export_path = estimator.export_saved_model(
      export_dir or os.path.join(estimator.model_dir, 'export'),
      serving_input_receiver_fn)
  return Results(metrics, predictions, export_path)


def feature_columns():
  """The four measurements as numeric feature columns."""
  return [tf.feature_column.numeric_column(name) for name in FEATURE_NAMES]


def train_input_fn(features, labels, heads, batch_size, seed=0):
  """Shuffled, repeated batches of features and the `heads`' labels."""
  dataset = tf.data.Dataset.from_tensor_slices(
      (dict(features), {head: labels[head] for head in heads}))
  return dataset.shuffle(1000, seed=seed).repeat().batch(batch_size)


def eval_input_fn(features, labels, heads, batch_size):
  """One pass over the data; without `labels` for prediction."""
  if labels is None:
    inputs = dict(features)
  else:
    inputs = (dict(features), {head: labels[head] for head in heads})
  return tf.data.Dataset.from_tensor_slices(inputs).batch(batch_size)


def serving_input_receiver_fn():
  """Serves `tf.train.Example` protos holding the four measurements."""
  spec = tf.feature_column.make_parse_example_spec(feature_columns())
  return tf.estimator.export.build_parsing_serving_input_receiver_fn(spec)()


def serialized_examples(features, count):
  """The first `count` items as serialized `tf.train.Example` protos."""
  protos = []
  for i in range(count):
    feature = {
        name: tf.train.Feature(float_list=tf.train.FloatList(
            value=[float(features[name][i, 0])]))
        for name in FEATURE_NAMES}
    protos.append(tf.train.Example(
        features=tf.train.Features(feature=feature)).SerializeToString())
  return protos


def print_results(results, heads, head_weights, extra_loss_keys=()):
  """Prints how the merged loss adds up, the metrics and a prediction."""
  metrics = results.metrics
  terms = [f'{weight:g} * {metrics["loss/" + head]:.4f} (loss/{head})'
           for head, weight in zip(heads, head_weights)]
  terms += [f'{metrics[key]:.4f} ({key})' for key in extra_loss_keys]
  print(f'loss {metrics["loss"]:.4f} = ' + ' + '.join(terms))
  for key in sorted(metrics):
    print(f'  {key}: {metrics[key]:.4f}')
  print('first prediction:')
  for (head, key), value in sorted(results.predictions[0].items()):
    print(f'  ({head!r}, {key!r}): {value}')
  print(f'exported to {results.export_path.decode()}')
