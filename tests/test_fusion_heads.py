"""Fused groups of heads give what each head gives alone, in a fraction of ops.

`MultiHead` fuses heads of one type and configuration (`fusion`), computing
their losses, predictions and metrics with batched ops (`fused_heads`). Every
loss, prediction, export output, summary and metric must stay what
`tf.estimator.MultiHead` gives (1e-6 relative), metrics accumulating over
batches; bad labels must still fail as they did.
"""
import numpy as np
import pytest
import tensorflow as tf

import tensorflow_multihead as tmh
from tests import differential as d

pytestmark = pytest.mark.xdist_group('fusion')

H = d.HeadSpec
RTOL = 1e-6
ATOL = 1e-7

# Each a group of one head type with varied options; every head fuses.
GROUPS = {
    'binary': (
        H(d.BINARY, 'a', weight_column='w1', thresholds=(0.3, 0.7)),
        H(d.BINARY, 'b', vocabulary=('x', 'y'), weight_column='w2'),
        H(d.BINARY, 'c', flat_labels=True, thresholds=(0.5,))),
    'multi_class': (
        H(d.MULTI_CLASS, 'a', width=3, weight_column='w1'),
        H(d.MULTI_CLASS, 'b', width=3, vocabulary=('ant', 'bee', 'cat'),
          flat_labels=True),
        H(d.MULTI_CLASS, 'c', width=3)),
    'multi_label': (
        H(d.MULTI_LABEL, 'a', width=3, weight_column='w1', thresholds=(0.3,),
          class_metrics=(0, 2)),
        H(d.MULTI_LABEL, 'b', width=3, thresholds=(0.5, 0.7)),
        H(d.MULTI_LABEL, 'c', width=3, vocabulary=('ant', 'bee', 'cat'),
          sparse_labels=True, class_metrics=(1,))),
    'regression': (
        H(d.REGRESSION, 'a', width=2, weight_column='w1'),
        H(d.REGRESSION, 'b', width=2, weight_column='w2'),
        H(d.REGRESSION, 'c', width=2)),
    'poisson': (H(d.POISSON, 'a', width=2, weight_column='w1'),
                H(d.POISSON, 'b', width=2)),
    'logistic': (H(d.LOGISTIC, 'a', weight_column='w1'),
                 H(d.LOGISTIC, 'b', flat_labels=True)),
}


def _mix(group, **options):
  heads = GROUPS[group]
  defaults = dict(heads=heads, dict_logits=False, batch_shape=(6,),
                  regularization=(0.5,),
                  head_weights=tuple(float(i) for i in range(1, 1 + len(heads))))
  defaults.update(options)
  return d.Mix(**defaults)


def _assert_same(ours, reference):
  d.assert_same_results(ours, reference, rtol=RTOL, atol=ATOL)


def test_every_group_here_is_fused():
  for group, heads in GROUPS.items():
    multi_head = tmh.MultiHead([head.build() for head in heads])
    assert [part.names for part in multi_head._parts()] == [  # pylint: disable=protected-access
        tuple(head.name for head in heads)], group


@pytest.mark.parametrize('mode', d.MODES)
@pytest.mark.parametrize('group', sorted(GROUPS))
def test_fused_group_equals_the_reference_in_graph(group, mode):
  mix = _mix(group)
  inputs = d.make_inputs(mix)
  _assert_same(d.run_graph(d.our_multi_head, mix, inputs, mode),
               d.run_graph(d.reference_multi_head, mix, inputs, mode))


@pytest.mark.parametrize('group', ['binary', 'multi_class', 'regression'])
def test_fused_group_equals_the_reference_with_rank_3_dict_logits_and_sum(
    group):
  mix = _mix(group, dict_logits=True, batch_shape=(2, 3),
             loss_reduction=d.SUM)
  inputs = d.make_inputs(mix)
  options = d.GraphOptions(logits_shape=(None, None, None))
  for mode in d.MODES:
    _assert_same(d.run_graph(d.our_multi_head, mix, inputs, mode, options),
                 d.run_graph(d.reference_multi_head, mix, inputs, mode,
                             options))


@pytest.mark.parametrize('group', sorted(GROUPS))
def test_fused_group_equals_the_reference_eagerly(group):
  mix = _mix(group)
  inputs = d.make_inputs(mix)
  _assert_same(d.run_eager(d.our_multi_head, mix, inputs),
               d.run_eager(d.reference_multi_head, mix, inputs))


def _eval_over_batches(make_multi_head, mix, batches):
  """EVAL metric values after running the update ops on every batch.

  The inputs go through placeholders of unknown batch size, as an
  Estimator's do.
  """
  with tf.Graph().as_default():
    multi_head = make_multi_head(d.build_heads(mix), mix.head_weights)
    first = batches[0]
    features = {key: tf.compat.v1.placeholder(tf.float32, (None, 1))
                for key in first.features}
    logits = {name: tf.compat.v1.placeholder(tf.float32,
                                             (None,) + value.shape[1:])
              for name, value in first.logits.items()}
    labels = {name: tf.compat.v1.placeholder(
        tf.as_dtype(value.dtype) if value.dtype.kind != 'U' else tf.string,
        (None,) + value.shape[1:]) for name, value in first.labels.items()}
    spec = multi_head.create_estimator_spec(
        features=features, mode=d.EVAL, logits=logits, labels=labels)
    with tf.compat.v1.Session() as session:
      session.run([tf.compat.v1.local_variables_initializer(),
                   tf.compat.v1.tables_initializer()])
      for batch in batches:
        feed = {features[key]: value for key, value in batch.features.items()}
        feed.update({logits[key]: value for key, value in batch.logits.items()})
        feed.update({labels[key]: value for key, value in batch.labels.items()})
        session.run([update for _, update in spec.eval_metric_ops.values()],
                    feed)
      return session.run({key: value for key, (value, _)
                          in spec.eval_metric_ops.items()})


@pytest.mark.parametrize('group', ['binary', 'multi_label', 'regression'])
def test_fused_metrics_accumulate_over_batches_like_the_reference(group):
  heads = tuple(head for head in GROUPS[group] if not head.sparse_labels)
  mix = _mix(group, heads=heads, dict_logits=True, regularization=None,
             head_weights=None)
  batches = [d.make_inputs(d.Mix(heads=heads, batch_shape=(rows,),
                                 data_seed=seed))
             for seed, rows in ((1, 7), (2, 3), (3, 12))]
  ours = _eval_over_batches(d.our_multi_head, mix, batches)
  reference = _eval_over_batches(d.reference_multi_head, mix, batches)
  _assert_same(ours, reference)
  assert len(ours) > 10


def test_eager_fused_metrics_accumulate_like_the_per_head_path():
  mix = _mix('binary', dict_logits=True)
  batches = [d.make_inputs(d.Mix(heads=mix.heads, data_seed=seed))
             for seed in (4, 5)]
  values = {}
  for fuse in (True, False):
    multi_head = tmh.MultiHead(d.build_heads(mix), fuse_heads=fuse)
    metrics = multi_head.metrics()
    for batch in batches:
      metrics = multi_head.update_metrics(
          metrics, {k: tf.constant(v) for k, v in batch.features.items()},
          d.eager_logits(mix, batch),
          {k: d.to_tensor(v) for k, v in batch.labels.items()})
    values[fuse] = {key: metric.result().numpy()
                    for key, metric in metrics.items()}
  _assert_same(values[True], values[False])
  assert 'auc_precision_recall/b' in values[True]


def test_eager_metrics_not_from_metrics_hold_one_batch():
  mix = _mix('regression', dict_logits=True, regularization=None)
  batch = d.make_inputs(mix)
  multi_head = tmh.MultiHead(d.build_heads(mix))
  metrics = multi_head.update_metrics(
      {}, {k: tf.constant(v) for k, v in batch.features.items()},
      d.eager_logits(mix, batch),
      {k: d.to_tensor(v) for k, v in batch.labels.items()})
  reference = d.run_eager(d.reference_multi_head, mix, batch, ['metrics'])
  _assert_same({key: metric.result().numpy()
                for key, metric in metrics.items()}, reference['metrics'])


def _eval_ops(fuse_heads, count=8):
  with tf.Graph().as_default() as graph:
    heads = [tf.estimator.BinaryClassHead(name=f'h{i}') for i in range(count)]
    multi_head = tmh.MultiHead(heads, fuse_heads=fuse_heads)
    multi_head.create_estimator_spec(
        features={}, mode=d.EVAL, logits=tf.zeros([4, count]),
        labels={f'h{i}': tf.zeros([4, 1], tf.int64) for i in range(count)})
    return len(graph.get_operations())


def test_a_fused_group_builds_a_fraction_of_the_ops():
  assert _eval_ops(True) * 10 < _eval_ops(False)


def _binary_pair_spec(labels, fuse_heads=True):
  heads = [tf.estimator.BinaryClassHead(name='a'),
           tf.estimator.BinaryClassHead(name='b')]
  return tmh.MultiHead(heads, fuse_heads=fuse_heads).create_estimator_spec(
      features={}, mode=d.EVAL, logits=tf.zeros([2, 2]), labels=labels)


def test_labels_out_of_range_fail_at_run_time_as_they_did():
  with tf.Graph().as_default():
    placeholder = tf.compat.v1.placeholder(tf.int64, [None, 1])
    spec = _binary_pair_spec({'a': tf.constant([[0], [1]], tf.int64),
                              'b': placeholder})
    with tf.compat.v1.Session() as session:
      with pytest.raises(tf.errors.InvalidArgumentError,
                         match=r'Labels must be <= n_classes - 1'):
        session.run(spec.loss, {placeholder: [[0], [2]]})


def test_labels_out_of_range_raise_value_error_eagerly():
  heads = [tf.estimator.MultiClassHead(3, name='a'),
           tf.estimator.MultiClassHead(3, name='b')]
  with pytest.raises(ValueError, match=r'Labels must be <= 3 - 1'):
    tmh.MultiHead(heads).loss(
        {'a': np.array([[0], [1]]), 'b': np.array([[3], [1]])},
        tf.zeros([2, 6]))


def test_labels_of_a_wrong_shape_fail_as_the_head_fails():
  with tf.Graph().as_default():
    with pytest.raises(ValueError, match='Mismatched label shape'):
      _binary_pair_spec({'a': tf.zeros([2, 1], tf.int64),
                         'b': tf.zeros([2, 2], tf.int64)})


def test_strings_without_a_vocabulary_fail_as_the_head_fails():
  heads = [tf.estimator.MultiClassHead(3, name='a'),
           tf.estimator.MultiClassHead(3, name='b')]
  with pytest.raises(ValueError, match='Labels dtype should be integer'):
    tmh.MultiHead(heads).loss({'a': [['x']], 'b': [[1]]}, tf.zeros([1, 6]))


def test_logits_of_unknown_rank_take_each_heads_own_path():
  with tf.Graph().as_default():
    logits = tf.compat.v1.placeholder(tf.float32)
    heads = [tf.estimator.BinaryClassHead(name='a'),
             tf.estimator.BinaryClassHead(name='b')]
    spec = tmh.MultiHead(heads).create_estimator_spec(
        features={}, mode=d.PREDICT, logits={'a': logits, 'b': logits})
    with tf.compat.v1.Session() as session:
      values = session.run(spec.predictions, {logits: [[1.], [-1.]]})
  np.testing.assert_array_equal(values['b', 'class_ids'], [[1], [0]])


def test_tpu_spec_of_a_fused_group_hands_its_metrics_on_as_tensors():
  mix = _mix('binary', regularization=None)
  inputs = d.make_inputs(mix)
  with tf.Graph().as_default():
    multi_head = d.our_multi_head(d.build_heads(mix), mix.head_weights)
    features = {k: tf.constant(v) for k, v in inputs.features.items()}
    labels = {k: d.to_tensor(v) for k, v in inputs.labels.items()}
    logits = tf.constant(d.concat_logits(mix, inputs.logits))
    tpu_spec = multi_head.create_tpu_estimator_spec(
        features=features, mode=d.EVAL, logits=logits, labels=labels)
    metric_fn, tensors = tpu_spec.eval_metrics
    assert all(tensor.shape.rank >= 1 for tensor in tensors.values())
    plain = multi_head.create_estimator_spec(
        features=features, mode=d.EVAL, logits=logits, labels=labels)
    metrics = metric_fn(**tensors)
    with tf.compat.v1.Session() as session:
      session.run([tf.compat.v1.local_variables_initializer(),
                   tf.compat.v1.tables_initializer()])
      session.run([update for _, update in metrics.values()] +
                  [update for _, update in plain.eval_metric_ops.values()])
      on_tpu_path = session.run({k: value for k, (value, _)
                                 in metrics.items()})
      plain_values = session.run({k: value for k, (value, _)
                                  in plain.eval_metric_ops.items()})
  _assert_same(on_tpu_path, plain_values)
