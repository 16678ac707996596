"""`tensorflow_multihead.MultiHead` behaves as `tf.estimator.MultiHead`.

Every test builds the same mix of `tf.estimator` simple heads under both
multi-heads and feeds both the same inputs, then compares all that the
caller can observe: the loss, every prediction, every eval metric's final
value, every export output (its class and each tensor's value), the TRAIN
summaries and the variables a training step changed. Graph-mode tests build
the spec inside a `tf.Graph` and run it in a `Session`, as an Estimator
does; eager tests call `loss`, `predictions`, `metrics` and
`update_metrics` directly. Ours runs with `fuse_heads` off and on, each
compared with one reference run. A few hand-made mixes also pin absolute values,
so that a comparison can never pass by both sides being wrong alike.
"""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tests import differential as diff

RANDOM_SEEDS = range(24)
# EVAL builds every Keras metric of every head, the slow part; fewer seeds.
RANDOM_EVAL_SEEDS = range(8)

def _seed_params(seeds):
  return [pytest.param(seed, id=f'seed{seed}') for seed in seeds]


# The reference docstring's example, eagerly and in a graph.


def _docstring_heads():
  return [tf.estimator.MultiLabelHead(n_classes=2, name='head1'),
          tf.estimator.MultiLabelHead(n_classes=3, name='head2')]


_DOCSTRING_LOGITS = {
    'head1': np.array([[-10., 10.], [-15., 10.]], dtype=np.float32),
    'head2': np.array([[20., -20., 20.], [-30., 20., -20.]],
                      dtype=np.float32)}
_DOCSTRING_LABELS = {
    'head1': np.array([[1, 0], [1, 1]], dtype=np.int64),
    'head2': np.array([[0, 1, 0], [1, 1, 0]], dtype=np.int64)}
_DOCSTRING_FEATURES = {'x': np.array(((42,),), dtype=np.float32)}
# The values the reference docstring prints, to two decimals.
_DOCSTRING_METRICS = {
    'auc/head1': 0.17, 'auc/head2': 0.33,
    'auc_precision_recall/head1': 0.60, 'auc_precision_recall/head2': 0.40,
    'average_loss/head1': 8.75, 'average_loss/head2': 15.00,
    'loss/head1': 8.75, 'loss/head2': 15.00}


@pytest.mark.parametrize('implementation', ['reference', 'ours'])
def test_docstring_example_loss_is_23_75(implementation):
  multi_head = diff.IMPLEMENTATIONS[implementation](_docstring_heads())
  loss = multi_head.loss(_DOCSTRING_LABELS, _DOCSTRING_LOGITS,
                         features=_DOCSTRING_FEATURES)
  # Sigmoid cross entropy of |logits| >= 10 is only nearly |logits|.
  assert loss.numpy() == pytest.approx(23.75, abs=1e-4)


@pytest.mark.parametrize('implementation', ['reference', 'ours'])
def test_docstring_example_metrics_have_the_documented_values(implementation):
  multi_head = diff.IMPLEMENTATIONS[implementation](_docstring_heads())
  updated = multi_head.update_metrics(
      multi_head.metrics(), _DOCSTRING_FEATURES, _DOCSTRING_LOGITS,
      _DOCSTRING_LABELS)
  values = {key: round(float(metric.result()), 2)
            for key, metric in updated.items()}
  assert values == _DOCSTRING_METRICS


def test_docstring_example_predictions_match_reference():
  predictions = {}
  for implementation, make in diff.IMPLEMENTATIONS.items():
    predictions[implementation] = {
        key: value.numpy() for key, value in
        make(_docstring_heads()).predictions(_DOCSTRING_LOGITS).items()}
  diff.assert_same_results(predictions['ours'], predictions['reference'])
  np.testing.assert_array_equal(
      predictions['ours'][('head1', 'logits')], _DOCSTRING_LOGITS['head1'])


def test_docstring_example_in_graph_eval_has_the_documented_values():
  heads = (diff.HeadSpec(diff.MULTI_LABEL, 'head1', width=2),
           diff.HeadSpec(diff.MULTI_LABEL, 'head2', width=3))
  mix = diff.Mix(heads=heads, batch_shape=(2,))
  inputs = diff.Inputs(features=_DOCSTRING_FEATURES, logits=_DOCSTRING_LOGITS,
                       labels=_DOCSTRING_LABELS)
  reference = diff.assert_same_in_graph(mix, diff.EVAL, inputs=inputs)
  assert reference['loss'] == pytest.approx(23.75, abs=1e-4)
  assert {key: round(float(value), 2)
          for key, value in reference['metrics'].items()} == (
              _DOCSTRING_METRICS)


# A hand-made mix with known values: a binary, a 3-class and a regression
# head, weights [1, 1, 0.5] and regularization losses [0.25, 0.5].
#   clicks: logits 0, labels 1 -> each example's loss is ln 2.
#   kind: row 1 uniform -> ln 3; row 2 softmax([1, 2, 3])[2] -> 0.4076.
#   value: predictions [1, 3], labels [2, 3] -> squared errors [1, 0].

_KNOWN_MIX = diff.Mix(
    heads=(diff.HeadSpec(diff.BINARY, 'clicks'),
           diff.HeadSpec(diff.MULTI_CLASS, 'kind', width=3),
           diff.HeadSpec(diff.REGRESSION, 'value')),
    head_weights=(1., 1., 0.5), batch_shape=(2,), regularization=(0.25, 0.5))
_KNOWN_INPUTS = diff.Inputs(
    features={'x': np.zeros((2, 1), np.float32)},
    logits={'clicks': np.zeros((2, 1), np.float32),
            'kind': np.array([[0., 0., 0.], [1., 2., 3.]], np.float32),
            'value': np.array([[1.], [3.]], np.float32)},
    labels={'clicks': np.array([[1], [1]]), 'kind': np.array([[0], [2]]),
            'value': np.array([[2.], [3.]], np.float32)})
_LN2 = np.log(2.)
_KIND_LOSS = (np.log(3.) + np.log(np.exp([1., 2., 3.]).sum()) - 3.) / 2
_KNOWN_LOSS = _LN2 + _KIND_LOSS + 0.5 * 0.5 + 0.75


_KNOWN_MIX_GROUP = pytest.mark.xdist_group('differential_known_mix')


def _known_train(train_with):
  return diff.assert_same_in_graph(
      _KNOWN_MIX, diff.TRAIN, diff.GraphOptions(train_with=train_with),
      inputs=_KNOWN_INPUTS)


@pytest.fixture(scope='module')
def known_train():
  """The known mix's TRAIN results (trained by `train_op_fn`)."""
  return _known_train('train_op_fn')


@pytest.fixture(scope='module')
def known_train_by_optimizer():
  """The known mix's TRAIN results, trained by a Keras `optimizer`."""
  return _known_train('optimizer')


_BOTH_TRAINS = pytest.mark.parametrize(
    'train_results', ['known_train', 'known_train_by_optimizer'])


@pytest.fixture(scope='module')
def known_eval():
  return diff.assert_same_in_graph(_KNOWN_MIX, diff.EVAL,
                                   inputs=_KNOWN_INPUTS)


@pytest.fixture(scope='module')
def known_predict():
  return diff.assert_same_in_graph(_KNOWN_MIX, diff.PREDICT,
                                   inputs=_KNOWN_INPUTS)


@_KNOWN_MIX_GROUP
def test_known_mix_train_loss_is_weighted_sum_plus_regularization(
    known_train):
  assert known_train['loss'] == pytest.approx(_KNOWN_LOSS, rel=1e-6)


@_KNOWN_MIX_GROUP
def test_train_op_fn_receives_the_merged_loss(known_train):
  assert known_train['train_op_fn_loss'] == pytest.approx(_KNOWN_LOSS,
                                                          rel=1e-6)


@_KNOWN_MIX_GROUP
def test_known_mix_train_summaries_are_loss_per_head_and_regularization(
    known_train):
  assert known_train['summaries'] == pytest.approx({
      'loss': _KNOWN_LOSS, 'loss/clicks': _LN2, 'loss/kind': _KIND_LOSS,
      'loss/value': 0.5, 'regularization_loss': 0.75}, rel=1e-6)


@_KNOWN_MIX_GROUP
@_BOTH_TRAINS
def test_known_mix_train_step_moves_the_logits_bias_alike(train_results,
                                                          request):
  # d(loss)/d(bias): clicks mean(sigmoid(0) - 1) = -0.5; value
  # 0.5 * mean(2 * [1 - 2, 3 - 3]) = -0.5. The learning rate is 0.1.
  bias = request.getfixturevalue(train_results)['trained_bias']
  assert bias[0] == pytest.approx(0.05)
  assert bias[4] == pytest.approx(0.05)
  assert bias[1:4].sum() == pytest.approx(0., abs=1e-6)  # Softmax gradient.
  assert bias[3] > 0 > bias[2]


@_KNOWN_MIX_GROUP
@_BOTH_TRAINS
def test_update_ops_run_once_per_train_step(train_results, request):
  assert request.getfixturevalue(train_results)['update_count'] == 1


@_KNOWN_MIX_GROUP
def test_train_reports_no_eval_metrics_like_the_reference(known_train):
  assert known_train['train_metric_keys'] == []


@_KNOWN_MIX_GROUP
def test_known_mix_eval_metrics_include_loss_per_head_and_regularization(
    known_eval):
  metrics = known_eval['metrics']
  assert known_eval['loss'] == pytest.approx(_KNOWN_LOSS, rel=1e-6)
  assert metrics['regularization_loss/clicks_kind_value'] == (
      pytest.approx(0.75))
  assert metrics['loss/clicks'] == pytest.approx(_LN2, rel=1e-6)
  assert metrics['loss/kind'] == pytest.approx(_KIND_LOSS, rel=1e-6)
  assert metrics['loss/value'] == pytest.approx(0.5)
  assert metrics['average_loss/value'] == pytest.approx(0.5)
  assert metrics['accuracy/kind'] == 1.
  assert sorted(metrics) == [
      'accuracy/clicks', 'accuracy/kind', 'accuracy_baseline/clicks',
      'auc/clicks', 'auc_precision_recall/clicks', 'average_loss/clicks',
      'average_loss/kind', 'average_loss/value', 'label/mean/clicks',
      'label/mean/value', 'loss/clicks', 'loss/kind', 'loss/value',
      'precision/clicks', 'prediction/mean/clicks', 'prediction/mean/value',
      'recall/clicks', 'regularization_loss/clicks_kind_value']


@_KNOWN_MIX_GROUP
def test_known_mix_export_outputs_serve_the_first_head_and_every_head(
    known_predict):
  outputs = known_predict['export_outputs']
  assert {key: kind for key, (kind, _) in outputs.items()} == {
      'serving_default': 'ClassificationOutput',
      'clicks': 'ClassificationOutput',
      'clicks/classification': 'ClassificationOutput',
      'clicks/regression': 'RegressionOutput',
      'clicks/predict': 'PredictOutput',
      'kind': 'ClassificationOutput',
      'kind/classification': 'ClassificationOutput',
      'kind/predict': 'PredictOutput',
      'value': 'RegressionOutput',
      'value/regression': 'RegressionOutput',
      'value/predict': 'PredictOutput',
      'predict': 'PredictOutput'}
  np.testing.assert_allclose(outputs['serving_default'][1]['scores'],
                             [[0.5, 0.5], [0.5, 0.5]])
  np.testing.assert_allclose(outputs['value'][1]['value'], [[1.], [3.]])
  assert sorted(outputs['predict'][1]) == [
      'clicks/all_class_ids', 'clicks/all_classes', 'clicks/class_ids',
      'clicks/classes', 'clicks/logistic', 'clicks/logits',
      'clicks/probabilities', 'kind/all_class_ids', 'kind/all_classes',
      'kind/class_ids', 'kind/classes', 'kind/logits', 'kind/probabilities',
      'value/predictions']
  np.testing.assert_array_equal(outputs['predict'][1]['kind/classes'],
                                [[b'0'], [b'2']])


@_KNOWN_MIX_GROUP
@pytest.mark.parametrize('results', ['known_train', 'known_eval',
                                     'known_predict'])
def test_known_mix_predictions_are_keyed_by_head_and_key(results, request):
  predictions = request.getfixturevalue(results)['predictions']
  assert sorted(predictions) == [
      ('clicks', 'all_class_ids'), ('clicks', 'all_classes'),
      ('clicks', 'class_ids'), ('clicks', 'classes'), ('clicks', 'logistic'),
      ('clicks', 'logits'), ('clicks', 'probabilities'),
      ('kind', 'all_class_ids'), ('kind', 'all_classes'),
      ('kind', 'class_ids'), ('kind', 'classes'), ('kind', 'logits'),
      ('kind', 'probabilities'), ('value', 'predictions')]
  np.testing.assert_allclose(predictions[('kind', 'probabilities')][1],
                             np.exp([1., 2., 3.]) / np.exp([1., 2., 3.]).sum(),
                             rtol=1e-6)


# Logits of unknown static shape.

_PLACEHOLDER_MIX = diff.Mix(
    heads=(diff.HeadSpec(diff.MULTI_CLASS, 'kind', width=3,
                         vocabulary=('ant', 'bee', 'cat')),
           diff.HeadSpec(diff.BINARY, 'clicks', weight_column='w',
                         thresholds=(0.3,)),
           diff.HeadSpec(diff.POISSON, 'count', width=2)),
    head_weights=(1., 2., 1.5), dict_logits=False, batch_shape=(5,),
    regularization=(0.1,), data_seed=101)


_UNKNOWN_SHAPES = {'unknown_batch': (None, 6),
                   'unknown_batch_and_width': (None, None)}


@pytest.mark.parametrize('mode', [diff.TRAIN, diff.PREDICT])
@pytest.mark.parametrize('shape', sorted(_UNKNOWN_SHAPES))
@pytest.mark.parametrize('dict_logits', [False, True], ids=['tensor', 'dict'])
def test_placeholder_logits_of_unknown_shape_match_reference(
    mode, shape, dict_logits):
  mix = dataclasses.replace(_PLACEHOLDER_MIX, dict_logits=dict_logits)
  assert mix.logits_dimension == 6
  reference = diff.assert_same_in_graph(
      mix, mode, diff.GraphOptions(logits_shape=_UNKNOWN_SHAPES[shape]))
  assert reference['predictions'][('count', 'predictions')].shape == (5, 2)


# EVAL builds every head's Keras metrics, the slow part: two variants only.
@pytest.mark.parametrize('shape, dict_logits', [
    ('unknown_batch_and_width', False), ('unknown_batch', True)])
def test_placeholder_logits_of_unknown_shape_match_reference_in_eval(
    shape, dict_logits):
  mix = dataclasses.replace(_PLACEHOLDER_MIX, dict_logits=dict_logits)
  reference = diff.assert_same_in_graph(
      mix, diff.EVAL, diff.GraphOptions(logits_shape=_UNKNOWN_SHAPES[shape]))
  assert reference['metrics']['loss/count'] > 0.


# Rank-3 logits: every kind of head at once.

_RANK_3_MIX = diff.Mix(
    heads=(diff.HeadSpec(diff.BINARY, 'clicks', weight_column='w',
                         vocabulary=('ant', 'bee')),
           diff.HeadSpec(diff.MULTI_CLASS, 'kind', width=3),
           diff.HeadSpec(diff.MULTI_LABEL, 'tags', width=2,
                         thresholds=(0.5,)),
           diff.HeadSpec(diff.REGRESSION, 'value', width=2),
           diff.HeadSpec(diff.POISSON, 'count'),
           diff.HeadSpec(diff.LOGISTIC, 'share', flat_labels=True)),
    dict_logits=False, batch_shape=(2, 3), regularization=(0.5,),
    data_seed=303)


@pytest.mark.parametrize('mode', diff.MODES)
def test_rank_3_logits_for_every_kind_of_head_match_reference(mode):
  reference = diff.assert_same_in_graph(_RANK_3_MIX, mode)
  assert reference['predictions'][('kind', 'probabilities')].shape == (
      2, 3, 3)


# Random mixes.


def test_random_mixes_cover_every_option():
  mixes = [diff.random_mix(seed) for seed in RANDOM_SEEDS]
  heads = [head for mix in mixes for head in mix.heads]
  assert {head.kind for head in heads} == set(diff.KINDS)
  assert {len(mix.heads) for mix in mixes} == {1, 2, 3, 4}
  assert {mix.dict_logits for mix in mixes} == {True, False}
  assert {len(mix.batch_shape) for mix in mixes} == {1, 2}
  assert {mix.head_weights is None for mix in mixes} == {True, False}
  assert {mix.regularization is None for mix in mixes} == {True, False}
  assert {mix.loss_reduction for mix in mixes} == {diff.SUM,
                                                    diff.SUM_OVER_BATCH_SIZE}
  for option in ('vocabulary', 'weight_column', 'thresholds',
                 'class_metrics', 'sparse_labels', 'flat_labels'):
    assert any(getattr(head, option) for head in heads), option
  eval_mixes = [diff.random_mix(seed) for seed in RANDOM_EVAL_SEEDS]
  assert {head.kind for mix in eval_mixes for head in mix.heads} == set(
      diff.KINDS)


def _random_graph_options(seed):
  """Varies how logits are fed and how TRAIN trains, by seed."""
  mix = diff.random_mix(seed)
  unknown = (None,) * len(mix.batch_shape)
  logits_shape = (None, unknown + (mix.logits_dimension,),
                  unknown + (None,))[seed % 3]
  return diff.GraphOptions(
      logits_shape=logits_shape,
      train_with=('train_op_fn', 'optimizer')[seed % 2])


def _assert_random_mix_in_graph(seed, mode):
  mix = diff.random_mix(seed)
  reference = diff.assert_same_in_graph(mix, mode,
                                        _random_graph_options(seed))
  for name in mix.head_names:
    assert any(key[0] == name for key in reference['predictions'])
  return mix, reference


@pytest.mark.parametrize('seed', _seed_params(RANDOM_SEEDS))
def test_random_mix_train_matches_reference_in_graph(seed):
  mix, reference = _assert_random_mix_in_graph(seed, diff.TRAIN)
  expected_tags = {'loss'} | {f'loss/{name}' for name in mix.head_names}
  if mix.regularization:
    expected_tags.add('regularization_loss')
  assert set(reference['summaries']) == expected_tags
  assert reference['update_count'] == 1
  assert np.any(reference['trained_bias'] != 0.)


@pytest.mark.parametrize('seed', _seed_params(RANDOM_EVAL_SEEDS))
def test_random_mix_eval_matches_reference_in_graph(seed):
  mix, reference = _assert_random_mix_in_graph(seed, diff.EVAL)
  for name in mix.head_names:
    assert f'loss/{name}' in reference['metrics']
    assert f'average_loss/{name}' in reference['metrics']
  if mix.regularization:
    key = 'regularization_loss/' + '_'.join(mix.head_names)
    assert reference['metrics'][key] == pytest.approx(
        sum(mix.regularization))


@pytest.mark.parametrize('seed', _seed_params(RANDOM_SEEDS))
def test_random_mix_predict_matches_reference_in_graph(seed):
  mix, reference = _assert_random_mix_in_graph(seed, diff.PREDICT)
  outputs = reference['export_outputs']
  diff.assert_same_results(outputs['serving_default'],
                           outputs[mix.head_names[0]])
  assert outputs['predict'][0] == 'PredictOutput'
  for name in mix.head_names:
    assert f'{name}/predict' in outputs


@pytest.mark.parametrize('seed', _seed_params(RANDOM_SEEDS))
def test_random_mix_loss_and_metrics_match_reference_eagerly(seed):
  mix = diff.random_mix(seed)
  inputs = diff.make_inputs(mix)
  reference = diff.assert_same_in_eager(mix, ('loss', 'metrics'), inputs)
  assert reference['loss'] == pytest.approx(
      _expected_loss(mix, inputs), rel=1e-5)
  assert reference['loss_train'] == pytest.approx(reference['loss'])


@pytest.mark.parametrize(
    'seed', _seed_params(RANDOM_SEEDS))
def test_random_mix_predictions_match_reference_eagerly(seed):
  mix = diff.random_mix(seed)
  reference = diff.assert_same_in_eager(mix, ('predictions',))
  assert {name for name, _ in reference['predictions']} == set(mix.head_names)


def _expected_loss(mix, inputs):
  """The weighted sum of each simple head's own loss, plus regularization."""
  features = {key: tf.constant(value)
              for key, value in inputs.features.items()}
  weights = mix.head_weights or (1.,) * len(mix.heads)
  total = sum(mix.regularization or ())
  for head, weight in zip(diff.build_heads(mix), weights):
    total += weight * float(head.loss(
        labels=diff.to_tensor(inputs.labels[head.name]),
        logits=tf.constant(inputs.logits[head.name]), features=features))
  return total


# Interfaces the reference heads have that a merger must respect.


def test_predictions_work_with_a_regression_head():
  heads = [tf.estimator.RegressionHead(name='value'),
           tf.estimator.BinaryClassHead(name='clicks')]
  logits = {'value': np.array([[1.5]], np.float32),
            'clicks': np.array([[0.]], np.float32)}
  for make in diff.IMPLEMENTATIONS.values():
    predictions = make(heads).predictions(logits)
    np.testing.assert_allclose(predictions[('value', 'predictions')], [[1.5]])


def test_update_metrics_takes_regularization_losses_fifth_like_reference():
  values = {}
  for implementation, make in diff.IMPLEMENTATIONS.items():
    multi_head = make(_docstring_heads())
    regularization = [tf.constant(2.)]
    updated = multi_head.update_metrics(
        multi_head.metrics(regularization), _DOCSTRING_FEATURES,
        _DOCSTRING_LOGITS, _DOCSTRING_LABELS, regularization)
    values[implementation] = float(
        updated['regularization_loss/head1_head2'].result())
  assert values == {'reference': 2., 'ours': 2.}
