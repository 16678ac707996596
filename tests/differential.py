"""Builds one head mix as `tf.estimator.MultiHead` and as ours, runs both.

A `Mix` is a plain, hashable description of a multi-head set-up: which simple
`tf.estimator` heads, with which options, how their logits are given, which
batch shape, which loss weights and regularization. From it this module
builds the heads, deterministic inputs, and runs either multi-head:

* `run_graph` builds `create_estimator_spec` inside a fresh `tf.Graph`, as an
  Estimator would, and runs it in a `Session`: loss, predictions, eval metric
  values (all update ops run, then the values read), export outputs, TRAIN
  summaries (`merge_all`) and the variables one training step changed.
* `run_eager` calls `loss`, `predictions`, `metrics` and `update_metrics`
  directly.

Both return nested dicts of NumPy values that `assert_same_results` compares
key by key. Both multi-heads wrap `tf.estimator` simple heads built from the
same specs, so any difference comes from the multi-head itself.
`assert_same_in_graph` and `assert_same_in_eager` build the reference once
and compare ours to it with each setting of `fuse_heads` (`FUSE_SETTINGS`):
fused same-type heads must give what per-head ones give.

Given a list of batches (`make_batches`), EVAL runs them one after another
through a `tf.data` iterator, as `Estimator.evaluate` does, and `run_eager`
updates one set of metric objects batch after batch: metrics accumulate.

>>> mix = random_mix(3)
>>> mix == random_mix(3)  # The seed alone decides the mix.
True
>>> [head.logits_dimension for head in mix.heads] == [
...     head.logits_dimension for head in build_heads(mix)]
True
"""
import dataclasses
import functools

import numpy as np
import tensorflow as tf

from tensorflow.core.protobuf import rewriter_config_pb2
from tensorflow_estimator.python.estimator.export import export_output

import tensorflow_multihead

BINARY = 'binary'
MULTI_CLASS = 'multi_class'
MULTI_LABEL = 'multi_label'
REGRESSION = 'regression'
POISSON = 'poisson'
LOGISTIC = 'logistic'
KINDS = (BINARY, MULTI_CLASS, MULTI_LABEL, REGRESSION, POISSON, LOGISTIC)
# A `BinaryClassHead` subclass of its own (`DoubledLossBinaryHead`): no
# multi-head may take it for a plain `BinaryClassHead`. Not drawn at random.
DOUBLED_BINARY = 'doubled_binary'

TRAIN = tf.estimator.ModeKeys.TRAIN
EVAL = tf.estimator.ModeKeys.EVAL
PREDICT = tf.estimator.ModeKeys.PREDICT
MODES = (TRAIN, EVAL, PREDICT)

SUM_OVER_BATCH_SIZE = tf.losses.Reduction.SUM_OVER_BATCH_SIZE
SUM = tf.losses.Reduction.SUM

HEAD_NAMES = ('clicks', 'value', 'topic', 'tags', 'count', 'share', 'head_1',
              'ctr2')
VOCABULARY = ('ant', 'bee', 'cat', 'dog', 'eel')
THRESHOLDS = (0.3, 0.5, 0.7)
LEARNING_RATE = 0.1


@dataclasses.dataclass(frozen=True)
class HeadSpec:
  """One simple head: its kind, name and options.

  `width` is `n_classes` for multi-class and multi-label heads and
  `label_dimension` for regression and Poisson heads; binary and logistic
  heads have width 1. `sparse_labels` (multi-label only) feeds labels as a
  `SparseTensor` of class ids (or of strings with a vocabulary);
  `flat_labels` (width-1 heads) drops the labels' last dimension of 1.
  `loss_fn` names one of `LOSS_FNS` to pass as the head's `loss_fn`
  (binary and regression heads).
  """
  kind: str
  name: str
  width: int = 1
  vocabulary: tuple = None
  weight_column: str = None
  thresholds: tuple = ()
  class_metrics: tuple = ()
  sparse_labels: bool = False
  flat_labels: bool = False
  loss_fn: str = None

  @property
  def logits_dimension(self):
    return self.width

  def build(self, loss_reduction=SUM_OVER_BATCH_SIZE):
    """Returns a new `tf.estimator` head as this spec describes."""
    estimator = tf.estimator
    common = dict(weight_column=self.weight_column, name=self.name,
                  loss_reduction=loss_reduction)
    if self.loss_fn:
      common['loss_fn'] = LOSS_FNS[self.loss_fn]
    vocabulary = list(self.vocabulary) if self.vocabulary else None
    if self.kind in (BINARY, DOUBLED_BINARY):
      head_class = (estimator.BinaryClassHead if self.kind == BINARY
                    else DoubledLossBinaryHead)
      return head_class(
          thresholds=self.thresholds or None, label_vocabulary=vocabulary,
          **common)
    if self.kind == MULTI_CLASS:
      return estimator.MultiClassHead(
          n_classes=self.width, label_vocabulary=vocabulary, **common)
    if self.kind == MULTI_LABEL:
      return estimator.MultiLabelHead(
          n_classes=self.width, thresholds=self.thresholds or None,
          label_vocabulary=vocabulary,
          classes_for_class_based_metrics=self.class_metrics or None,
          **common)
    if self.kind == REGRESSION:
      return estimator.RegressionHead(label_dimension=self.width, **common)
    if self.kind == POISSON:
      return estimator.PoissonRegressionHead(
          label_dimension=self.width, **common)
    if self.kind == LOGISTIC:
      return estimator.LogisticRegressionHead(**common)
    raise ValueError(f'Unknown head kind {self.kind!r}.')


def _hinge_loss(labels, logits):
  """Per-example hinge loss of 0/1 labels: max(0, 1 - (2 * label - 1) * z)."""
  return tf.maximum(0., 1. - (2. * labels - 1.) * logits)


def _absolute_error(labels, logits):
  return tf.abs(labels - logits)


LOSS_FNS = {'hinge': _hinge_loss, 'absolute_error': _absolute_error}


class DoubledLossBinaryHead(tf.estimator.BinaryClassHead):
  """A user's `BinaryClassHead` whose loss counts twice, with a `margin`.

  It overrides public methods only: `loss` (so the spec's loss and
  `loss/<head>` double, `average_loss/<head>` does not) and `predictions`
  (one more key, `margin`, when all are asked for).
  """

  def loss(self, labels, logits, features=None, mode=None,
           regularization_losses=None):
    return 2. * super().loss(labels, logits, features, mode,
                             regularization_losses)

  def predictions(self, logits, keys=None):
    predictions = super().predictions(logits, keys)
    if keys is None:
      predictions['margin'] = tf.abs(logits)
    return predictions


@dataclasses.dataclass(frozen=True)
class Mix:
  """Several `HeadSpec`s and how a multi-head over them is fed.

  `batch_shape` is `(batch,)` for rank-2 logits or `(D0, D1)` for rank-3
  logits. `regularization` holds scalar regularization losses (or `None`
  to pass none). `data_seed` seeds the inputs `make_inputs` draws.
  """
  heads: tuple
  head_weights: tuple = None
  dict_logits: bool = True
  batch_shape: tuple = (4,)
  regularization: tuple = None
  loss_reduction: str = SUM_OVER_BATCH_SIZE
  data_seed: int = 0

  def __post_init__(self):
    names = [head.name for head in self.heads]
    if len(set(names)) != len(names):
      raise ValueError(f'Head names repeat: {names}')
    if self.head_weights is not None and (
        len(self.head_weights) != len(self.heads)):
      raise ValueError('One weight per head.')
    for head in self.heads:
      if head.sparse_labels and len(self.batch_shape) != 1:
        raise ValueError('Sparse labels need rank-2 logits.')

  @property
  def head_names(self):
    return tuple(head.name for head in self.heads)

  @property
  def logits_dimension(self):
    return sum(head.logits_dimension for head in self.heads)


def random_head_spec(rng, kind, name, rank):
  """Returns a `HeadSpec` of `kind` with options drawn from `rng`."""
  weight_column = f'{name}_weight' if rng.random() < 0.35 else None
  thresholds = ()
  if kind in (BINARY, MULTI_LABEL) and rng.random() < 0.5:
    count = int(rng.integers(1, len(THRESHOLDS) + 1))
    thresholds = tuple(sorted(rng.choice(THRESHOLDS, count, replace=False)))
  width, vocabulary, class_metrics, sparse = 1, None, (), False
  if kind in (MULTI_CLASS, MULTI_LABEL):
    width = int(rng.integers(2 if kind == MULTI_LABEL else 3, 5))
  elif kind in (REGRESSION, POISSON):
    width = int(rng.integers(1, 4))
  if kind in (BINARY, MULTI_CLASS, MULTI_LABEL) and rng.random() < 0.35:
    vocabulary = VOCABULARY[:max(width, 2)]
  if kind == MULTI_LABEL:
    sparse = rank == 2 and (vocabulary is not None or rng.random() < 0.3)
    if rng.random() < 0.4:
      class_metrics = (0, width - 1)
  return HeadSpec(
      kind=kind, name=name, width=width,
      vocabulary=vocabulary if kind != MULTI_LABEL or sparse else None,
      weight_column=weight_column,
      thresholds=tuple(float(t) for t in thresholds),
      class_metrics=class_metrics, sparse_labels=sparse,
      flat_labels=width == 1 and kind != MULTI_LABEL and rng.random() < 0.3)


def random_mix(seed, max_heads=4):
  """Returns a `Mix` of 1 to `max_heads` heads drawn from `seed` alone."""
  rng = np.random.default_rng(seed)
  count = int(rng.integers(1, max_heads + 1))
  names = [str(name) for name in rng.choice(HEAD_NAMES, count, replace=False)]
  rank = 3 if rng.random() < 0.25 else 2
  heads = tuple(
      random_head_spec(rng, str(rng.choice(KINDS)), name, rank)
      for name in names)
  head_weights = None
  if rng.random() < 0.5:
    head_weights = tuple(
        float(weight) for weight in np.round(rng.uniform(0.1, 3., count), 2))
  regularization = None
  if rng.random() < 0.4:
    regularization = tuple(
        float(loss) for loss in np.round(
            rng.uniform(0., 2., int(rng.integers(1, 3))), 2))
  batch_shape = (2, 3) if rank == 3 else (int(rng.integers(2, 7)),)
  return Mix(
      heads=heads, head_weights=head_weights,
      dict_logits=bool(rng.random() < 0.5), batch_shape=batch_shape,
      regularization=regularization,
      loss_reduction=SUM if rng.random() < 0.25 else SUM_OVER_BATCH_SIZE,
      data_seed=seed)


def build_heads(mix):
  """Returns new `tf.estimator` heads for `mix`, in order."""
  return [head.build(mix.loss_reduction) for head in mix.heads]


# Inputs.


@dataclasses.dataclass(frozen=True)
class SparseLabels:
  """NumPy parts of a `SparseTensor` of multi-label class ids or names."""
  indices: np.ndarray
  values: np.ndarray
  dense_shape: tuple


@dataclasses.dataclass
class Inputs:
  """NumPy features, per-head logits and per-head labels for a `Mix`."""
  features: dict
  logits: dict
  labels: dict


def _head_labels(rng, head, batch_shape):
  """Draws labels that `head` accepts for logits of `batch_shape`."""
  shape = batch_shape + (head.width,)
  if head.kind in (BINARY, DOUBLED_BINARY, MULTI_CLASS):
    ids = rng.integers(0, max(head.width, 2), batch_shape + (1,))
    labels = np.array(head.vocabulary)[ids] if head.vocabulary else ids
  elif head.kind == MULTI_LABEL:
    indicator = rng.integers(0, 2, shape)
    if not head.sparse_labels:
      return indicator
    return _sparse_class_labels(indicator, head.vocabulary)
  elif head.kind == REGRESSION:
    labels = rng.normal(size=shape).astype(np.float32)
  elif head.kind == POISSON:
    labels = rng.integers(0, 5, shape).astype(np.float32)
  else:
    labels = rng.uniform(size=shape).astype(np.float32)
  return labels[..., 0] if head.flat_labels else labels


def _sparse_class_labels(indicator, vocabulary):
  rows, class_ids = np.nonzero(indicator)
  columns = [np.sum(rows[:i] == row) for i, row in enumerate(rows)]
  values = np.array(vocabulary)[class_ids] if vocabulary else class_ids
  return SparseLabels(
      indices=np.stack([rows, columns], axis=1).astype(np.int64).reshape(-1, 2),
      values=values, dense_shape=indicator.shape)


def make_inputs(mix):
  """Returns the deterministic `Inputs` for `mix` (seeded by its seed)."""
  rng = np.random.default_rng([mix.data_seed, 7])
  features = {'x': rng.normal(size=mix.batch_shape + (1,)).astype(np.float32)}
  logits, labels = {}, {}
  for head in mix.heads:
    logits[head.name] = rng.normal(
        0., 2., mix.batch_shape + (head.logits_dimension,)).astype(np.float32)
    labels[head.name] = _head_labels(rng, head, mix.batch_shape)
    if head.weight_column:
      features[head.weight_column] = np.round(
          rng.uniform(0.2, 2., mix.batch_shape + (1,)), 2).astype(np.float32)
  return Inputs(features=features, logits=logits, labels=labels)


def make_batches(mix, count):
  """Returns `count` deterministic batches (`Inputs`) of `mix.batch_shape`.

  They are cut from one draw of `count` times as many examples along the
  first axis, so that sparse labels of all batches share a `dense_shape`.
  """
  first, rest = mix.batch_shape[0], mix.batch_shape[1:]
  drawn = make_inputs(
      dataclasses.replace(mix, batch_shape=(count * first,) + rest))
  return [_examples(drawn, start, start + first)
          for start in range(0, count * first, first)]


def _examples(inputs, start, stop):
  """The `Inputs` of examples `start` to `stop` (first axis)."""
  def cut(value):
    if not isinstance(value, SparseLabels):
      return value[start:stop]
    rows = (value.indices[:, 0] >= start) & (value.indices[:, 0] < stop)
    return SparseLabels(
        indices=value.indices[rows] - [start, 0], values=value.values[rows],
        dense_shape=(stop - start,) + tuple(value.dense_shape[1:]))
  return Inputs(*[{key: cut(value) for key, value in part.items()}
                  for part in (inputs.features, inputs.logits, inputs.labels)])


def to_tensor(value):
  """Converts a NumPy input or `SparseLabels` into a (Sparse)Tensor."""
  if isinstance(value, SparseLabels):
    return tf.sparse.SparseTensor(
        indices=value.indices, values=tf.constant(value.values),
        dense_shape=value.dense_shape)
  return tf.constant(value)


def concat_logits(mix, logits):
  """Joins per-head logits along the last axis, in head order."""
  return np.concatenate([logits[name] for name in mix.head_names], axis=-1)


def split_like_heads(mix, tensor):
  """Splits a `[..., logits_dimension]` tensor into a per-head dict."""
  pieces = tf.split(
      tensor, [head.logits_dimension for head in mix.heads], axis=-1)
  return dict(zip(mix.head_names, pieces))


# The two implementations.


def reference_multi_head(heads, head_weights=None):
  return tf.estimator.MultiHead(heads, head_weights=head_weights)


def our_multi_head(heads, head_weights=None, **options):
  """Our `MultiHead`; `options` such as `fuse_heads` go to it as given."""
  return tensorflow_multihead.MultiHead(heads, head_weights=head_weights,
                                        **options)


IMPLEMENTATIONS = {'reference': reference_multi_head, 'ours': our_multi_head}

# Every comparison with the reference checks ours with each of these.
FUSE_SETTINGS = (False, True)

# How close ours must come to `tf.estimator.MultiHead`, fused or not: within
# 1e-6 relative (issue 10's bar; AUC needs no more). The absolute floor only
# matters for values near zero (a precision of 0, a gradient that cancels),
# which float32 summed in another order leaves at ~1e-9 rather than 0.
RTOL = 1e-6
ATOL = 1e-7


def fusing(fuse_heads):
  """Returns a maker of our `MultiHead` with `fuse_heads` set."""
  return functools.partial(our_multi_head, fuse_heads=fuse_heads)


# Graph mode.


@dataclasses.dataclass(frozen=True)
class GraphOptions:
  """How `run_graph` feeds and trains.

  `logits_shape`: if set, logits come through a `placeholder` of this shape
  (e.g. `(None, None)`) instead of a constant. `train_with`: `'train_op_fn'`
  (a v1 `GradientDescentOptimizer`) or `'optimizer'` (a Keras SGD with
  `trainable_variables`). `update_ops`: also pass an update op that counts
  training steps. `static_batches`: whether EVAL over a list of batches
  knows their batch size statically (else the first dimension is `None`,
  as from an `input_fn` that batches without `drop_remainder`).
  """
  logits_shape: tuple = None
  train_with: str = 'train_op_fn'
  update_ops: bool = True
  static_batches: bool = True


# Graph rewrites off: they cost seconds per big graph and do the same to both
# implementations' graphs.
_SESSION_CONFIG = tf.compat.v1.ConfigProto(
    graph_options=tf.compat.v1.GraphOptions(
        rewrite_options=rewriter_config_pb2.RewriterConfig(
            disable_meta_optimizer=True)))


def run_graph(make_multi_head, mix, inputs, mode, options=GraphOptions()):
  """Builds the merged `EstimatorSpec` in a new graph and runs it.

  The logits are the inputs' logits plus a trainable zero `bias` (one entry
  per logit), so that a TRAIN step shows the gradient of the merged loss.

  Args:
    make_multi_head: Makes the multi-head from heads and head weights.
    mix: The `Mix`.
    inputs: One `Inputs`, fed as constants (the logits as `options` say);
      or, in EVAL only, a list of them (see `make_batches`), which a
      `tf.data` iterator yields one per session run.
    mode: The mode to build and run.
    options: `GraphOptions`.

  Returns:
    A dict with `loss`, `predictions`, `metrics` (EVAL: final values),
    `export_outputs` (PREDICT: `{key: (class name, {field: value})}`),
    `summaries` (TRAIN: `{tag: value}`), `trained_bias`, `train_op_fn_loss`
    and `update_count` (TRAIN) and `train_metric_keys` (TRAIN). For a list
    of batches, `loss` and `predictions` are lists with one entry per batch,
    and `metrics` a list of the metric values after each batch.
  """
  batches = inputs if isinstance(inputs, list) else None
  if batches is not None and (mode != EVAL or options.logits_shape):
    raise ValueError('A list of batches runs in EVAL, with constant logits.')
  with tf.Graph().as_default():
    multi_head = make_multi_head(build_heads(mix), mix.head_weights)
    bias = tf.compat.v1.get_variable(
        'bias', initializer=tf.zeros([mix.logits_dimension]))
    if batches is None:
      logits, feed = _graph_logits(mix, inputs, options.logits_shape)
      features = {key: tf.constant(value)
                  for key, value in inputs.features.items()}
      labels = None
      if mode != PREDICT:
        labels = {name: to_tensor(value)
                  for name, value in inputs.labels.items()}
    else:
      features, logits, labels = _iterator_inputs(mix, batches,
                                                  options.static_batches)
      feed = {}
    train_kwargs, train_record = _train_kwargs(bias, options)
    spec = multi_head.create_estimator_spec(
        features=features, mode=mode, logits=_add_bias(mix, logits, bias),
        labels=labels, regularization_losses=_regularization(mix),
        **train_kwargs)
    summary_op = tf.compat.v1.summary.merge_all()
    with tf.compat.v1.Session(config=_SESSION_CONFIG) as session:
      session.run([tf.compat.v1.global_variables_initializer(),
                   tf.compat.v1.local_variables_initializer(),
                   tf.compat.v1.tables_initializer()])
      if batches is not None:
        return _run_eval_batches(session, spec, len(batches))
      return _run_spec(session, feed, spec, mode, summary_op, bias,
                       train_record)


def _graph_logits(mix, inputs, logits_shape):
  """Returns the logits argument (dict or tensor) and its feed dict."""
  if logits_shape is None:
    if mix.dict_logits:
      return {name: tf.constant(value)
              for name, value in inputs.logits.items()}, {}
    return tf.constant(concat_logits(mix, inputs.logits)), {}
  if not mix.dict_logits:
    tensor = tf.compat.v1.placeholder(tf.float32, shape=logits_shape)
    return tensor, {tensor: concat_logits(mix, inputs.logits)}
  per_head, feed = {}, {}
  for head in mix.heads:
    width = None if logits_shape[-1] is None else head.logits_dimension
    placeholder = tf.compat.v1.placeholder(
        tf.float32, shape=tuple(logits_shape[:-1]) + (width,))
    per_head[head.name] = placeholder
    feed[placeholder] = inputs.logits[head.name]
  return per_head, feed


def _add_bias(mix, logits, bias):
  """Adds the trainable `bias` to the logits, cut by head for a dict."""
  if not mix.dict_logits:
    return logits + bias
  biases = split_like_heads(mix, bias)
  return {name: logits[name] + biases[name] for name in mix.head_names}


def _iterator_inputs(mix, batches, static_batches):
  """Features, logits and labels that yield the next batch at each run."""
  def batch_dataset(inputs):
    logits = inputs.logits if mix.dict_logits else concat_logits(
        mix, inputs.logits)
    return tf.data.Dataset.from_tensors((
        inputs.features, logits,
        {name: to_tensor(value) for name, value in inputs.labels.items()}))
  dataset = functools.reduce(tf.data.Dataset.concatenate,
                             [batch_dataset(batch) for batch in batches])
  if not static_batches:
    dataset = dataset.unbatch().batch(mix.batch_shape[0])
  return tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()


def _run_eval_batches(session, spec, batch_count):
  """Runs EVAL's updates batch by batch, reading the metrics after each."""
  updates = {key: update for key, (_, update)
             in spec.eval_metric_ops.items()}
  values = {key: value for key, (value, _) in spec.eval_metric_ops.items()}
  fetches = {'loss': spec.loss, 'predictions': spec.predictions,
             'updates': updates}
  results = {'loss': [], 'predictions': [], 'metrics': []}
  for _ in range(batch_count):
    batch = session.run(fetches)
    results['loss'].append(batch['loss'])
    results['predictions'].append(batch['predictions'])
    results['metrics'].append(session.run(values))
  try:
    session.run(fetches)
  except tf.errors.OutOfRangeError:
    return results
  raise AssertionError(f'The input yielded more than {batch_count} batches.')


def _train_kwargs(bias, options):
  """Returns create_estimator_spec's train arguments and what they record."""
  record = {}
  kwargs = {}
  if options.train_with == 'optimizer':
    kwargs.update(
        optimizer=tf.keras.optimizers.legacy.SGD(learning_rate=LEARNING_RATE),
        trainable_variables=[bias])
  else:
    def train_op_fn(loss):
      record['loss'] = loss
      return tf.compat.v1.train.GradientDescentOptimizer(
          LEARNING_RATE).minimize(loss, var_list=[bias])
    kwargs['train_op_fn'] = train_op_fn
  if options.update_ops:
    counter = tf.compat.v1.get_variable(
        'update_count', initializer=0, trainable=False)
    record['update_count'] = counter
    kwargs['update_ops'] = [counter.assign_add(1).op]
  return kwargs, record


def _regularization(mix):
  if mix.regularization is None:
    return None
  return [tf.constant(loss, tf.float32) for loss in mix.regularization]


def _run_spec(session, feed, spec, mode, summary_op, bias, train_record):
  """Runs `spec` the way an Estimator would in `mode`; returns values."""
  fetches = {'predictions': spec.predictions}
  if mode != PREDICT:
    fetches['loss'] = spec.loss
  if mode == TRAIN and summary_op is not None:
    fetches['summaries'] = summary_op
  if mode == TRAIN and 'loss' in train_record:
    fetches['train_op_fn_loss'] = train_record['loss']
  results = session.run(fetches, feed)
  if 'summaries' in results:
    results['summaries'] = parse_summary(results['summaries'])
  if mode == EVAL:
    session.run({key: update for key, (_, update)
                 in spec.eval_metric_ops.items()}, feed)
    results['metrics'] = session.run(
        {key: value for key, (value, _) in spec.eval_metric_ops.items()})
  elif mode == PREDICT:
    described = export_output_tensors(spec.export_outputs)
    values = session.run(
        {key: fields for key, (_, fields) in described.items()}, feed)
    results['export_outputs'] = {
        key: (kind, values[key]) for key, (kind, _) in described.items()}
  else:
    session.run(spec.train_op, feed)
    results['trained_bias'] = session.run(bias)
    results['train_metric_keys'] = sorted(spec.eval_metric_ops or {})
    if 'update_count' in train_record:
      results['update_count'] = session.run(train_record['update_count'])
  return results


def export_output_tensors(export_outputs):
  """Maps each export output to `(class name, {field: tensor})`.

  Fields: `scores`/`classes` (classification), `value` (regression) or the
  prediction keys (predict); a classification field that is `None` is left
  out.
  """
  described = {}
  for key, output in export_outputs.items():
    if isinstance(output, export_output.ClassificationOutput):
      fields = {'scores': output.scores, 'classes': output.classes}
    elif isinstance(output, export_output.RegressionOutput):
      fields = {'value': output.value}
    else:
      fields = dict(output.outputs)
    fields = {name: tensor for name, tensor in fields.items()
              if tensor is not None}
    described[key] = (type(output).__name__, fields)
  return described


def parse_summary(serialized):
  """Returns `{tag: value}` of a serialized scalar `Summary`."""
  summary = tf.compat.v1.Summary.FromString(serialized)
  return {value.tag: value.simple_value for value in summary.value}


# Eager mode.


EAGER_PARTS = ('loss', 'predictions', 'metrics')


def run_eager(make_multi_head, mix, inputs, parts=EAGER_PARTS):
  """Calls loss, predictions, metrics and update_metrics directly.

  Args:
    make_multi_head: Makes the multi-head from heads and head weights.
    mix: The `Mix`.
    inputs: One `Inputs`, or a list of batches (see `make_batches`), which
      update the metric objects of one `metrics()` call in turn.
    parts: Which of `EAGER_PARTS` to run.

  Returns:
    A dict with, as asked, `loss` and `loss_train` (with `mode=TRAIN`),
    `predictions`, and `metrics` (the values after `metrics()` and
    `update_metrics`). For a list of batches, each holds a list with one
    entry per batch (`metrics`: the values after each batch's update).
  """
  multi_head = make_multi_head(build_heads(mix), mix.head_weights)
  regularization = _regularization(mix)
  if 'metrics' in parts:
    eval_metrics = multi_head.metrics(regularization_losses=regularization)
  results = {}
  for batch in inputs if isinstance(inputs, list) else [inputs]:
    features = {key: tf.constant(value)
                for key, value in batch.features.items()}
    labels = {name: to_tensor(value) for name, value in batch.labels.items()}
    logits = eager_logits(mix, batch)
    if 'loss' in parts:
      results.setdefault('loss', []).append(multi_head.loss(
          labels, logits, features,
          regularization_losses=regularization).numpy())
      results.setdefault('loss_train', []).append(multi_head.loss(
          labels, logits, features, mode=TRAIN,
          regularization_losses=regularization).numpy())
    if 'predictions' in parts:
      results.setdefault('predictions', []).append({
          key: value.numpy()
          for key, value in multi_head.predictions(logits).items()})
    if 'metrics' in parts:
      eval_metrics = multi_head.update_metrics(
          eval_metrics, features, logits, labels,
          regularization_losses=regularization)
      results.setdefault('metrics', []).append(
          {key: metric.result().numpy()
           for key, metric in eval_metrics.items()})
  if isinstance(inputs, list):
    return results
  return {part: values[0] for part, values in results.items()}


def eager_logits(mix, inputs):
  if mix.dict_logits:
    return {name: tf.constant(value) for name, value in inputs.logits.items()}
  return tf.constant(concat_logits(mix, inputs.logits))


# Comparison.


def assert_same_results(ours, reference, rtol=1e-5, atol=1e-6, path='results'):
  """Asserts two nested results hold the same keys and (close) values.

  Dicts must have exactly the same keys; strings, bytes and integers must be
  equal; floats must agree within `rtol`/`atol`.
  """
  if isinstance(reference, dict):
    assert isinstance(ours, dict), f'{path}: {ours!r} is not a dict'
    assert sorted(ours, key=repr) == sorted(reference, key=repr), (
        f'{path}: keys differ.\n ours only: '
        f'{sorted(set(ours) - set(reference), key=repr)}\n reference only: '
        f'{sorted(set(reference) - set(ours), key=repr)}')
    for key in reference:
      assert_same_results(ours[key], reference[key], rtol, atol,
                          f'{path}[{key!r}]')
  elif isinstance(reference, (tuple, list)):
    assert isinstance(ours, (tuple, list)) and len(ours) == len(reference), (
        f'{path}: {ours!r} != {reference!r}')
    for index, (mine, theirs) in enumerate(zip(ours, reference)):
      assert_same_results(mine, theirs, rtol, atol, f'{path}[{index}]')
  else:
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert ours.shape == reference.shape, (
        f'{path}: shape {ours.shape} != {reference.shape}')
    if reference.dtype.kind in 'fc':
      assert ours.dtype == reference.dtype, (
          f'{path}: dtype {ours.dtype} != {reference.dtype}')
      np.testing.assert_allclose(ours, reference, rtol=rtol, atol=atol,
                                 err_msg=f'{path} (x: ours, y: reference)')
    else:
      assert ours.dtype.kind == reference.dtype.kind, (
          f'{path}: dtype {ours.dtype} != {reference.dtype}')
      np.testing.assert_array_equal(ours, reference,
                                    err_msg=f'{path} (x: ours, y: reference)')


def assert_ours_match(run, reference):
  """Asserts ours gives `reference` with fusion off and on.

  Args:
    run: Runs a multi-head made by the given maker, returns its results.
    reference: The reference's results.

  Both settings are always run; a failure names each setting that failed.
  """
  failures = []
  for fuse_heads in FUSE_SETTINGS:
    try:
      assert_same_results(run(fusing(fuse_heads)), reference, RTOL, ATOL,
                          path=f'ours(fuse_heads={fuse_heads})')
    except AssertionError as error:
      failures.append(str(error))
  assert not failures, '\n\n'.join(failures)


def assert_same_in_graph(mix, mode, options=GraphOptions(), inputs=None):
  """Runs `mix` in `mode` with both multi-heads; asserts equal results.

  The reference is built once; ours with every one of `FUSE_SETTINGS`.
  Returns the reference's results, so that callers can check absolute
  values too.
  """
  inputs = inputs or make_inputs(mix)
  reference = run_graph(reference_multi_head, mix, inputs, mode, options)
  assert_ours_match(
      lambda make: run_graph(make, mix, inputs, mode, options), reference)
  return reference


def assert_same_in_eager(mix, parts=EAGER_PARTS, inputs=None):
  """Runs `mix` eagerly with both multi-heads; asserts equal results.

  The reference runs once; ours with every one of `FUSE_SETTINGS`.
  Returns the reference's results.
  """
  inputs = inputs or make_inputs(mix)
  reference = run_eager(reference_multi_head, mix, inputs, parts)
  assert_ours_match(lambda make: run_eager(make, mix, inputs, parts),
                    reference)
  return reference
