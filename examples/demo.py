"""Trains, evaluates, exports and serves a three-headed wine model.

One small network reads eleven chemical measurements of a wine and answers
three questions at once, each through a different kind of head merged by
`tensorflow_multihead.MultiHead`:

  cultivar  which of three cultivars grew the grapes     MultiClassHead
  alcohol   the wine's alcohol content in % vol          RegressionHead
  vivid     is its colour intensity above the median?    BinaryClassHead

The data is the UCI wine data set that ships inside scikit-learn, so nothing
is downloaded. From the repository root:

  python -m examples.demo                 # a few seconds of training
  python -m examples.demo --steps=1000 --export_dir=/tmp/wine
  python -m examples.demo --help          # every flag

The run trains an Estimator, prints one row of held-out metrics per head,
exports a SavedModel that parses serialized `tf.train.Example` protos, loads
it back and answers a request for a few held-out wines through the exported
signatures, next to the true values.
"""
import collections
import contextlib
import os
import tempfile

# TensorFlow reads this when it loads; without it, its C++ start-up chatter
# buries the demo's own output.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import numpy as np
from sklearn import datasets
from sklearn import model_selection
import tensorflow as tf

from tensorflow_multihead import MultiHead

HEAD_NAMES = ('cultivar', 'alcohol', 'vivid')
HEAD_KINDS = {
    'cultivar': 'multi-class',
    'alcohol': 'regression',
    'vivid': 'binary',
}
# Both targets are derived from these measurements, so the model never sees
# them as inputs.
_ALCOHOL_COLUMN = 'alcohol'
_COLOUR_COLUMN = 'color_intensity'
# Metrics shown in the table, in this order, when a head reports them.
TABLE_METRICS = ('loss', 'average_loss', 'accuracy', 'auc', 'precision',
                 'recall', 'prediction/mean', 'label/mean')

FLAGS = flags.FLAGS
flags.DEFINE_integer('steps', 200, 'Training steps.', lower_bound=1)
flags.DEFINE_integer('batch_size', 32, 'Training batch size.', lower_bound=1)
flags.DEFINE_float('learning_rate', 0.005, 'Adam learning rate.')
flags.DEFINE_integer('seed', 7, 'Seed of the train/test split, the weight '
                     'initialisation and the batch shuffling.')
flags.DEFINE_list('hidden_units', ['32', '16'],
                  'Widths of the shared hidden layers.')
flags.DEFINE_list('head_weights', ['1', '1', '1'],
                  'Loss weights of the heads cultivar,alcohol,vivid.')
flags.DEFINE_integer('num_requests', 5, 'Held-out wines sent to the exported '
                     'model.', lower_bound=1)
flags.DEFINE_string('model_dir', None, 'Checkpoint directory. Default: a '
                    'temporary one, removed at exit.')
flags.DEFINE_string('export_dir', None, 'Directory to export the SavedModel '
                    'under. Default: a temporary one, removed at exit.')


def _floats(values):
  try:
    return [float(value) for value in values]
  except ValueError:
    return None


flags.register_validator(
    'head_weights',
    lambda weights: len(weights) == len(HEAD_NAMES) and _floats(weights),
    message=f'--head_weights needs {len(HEAD_NAMES)} numbers, one per head '
    f'({",".join(HEAD_NAMES)}).')
flags.register_validator(
    'hidden_units',
    lambda widths: all(width.isdigit() and int(width) > 0 for width in widths),
    message='--hidden_units needs positive integers.')

Split = collections.namedtuple('Split', ['features', 'labels'])
WineData = collections.namedtuple(
    'WineData', ['train', 'test', 'feature_stats', 'alcohol_mean',
                 'vivid_threshold'])


def _progress(message):
  print(message, flush=True)


def _column_name(feature_name):
  # 'od280/od315_of_diluted_wines' would read as a scope path in TF names.
  return feature_name.replace('/', '_')


def load_wine_data(seed, test_fraction=0.25):
  """Splits scikit-learn's wine data into train and held-out `Split`s.

  The split is stratified by cultivar and fixed by `seed`. Every statistic the
  model depends on (feature means and deviations, the mean alcohol content,
  the median colour intensity that defines `vivid`) comes from the training
  rows only.

  Args:
    seed: Seed of the split.
    test_fraction: Share of the rows held out.

  Returns:
    A `WineData`. Each split's `features` map column name to a float32
    `[rows, 1]` array; its `labels` map head name to a `[rows, 1]` array.

  >>> data = load_wine_data(seed=0)
  >>> len(data.train.labels['cultivar']), len(data.test.labels['cultivar'])
  (133, 45)
  >>> sorted(data.test.labels)
  ['alcohol', 'cultivar', 'vivid']
  >>> 'alcohol' in data.train.features
  False
  """
  wine = datasets.load_wine()
  table = wine.data.astype(np.float32)
  names = [_column_name(name) for name in wine.feature_names]
  column = {name: table[:, [index]] for index, name in enumerate(names)}
  train_rows, test_rows = model_selection.train_test_split(
      np.arange(len(table)), test_size=test_fraction, random_state=seed,
      stratify=wine.target)
  vivid_threshold = float(np.median(column[_COLOUR_COLUMN][train_rows]))
  labels = {
      'cultivar': wine.target.astype(np.int64)[:, np.newaxis],
      'alcohol': column[_ALCOHOL_COLUMN],
      'vivid': (column[_COLOUR_COLUMN] > vivid_threshold).astype(np.int64),
  }
  inputs = {name: values for name, values in column.items()
            if name not in (_ALCOHOL_COLUMN, _COLOUR_COLUMN)}

  def take(rows):
    return Split({name: values[rows] for name, values in inputs.items()},
                 {name: values[rows] for name, values in labels.items()})

  feature_stats = {
      name: (float(values[train_rows].mean()), float(values[train_rows].std()))
      for name, values in inputs.items()}
  return WineData(train=take(train_rows), test=take(test_rows),
                  feature_stats=feature_stats,
                  alcohol_mean=float(labels['alcohol'][train_rows].mean()),
                  vivid_threshold=vivid_threshold)


def _standardizer(mean, std):
  return lambda values: (values - mean) / std


def feature_columns(feature_stats):
  """Numeric columns that standardize with the training statistics.

  The standardization lives in the columns, so the exported model takes raw
  measurements.
  """
  return [
      tf.feature_column.numeric_column(
          name, normalizer_fn=_standardizer(mean, std))
      for name, (mean, std) in sorted(feature_stats.items())
  ]


def make_heads():
  """The three heads, in serving order: `cultivar` is the default."""
  return [
      tf.estimator.MultiClassHead(n_classes=3, name='cultivar'),
      tf.estimator.RegressionHead(name='alcohol'),
      tf.estimator.BinaryClassHead(name='vivid'),
  ]


def _dense(inputs, units, name, activation=None):
  """A fully connected layer made of plain variables."""
  with tf.compat.v1.variable_scope(name):
    kernel = tf.compat.v1.get_variable(
        'kernel', [inputs.shape[-1], units],
        initializer=tf.compat.v1.glorot_uniform_initializer())
    bias = tf.compat.v1.get_variable(
        'bias', [units], initializer=tf.compat.v1.zeros_initializer())
  outputs = tf.matmul(inputs, kernel) + bias
  return activation(outputs) if activation else outputs


class _ProgressHook(tf.estimator.SessionRunHook):
  """Prints the merged training loss a few times during `train`."""

  def __init__(self, loss, total_steps, reports=5):
    self._loss = loss
    self._total_steps = total_steps
    self._every = max(1, total_steps // reports)
    self._done = 0

  def before_run(self, run_context):
    return tf.estimator.SessionRunArgs(self._loss)

  def after_run(self, run_context, run_values):
    self._done += 1
    if self._done % self._every == 0 or self._done == self._total_steps:
      _progress(f'      step {self._done:>5}/{self._total_steps}  '
                f'merged batch loss {run_values.results:.4f}')


def model_fn(features, labels, mode, params):
  """Shared hidden layers, one linear output per head, merged by MultiHead.

  `params` holds `feature_columns`, `heads`, `head_weights`, `hidden_units`,
  `learning_rate`, `logit_offsets` (head name to a constant added to that
  head's logits) and `steps` (for progress reports).
  """
  hidden = tf.compat.v1.feature_column.input_layer(
      features, params['feature_columns'])
  for index, units in enumerate(params['hidden_units']):
    hidden = _dense(hidden, units, f'hidden{index}', tf.nn.relu)
  logits = {}
  for head in params['heads']:
    logits[head.name] = _dense(
        hidden, head.logits_dimension, f'logits_{head.name}')
    # Starting at the training mean lets a regression on raw units converge
    # in a few hundred steps.
    logits[head.name] += params['logit_offsets'].get(head.name, 0.)

  def train_op_fn(loss):
    optimizer = tf.compat.v1.train.AdamOptimizer(params['learning_rate'])
    return optimizer.minimize(
        loss, global_step=tf.compat.v1.train.get_global_step())

  multi_head = MultiHead(params['heads'], head_weights=params['head_weights'])
  spec = multi_head.create_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      train_op_fn=train_op_fn)
  if mode == tf.estimator.ModeKeys.TRAIN:
    spec = spec._replace(training_hooks=[
        _ProgressHook(spec.loss, params['steps'])])
  return spec


def _train_input_fn(split, batch_size, seed):
  def input_fn():
    dataset = tf.data.Dataset.from_tensor_slices(
        (split.features, split.labels))
    dataset = dataset.shuffle(len(split.labels['cultivar']), seed=seed)
    return dataset.repeat().batch(batch_size)
  return input_fn


def _eval_input_fn(split):
  def input_fn():
    dataset = tf.data.Dataset.from_tensor_slices(
        (split.features, split.labels))
    return dataset.batch(len(split.labels['cultivar']))
  return input_fn


def metrics_by_head(eval_results, head_names=HEAD_NAMES):
  """Regroups `{'<metric>/<head>': value}` as `{head: {metric: value}}`.

  >>> metrics_by_head({'loss': 2., 'loss/a': 1.5, 'auc/b': .75,
  ...                  'global_step': 3}, head_names=('a', 'b'))
  {'a': {'loss': 1.5}, 'b': {'auc': 0.75}}
  """
  grouped = {name: {} for name in head_names}
  for key, value in eval_results.items():
    metric, _, head = key.rpartition('/')
    if head in grouped:
      grouped[head][metric] = float(value)
  return grouped


def render_table(header, rows, left_columns=1):
  """Aligns text cells in columns; the first `left_columns` flush left.

  >>> print(render_table(['name', 'size'], [['a', '1'], ['bb', '22']]))
  name  size
  a        1
  bb      22
  """
  widths = [max(len(line[i]) for line in [header] + rows)
            for i in range(len(header))]

  def render(cells):
    text = [cell.ljust(width) if i < left_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))]
    return '  '.join(text).rstrip()

  return '\n'.join(render(line) for line in [header] + rows)


def format_metrics_table(metrics, kinds=None):
  """Renders `{head: {metric: value}}` as text: a row per head.

  Columns are the `TABLE_METRICS` that at least one head reports; a head
  without that metric shows `-`. `kinds` optionally maps head to a
  description shown in a second column.

  >>> print(format_metrics_table({'a': {'loss': 0.5, 'auc': 0.875},
  ...                             'b': {'loss': 1.25}}))
  head    loss     auc
  a     0.5000  0.8750
  b     1.2500       -
  """
  kinds = kinds or {}
  columns = [name for name in TABLE_METRICS
             if any(name in values for values in metrics.values())]
  header = ['head'] + (['kind'] if kinds else []) + columns
  rows = []
  for head, values in metrics.items():
    cells = [head] + ([kinds.get(head, '')] if kinds else [])
    cells += [f'{values[name]:.4f}' if name in values else '-'
              for name in columns]
    rows.append(cells)
  return render_table(header, rows, left_columns=2 if kinds else 1)


def serialize_examples(features, rows):
  """Encodes the given rows of a features dict as `tf.train.Example` bytes."""
  serialized = []
  for row in rows:
    example = tf.train.Example()
    for name, values in features.items():
      example.features.feature[name].float_list.value.extend(values[row])
    serialized.append(example.SerializeToString())
  return serialized


def call_signature(signature, serialized):
  """Feeds serialized examples to the signature's only input; numpy out."""
  (input_name,) = signature.structured_input_signature[1]
  outputs = signature(**{input_name: tf.constant(serialized)})
  return {key: value.numpy() for key, value in outputs.items()}


# Signatures the demo asks; the export holds more (`<head>/<output kind>`).
REQUEST_SIGNATURES = ('serving_default', 'predict', 'alcohol',
                      'vivid/classification')


def answer_request(export_path, serialized):
  """Loads the SavedModel and runs `REQUEST_SIGNATURES` on the examples.

  Returns:
    `(signature_names, answers)`: every exported signature name, sorted, and
    `{signature: {output: array}}` for the ones asked.
  """
  loaded = tf.saved_model.load(export_path, tags=['serve'])
  answers = {name: call_signature(loaded.signatures[name], serialized)
             for name in REQUEST_SIGNATURES}
  return sorted(loaded.signatures), answers


def format_answers(answers, truth):
  """Renders the served predictions next to the true values, a wine a row."""
  default = answers['serving_default']
  best = default['scores'].argmax(axis=1)
  cultivar = np.take_along_axis(default['classes'], best[:, None], axis=1)
  alcohol = answers['alcohol']['outputs'][:, 0]
  vivid_probability = answers['vivid/classification']['scores'][:, 1]
  header = ['wine', 'cultivar', 'served', 'P(served)', 'alcohol', 'served',
            'vivid', 'P(vivid)']
  rows = []
  for row in range(len(alcohol)):
    rows.append([
        str(row),
        str(truth['cultivar'][row, 0]),
        cultivar[row, 0].decode(),
        f'{default["scores"][row, best[row]]:.2f}',
        f'{truth["alcohol"][row, 0]:.2f}',
        f'{alcohol[row]:.2f}',
        str(truth['vivid'][row, 0]),
        f'{vivid_probability[row]:.2f}',
    ])
  return render_table(header, rows)


def run_demo(steps=200, model_dir=None, export_dir=None, learning_rate=0.005,
             batch_size=32, seed=7, hidden_units=(32, 16),
             head_weights=(1., 1., 1.), num_requests=5):
  """Trains, evaluates, exports and queries the wine model; prints progress.

  `model_dir` and `export_dir` default to temporary directories that are
  removed before returning (the returned `export_path` then no longer
  exists).

  Returns:
    A dict with `metrics` (`{head: {metric: value}}` on held-out wines),
    `eval_results` (the raw `evaluate` output), `metrics_table` (text),
    `export_path`, `signature_names` (all exported), `answers`
    (`{signature: {output: array}}` for `REQUEST_SIGNATURES`), `truth`
    (`{head: [num_requests, 1] array}`) and `answers_table` (text).
  """
  with contextlib.ExitStack() as cleanup:
    def temporary(purpose):
      return cleanup.enter_context(
          tempfile.TemporaryDirectory(prefix=f'wine_{purpose}_'))
    model_dir = model_dir or temporary('model')
    export_dir = export_dir or temporary('export')

    data = load_wine_data(seed)
    _progress(f'[1/5] data: {len(data.train.labels["cultivar"])} training and '
              f'{len(data.test.labels["cultivar"])} held-out wines from '
              f'scikit-learn\'s bundled copy, {len(data.feature_stats)} '
              f'features (vivid = colour intensity > '
              f'{data.vivid_threshold:.2f})')
    columns = feature_columns(data.feature_stats)
    params = {
        'feature_columns': columns,
        'heads': make_heads(),
        'head_weights': [float(weight) for weight in head_weights],
        'hidden_units': [int(units) for units in hidden_units],
        'learning_rate': learning_rate,
        'logit_offsets': {'alcohol': data.alcohol_mean},
        'steps': steps,
    }
    estimator = tf.estimator.Estimator(
        model_fn=model_fn, model_dir=model_dir, params=params,
        config=tf.estimator.RunConfig(tf_random_seed=seed,
                                      keep_checkpoint_max=1))

    _progress(f'[2/5] training {steps} steps (batch {batch_size}, learning '
              f'rate {learning_rate}, head weights {params["head_weights"]}) '
              f'in {model_dir}')
    estimator.train(_train_input_fn(data.train, batch_size, seed),
                    steps=steps)

    _progress('[3/5] evaluating on the held-out wines')
    eval_results = estimator.evaluate(_eval_input_fn(data.test))
    metrics = metrics_by_head(eval_results)
    table = format_metrics_table(metrics, HEAD_KINDS)
    _progress(table)

    _progress(f'[4/5] exporting a SavedModel under {export_dir}')
    receiver_fn = tf.estimator.export.build_parsing_serving_input_receiver_fn(
        tf.feature_column.make_parse_example_spec(columns))
    export_path = estimator.export_saved_model(
        export_dir, receiver_fn).decode()
    _progress(f'      wrote {export_path}')

    rows = range(min(num_requests, len(data.test.labels['cultivar'])))
    _progress(f'[5/5] loading it and asking {", ".join(REQUEST_SIGNATURES)} '
              f'about {len(rows)} held-out wines')
    signature_names, answers = answer_request(
        export_path, serialize_examples(data.test.features, rows))
    truth = {name: values[list(rows)]
             for name, values in data.test.labels.items()}
    answers_table = format_answers(answers, truth)
    _progress(f'      exported signatures: {", ".join(signature_names)}')
    _progress(f'      true values next to the served answers '
              f'(cultivar: serving_default, alcohol: alcohol, vivid: '
              f'vivid/classification)')
    _progress(answers_table)
    merged = answers['predict']
    agrees = np.allclose(merged['cultivar/probabilities'],
                         answers['serving_default']['scores'])
    _progress(f'      the merged predict signature answers every head at once '
              f'({len(merged)} outputs: {", ".join(sorted(merged))}); its '
              f'cultivar/probabilities match serving_default: {agrees}')
  return {
      'metrics': metrics,
      'eval_results': {key: float(value)
                       for key, value in eval_results.items()},
      'metrics_table': table,
      'export_path': export_path,
      'signature_names': signature_names,
      'answers': answers,
      'truth': truth,
      'answers_table': answers_table,
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # Estimator's and the SavedModel loader's INFO/WARNING logs (temporary
  # dirs, deprecations, fingerprints) crowd the demo's output.
  tf.get_logger().setLevel('ERROR')
  logging.set_verbosity(logging.ERROR)
  results = run_demo(
      steps=FLAGS.steps, model_dir=FLAGS.model_dir,
      export_dir=FLAGS.export_dir, learning_rate=FLAGS.learning_rate,
      batch_size=FLAGS.batch_size, seed=FLAGS.seed,
      hidden_units=FLAGS.hidden_units, head_weights=FLAGS.head_weights,
      num_requests=FLAGS.num_requests)
  accuracy = results['metrics']['cultivar']['accuracy']
  _progress(f'done: cultivar accuracy {accuracy:.3f} on held-out wines')
  return 0


if __name__ == '__main__':
  app.run(main)
