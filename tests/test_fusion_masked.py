"""`MaskedHead`s in fused groups (issue 10, item 1: "fuse through them").

A group holds, of one head type and configuration, an unmasked head and
three `MaskedHead`s with 0 %, 40 % and 100 % of their rows unlabelled
(marked by `missing_label`, `mask_key` or both; with or without a weight
column; rank-2 or rank-3 logits). Each head's batches come from
`masked_differential.make_batches`, so unlabelled rows hold sentinels,
out-of-range labels and NaN weights. `MultiHead(fuse_heads=True)` must fuse
the four heads into one group and give what `fuse_heads=False` gives, where
every `MaskedHead` cuts its own rows: the TRAIN loss and its gradient with
respect to every head's logits, the EVAL metrics after each of several
batches, and the PREDICT predictions and export outputs, within 1e-6
relative.
"""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import tensorflow_multihead as tmh
from tensorflow_multihead import fusion
from tensorflow_multihead import head_parts
from tests import differential
from tests import masked_differential as md
from tests.differential import BINARY
from tests.differential import MULTI_CLASS
from tests.differential import MULTI_LABEL

TRAIN = tf.estimator.ModeKeys.TRAIN
EVAL = tf.estimator.ModeKeys.EVAL
PREDICT = tf.estimator.ModeKeys.PREDICT
# Threshold and per-class metrics, for the heads that have them.
EXTRA_METRICS = {BINARY: dict(thresholds=(0.3, 0.7)),
                 MULTI_LABEL: dict(thresholds=(0.3, 0.7), class_metrics=(0, 2))}
# Each head's share of unlabelled rows, by head name; `None`: unmasked.
MISSING = {'plain': None, 'none_missing': 0., 'some_missing': 0.4,
           'all_missing': 1.}
HEAD_WEIGHTS = [1., 2., 0.5, 3.]


@dataclasses.dataclass(frozen=True)
class Group:
  """A group of four heads of one kind, marked and weighted alike."""
  kind: str
  rank: int = 2
  weight: str = None
  marking: str = md.MISSING_LABEL
  vocabulary: bool = False
  sparse: bool = False
  joined_logits: bool = False  # One logits tensor instead of a dict.

  def __str__(self):
    options = [self.kind, f'rank{self.rank}', self.marking,
               self.weight or 'unweighted']
    options += [name for name in ('vocabulary', 'sparse', 'joined_logits')
                if getattr(self, name)]
    return '-'.join(options)

  def case(self, name):
    missing = MISSING[name]
    return md.Case(self.kind, rank=self.rank, weight=self.weight,
                   marking=self.marking, missing=missing or 0.,
                   vocabulary=self.vocabulary, sparse=self.sparse,
                   seed=list(MISSING).index(name))

  def heads(self):
    heads = []
    for name in MISSING:
      case = self.case(name)
      head = dataclasses.replace(
          case.spec, name=name,
          weight_column=f'{name}/w' if self.weight else None,
          **EXTRA_METRICS.get(self.kind, {})).build()
      if MISSING[name] is not None:
        uses_label = self.marking in (md.MISSING_LABEL, md.BOTH)
        uses_mask = self.marking in (md.MASK_KEY, md.BOTH)
        head = tmh.MaskedHead(
            head, missing_label=case.missing_label if uses_label else None,
            mask_key=f'{name}/{md.MASK_FEATURE}' if uses_mask else None)
      heads.append(head)
    return heads

  def batches(self):
    """Per batch: `(features, logits, labels)`, NumPy, keyed per head."""
    per_head = {name: md.make_batches(self.case(name)) for name in MISSING}
    batches = []
    for index in range(md.BATCHES):
      features, logits, labels = {}, {}, {}
      for name, head_batches in per_head.items():
        batch = head_batches[index]
        features.update({f'{name}/{key}': value
                         for key, value in batch.features.items()})
        logits[name] = batch.logits
        labels[name] = batch.labels
      batches.append((features, logits, labels))
    return batches


def _multi_head(group, fuse_heads):
  return tmh.MultiHead(group.heads(), head_weights=HEAD_WEIGHTS,
                       fuse_heads=fuse_heads)


def _assert_fused(multi_head, logits=None, labels=None):
  """The four heads are one group, computed by one `FusedPart`."""
  assert multi_head._funnel.layout().plan == [(0, 1, 2, 3)]  # pylint: disable=protected-access
  parts = multi_head._parts(logits, labels)  # pylint: disable=protected-access
  assert [type(part) for part in parts] == [head_parts.FusedPart]
  assert parts[0].names == tuple(MISSING)


def _assert_same(fused, alone):
  differential.assert_same_results(fused, alone, rtol=differential.RTOL,
                                   atol=differential.ATOL)


# Eager: the Head interface, one call at a time.


def _eager(group, fuse_heads, batches=None):
  multi_head = _multi_head(group, fuse_heads)
  metrics = multi_head.metrics()
  results = {'loss': [], 'gradient': [], 'metrics': [], 'predictions': []}
  for features, logits, labels in batches or group.batches():
    logits = {name: tf.constant(value) for name, value in logits.items()}
    labels = {name: differential.to_tensor(value)
              for name, value in labels.items()}
    if fuse_heads:
      _assert_fused(multi_head, logits, labels)
    if group.joined_logits:
      logits = tf.concat(list(logits.values()), axis=-1)
    with tf.GradientTape() as tape:
      tape.watch(logits)
      loss = multi_head.loss(labels, logits, features, mode=TRAIN)
    results['loss'].append(loss.numpy())
    gradient = tape.gradient(loss, logits)
    if group.joined_logits:
      gradient = dict(zip(MISSING, tf.split(
          gradient, [head.logits_dimension for head in multi_head.heads],
          axis=-1)))
    results['gradient'].append(
        {name: value.numpy() for name, value in gradient.items()})
    multi_head.update_metrics(metrics, features, logits, labels)
    results['metrics'].append(
        {key: np.asarray(metric.result()) for key, metric in metrics.items()})
    results['predictions'].append(
        {key: np.asarray(value)
         for key, value in multi_head.predictions(logits).items()})
  return results


def _groups(kinds, ranks=(2, 3), markings=(md.MISSING_LABEL, md.MASK_KEY)):
  groups = []
  for kind in kinds:
    for rank in ranks:
      for marking in markings:
        # Weights: none, `[D0, ..., DN]` or `[D0, ..., DN, 1]`, by turns.
        for weight in (None, md.WEIGHTS[1 + (rank + len(marking)) % 2]):
          groups.append(Group(kind, rank=rank, weight=weight,
                              marking=marking))
  return groups


EAGER_GROUPS = _groups(md.KINDS) + [
    Group(BINARY, marking=md.BOTH, weight='rows'),
    Group(MULTI_LABEL, rank=3, marking=md.BOTH),
    Group(BINARY, vocabulary=True),
    Group(MULTI_CLASS, rank=3, vocabulary=True, marking=md.MASK_KEY,
          weight='rows_1'),
    Group(MULTI_LABEL, sparse=True, weight='rows'),
    Group(MULTI_LABEL, sparse=True, marking=md.MASK_KEY),
    Group(BINARY, rank=3, weight='rows', joined_logits=True),
    Group(differential.REGRESSION, marking=md.BOTH, joined_logits=True),
]


@pytest.mark.parametrize('group', EAGER_GROUPS, ids=str)
def test_eager_loss_gradients_metrics_and_predictions_equal_each_alone(group):
  fused = _eager(group, fuse_heads=True)
  _assert_same(fused, _eager(group, fuse_heads=False))
  # Something was learned and measured: the group is not trivially empty.
  assert fused['loss'][0] > 0.
  assert np.any(fused['gradient'][0]['some_missing'] != 0.)
  assert np.all(fused['gradient'][0]['all_missing'] == 0.)


# Graph: the merged specs, as an Estimator builds them, rows unknown.


def _feed(placeholders, batch):
  feed = {}
  for part, values in zip(placeholders, batch):
    for key, fed in part.items():
      feed[fed] = md.feed_value(values[key])
  return feed


def _output_tensors(output):
  """An export output's tensors by field name."""
  if isinstance(output, tf.estimator.export.PredictOutput):
    return output.outputs
  if isinstance(output, tf.estimator.export.ClassificationOutput):
    return {'scores': output.scores, 'classes': output.classes}
  return {'value': output.value}


def _graph(group, fuse_heads):
  """TRAIN, EVAL (over every batch) and PREDICT specs, run in one graph."""
  batches = group.batches()
  rows_rank = group.rank - 1
  with tf.Graph().as_default() as graph:
    placeholders = tuple(
        {key: md.placeholder(value, rows_rank) for key, value in part.items()}
        for part in batches[0])
    features, logits, labels = placeholders
    multi_head = _multi_head(group, fuse_heads)
    if fuse_heads:
      _assert_fused(multi_head, logits, labels)
    specs = {mode: multi_head.create_estimator_spec(
        features=features, mode=mode, logits=logits,
        labels=None if mode == PREDICT else labels,
        train_op_fn=lambda loss: tf.no_op()) for mode in (TRAIN, EVAL)}
    specs[PREDICT] = multi_head.create_estimator_spec(
        features=features, mode=PREDICT, logits=logits)
    names = list(logits)
    train = {'loss': specs[TRAIN].loss, 'gradient': dict(zip(names, [
        tf.convert_to_tensor(gradient) for gradient in tf.gradients(
            specs[TRAIN].loss, [logits[name] for name in names])]))}
    eval_spec = specs[EVAL]
    updates = [update for _, update in eval_spec.eval_metric_ops.values()]
    values = {key: value for key, (value, _)
              in eval_spec.eval_metric_ops.items()}
    predict = {'predictions': specs[PREDICT].predictions,
               'outputs': {key: _output_tensors(output) for key, output
                           in specs[PREDICT].export_outputs.items()}}
    results = {'train': [], 'eval': [], 'predict': []}
    with tf.compat.v1.Session() as session:
      session.run([tf.compat.v1.local_variables_initializer(),
                   tf.compat.v1.tables_initializer()])
      for batch in batches:
        feed = _feed(placeholders, batch)
        results['train'].append(session.run(train, feed))
        results['predict'].append(session.run(predict, feed))
        session.run(updates, feed)
        results['eval'].append(session.run(values))
    masked_ops = [op.name for op in graph.get_operations()
                  if 'labelled_rows/' in op.name and 'boolean_mask' in op.name]
    return results, masked_ops, len(graph.get_operations())


GRAPH_GROUPS = [
    group for kind in md.KINDS
    for group in (Group(kind, weight='rows_1'), Group(kind, rank=3))] + [
    Group(BINARY, rank=3, marking=md.MASK_KEY, weight='rows_1'),
    Group(MULTI_LABEL, rank=2, marking=md.BOTH, weight='rows'),
    Group(BINARY, vocabulary=True, marking=md.BOTH, weight='rows'),
    Group(MULTI_LABEL, sparse=True, weight='rows_1'),
]


@pytest.mark.parametrize('group', GRAPH_GROUPS, ids=str)
def test_graph_train_eval_and_predict_specs_equal_each_alone(group):
  fused, fused_cuts, fused_ops = _graph(group, fuse_heads=True)
  alone, alone_cuts, alone_ops = _graph(group, fuse_heads=False)
  _assert_same(fused, alone)
  # Fused, no MaskedHead cut its rows, and the graph is smaller.
  assert not fused_cuts and alone_cuts
  assert fused_ops < alone_ops
  assert fused['eval'][-1]['loss/none_missing'] > 0.


# Which heads fuse.


def test_masked_heads_fuse_with_unmasked_heads_of_their_kind():
  heads = [tf.estimator.BinaryClassHead(name='a'),
           tmh.MaskedHead(tf.estimator.BinaryClassHead(name='b'),
                          missing_label=-1),
           tmh.MaskedHead(tf.estimator.RegressionHead(name='c'),
                          mask_key='m'),
           tmh.MaskedHead(tf.estimator.RegressionHead(name='d'),
                          missing_label=float('nan'))]
  assert fusion.plan(heads) == [(0, 1), (2, 3)]


def test_masked_heads_that_cannot_fuse_keep_their_own_path():
  class OwnMasking(tmh.MaskedHead):
    pass

  def loss_fn(labels, logits):
    return tf.math.abs(labels - logits)

  binary = tf.estimator.BinaryClassHead
  heads = [binary(name='plain'),
           OwnMasking(binary(name='subclass'), missing_label=-1),
           tmh.MaskedHead(tmh.MaskedHead(binary(name='twice'),
                                         missing_label=-1), mask_key='m'),
           tmh.MaskedHead(binary(name='own_loss', loss_fn=loss_fn),
                          missing_label=-1),
           tmh.MaskedHead(differential.DoubledLossBinaryHead(name='custom'),
                          missing_label=-1)]
  assert fusion.plan(heads) == [(0,), (1,), (2,), (3,), (4,)]


def test_a_batch_without_labels_is_skipped_by_the_fused_loss_mean():
  """`loss/<head>` leaves out a batch where the head has no label at all."""
  group = Group(BINARY)
  batches = group.batches()
  batches[1][2]['some_missing'][:] = -1  # The sentinel on every row.
  fused = _eager(group, fuse_heads=True, batches=batches)
  _assert_same(fused, _eager(group, fuse_heads=False, batches=batches))
  after = [metrics['loss/some_missing'] for metrics in fused['metrics']]
  assert after[1] == after[0]
  assert after[2] != after[1]
  assert fused['gradient'][1]['some_missing'].tolist() == [[0.]] * 6
