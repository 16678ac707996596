"""Metrics stream over batches, and an export survives bad requests.

Issue 7, item 8. One model with a head of each of the six `tf.estimator`
kinds (binary with a label vocabulary, weights and thresholds; multi-class
with a vocabulary; multi-label with class-based metrics; regression;
Poisson; logistic with weights) under our `MultiHead` trains two steps.
Then:

* `Estimator.evaluate` of its checkpoint on 640 rows in 10 batches of 64
  reports every metric as in one batch of 640, and as the reference
  `tf.estimator.MultiHead` does on the same 10 batches. (Estimator's own
  `loss` is the mean of the batches' losses, which equals the whole set's
  only because every batch has 64 rows and the heads reduce by
  `SUM_OVER_BATCH_SIZE`.)
* Its SavedModel, exported with a parsing receiver and loaded once with
  `tf.saved_model.load`, is sent bad requests on every signature: each gets
  an `InvalidArgumentError` (or, for an input it does not take, a
  `TypeError`) naming what is wrong, and a good request sent after them is
  answered with the values numpy computes from the checkpoint's weights.
  An empty batch is not an error: it is answered with no rows, every output
  of the right dtype and width, as a client batching requests expects. A
  batch of 10,000 rows is answered too, every row right.
"""
import dataclasses
import functools

import numpy as np
import pytest
import tensorflow as tf

import tensorflow_multihead

pytestmark = pytest.mark.xdist_group('streaming_and_serving')

N_ROWS = 640
SMALL_BATCH = 64
TRAIN_STEPS = 2
LEARNING_RATE = 0.1
LARGE_REQUEST_ROWS = 10_000
CLICKS = ('no', 'yes')
COLORS = ('red', 'green', 'blue')
N_TAGS = 3
TAGS = tuple(str(tag) for tag in range(N_TAGS))
# Heads in logits order, with their logits widths.
WIDTHS = {'clicks': 1, 'color': len(COLORS), 'tags': N_TAGS, 'value': 1,
          'count': 1, 'share': 1}
CLASSIFIERS = ('clicks', 'color', 'tags')
FEATURE_SPEC = {'x': tf.io.FixedLenFeature([3], tf.float32)}

EXPECTED_METRIC_KEYS = frozenset(
    ['global_step', 'loss'] +
    [f'loss/{head}' for head in WIDTHS] +
    [f'{metric}/clicks' for metric in (
        'accuracy', 'accuracy_baseline', 'auc', 'auc_precision_recall',
        'average_loss', 'label/mean', 'prediction/mean', 'precision',
        'recall', 'accuracy/positive_threshold_0.3',
        'accuracy/positive_threshold_0.7', 'precision/positive_threshold_0.3',
        'precision/positive_threshold_0.7', 'recall/positive_threshold_0.3',
        'recall/positive_threshold_0.7')] +
    ['accuracy/color', 'average_loss/color'] +
    [f'{metric}/tags' for metric in (
        'auc', 'auc_precision_recall', 'average_loss',
        'accuracy/positive_threshold_0.4', 'precision/positive_threshold_0.4',
        'recall/positive_threshold_0.4', 'auc/class0', 'auc/class2',
        'auc_precision_recall/class0', 'auc_precision_recall/class2',
        'probability_mean/class0', 'probability_mean/class2')] +
    [f'{metric}/{head}' for head in ('value', 'count', 'share')
     for metric in ('average_loss', 'label/mean', 'prediction/mean')])


# The model.


def make_heads():
  return [
      tf.estimator.BinaryClassHead(
          weight_column='w', thresholds=[0.3, 0.7],
          label_vocabulary=list(CLICKS), name='clicks'),
      tf.estimator.MultiClassHead(
          n_classes=len(COLORS), label_vocabulary=list(COLORS), name='color'),
      tf.estimator.MultiLabelHead(
          n_classes=N_TAGS, thresholds=[0.4],
          classes_for_class_based_metrics=[0, 2], name='tags'),
      tf.estimator.RegressionHead(name='value'),
      tf.estimator.PoissonRegressionHead(name='count'),
      tf.estimator.LogisticRegressionHead(weight_column='w', name='share'),
  ]


MULTI_HEADS = {
    'ours': lambda: tensorflow_multihead.MultiHead(make_heads()),
    'reference': lambda: tf.estimator.MultiHead(make_heads()),
}


def make_data(rows=N_ROWS, seed=640):
  """Returns `(features, labels)`: dicts of numpy arrays of `rows` rows."""
  rng = np.random.RandomState(seed)
  x = rng.normal(size=(rows, 3)).astype(np.float32)
  noise = rng.normal(size=(rows, 3)).astype(np.float32)
  features = {'x': x, 'w': rng.uniform(0.5, 2., (rows, 1)).astype(np.float32)}
  labels = {
      'clicks': np.array(CLICKS)[(x[:, :1] + noise[:, :1] > 0).astype(int)],
      'color': np.array(COLORS)[np.argmax(x + noise, axis=1)].reshape(-1, 1),
      'tags': (x + noise > 0).astype(np.int64),
      'value': 2. * x[:, 1:2] - x[:, 2:3] + 0.1 * noise[:, :1],
      'count': rng.poisson(np.exp(0.5 * x[:, :1])).astype(np.float32),
      'share': 1. / (1. + np.exp(-x[:, 1:2] - noise[:, 1:2])),
  }
  return features, labels


def input_fn(batch_size, repeat=False):
  dataset = tf.data.Dataset.from_tensor_slices(make_data())
  return (dataset.repeat() if repeat else dataset).batch(batch_size)


def model_fn(features, labels, mode, params):
  head = MULTI_HEADS[params['head']]()
  logits = tf.keras.layers.Dense(head.logits_dimension, name='logits')(
      features['x'])

  def train_op_fn(loss):
    return tf.compat.v1.train.GradientDescentOptimizer(LEARNING_RATE).minimize(
        loss, global_step=tf.compat.v1.train.get_global_step())

  return head.create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      train_op_fn=train_op_fn)


def estimator(head, model_dir):
  # Grappler only slows these one-off graphs of many metrics down.
  session_config = tf.compat.v1.ConfigProto()
  session_config.graph_options.rewrite_options.disable_meta_optimizer = True
  return tf.estimator.Estimator(
      model_fn, params={'head': head},
      config=tf.estimator.RunConfig(
          model_dir=str(model_dir), tf_random_seed=640,
          session_config=session_config))


def serialized_examples(x):
  return [tf.train.Example(features=tf.train.Features(feature={
      'x': tf.train.Feature(float_list=tf.train.FloatList(value=row))}))
          .SerializeToString() for row in x]


@pytest.fixture(scope='module')
def model(tmp_path_factory):
  """Trains under our head; evaluates three ways and exports, all once."""
  base = tmp_path_factory.mktemp('six_heads')
  ours = estimator('ours', base / 'model')
  ours.train(functools.partial(input_fn, SMALL_BATCH, repeat=True),
             steps=TRAIN_STEPS)
  checkpoint = ours.latest_checkpoint()
  evaluations = {
      ('ours', SMALL_BATCH): ours,
      ('ours', N_ROWS): ours,
      ('reference', SMALL_BATCH): estimator('reference', base / 'model'),
  }
  metrics = {
      (head, batch_size): evaluator.evaluate(
          functools.partial(input_fn, batch_size), checkpoint_path=checkpoint,
          name=f'{head}_{batch_size}')
      for (head, batch_size), evaluator in evaluations.items()}
  export_dir = ours.export_saved_model(
      str(base / 'export'),
      tf.estimator.export.build_parsing_serving_input_receiver_fn(
          FEATURE_SPEC),
      checkpoint_path=checkpoint).decode()
  return {'checkpoint': checkpoint, 'metrics': metrics,
          'export_dir': export_dir}


# Streaming evaluation.


def test_evaluation_reports_every_heads_metrics(model):
  metrics = model['metrics'][('ours', SMALL_BATCH)]
  assert set(metrics) == EXPECTED_METRIC_KEYS
  assert metrics['global_step'] == TRAIN_STEPS


@pytest.mark.parametrize('key', sorted(EXPECTED_METRIC_KEYS))
def test_ten_batches_give_every_metric_of_one_whole_batch(model, key):
  streamed = model['metrics'][('ours', SMALL_BATCH)][key]
  whole = model['metrics'][('ours', N_ROWS)][key]
  np.testing.assert_allclose(streamed, whole, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize('key', sorted(EXPECTED_METRIC_KEYS))
def test_ten_batches_give_every_metric_of_the_reference(model, key):
  np.testing.assert_allclose(model['metrics'][('ours', SMALL_BATCH)][key],
                             model['metrics'][('reference', SMALL_BATCH)][key],
                             rtol=1e-6)


def test_batch_dependent_metrics_are_not_averages_of_batch_values(model):
  """The whole-set values really differ from a mean of per-batch values."""
  features, labels = make_data()
  clicked = labels['clicks'][:, 0] == 'yes'
  weights = features['w'][:, 0]
  whole = np.sum(weights * clicked) / np.sum(weights)
  per_batch = np.mean([
      np.sum(w * c) / np.sum(w) for w, c in zip(
          np.split(weights, N_ROWS // SMALL_BATCH),
          np.split(clicked, N_ROWS // SMALL_BATCH))])
  assert abs(whole - per_batch) > 1e-4
  np.testing.assert_allclose(
      model['metrics'][('ours', SMALL_BATCH)]['label/mean/clicks'], whole,
      rtol=1e-5)


# Serving robustness: one export, loaded once, every signature.


def _sigmoid(logits):
  return 1. / (1. + np.exp(-logits))


def _softmax(logits):
  exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return exp / exp.sum(axis=-1, keepdims=True)


def _names(names):
  return np.array([name.encode() for name in names], object)


def _tiled(names, rows):
  return np.tile(_names(names), (rows, 1))


def expected_predictions(checkpoint, x):
  """Every head's predictions for rows `x`, by `head/key`, in numpy."""
  kernel = tf.train.load_variable(checkpoint, 'logits/kernel')
  bias = tf.train.load_variable(checkpoint, 'logits/bias')
  logits = dict(zip(WIDTHS, np.split(
      np.asarray(x, np.float64) @ kernel + bias,
      np.cumsum(list(WIDTHS.values()))[:-1], axis=1)))
  rows = len(x)
  click = _sigmoid(logits['clicks'])
  click_ids = (logits['clicks'] > 0).astype(np.int64)
  color = _softmax(logits['color'])
  color_ids = np.argmax(color, axis=1).reshape(-1, 1)
  return {
      'clicks/logits': logits['clicks'],
      'clicks/logistic': click,
      'clicks/probabilities': np.hstack([1. - click, click]),
      'clicks/class_ids': click_ids,
      'clicks/classes': _names(CLICKS)[click_ids],
      'clicks/all_class_ids': np.tile([0, 1], (rows, 1)),
      'clicks/all_classes': _tiled(CLICKS, rows),
      'color/logits': logits['color'],
      'color/probabilities': color,
      'color/class_ids': color_ids,
      'color/classes': _names(COLORS)[color_ids],
      'color/all_class_ids': np.tile(np.arange(len(COLORS)), (rows, 1)),
      'color/all_classes': _tiled(COLORS, rows),
      'tags/logits': logits['tags'],
      'tags/probabilities': _sigmoid(logits['tags']),
      'tags/classes': _tiled(TAGS, rows),
      'value/predictions': logits['value'],
      'count/logits': logits['count'],
      'count/predictions': np.exp(logits['count']),
      'share/logits': logits['share'],
      'share/predictions': _sigmoid(logits['share']),
  }


def expected_signature_outputs(predictions, signature_key):
  """What `signature_key` serves, from `expected_predictions`' values."""
  if signature_key == 'predict':
    return predictions
  if signature_key == 'serving_default':  # The first head's default.
    signature_key = 'clicks'
  head, _, kind = signature_key.partition('/')
  kind = kind or ('classification' if head in CLASSIFIERS else 'regression')
  if kind == 'predict':
    return {key.partition('/')[2]: value
            for key, value in predictions.items()
            if key.startswith(f'{head}/')}
  if kind == 'classification':
    classes = 'classes' if head == 'tags' else 'all_classes'
    return {'classes': predictions[f'{head}/{classes}'],
            'scores': predictions[f'{head}/probabilities']}
  served = 'logistic' if head == 'clicks' else 'predictions'
  return {'outputs': predictions[f'{head}/{served}']}


SIGNATURE_KEYS = sorted(
    ['serving_default', 'predict'] +
    [f'{head}/predict' for head in WIDTHS] +
    [f'{head}/classification' for head in CLASSIFIERS] +
    [f'{head}/regression' for head in WIDTHS if head not in ('color', 'tags')]
    + list(WIDTHS))
GOOD_X = np.array([[0.5, -1., 2.], [1.5, 0.25, -3.], [-0.75, 2., 0.]],
                  np.float32)


def _example(**features):
  return tf.train.Example(features=tf.train.Features(feature={
      key: tf.train.Feature(**{kind: values})
      for key, (kind, values) in features.items()})).SerializeToString()


def _floats(*values):
  return ('float_list', tf.train.FloatList(value=values))


@dataclasses.dataclass
class BadRequest:
  """A request a signature must refuse, and the error it must give."""
  name: str
  request: object  # What is sent as the signature's one input.
  error: type
  message: str  # A regex the error's message matches.
  input_name: str = None  # Sent under this name instead of the signature's.


BAD_REQUESTS = [
    BadRequest('missing_feature', [_example(y=_floats(1., 2., 3.))],
               tf.errors.InvalidArgumentError,
               r'Feature: x \(data type: float\) is required but could not '
               r'be found'),
    BadRequest('wrong_dtype_in_example',
               [_example(x=('int64_list', tf.train.Int64List(value=[1] * 3)))],
               tf.errors.InvalidArgumentError,
               r"Key: x, Index: 0\.\s+Data types don't match\. Data type: "
               r'int64 but expected type: float'),
    BadRequest('wrong_shape_in_example', [_example(x=_floats(1., 2.))],
               tf.errors.InvalidArgumentError,
               r'Key: x, Index: 0\.\s+Number of float values != expected\.'
               r'\s+Values size: 2 but output shape: \[3\]'),
    BadRequest('one_bad_row_among_good_ones',
               serialized_examples(GOOD_X) + [_example(y=_floats(1., 2., 3.))],
               tf.errors.InvalidArgumentError,
               r'Feature: x \(data type: float\) is required'),
    BadRequest('not_an_example', [b'not a tf.train.Example'],
               tf.errors.InvalidArgumentError,
               r"Could not parse example input, value: 'not a tf"),
    BadRequest('floats_instead_of_examples', GOOD_X,
               tf.errors.InvalidArgumentError,
               r'expected to be a string tensor but is a float tensor'),
    BadRequest('matrix_of_examples',
               np.array(serialized_examples(GOOD_X), object).reshape(-1, 1),
               tf.errors.InvalidArgumentError,
               r'Expected serialized to be a scalar or vector, got shape: '
               r'\[3,1\]'),
    BadRequest('wrong_input_name', serialized_examples(GOOD_X), TypeError,
               r"unexpected keyword argument 'features'",
               input_name='features'),
]


@pytest.fixture(scope='module')
def loaded(model):
  """The export, loaded once for every request of every test."""
  return tf.saved_model.load(model['export_dir'])


@pytest.fixture(scope='module')
def large_request(model):
  x = np.random.RandomState(10_000).normal(
      size=(LARGE_REQUEST_ROWS, 3)).astype(np.float32)
  return serialized_examples(x), expected_predictions(model['checkpoint'], x)


def _send(loaded, signature_key, request, input_name=None):
  signature = loaded.signatures[signature_key]
  (own_input_name,) = signature.structured_input_signature[1]
  served = signature(**{input_name or own_input_name: tf.constant(request)})
  return {key: value.numpy() for key, value in served.items()}


def _assert_served(served, expected, what):
  assert sorted(served) == sorted(expected), what
  for key, value in expected.items():
    assert served[key].shape == value.shape, f'{what}: {key}'
    if value.dtype.kind in 'OSU':
      np.testing.assert_array_equal(served[key], value, f'{what}: {key}')
    else:
      np.testing.assert_allclose(served[key], value, rtol=1e-5, atol=1e-6,
                                 err_msg=f'{what}: {key}')


def test_export_has_a_signature_for_every_head_and_kind(loaded):
  assert sorted(loaded.signatures) == SIGNATURE_KEYS


@pytest.mark.parametrize('signature_key', SIGNATURE_KEYS)
def test_signature_refuses_bad_requests_then_answers_good_ones(
    loaded, model, signature_key):
  for bad in BAD_REQUESTS:
    with pytest.raises(bad.error, match=bad.message):
      _send(loaded, signature_key, bad.request, bad.input_name)
  _assert_served(
      _send(loaded, signature_key, serialized_examples(GOOD_X)),
      expected_signature_outputs(
          expected_predictions(model['checkpoint'], GOOD_X), signature_key),
      signature_key)


@pytest.mark.parametrize('signature_key', SIGNATURE_KEYS)
def test_signature_answers_an_empty_batch_with_no_rows(loaded, model,
                                                       signature_key):
  served = _send(loaded, signature_key, np.array([], object))
  one_row = expected_signature_outputs(
      expected_predictions(model['checkpoint'], GOOD_X[:1]), signature_key)
  assert sorted(served) == sorted(one_row)
  for key, value in one_row.items():
    assert served[key].shape == (0,) + value.shape[1:], key
    assert served[key].dtype.kind == value.dtype.kind, key


@pytest.mark.parametrize('signature_key', SIGNATURE_KEYS)
def test_signature_answers_ten_thousand_rows(loaded, large_request,
                                             signature_key):
  examples, predictions = large_request
  _assert_served(_send(loaded, signature_key, examples),
                 expected_signature_outputs(predictions, signature_key),
                 signature_key)

