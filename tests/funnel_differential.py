"""Runs a funnel of `ConditionalHead`s and reference heads side by side.

A `Case` describes one funnel: click -> conversion (-> purchase), beside a
regression head `value`, with options on the given head (`MaskedHead`,
weight column, label vocabulary), on the conditional head (`MaskedHead`,
weight column) and the rank of the logits. `make_batches` draws the data
from the case's seed: every event happens only after the one before it, so
the labels are valid, and which rows carry which label is decided here.

`reference` computes, with bare `tf.estimator` heads only:

* each head on its own logits over its labelled rows;
* each conditional head `name` on the joint logits over its labelled rows,
  the joint logit computed in float64 by the textbook formula
  log(p / (1 - p)), p the product of the chain's sigmoids, apart from the
  code under test;
* each view `<name>_given_<given>` on the conditional logits of the rows
  where the given label is known and 1 (and its own label known), cut by
  `tf.boolean_mask`;

and returns per batch the merged loss (`head_weights` applied), its
gradient with respect to every head's raw logits, the predictions (the
views' on every row), and the metrics after all batches, `loss/<name>`
included. `run_eager` (the `Head` API) and `run_graph` (the specs, as an
Estimator builds them) return the same from our `MultiHead`.
"""
import dataclasses

import numpy as np
import tensorflow as tf

import tensorflow_multihead as tmh
from tests import differential

EVENTS = ('click', 'conversion', 'purchase')
VOCABULARY = ('no', 'yes')
ROW_SHAPES = {2: (10,), 3: (3, 4)}
BATCHES = 3
HEAD_WEIGHTS = (1., 2., 1.5, 0.5)  # The events in order, then `value`.
MISSING = -1
MISSING_WORD = 'unknown'
TRAIN = tf.estimator.ModeKeys.TRAIN
EVAL = tf.estimator.ModeKeys.EVAL
PREDICT = tf.estimator.ModeKeys.PREDICT


@dataclasses.dataclass(frozen=True)
class Case:
  """One funnel set-up.

  `chain`: 2 (click -> conversion) or 3 (-> purchase). `given_masked`: the
  click head is a `MaskedHead` (a quarter of its labels missing).
  `given_weight`: the click head has a weight column, with zeros on some
  clicked rows. `masked`: the conversion head is a `MaskedHead`.
  `weight`: the conversion head has a weight column.
  """
  chain: int = 2
  given_masked: bool = False
  given_weight: bool = False
  masked: bool = False
  weight: bool = False
  vocabulary: bool = False
  rank: int = 2
  seed: int = 0

  @property
  def events(self):
    return EVENTS[:self.chain]

  @property
  def missing(self):
    return MISSING_WORD if self.vocabulary else MISSING


def _weight_key(name):
  return f'w_{name}'


def _binary(case, name, view_of=None):
  """The bare head for event `name` (named `view_of`'s view name if given)."""
  weighted = (name == 'click' and case.given_weight) or (
      name == 'conversion' and case.weight)
  return tf.estimator.BinaryClassHead(
      name=view_of or name,
      weight_column=_weight_key(name) if weighted else None,
      thresholds=[0.3] if name == 'conversion' else None,
      label_vocabulary=list(VOCABULARY) if case.vocabulary else None)


def _is_masked(case, name):
  return (name == 'click' and case.given_masked) or (
      name == 'conversion' and case.masked)


def our_heads(case):
  heads = []
  for index, name in enumerate(case.events):
    head = _binary(case, name)
    if _is_masked(case, name):
      head = tmh.MaskedHead(head, missing_label=case.missing)
    if index:
      head = tmh.ConditionalHead(head, given=case.events[index - 1])
    heads.append(head)
  return heads + [tf.estimator.RegressionHead(name='value')]


def our_multi_head(case, fuse_heads):
  return tmh.MultiHead(our_heads(case),
                       head_weights=HEAD_WEIGHTS[:case.chain] + (0.5,),
                       fuse_heads=fuse_heads)


def view_name(case, index):
  return f'{case.events[index]}_given_{case.events[index - 1]}'


# Data.


@dataclasses.dataclass
class Batch:
  """One batch: logits, labels, features; and which rows hold what."""
  logits: dict
  labels: dict
  features: dict
  known: dict  # Per event: bool rows, where its label is given.
  happened: dict  # Per event: bool rows, the truth.


def _batch(case, rng):
  rows = ROW_SHAPES[case.rank]
  happened, previous = {}, np.ones(rows, bool)
  for name in case.events:
    previous = previous & (rng.random(rows) < 0.6)
    happened[name] = previous
  flat = happened['click'].reshape(-1)
  flat[:2] = [True, False]  # Every batch has clicked and unclicked rows.
  for name in case.events[1:]:  # Keep the chain after that change.
    happened[name] &= happened['click']
  known = {}
  for name in case.events:
    known[name] = np.ones(rows, bool)
    if _is_masked(case, name):
      known[name] = rng.random(rows) > 0.25
      known[name].reshape(-1)[:2] = True
  labels = {}
  for name in case.events:
    ids = happened[name].astype(np.int64)
    label = np.array(VOCABULARY, object)[ids] if case.vocabulary else ids
    label = np.where(known[name], label, case.missing)
    labels[name] = label[..., np.newaxis]
  labels['value'] = rng.normal(size=rows + (1,)).astype(np.float32)
  logits = {name: rng.normal(scale=2., size=rows + (1,)).astype(np.float32)
            for name in case.events + ('value',)}
  features = {'x': rng.normal(size=rows + (2,)).astype(np.float32)}
  if case.given_weight:
    weights = np.round(rng.uniform(0., 2., rows), 2).astype(np.float32)
    weights.reshape(-1)[0] = 0.  # A clicked row that weighs 0 for clicks.
    features[_weight_key('click')] = weights
  if case.weight:
    features[_weight_key('conversion')] = np.round(
        rng.uniform(0.2, 2., rows + (1,)), 2).astype(np.float32)
  return Batch(logits, labels, features, known, happened)


def make_batches(case):
  rng = np.random.default_rng([case.seed, case.chain, case.rank])
  return [_batch(case, rng) for _ in range(BATCHES)]


def _labels_for_tf(labels):
  return {name: value.astype(bytes) if value.dtype == object else value
          for name, value in labels.items()}


# The reference.


def _textbook_joint(logits):
  """The joint logit of a chain's logits, in float64: log(p / (1 - p))."""
  p = tf.math.reduce_prod(
      [tf.math.sigmoid(tf.cast(value, tf.float64)) for value in logits],
      axis=0)
  return tf.cast(tf.math.log(p) - tf.math.log1p(-p), tf.float32)


class _ReferenceHead:
  """One reference head: its rows, its logits, its running metrics."""

  def __init__(self, head, event, rows_of, logits_of):
    self.head, self.event = head, event
    self.rows_of, self.logits_of = rows_of, logits_of
    self.metrics = head.metrics()
    self.loss_mean = tf.keras.metrics.Mean()

  def _cut(self, batch, logits):
    rows = self.rows_of(batch)
    features = {key: tf.boolean_mask(value, rows)
                for key, value in batch.features.items()}
    labels = _labels_for_tf(batch.labels)[self.event][rows]
    return labels, tf.boolean_mask(self.logits_of(logits), rows), features

  def loss(self, batch, logits):
    labels, cut, features = self._cut(batch, logits)
    return self.head.loss(labels, cut, features)

  def update(self, batch, logits):
    labels, cut, features = self._cut(batch, logits)
    if int(np.sum(self.rows_of(batch))):
      self.loss_mean.update_state(self.head.loss(labels, cut, features))
      self.metrics = self.head.update_metrics(self.metrics, features, cut,
                                              labels)

  def results(self):
    values = {key: metric.result().numpy()
              for key, metric in self.metrics.items()}
    values[f'loss/{self.head.name}'] = self.loss_mean.result().numpy()
    return values


def reference_heads(case):
  """The reference heads, with their weights (0: a view, in no loss)."""
  events = case.events
  heads = []
  for index, name in enumerate(events):
    known = lambda batch, name=name: batch.known[name]
    chain = events[:index + 1]
    joint = lambda logits, chain=chain: _textbook_joint(
        [logits[event] for event in chain])
    own = lambda logits, name=name: logits[name]
    heads.append((_ReferenceHead(_binary(case, name), name, known,
                                 joint if index else own),
                  HEAD_WEIGHTS[index]))
    if index:
      given = events[index - 1]
      rows = lambda batch, name=name, given=given: (
          batch.known[given] & batch.happened[given] & batch.known[name])
      heads.append((_ReferenceHead(
          _binary(case, name, view_name(case, index)), name, rows, own), 0.))
  value = tf.estimator.RegressionHead(name='value')
  everywhere = lambda batch: np.ones(ROW_SHAPES[case.rank], bool)
  heads.append((_ReferenceHead(value, 'value', everywhere,
                               lambda logits: logits['value']), 0.5))
  return heads


def _constant_logits(batch):
  return {name: tf.constant(value) for name, value in batch.logits.items()}


def reference(case, batches):
  heads = reference_heads(case)
  results = {'loss': [], 'gradient': [], 'predictions': []}
  for batch in batches:
    logits = _constant_logits(batch)
    with tf.GradientTape() as tape:
      tape.watch(logits)
      loss = tf.math.add_n([weight * head.loss(batch, logits)
                            for head, weight in heads if weight])
    results['loss'].append(loss.numpy())
    results['gradient'].append(
        {name: value.numpy()
         for name, value in tape.gradient(loss, logits).items()})
    results['predictions'].append({
        (head.head.name, key): value.numpy()
        for head, _ in heads
        for key, value in head.head.predictions(
            head.logits_of(logits)).items()})
    for head, _ in heads:
      head.update(batch, logits)
  results['metrics'] = {}
  for head, _ in heads:
    results['metrics'].update(head.results())
  return results


# Ours.


def run_eager(case, batches, fuse_heads):
  """Ours through the `Head` API: loss, gradient, predictions, metrics."""
  multi_head = our_multi_head(case, fuse_heads)
  metrics = multi_head.metrics()
  results = {'loss': [], 'gradient': [], 'predictions': []}
  for batch in batches:
    logits = _constant_logits(batch)
    labels = _labels_for_tf(batch.labels)
    with tf.GradientTape() as tape:
      tape.watch(logits)
      loss = multi_head.loss(labels, logits, batch.features)
    results['loss'].append(loss.numpy())
    results['gradient'].append(
        {name: value.numpy()
         for name, value in tape.gradient(loss, logits).items()})
    results['predictions'].append(
        {key: value.numpy()
         for key, value in multi_head.predictions(logits).items()})
    metrics = multi_head.update_metrics(metrics, batch.features, logits,
                                        labels)
  results['metrics'] = {key: metric.result().numpy()
                        for key, metric in metrics.items()}
  return results


def _placeholders(values):
  return {key: tf.compat.v1.placeholder(
      tf.string if value.dtype == object else tf.as_dtype(value.dtype),
      value.shape) for key, value in values.items()}


def _feed(placeholders, values):
  return {placeholders[key]: (value.astype(bytes) if value.dtype == object
                              else value) for key, value in values.items()}


def run_graph(case, batches, fuse_heads):
  """Ours through its TRAIN, EVAL and PREDICT specs, in one graph."""
  with tf.Graph().as_default():
    multi_head = our_multi_head(case, fuse_heads)
    first = batches[0]
    logits = _placeholders(first.logits)
    labels = _placeholders(first.labels)
    features = _placeholders(first.features)

    def spec(mode):
      return multi_head.create_estimator_spec(
          features=features, mode=mode, logits=logits,
          labels=None if mode == PREDICT else labels,
          train_op_fn=lambda loss: tf.no_op())

    train, evaluate, predict = spec(TRAIN), spec(EVAL), spec(PREDICT)
    gradients = dict(zip(logits, tf.gradients(train.loss,
                                              list(logits.values()))))
    updates = [update for _, update in evaluate.eval_metric_ops.values()]
    values = {key: value for key, (value, _)
              in evaluate.eval_metric_ops.items()}
    results = {'loss': [], 'gradient': [], 'predictions': []}
    with tf.compat.v1.Session() as session:
      session.run([tf.compat.v1.local_variables_initializer(),
                   tf.compat.v1.tables_initializer()])
      for batch in batches:
        feed = {**_feed(logits, batch.logits), **_feed(labels, batch.labels),
                **_feed(features, batch.features)}
        loss, gradient, predictions, _ = session.run(
            [train.loss, gradients, predict.predictions, updates], feed)
        results['loss'].append(loss)
        results['gradient'].append(gradient)
        results['predictions'].append(predictions)
      results['metrics'] = session.run(values)
      results['export_outputs'] = sorted(predict.export_outputs)
  return results


def assert_same(ours, theirs):
  differential.assert_same_results(ours, theirs, rtol=differential.RTOL,
                                   atol=differential.ATOL)
