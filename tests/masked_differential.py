"""Runs `MaskedHead` and its wrapped reference head on the labelled rows alone.

A `Case` describes one set-up: the kind of `tf.estimator` head, the rank of
the logits, the weight column's shape, how unlabelled rows are marked and
which share of rows is unlabelled. `make_batches` draws its data, with the
truth of which rows are labelled (`Batch.keep`) decided here, not by the code
under test. `run_eager` and `run_graph` then feed every batch to

* ours: `MaskedHead(head)` given every row, and
* the reference: a second, bare `head` given only the labelled rows: labels
  and weights cut in NumPy, logits cut by `tf.boolean_mask` so that its
  gradient reaches the full logits,

and return both sides' per-batch losses, gradients with respect to the full
logits and predictions on every row, and the metrics after all batches, as
NumPy values for `differential.assert_same_results`.

Unlabelled rows carry what would break the reference if it saw them: the
sentinel (out of range, NaN, or not in the vocabulary), out-of-range labels
where only the mask marks them, and NaN weights.

>>> batches = make_batches(Case(BINARY, rank=3, missing=0.4))
>>> [batch.keep.shape for batch in batches] == [(3, 4)] * BATCHES
True
>>> int(batches[0].keep.sum())  # 40 % of 12 rows are unlabelled.
7
"""
import dataclasses

import numpy as np
import tensorflow as tf

from tensorflow_multihead import MaskedHead
from tests import differential
from tests.differential import BINARY
from tests.differential import LOGISTIC
from tests.differential import MULTI_CLASS
from tests.differential import MULTI_LABEL
from tests.differential import POISSON
from tests.differential import REGRESSION

KINDS = differential.KINDS
WIDTHS = {BINARY: 1, MULTI_CLASS: 3, MULTI_LABEL: 3, REGRESSION: 2,
          POISSON: 1, LOGISTIC: 1}
VOCABULARY = ('ant', 'bee', 'cat')
ROW_SHAPES = {2: (6,), 3: (3, 4)}
BATCHES = 3

MISSING_LABEL = 'missing_label'
MASK_KEY = 'mask_key'
BOTH = 'both'
MARKINGS = (MISSING_LABEL, MASK_KEY, BOTH)
# Weight column shapes: none, `[D0, ..., DN]`, `[D0, ..., DN, 1]`.
WEIGHTS = (None, 'rows', 'rows_1')

MASK_FEATURE = 'labelled'
WEIGHT_FEATURE = 'w'
EVAL = tf.estimator.ModeKeys.EVAL


@dataclasses.dataclass(frozen=True)
class Case:
  """One differential set-up.

  `vocabulary`: string labels (binary and multi-class heads).
  `sparse`: `SparseTensor` class-id labels (multi-label head, rank 2).
  """
  kind: str
  rank: int = 2
  weight: str = None
  marking: str = MISSING_LABEL
  missing: float = 0.4
  vocabulary: bool = False
  sparse: bool = False
  seed: int = 0

  @property
  def spec(self):
    return differential.HeadSpec(
        kind=self.kind, name='task', width=WIDTHS[self.kind],
        vocabulary=VOCABULARY if self.vocabulary else None,
        weight_column=WEIGHT_FEATURE if self.weight else None)

  @property
  def missing_label(self):
    """The sentinel this case's labels use for an unlabelled row."""
    if self.vocabulary:
      return 'unknown'
    if self.kind == REGRESSION:
      return float('nan')
    return -1. if self.kind in (POISSON, LOGISTIC) else -1

  def masked_head(self):
    uses_label = self.marking in (MISSING_LABEL, BOTH)
    uses_mask = self.marking in (MASK_KEY, BOTH)
    return MaskedHead(
        self.spec.build(),
        missing_label=self.missing_label if uses_label else None,
        mask_key=MASK_FEATURE if uses_mask else None)

  def reference_head(self):
    return self.spec.build()


@dataclasses.dataclass
class Batch:
  """One batch: full inputs for ours, the labelled rows for the reference."""
  keep: np.ndarray
  logits: np.ndarray
  labels: object
  features: dict
  kept_labels: object
  kept_features: dict


def _garbage(case):
  """A label value the reference head would refuse or turn into NaN."""
  if case.vocabulary:
    return 'garbage'
  return {BINARY: 7, MULTI_CLASS: 9, MULTI_LABEL: 5, REGRESSION: np.nan,
          POISSON: np.nan, LOGISTIC: 3.}[case.kind]


def _valid_labels(case, rng, rows):
  width = WIDTHS[case.kind]
  if case.kind in (BINARY, MULTI_CLASS):
    ids = rng.integers(0, max(width, 2), rows + (1,))
    return np.array(VOCABULARY, object)[ids] if case.vocabulary else ids
  if case.kind == MULTI_LABEL:
    return rng.integers(0, 2, rows + (width,))
  if case.kind == REGRESSION:
    return rng.normal(size=rows + (width,)).astype(np.float32)
  if case.kind == POISSON:
    return rng.integers(0, 5, rows + (width,)).astype(np.float32)
  return rng.uniform(size=rows + (width,)).astype(np.float32)


def _unlabelled_positions(rng, rows, missing):
  """A bool array of `rows`: exactly `round(missing * size)` true."""
  size = int(np.prod(rows))
  chosen = rng.permutation(size)[:int(round(missing * size))]
  flat = np.zeros(size, bool)
  flat[chosen] = True
  return flat.reshape(rows)


def _mark(case, labels, unlabelled):
  """Writes the marks of `unlabelled` rows; returns the mask feature.

  With `BOTH`, every other unlabelled row is marked by the sentinel, the
  rest by the mask.
  """
  by_mask = np.zeros_like(unlabelled)
  by_label = np.zeros_like(unlabelled)
  if case.marking == MASK_KEY:
    by_mask = unlabelled
  elif case.marking == MISSING_LABEL:
    by_label = unlabelled
  else:
    alternate = np.cumsum(unlabelled).reshape(unlabelled.shape) % 2 == 0
    by_mask, by_label = unlabelled & alternate, unlabelled & ~alternate
  labels[by_label] = case.missing_label
  labels[by_mask] = _garbage(case)
  mask = ~by_mask
  if case.rank == 3:  # A float mask with a trailing 1, for variety.
    return mask[..., np.newaxis].astype(np.float32)
  return mask


def _sparse(indicator):
  """Multi-label indicator rows as `SparseLabels` of class ids.

  A row of -1s (the sentinel) becomes the single value -1; one of 5s
  (garbage), the single out-of-range value 5.
  """
  rows, columns, values = [], [], []
  for row, entries in enumerate(indicator):
    if entries[0] in (-1, 5):
      ids = [int(entries[0])]
    else:
      ids = list(np.nonzero(entries)[0])
    rows += [row] * len(ids)
    columns += list(range(len(ids)))
    values += ids
  indices = np.stack([rows, columns], axis=1).reshape(-1, 2).astype(np.int64)
  return differential.SparseLabels(
      indices=indices, values=np.array(values, np.int64),
      dense_shape=(len(indicator), indicator.shape[1]))


def _weights(case, rng, rows, unlabelled):
  weights = np.round(rng.uniform(0.2, 2., rows), 2).astype(np.float32)
  weights[unlabelled] = np.nan
  return weights[..., np.newaxis] if case.weight == 'rows_1' else weights


def make_batches(case):
  """Draws `BATCHES` batches for `case` from its seed alone."""
  rng = np.random.default_rng([case.seed, case.rank, len(case.kind)])
  rows = ROW_SHAPES[case.rank]
  batches = []
  for _ in range(BATCHES):
    labels = _valid_labels(case, rng, rows)
    unlabelled = _unlabelled_positions(rng, rows, case.missing)
    features = {MASK_FEATURE: _mark(case, labels, unlabelled),
                'x': rng.normal(size=rows + (2,)).astype(np.float32)}
    if case.weight:
      features[WEIGHT_FEATURE] = _weights(case, rng, rows, unlabelled)
    keep = ~unlabelled
    kept_labels = labels[keep]
    if case.sparse:
      labels, kept_labels = _sparse(labels), _sparse(kept_labels)
    batches.append(Batch(
        keep=keep,
        logits=rng.normal(0., 2., rows + (WIDTHS[case.kind],)).astype(
            np.float32),
        labels=labels, features=features, kept_labels=kept_labels,
        kept_features={key: value[keep] for key, value in features.items()
                       if key == WEIGHT_FEATURE}))
  return batches


# Eager mode: the Head interface called directly.


def run_eager(case):
  """Returns `(ours, reference)` results of `loss` and `update_metrics`."""
  ours, reference = case.masked_head(), case.reference_head()
  our_metrics, reference_metrics = ours.metrics(), reference.metrics()
  results = {'ours': _empty_results(), 'reference': _empty_results()}
  for batch in make_batches(case):
    logits = tf.constant(batch.logits)
    labels = differential.to_tensor(batch.labels)
    features = {key: tf.constant(value)
                for key, value in batch.features.items()}
    kept_labels = differential.to_tensor(batch.kept_labels)
    kept_features = {key: tf.constant(value)
                     for key, value in batch.kept_features.items()}
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(logits)
      kept_logits = tf.boolean_mask(logits, batch.keep)
      losses = {'ours': ours.loss(labels, logits, features),
                'reference': reference.loss(kept_labels, kept_logits,
                                            kept_features)}
    ours.update_metrics(our_metrics, features, logits, labels)
    reference.update_metrics(reference_metrics, kept_features, kept_logits,
                             kept_labels)
    for side, head in (('ours', ours), ('reference', reference)):
      gradient = tf.convert_to_tensor(tape.gradient(losses[side], logits))
      _record(results[side], losses[side], gradient, head.predictions(logits))
  results['ours']['metrics'] = _values(our_metrics)
  results['reference']['metrics'] = _values(reference_metrics)
  return results['ours'], results['reference']


def _empty_results():
  return {'loss': [], 'gradient': [], 'predictions': []}


def _record(results, loss, gradient, predictions):
  results['loss'].append(np.asarray(loss))
  results['gradient'].append(np.asarray(gradient))
  results['predictions'].append(
      {key: np.asarray(value) for key, value in predictions.items()})


def _values(metrics):
  return {key: np.asarray(metric.result()) for key, metric in metrics.items()}


# Graph mode: EVAL specs in a graph with placeholders, as an Estimator builds.


def placeholder(value, rows_rank):
  """A placeholder for `value` whose row dimensions are unknown."""
  if isinstance(value, differential.SparseLabels):
    return tf.compat.v1.sparse_placeholder(
        tf.as_dtype(value.values.dtype), shape=[None, value.dense_shape[1]])
  value = np.asarray(value)
  dtype = tf.string if value.dtype.kind in 'OUS' else tf.as_dtype(value.dtype)
  return tf.compat.v1.placeholder(
      dtype, shape=[None] * rows_rank + list(value.shape[rows_rank:]))


def feed_value(value):
  """What a session feeds for `value` (`SparseLabels` as a sparse value)."""
  if isinstance(value, differential.SparseLabels):
    return tf.compat.v1.SparseTensorValue(value.indices, value.values,
                                          value.dense_shape)
  return value


def run_graph(cases):
  """Returns `(ours, reference)` results of EVAL specs run batch by batch.

  Losses and metrics come from `create_estimator_spec(mode=EVAL)`, gradients
  from `tf.gradients` of the spec's loss. The `cases` differ in `missing`
  only: they share one graph, its metrics reset between them.

  Returns:
    One `(ours, reference)` pair per case, in order.
  """
  (shared,) = {dataclasses.replace(case, missing=0.) for case in cases}
  first = make_batches(shared)[0]
  rows_rank = shared.rank - 1
  with tf.Graph().as_default():
    inputs = {
        'logits': placeholder(first.logits, rows_rank),
        'labels': placeholder(first.labels, rows_rank),
        'kept_labels': placeholder(first.kept_labels, 1),
        'keep': tf.compat.v1.placeholder(tf.bool, [None] * rows_rank),
        'features': {key: placeholder(value, rows_rank)
                     for key, value in first.features.items()},
        'kept_features': {key: placeholder(value, 1)
                          for key, value in first.kept_features.items()},
    }
    logits = inputs['logits']
    heads = {'ours': shared.masked_head(),
             'reference': shared.reference_head()}
    specs = {
        'ours': heads['ours'].create_estimator_spec(
            features=inputs['features'], mode=EVAL, logits=logits,
            labels=inputs['labels']),
        'reference': heads['reference'].create_estimator_spec(
            features=inputs['kept_features'], mode=EVAL,
            logits=tf.boolean_mask(logits, inputs['keep']),
            labels=inputs['kept_labels']),
    }
    per_batch = {side: {
        'loss': spec.loss,
        'gradient': tf.convert_to_tensor(tf.gradients(spec.loss, logits)[0]),
        'predictions': heads[side].predictions(logits),
        'updates': [update for _, update in spec.eval_metric_ops.values()],
    } for side, spec in specs.items()}
    metric_values = {
        side: {key: value for key, (value, _) in spec.eval_metric_ops.items()}
        for side, spec in specs.items()}
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.tables_initializer())
      return [_run_batches(session, inputs, per_batch, metric_values, case)
              for case in cases]


def _run_batches(session, inputs, per_batch, metric_values, case):
  session.run(tf.compat.v1.local_variables_initializer())
  results = {'ours': _empty_results(), 'reference': _empty_results()}
  for batch in make_batches(case):
    values = session.run(per_batch, _feed(inputs, batch))
    for side, result in results.items():
      _record(result, values[side]['loss'], values[side]['gradient'],
              values[side]['predictions'])
  for side, values in session.run(metric_values).items():
    results[side]['metrics'] = values
  return results['ours'], results['reference']


def _feed(inputs, batch):
  feed = {inputs['logits']: batch.logits,
          inputs['labels']: feed_value(batch.labels),
          inputs['kept_labels']: feed_value(batch.kept_labels),
          inputs['keep']: batch.keep}
  for side in ('features', 'kept_features'):
    for key, fed in inputs[side].items():
      feed[fed] = getattr(batch, side)[key]
  return feed
