"""`contrib.multi_head` merges TF 1.x and v2 heads as `tf.contrib.estimator`.

Every merged output is checked against the heads' own outputs on the same
inputs: the merged loss is the weighted sum of the heads' losses, the merged
metrics are the heads' metrics plus `loss/<head>`, the predictions are the
heads' keyed `(head, key)`, and the exports are the heads' exports. Where the
heads are v2 heads, the merged head must also agree with
`tensorflow_multihead.MultiHead`, whose merging logic it shares, and refuse
bad input with the same errors. Specs are built in a `tf.Graph` and run in a
`Session`, as an Estimator does.
"""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_estimator.python.estimator.canned import head as canned_head

from tensorflow_multihead import contrib
from tensorflow_multihead import MultiHead
from tensorflow_multihead.contrib import head_adapter

ModeKeys = tf.estimator.ModeKeys
NAMES = ('kind', 'buy', 'tags')
HEAD_WEIGHTS = (1., 0.5, 2.)
FEATURES = {'w': np.array([[1.], [2.], [0.5], [1.]], np.float32)}
LOGITS = {
    'kind': np.array([[1., 2., 3.], [3., 1., 0.], [0., 0., 5.], [1., 1., 1.]],
                     np.float32),
    'buy': np.array([[-1.], [2.], [0.5], [-3.]], np.float32),
    'tags': np.array([[-2., 1.], [3., -1.], [0.2, 0.4], [1., 1.]],
                     np.float32),
}
LABELS = {
    'kind': np.array([[2], [0], [1], [1]]),
    'buy': np.array([[0.], [1.], [0.], [1.]], np.float32),
    'tags': np.array([[0, 1], [1, 0], [0, 1], [1, 1]]),
}


def _tf1_heads():
  return [contrib.multi_class_head(3, name='kind'),
          contrib.binary_classification_head(weight_column='w', name='buy'),
          contrib.multi_label_head(2, name='tags')]


def _v2_heads():
  return [tf.estimator.MultiClassHead(3, name='kind'),
          tf.estimator.BinaryClassHead(weight_column='w', name='buy'),
          tf.estimator.MultiLabelHead(2, name='tags')]


def _mixed_heads():
  """TF 1.x and v2 heads side by side."""
  return [contrib.multi_class_head(3, name='kind'),
          tf.estimator.BinaryClassHead(weight_column='w', name='buy'),
          contrib.multi_label_head(2, name='tags')]


def _split_logits():
  return np.concatenate([LOGITS[name] for name in NAMES], axis=1)


def _initialize(session):
  session.run([tf.compat.v1.global_variables_initializer(),
               tf.compat.v1.local_variables_initializer(),
               tf.compat.v1.tables_initializer()])


def _run(session, structure):
  """Runs the tensors in `structure`, keeping its other values as they are."""
  leaves = tf.nest.flatten(structure)
  tensors = [leaf for leaf in leaves if tf.is_tensor(leaf)]
  values = iter(session.run(tensors))
  return tf.nest.pack_sequence_as(
      structure, [next(values) if tf.is_tensor(leaf) else leaf
                  for leaf in leaves])


def _output_tensors(output):
  """The tensors an export output serves, by name."""
  if hasattr(output, 'outputs'):
    return output.outputs
  if hasattr(output, 'value'):
    return {'value': output.value}
  return {'scores': output.scores, 'classes': output.classes}


def _metric_values(session, eval_metric_ops):
  session.run({key: op for key, (_, op) in eval_metric_ops.items()})
  return session.run(
      {key: value for key, (value, _) in eval_metric_ops.items()})


def _regularization(losses):
  return None if losses is None else [tf.constant(loss) for loss in losses]


def _eval(head, logits=None, labels=LABELS, regularization=None):
  """EVAL loss and metric values of `head` on the shared inputs."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    spec = head.create_estimator_spec(
        features=FEATURES, mode=ModeKeys.EVAL,
        logits=LOGITS if logits is None else logits, labels=labels,
        regularization_losses=_regularization(regularization))
    _initialize(session)
    metrics = _metric_values(session, spec.eval_metric_ops)
    return session.run(spec.loss), metrics


def _predict(head, logits=None):
  """PREDICT predictions, and the export outputs' classes and tensors."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    spec = head.create_estimator_spec(
        features={}, mode=ModeKeys.PREDICT,
        logits=LOGITS if logits is None else logits)
    _initialize(session)
    outputs = {key: (type(output).__name__,
                     session.run(_output_tensors(output)))
               for key, output in spec.export_outputs.items()}
    return session.run(spec.predictions), outputs


def _own_eval(head):
  """A head's EVAL loss and metrics on its share of the inputs."""
  return _eval(head, logits=LOGITS[head.name], labels=LABELS[head.name])


def _assert_close(actual, expected):
  assert sorted(actual, key=str) == sorted(expected, key=str)
  for key, value in expected.items():
    if np.asarray(value).dtype.kind in 'SUO':
      np.testing.assert_array_equal(actual[key], value, err_msg=str(key))
    else:
      np.testing.assert_allclose(actual[key], value, rtol=1e-5, atol=1e-6,
                                 err_msg=str(key))


# What it is.


def test_multi_head_is_a_tf1_head_named_after_its_heads():
  head = contrib.multi_head(_mixed_heads(), head_weights=HEAD_WEIGHTS)
  assert isinstance(head, canned_head._Head)  # pylint: disable=protected-access
  assert head.name == 'kind_buy_tags'
  assert head.logits_dimension == 3 + 1 + 2
  assert head.head_weights == HEAD_WEIGHTS
  assert head.default_head == 'kind'


# The loss.


def _loss_spec(head, logits=None, labels=None, features=FEATURES):
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    spec = head.create_loss(features=features, mode=ModeKeys.TRAIN,
                            logits=LOGITS if logits is None else logits,
                            labels=LABELS if labels is None else labels)
    _initialize(session)
    return _run(session, spec)


@pytest.mark.parametrize('make_heads', [_tf1_heads, _mixed_heads])
def test_create_loss_is_the_weighted_sum_of_the_heads_losses(make_heads):
  merged = _loss_spec(contrib.multi_head(make_heads(), HEAD_WEIGHTS))
  own = {head.name: _loss_spec(
      contrib.multi_head([head]), logits={head.name: LOGITS[head.name]},
      labels={head.name: LABELS[head.name]}) for head in make_heads()}
  assert merged.training_loss == pytest.approx(sum(
      weight * own[name].training_loss
      for name, weight in zip(NAMES, HEAD_WEIGHTS)))
  for name, weight in zip(NAMES, HEAD_WEIGHTS):
    # As in tf.contrib.estimator, the head weight scales both.
    np.testing.assert_allclose(merged.unreduced_loss[name],
                               weight * own[name].unreduced_loss[name],
                               rtol=1e-6)
    np.testing.assert_allclose(merged.weights[name],
                               weight * own[name].weights[name], rtol=1e-6)
    np.testing.assert_array_equal(merged.processed_labels[name],
                                  own[name].processed_labels[name])


def test_create_loss_of_one_head_is_that_heads_own_loss_spec():
  tf1_head = contrib.binary_classification_head(weight_column='w',
                                                name='buy')
  merged = _loss_spec(contrib.multi_head([tf1_head]),
                      logits={'buy': LOGITS['buy']},
                      labels={'buy': LABELS['buy']})
  own = _loss_spec(tf1_head, logits=LOGITS['buy'], labels=LABELS['buy'])
  assert merged.training_loss == pytest.approx(own.training_loss)
  np.testing.assert_allclose(merged.unreduced_loss['buy'],
                             own.unreduced_loss)
  np.testing.assert_allclose(merged.weights['buy'], own.weights)


def test_create_loss_of_a_v2_head_takes_its_unreduced_loss_and_weights():
  spec = _loss_spec(
      contrib.multi_head([tf.estimator.RegressionHead(weight_column='w',
                                                      name='price')]),
      logits={'price': np.array([[1.], [2.], [3.], [4.]], np.float32)},
      labels={'price': np.array([[1.], [0.], [1.], [0.]], np.float32)})
  np.testing.assert_allclose(spec.unreduced_loss['price'],
                             [[0.], [4.], [4.], [16.]])
  np.testing.assert_allclose(spec.weights['price'], FEATURES['w'])
  # The v2 head's own SUM_OVER_BATCH_SIZE: (0 + 8 + 2 + 16) / 4.
  assert spec.training_loss == pytest.approx(6.5)


def test_create_loss_of_a_nested_v2_multi_head_has_no_unreduced_loss():
  inner = MultiHead([tf.estimator.RegressionHead(name='a'),
                     tf.estimator.RegressionHead(name='b')])
  spec = _loss_spec(
      contrib.multi_head([inner]), features={},
      logits={'a_b': np.array([[1., 2.]], np.float32)},
      labels={'a_b': {'a': np.array([[0.]], np.float32),
                      'b': np.array([[0.]], np.float32)}})
  assert spec.training_loss == pytest.approx(5.)
  assert spec.unreduced_loss == {'a_b': None}


def test_loss_spec_parts_are_unscaled_without_head_weights():
  merged = _loss_spec(contrib.multi_head(_tf1_heads()))
  own = _loss_spec(contrib.multi_class_head(3, name='kind'),
                   logits=LOGITS['kind'], labels=LABELS['kind'])
  np.testing.assert_allclose(merged.unreduced_loss['kind'],
                             own.unreduced_loss)


# EVAL.


@pytest.mark.parametrize('make_heads', [_tf1_heads, _mixed_heads])
def test_eval_merges_the_heads_metrics_and_adds_each_heads_loss(make_heads):
  loss, metrics = _eval(contrib.multi_head(make_heads(), HEAD_WEIGHTS))
  expected_loss, expected = 0., {}
  for head, weight in zip(make_heads(), HEAD_WEIGHTS):
    own_loss, own_metrics = _own_eval(head)
    expected_loss += weight * own_loss
    expected.update(own_metrics)
    expected[f'loss/{head.name}'] = own_loss
  assert loss == pytest.approx(expected_loss)
  _assert_close(metrics, expected)


def test_eval_reports_the_tf1_metric_keys():
  _, metrics = _eval(contrib.multi_head(_tf1_heads()))
  assert sorted(metrics) == [
      'accuracy/buy', 'accuracy/kind', 'accuracy_baseline/buy', 'auc/buy',
      'auc/tags', 'auc_precision_recall/buy', 'auc_precision_recall/tags',
      'average_loss/buy', 'average_loss/kind', 'average_loss/tags',
      'label/mean/buy', 'loss/buy', 'loss/kind', 'loss/tags',
      'precision/buy', 'prediction/mean/buy', 'recall/buy']


def test_eval_adds_regularization_to_the_merged_loss_not_the_heads():
  plain_loss, plain = _eval(contrib.multi_head(_tf1_heads()))
  loss, metrics = _eval(contrib.multi_head(_tf1_heads()),
                        regularization=[0.25, 0.5])
  assert loss == pytest.approx(plain_loss + 0.75)
  assert metrics.pop('regularization_loss/kind_buy_tags') == pytest.approx(
      0.75)
  _assert_close(metrics, plain)


def test_empty_regularization_losses_add_nothing():
  plain_loss, _ = _eval(contrib.multi_head(_tf1_heads()))
  loss, metrics = _eval(contrib.multi_head(_tf1_heads()),
                        regularization=[])
  assert loss == pytest.approx(plain_loss)
  assert 'regularization_loss/kind_buy_tags' not in metrics


def test_labels_for_no_head_are_ignored_as_tf1_did():
  loss, _ = _eval(contrib.multi_head(_tf1_heads()),
                  labels={**LABELS, 'unused': np.zeros([4, 1])})
  expected, _ = _eval(contrib.multi_head(_tf1_heads()))
  assert loss == pytest.approx(expected)


# PREDICT.


@pytest.mark.parametrize('make_heads', [_tf1_heads, _mixed_heads])
def test_predictions_are_the_heads_keyed_by_head_and_key(make_heads):
  predictions, _ = _predict(contrib.multi_head(make_heads()))
  expected = {}
  for head in make_heads():
    own, _ = _predict(head, logits=LOGITS[head.name])
    expected.update({(head.name, key): value for key, value in own.items()})
  _assert_close(predictions, expected)


def test_exports_serve_every_head_and_the_first_by_default():
  _, outputs = _predict(contrib.multi_head(_tf1_heads()))
  assert {key: kind for key, (kind, _) in outputs.items()} == {
      'serving_default': 'ClassificationOutput',
      'kind': 'ClassificationOutput',
      'kind/classification': 'ClassificationOutput',
      'kind/predict': 'PredictOutput',
      'buy': 'ClassificationOutput',
      'buy/classification': 'ClassificationOutput',
      'buy/regression': 'RegressionOutput',
      'buy/predict': 'PredictOutput',
      'tags': 'ClassificationOutput',
      'tags/classification': 'ClassificationOutput',
      'tags/predict': 'PredictOutput',
      'predict': 'PredictOutput',
  }
  _assert_close(outputs['serving_default'][1], outputs['kind'][1])
  own, _ = _predict(contrib.multi_label_head(2, name='tags'),
                    logits=LOGITS['tags'])
  _assert_close(outputs['tags/predict'][1], own)


def test_merged_predict_output_holds_every_heads_predictions():
  predictions, outputs = _predict(contrib.multi_head(_tf1_heads()))
  merged = outputs['predict'][1]
  _assert_close(merged, {f'{head}/{key}': value
                         for (head, key), value in predictions.items()})


def test_default_head_chooses_the_served_head():
  _, outputs = _predict(contrib.multi_head(_tf1_heads(), default_head='buy'))
  _assert_close(outputs['serving_default'][1], outputs['buy'][1])


def test_logits_tensor_is_split_among_the_heads_in_order():
  head = contrib.multi_head(_tf1_heads())
  from_tensor, _ = _predict(head, logits=_split_logits())
  from_dict, _ = _predict(head)
  _assert_close(from_tensor, from_dict)


# TRAIN.


def _train(head, with_update_op=False, regularization=None, **kwargs):
  """One TRAIN step on logits `LOGITS + bias`; returns what it changed."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    step = tf.compat.v1.train.get_or_create_global_step()
    bias = tf.Variable(np.zeros(6, np.float32))
    updated = tf.Variable(0.)
    if with_update_op:
      tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS,
                                     updated.assign_add(1.))
    spec = head.create_estimator_spec(
        features=FEATURES, mode=ModeKeys.TRAIN, logits=_split_logits() + bias,
        labels=LABELS, regularization_losses=_regularization(regularization),
        **kwargs)
    gradient = tf.compat.v1.gradients(spec.loss, bias)[0]
    summaries = sorted(op.name for op in tf.compat.v1.get_collection(
        tf.compat.v1.GraphKeys.SUMMARIES))
    _initialize(session)
    loss, gradient = session.run([spec.loss, gradient])
    session.run(spec.train_op)
    return {'loss': loss, 'gradient': gradient, 'bias': session.run(bias),
            'step': session.run(step), 'updated': session.run(updated),
            'summaries': summaries, 'spec': spec}


@pytest.mark.parametrize('make_heads', [_tf1_heads, _mixed_heads])
def test_optimizer_minimizes_the_merged_loss_and_steps(make_heads):
  head = contrib.multi_head(make_heads(), HEAD_WEIGHTS)
  trained = _train(head, optimizer=(
      tf.compat.v1.train.GradientDescentOptimizer(learning_rate=0.5)))
  np.testing.assert_allclose(trained['bias'], -0.5 * trained['gradient'],
                             rtol=1e-6)
  assert trained['step'] == 1
  eval_loss, _ = _eval(contrib.multi_head(make_heads(), HEAD_WEIGHTS))
  assert trained['loss'] == pytest.approx(eval_loss)


def test_train_op_fn_gets_the_merged_loss():
  received = []

  def train_op_fn(loss):
    received.append(loss)
    return tf.compat.v1.assign_add(
        tf.compat.v1.train.get_global_step(), 5)

  trained = _train(contrib.multi_head(_tf1_heads(), HEAD_WEIGHTS),
                   train_op_fn=train_op_fn)
  assert received == [trained['spec'].loss]
  assert trained['step'] == 5


def test_regularization_is_trained_and_summarized():
  trained = _train(contrib.multi_head(_tf1_heads()),
                   train_op_fn=lambda loss: tf.no_op(),
                   regularization=[0.75])
  plain = _train(contrib.multi_head(_tf1_heads()),
                 train_op_fn=lambda loss: tf.no_op())
  assert trained['loss'] == pytest.approx(plain['loss'] + 0.75)
  assert trained['summaries'] == [
      'loss/buy:0', 'loss/kind:0', 'loss/tags:0', 'loss:0',
      'regularization_loss:0']


def test_train_writes_the_merged_loss_summary_beside_the_heads():
  trained = _train(contrib.multi_head(_mixed_heads()),
                   train_op_fn=lambda loss: tf.no_op())
  assert trained['summaries'] == [
      'loss/buy:0', 'loss/kind:0', 'loss/tags:0', 'loss:0']


def test_train_spec_has_the_merged_predictions():
  spec = _train(contrib.multi_head(_tf1_heads()),
                train_op_fn=lambda loss: tf.no_op())['spec']
  assert ('kind', 'probabilities') in spec.predictions
  assert ('tags', 'logits') in spec.predictions
  assert ('buy', 'logistic') in spec.predictions


def test_train_op_also_runs_the_graphs_update_ops():
  trained = _train(contrib.multi_head(_tf1_heads()), with_update_op=True,
                   train_op_fn=lambda loss: tf.no_op())
  assert trained['updated'] == 1.


@pytest.mark.parametrize('kwargs, message', [
    ({}, 'train_op_fn and optimizer cannot both be None.'),
    ({'optimizer': tf.compat.v1.train.AdagradOptimizer(0.1),
      'train_op_fn': lambda loss: tf.no_op()},
     'train_op_fn and optimizer cannot both be set.'),
    ({'optimizer': tf.keras.optimizers.SGD()},
     'The given optimizer is not a tf.compat.v1.train.Optimizer instance'),
])
def test_train_refuses_anything_but_one_tf1_optimizer_or_fn(kwargs, message):
  with pytest.raises(ValueError, match=message):
    _train(contrib.multi_head(_tf1_heads()), **kwargs)


# Each head's spec is built once.


class _CountingHead(canned_head._Head):  # pylint: disable=protected-access
  """A TF 1.x head counting how often it is asked for a spec."""

  def __init__(self, head):
    self._head = head
    self.calls = []

  name = property(lambda self: self._head.name)
  logits_dimension = property(lambda self: self._head.logits_dimension)

  def create_loss(self, *args, **kwargs):
    return self._head.create_loss(*args, **kwargs)

  def create_estimator_spec(self, **kwargs):
    self.calls.append(kwargs['mode'])
    return self._head.create_estimator_spec(**kwargs)


@pytest.mark.parametrize('mode', [ModeKeys.TRAIN, ModeKeys.EVAL,
                                  ModeKeys.PREDICT])
def test_each_heads_spec_is_built_once(mode):
  heads = [_CountingHead(head) for head in _tf1_heads()]
  with tf.Graph().as_default():
    tf.compat.v1.train.get_or_create_global_step()
    contrib.multi_head(heads).create_estimator_spec(
        features=FEATURES, mode=mode, logits=LOGITS,
        labels=None if mode == ModeKeys.PREDICT else LABELS,
        train_op_fn=lambda loss: tf.no_op())
  assert [head.calls for head in heads] == [[mode]] * 3


# v2 heads alone: as tensorflow_multihead.MultiHead merges them.


def test_v2_heads_evaluate_as_multi_head_does():
  loss, metrics = _eval(contrib.multi_head(_v2_heads(), HEAD_WEIGHTS))
  v2_loss, v2_metrics = _eval(MultiHead(_v2_heads(), HEAD_WEIGHTS))
  assert loss == pytest.approx(v2_loss)
  _assert_close(metrics, v2_metrics)


def test_v2_heads_predict_and_export_as_multi_head_does():
  predictions, outputs = _predict(contrib.multi_head(_v2_heads()))
  v2_predictions, v2_outputs = _predict(MultiHead(_v2_heads()))
  _assert_close(predictions, v2_predictions)
  assert sorted(outputs) == sorted(v2_outputs)
  for key, (kind, tensors) in v2_outputs.items():
    assert outputs[key][0] == kind
    _assert_close(outputs[key][1], tensors)


def test_a_tf1_and_a_v2_head_of_one_kind_report_the_same_keys():
  head = contrib.multi_head([
      contrib.binary_classification_head(name='tf1'),
      tf.estimator.BinaryClassHead(
          loss_reduction=tf.losses.Reduction.SUM_OVER_BATCH_SIZE,
          name='v2')])
  logits = {'tf1': LOGITS['buy'], 'v2': LOGITS['buy']}
  labels = {'tf1': LABELS['buy'], 'v2': LABELS['buy']}
  _, metrics = _eval(head, logits=logits, labels=labels)
  tf1 = {key[:-len('/tf1')] for key in metrics if key.endswith('/tf1')}
  v2 = {key[:-len('/v2')] for key in metrics if key.endswith('/v2')}
  assert tf1 == v2
  for key in ('loss', 'average_loss', 'accuracy', 'precision', 'recall',
              'prediction/mean', 'label/mean'):
    assert metrics[f'{key}/tf1'] == pytest.approx(metrics[f'{key}/v2'])


# Bad input: named errors, the same as MultiHead's.


def _unnamed(heads):
  return [tf.estimator.BinaryClassHead()] + heads


@pytest.mark.parametrize('heads, head_weights, default_head', [
    ([], None, None),
    ((), None, None),
    (_unnamed(_v2_heads()), None, None),
    (_v2_heads() + [tf.estimator.RegressionHead(name='kind')], None, None),
    (_v2_heads(), [1., 2.], None),
    (_v2_heads(), [1., '2', 3.], None),
    (_v2_heads(), [1., True, 3.], None),
    (_v2_heads(), None, 'price'),
    (_v2_heads() + ['not a head'], None, None),
    (tf.estimator.RegressionHead(name='a'), None, None),
], ids=['empty_list', 'empty_tuple', 'unnamed', 'duplicate_name',
        'weights_size', 'weight_string', 'weight_bool', 'unknown_default',
        'not_a_head', 'not_a_list'])
def test_construction_errors_match_multi_head(heads, head_weights,
                                              default_head):
  with pytest.raises((ValueError, TypeError)) as expected:
    MultiHead(heads, head_weights, default_head)
  with pytest.raises(expected.type) as raised:
    contrib.multi_head(heads, head_weights, default_head)
  message = str(expected.value).replace('is not a Head',
                                        'is not a _Head or Head')
  assert str(raised.value) == message


@pytest.mark.parametrize('heads, error, message', [
    ([], ValueError, r'Must specify heads. Given: \[\]'),
    ([contrib.regression_head()], ValueError,
     r'All given heads must have name specified. heads\[0\] has name None'),
    ([contrib.regression_head(name='a'), contrib.regression_head(name='a')],
     ValueError, r"Head names must be unique: heads\[0\] and heads\[1\] are "
     r"both named 'a'"),
    (['a'], TypeError, r'heads\[0\] is not a _Head or Head'),
])
def test_construction_errors_name_the_tf1_heads(heads, error, message):
  with pytest.raises(error, match=message):
    contrib.multi_head(heads)


def test_head_weights_of_another_size_are_refused_as_tf1_did():
  with pytest.raises(ValueError,
                     match=r'heads and head_weights must have the same size. '
                     r'Given len\(heads\): 3. Given len\(head_weights\): 2.'):
    contrib.multi_head(_tf1_heads(), head_weights=[1., 2.])


@pytest.mark.parametrize('logits, labels, message', [
    ({'kind': LOGITS['kind'], 'buy': LOGITS['buy']}, LABELS,
     r"logits has missing values for head\(s\): \['tags'\]"),
    ({**LOGITS, 'price': LOGITS['buy']}, LABELS,
     r"logits has values for unknown head\(s\): \['price'\]"),
    (np.zeros([4, 5], np.float32), LABELS,
     r'Could not split logits of shape \[4, 5\] among the heads'),
    (LOGITS, {'kind': LABELS['kind']},
     r"labels has missing values for head\(s\): \['buy', 'tags'\]"),
    (LOGITS, LABELS['kind'], r'labels must be a dict keyed by head name'),
    (LOGITS, None, r'labels are required in mode eval'),
])
def test_bad_logits_and_labels_are_refused_as_multi_head_does(logits, labels,
                                                             message):
  for head in (contrib.multi_head(_v2_heads()), MultiHead(_v2_heads())):
    with pytest.raises(ValueError, match=message):
      _eval(head, logits=logits, labels=labels)


def test_unknown_mode_is_refused():
  with pytest.raises(ValueError, match='mode=serve unrecognized'):
    contrib.multi_head(_tf1_heads()).create_estimator_spec(
        features={}, mode='serve', logits=LOGITS)


def test_labels_are_required_for_create_loss():
  with pytest.raises(ValueError, match='labels are required'):
    contrib.multi_head(_tf1_heads()).create_loss(
        features={}, mode=ModeKeys.TRAIN, logits=LOGITS, labels=None)


def test_a_v2_head_as_a_tf1_head_trains_with_a_tf1_optimizer():
  head = head_adapter.as_tf1_head(tf.estimator.RegressionHead(name='price'))
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    step = tf.compat.v1.train.get_or_create_global_step()
    bias = tf.Variable(0.)
    spec = head.create_estimator_spec(
        features={}, mode=ModeKeys.TRAIN,
        logits=tf.constant([[1.], [3.]]) + bias,
        labels=np.array([[0.], [0.]], np.float32),
        optimizer=tf.compat.v1.train.GradientDescentOptimizer(0.25))
    _initialize(session)
    loss, _ = session.run([spec.loss, spec.train_op])
    bias, step = session.run([bias, step])
  assert isinstance(head, canned_head._Head)  # pylint: disable=protected-access
  assert loss == pytest.approx((1. + 9.) / 2)
  # d loss / d bias = (2 * 1 + 2 * 3) / 2 = 4; one step of 0.25.
  assert bias == pytest.approx(-1.)
  assert step == 1
