"""Data, heads, input_fns and model_fns for the Estimator integration tests.

One small synthetic problem with three heads of different kinds:

* `clicks`: `BinaryClassHead` with string labels `'no'`/`'yes'`.
* `color`: `MultiClassHead` with 3 integer classes.
* `value`: `RegressionHead` whose loss is weighted by the feature `w`.

Features are `x` (3 floats a row) and `w` (the regression weight).  The same
heads are built for `tf.estimator.MultiHead` and for ours, so that a
checkpoint trained under one can be evaluated, predicted or exported under
the other (heads own no variables).
"""
import numpy as np
import tensorflow as tf

import tensorflow_multihead

tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)

N_ROWS = 64
BATCH_SIZE = 16
HEAD_NAMES = ('clicks', 'color', 'value')
HEAD_WEIGHTS = (1.0, 0.5, 2.0)
CLICK_VOCABULARY = ('no', 'yes')
N_COLORS = 3
LEARNING_RATE = 0.1
REGULARIZATION_SCALE = 0.01
# The merged head's name, the suffix of its regularization metric.
MULTI_HEAD_NAME = '_'.join(HEAD_NAMES)
# Serving parses only `x`: no head reads `w` when predicting.
SERVING_FEATURE_SPEC = {'x': tf.io.FixedLenFeature([3], tf.float32)}


def make_data(seed=20240601):
  """Returns `(features, labels)` dicts of numpy arrays, `N_ROWS` rows."""
  rng = np.random.RandomState(seed)
  x = rng.normal(size=(N_ROWS, 3)).astype(np.float32)
  w = rng.uniform(0.5, 2.0, size=(N_ROWS, 1)).astype(np.float32)
  clicked = (x[:, :1] + 0.5 * rng.normal(size=(N_ROWS, 1))) > 0
  clicks = np.where(clicked, CLICK_VOCABULARY[1], CLICK_VOCABULARY[0])
  color = np.argmax(x + rng.normal(size=x.shape), axis=1)
  value = 2. * x[:, 1:2] - x[:, 2:3] + 0.1 * rng.normal(size=(N_ROWS, 1))
  features = {'x': x, 'w': w}
  labels = {
      'clicks': clicks.astype(np.bytes_),
      'color': color.reshape(-1, 1).astype(np.int64),
      'value': value.astype(np.float32),
  }
  return features, labels


def make_heads():
  """Returns the three `tf.estimator` heads, freshly built."""
  return [
      tf.estimator.BinaryClassHead(
          label_vocabulary=list(CLICK_VOCABULARY), name='clicks'),
      tf.estimator.MultiClassHead(n_classes=N_COLORS, name='color'),
      tf.estimator.RegressionHead(weight_column='w', name='value'),
  ]


def our_multi_head():
  return tensorflow_multihead.MultiHead(
      make_heads(), head_weights=list(HEAD_WEIGHTS))


def reference_multi_head():
  return tf.estimator.MultiHead(make_heads(), head_weights=list(HEAD_WEIGHTS))


def _dataset(with_labels, feature_keys):
  features, labels = make_data()
  features = {key: features[key] for key in feature_keys}
  if with_labels:
    return tf.data.Dataset.from_tensor_slices((features, labels))
  return tf.data.Dataset.from_tensor_slices(features)


def train_input_fn(feature_keys=('x', 'w')):
  """Returns an input_fn cycling through the rows in batches for ever."""
  return lambda: _dataset(True, feature_keys).repeat().batch(BATCH_SIZE)


def eval_input_fn(feature_keys=('x', 'w')):
  """Returns an input_fn giving all rows once, in 4 equal batches."""
  return lambda: _dataset(True, feature_keys).batch(BATCH_SIZE)


def predict_input_fn(feature_keys=('x', 'w')):
  """Returns an input_fn giving the features of all rows once, in order."""
  return lambda: _dataset(False, feature_keys).batch(BATCH_SIZE)


def serving_input_receiver_fn():
  """Returns a receiver fn parsing serialized `tf.train.Example`s of `x`."""
  return tf.estimator.export.build_parsing_serving_input_receiver_fn(
      SERVING_FEATURE_SPEC)


def serialized_examples(x):
  """Returns `tf.train.Example` protos holding the rows of `x`, serialized."""
  return [
      tf.train.Example(features=tf.train.Features(feature={
          'x': tf.train.Feature(float_list=tf.train.FloatList(value=row))
      })).SerializeToString() for row in x]


def numeric_columns():
  return [tf.feature_column.numeric_column('x', shape=(3,))]


class LossRecorder(tf.compat.v1.train.SessionRunHook):
  """Appends the value of `loss` after every training step to `losses`."""

  def __init__(self, loss, losses):
    self._loss = loss
    self._losses = losses

  def before_run(self, run_context):
    return tf.compat.v1.train.SessionRunArgs(self._loss)

  def after_run(self, run_context, run_values):
    self._losses.append(float(run_values.results))


def make_model_fn(multi_head_fn, logits_as_dict, regularize=False,
                  recorded_losses=None):
  """Returns a model_fn of linear logits under the head `multi_head_fn()`.

  Args:
    multi_head_fn: Builds the multi-head (ours or the reference's).
    logits_as_dict: Gives the head a dict of logits, one dense layer a head;
      otherwise one dense layer whose output the head splits.
    regularize: Passes an L2 penalty of the kernels as
      `regularization_losses`.
    recorded_losses: Optional list that collects each training step's loss.
  """

  def model_fn(features, labels, mode):
    head = multi_head_fn()
    if logits_as_dict:
      layers = {
          sub_head.name: tf.keras.layers.Dense(
              sub_head.logits_dimension, name=f'logits_{sub_head.name}')
          for sub_head in make_heads()}
      logits = {name: layer(features['x']) for name, layer in layers.items()}
    else:
      layers = {'all': tf.keras.layers.Dense(head.logits_dimension,
                                             name='logits')}
      logits = layers['all'](features['x'])
    regularization_losses = None
    if regularize:
      regularization_losses = [REGULARIZATION_SCALE * tf.math.add_n(
          [tf.nn.l2_loss(layer.kernel) for layer in layers.values()])]

    def train_op_fn(loss):
      optimizer = tf.compat.v1.train.GradientDescentOptimizer(LEARNING_RATE)
      return optimizer.minimize(
          loss, global_step=tf.compat.v1.train.get_global_step())

    spec = head.create_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels,
        train_op_fn=train_op_fn, regularization_losses=regularization_losses)
    if recorded_losses is not None and mode == tf.estimator.ModeKeys.TRAIN:
      spec = spec._replace(
          training_hooks=[LossRecorder(spec.loss, recorded_losses)])
    return spec

  return model_fn


def run_config(model_dir):
  return tf.estimator.RunConfig(
      model_dir=str(model_dir), tf_random_seed=1234,
      save_summary_steps=1000, log_step_count_steps=1000)
