"""The contrib head factories, each on its own, against the heads TF ships.

`multi_class_head`, `binary_classification_head` and `regression_head` must
give the numbers of the canned TF 1.x heads (`canned/head.py`) built with
`loss_reduction=SUM_OVER_BATCH_SIZE`, the contrib default. The Poisson and
logistic heads must give the losses and predictions of
`tf.estimator.PoissonRegressionHead` and `LogisticRegressionHead`. The
multi-label head, this package's own, must give `tf.estimator.MultiLabelHead`'s
loss and predictions, and metrics equal to the canned binary head's on the
same labels and probabilities flattened to one class per row: that is how
TF 1.x computed multi-label metrics.

Graph-mode tests build the heads' specs in a `tf.Graph` and run them in a
`Session`, as an Estimator does. The last tests train each factory's head
for a step in a TF 1.x canned estimator.
"""
import inspect

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_estimator.python.estimator.canned import head as canned_head

from examples import tf1_shop as shop
from tensorflow_multihead import contrib

ModeKeys = tf.estimator.ModeKeys
REDUCTION = tf.compat.v1.losses.Reduction
SOBS = REDUCTION.SUM_OVER_BATCH_SIZE
REQUIRED = inspect.Parameter.empty
# pylint: disable=protected-access
CANNED_MULTI_CLASS = (
    canned_head._multi_class_head_with_softmax_cross_entropy_loss)
CANNED_BINARY = (
    canned_head._binary_logistic_head_with_sigmoid_cross_entropy_loss)
CANNED_REGRESSION = canned_head._regression_head
# pylint: enable=protected-access

WEIGHTS = np.array([[1.], [2.], [0.5], [0.]], np.float32)
FEATURES = {'w': WEIGHTS}


def _init_and_run(session, fetches):
  session.run([tf.compat.v1.global_variables_initializer(),
               tf.compat.v1.local_variables_initializer(),
               tf.compat.v1.tables_initializer()])
  return session.run(fetches)


def _metric_values(session, eval_metric_ops):
  """Updates every metric with the batch once, then reads the values."""
  _init_and_run(session, {k: op for k, (_, op) in eval_metric_ops.items()})
  return session.run({k: value for k, (value, _) in eval_metric_ops.items()})


def _eval(head, logits, labels, features=FEATURES):
  """A head's EVAL loss and metric values."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    spec = head.create_estimator_spec(
        features=features, mode=ModeKeys.EVAL, logits=tf.constant(logits),
        labels=labels)
    metrics = _metric_values(session, spec.eval_metric_ops)
    return session.run(spec.loss), metrics


def _predict(head, logits):
  """A head's PREDICT predictions and export output classes by key."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    spec = head.create_estimator_spec(
        features={}, mode=ModeKeys.PREDICT, logits=tf.constant(logits))
    outputs = {key: type(output).__name__
               for key, output in spec.export_outputs.items()}
    return _init_and_run(session, spec.predictions), outputs


def _loss_spec(head, logits, labels, features=FEATURES):
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    spec = head.create_loss(features=features, mode=ModeKeys.TRAIN,
                            logits=tf.constant(logits), labels=labels)
    fields = spec._asdict()
    tensors = {k: v for k, v in fields.items() if tf.is_tensor(v)}
    return {**fields, **_init_and_run(session, tensors)}


def _assert_dicts_close(actual, expected):
  assert sorted(actual) == sorted(expected)
  for key, value in expected.items():
    if np.asarray(value).dtype.kind in 'SUO':
      np.testing.assert_array_equal(actual[key], value, err_msg=key)
    else:
      np.testing.assert_allclose(actual[key], value, rtol=1e-5, atol=1e-6,
                                 err_msg=key)


# Signatures and defaults.

TF1_SIGNATURES = {
    'multi_class_head': [
        ('n_classes', REQUIRED), ('weight_column', None),
        ('label_vocabulary', None), ('loss_reduction', SOBS),
        ('loss_fn', None), ('name', None)],
    'binary_classification_head': [
        ('weight_column', None), ('thresholds', None),
        ('label_vocabulary', None), ('loss_reduction', SOBS),
        ('loss_fn', None), ('name', None)],
    'regression_head': [
        ('weight_column', None), ('label_dimension', 1),
        ('loss_reduction', SOBS), ('loss_fn', None),
        ('inverse_link_fn', None), ('name', None)],
    'poisson_regression_head': [
        ('weight_column', None), ('label_dimension', 1),
        ('loss_reduction', SOBS), ('compute_full_loss', True),
        ('name', None)],
    'logistic_regression_head': [
        ('weight_column', None), ('loss_reduction', SOBS), ('name', None)],
    'multi_label_head': [
        ('n_classes', REQUIRED), ('weight_column', None),
        ('thresholds', None), ('label_vocabulary', None),
        ('loss_reduction', SOBS), ('loss_fn', None),
        ('classes_for_class_based_metrics', None), ('name', None)],
}


@pytest.mark.parametrize('factory', sorted(TF1_SIGNATURES))
def test_factory_has_the_tf1_contrib_signature_and_defaults(factory):
  parameters = inspect.signature(getattr(contrib, factory)).parameters
  assert [(p.name, p.default) for p in parameters.values()] == (
      TF1_SIGNATURES[factory])


@pytest.mark.parametrize('factory', sorted(TF1_SIGNATURES))
def test_factory_returns_a_tf1_head(factory):
  first_argument, _ = TF1_SIGNATURES[factory][0]
  args = {'n_classes': 3} if first_argument == 'n_classes' else {}
  head = getattr(contrib, factory)(name='x', **args)
  assert isinstance(head, canned_head._Head)  # pylint: disable=protected-access
  assert head.name == 'x'


def test_default_reduction_is_the_batch_mean_not_the_canned_sum():
  logits = np.array([[1.], [2.], [3.], [4.]], np.float32)
  labels = np.array([[0.], [0.], [0.], [0.]], np.float32)
  contrib_loss = _loss_spec(contrib.regression_head(), logits, labels,
                            features={})['training_loss']
  canned_loss = _loss_spec(CANNED_REGRESSION(), logits, labels,
                           features={})['training_loss']
  assert canned_loss == pytest.approx(1. + 4. + 9. + 16.)
  assert contrib_loss == pytest.approx(canned_loss / 4)


# The factories that wrap a canned TF 1.x head: same numbers as that head.


def _squared_log_error(labels, logits):
  return tf.math.square(tf.math.log1p(tf.math.abs(logits)) - labels)


# (contrib head, the canned head with the contrib defaults, logits, labels)
CANNED_CASES = {
    'multi_class': (
        lambda: contrib.multi_class_head(3, weight_column='w', name='kind'),
        lambda: CANNED_MULTI_CLASS(3, weight_column='w', name='kind',
                                   loss_reduction=SOBS),
        [[1., 2., 3.], [3., 1., 0.], [0., 0., 5.], [1., 1., 1.]],
        np.array([[2], [0], [1], [1]])),
    'multi_class_vocabulary': (
        lambda: contrib.multi_class_head(
            3, label_vocabulary=['a', 'b', 'c'],
            loss_reduction=REDUCTION.SUM),
        lambda: CANNED_MULTI_CLASS(3, label_vocabulary=['a', 'b', 'c']),
        [[1., 2., 3.], [3., 1., 0.], [0., 0., 5.], [1., 1., 1.]],
        np.array([[b'c'], [b'a'], [b'b'], [b'b']])),
    'binary': (
        lambda: contrib.binary_classification_head(
            weight_column='w', thresholds=[0.3, 0.7], name='buy'),
        lambda: CANNED_BINARY(weight_column='w', thresholds=[0.3, 0.7],
                              name='buy', loss_reduction=SOBS),
        [[-1.], [2.], [0.5], [-3.]],
        np.array([[0.], [1.], [0.], [1.]], np.float32)),
    'binary_vocabulary': (
        lambda: contrib.binary_classification_head(
            label_vocabulary=['no', 'yes'], loss_fn=_squared_log_error),
        lambda: CANNED_BINARY(label_vocabulary=['no', 'yes'],
                              loss_fn=_squared_log_error,
                              loss_reduction=SOBS),
        [[-1.], [2.], [0.5], [-3.]],
        np.array([[b'no'], [b'yes'], [b'no'], [b'yes']])),
    'regression': (
        lambda: contrib.regression_head(weight_column='w', label_dimension=2,
                                        name='price'),
        lambda: CANNED_REGRESSION(weight_column='w', label_dimension=2,
                                  name='price', loss_reduction=SOBS),
        [[1., 2.], [3., 1.], [0., 5.], [1., 1.]],
        np.array([[1., 1.], [2., 2.], [3., 3.], [0., 1.]], np.float32)),
    'regression_link_and_loss_fn': (
        lambda: contrib.regression_head(inverse_link_fn=tf.math.exp,
                                        loss_fn=_squared_log_error),
        lambda: CANNED_REGRESSION(inverse_link_fn=tf.math.exp,
                                  loss_fn=_squared_log_error,
                                  loss_reduction=SOBS),
        [[1.], [-2.], [0.5], [3.]],
        np.array([[1.], [0.], [2.], [3.]], np.float32)),
}


def _canned_case(name):
  make_ours, make_canned, logits, labels = CANNED_CASES[name]
  return make_ours(), make_canned(), np.array(logits, np.float32), labels


@pytest.mark.parametrize('case', sorted(CANNED_CASES))
def test_create_loss_equals_the_canned_head_with_contrib_defaults(case):
  ours, canned, logits, labels = _canned_case(case)
  _assert_dicts_close(_loss_spec(ours, logits, labels),
                      _loss_spec(canned, logits, labels))


@pytest.mark.parametrize('case', sorted(CANNED_CASES))
def test_eval_loss_and_metrics_equal_the_canned_head(case):
  ours, canned, logits, labels = _canned_case(case)
  our_loss, our_metrics = _eval(ours, logits, labels)
  canned_loss, canned_metrics = _eval(canned, logits, labels)
  assert our_loss == pytest.approx(canned_loss)
  _assert_dicts_close(our_metrics, canned_metrics)


@pytest.mark.parametrize('case', sorted(CANNED_CASES))
def test_predictions_and_exports_equal_the_canned_head(case):
  ours, canned, logits, _ = _canned_case(case)
  our_predictions, our_outputs = _predict(ours, logits)
  canned_predictions, canned_outputs = _predict(canned, logits)
  _assert_dicts_close(our_predictions, canned_predictions)
  assert our_outputs == canned_outputs


def test_binary_head_reports_the_tf1_metric_keys():
  head = contrib.binary_classification_head(thresholds=[0.5], name='buy')
  _, metrics = _eval(head, np.array([[-1.], [2.]], np.float32),
                     np.array([[0], [1]]), features={})
  assert sorted(metrics) == [
      'accuracy/buy', 'accuracy/positive_threshold_0.5/buy',
      'accuracy_baseline/buy', 'auc/buy', 'auc_precision_recall/buy',
      'average_loss/buy', 'label/mean/buy', 'precision/buy',
      'precision/positive_threshold_0.5/buy', 'prediction/mean/buy',
      'recall/buy', 'recall/positive_threshold_0.5/buy']


# Poisson and logistic regression: what the v2 heads of the same name give.

REGRESSION_LOGITS = np.array([[0.5], [-1.], [2.], [0.]], np.float32)


@pytest.mark.parametrize('compute_full_loss', [True, False])
def test_poisson_head_loss_equals_the_v2_poisson_head(compute_full_loss):
  labels = np.array([[1.], [0.], [6.], [2.]], np.float32)
  ours = contrib.poisson_regression_head(
      weight_column='w', compute_full_loss=compute_full_loss)
  reference = tf.estimator.PoissonRegressionHead(
      weight_column='w', compute_full_loss=compute_full_loss)
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    our_loss = ours.create_loss(FEATURES, ModeKeys.TRAIN, REGRESSION_LOGITS,
                                labels).training_loss
    v2_loss = reference.loss(labels, REGRESSION_LOGITS, FEATURES)
    our_loss, v2_loss = session.run([our_loss, v2_loss])
  assert our_loss == pytest.approx(v2_loss)


def test_poisson_head_without_full_loss_is_exp_minus_label_times_logit():
  labels = np.array([[1.], [0.], [6.], [2.]], np.float32)
  loss = _loss_spec(contrib.poisson_regression_head(compute_full_loss=False),
                    REGRESSION_LOGITS, labels, features={})['training_loss']
  expected = np.mean(np.exp(REGRESSION_LOGITS) - labels * REGRESSION_LOGITS)
  assert loss == pytest.approx(expected)


def test_logistic_head_loss_equals_the_v2_logistic_head():
  labels = np.array([[0.2], [0.], [1.], [0.5]], np.float32)
  ours = contrib.logistic_regression_head(weight_column='w')
  reference = tf.estimator.LogisticRegressionHead(weight_column='w')
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    our_loss = ours.create_loss(FEATURES, ModeKeys.TRAIN, REGRESSION_LOGITS,
                                labels).training_loss
    v2_loss = reference.loss(labels, REGRESSION_LOGITS, FEATURES)
    our_loss, v2_loss = session.run([our_loss, v2_loss])
  assert our_loss == pytest.approx(v2_loss)


@pytest.mark.parametrize('factory, reference, link', [
    (contrib.poisson_regression_head, tf.estimator.PoissonRegressionHead,
     np.exp),
    (contrib.logistic_regression_head, tf.estimator.LogisticRegressionHead,
     lambda x: 1. / (1. + np.exp(-x))),
])
def test_link_heads_predict_like_the_v2_heads(factory, reference, link):
  predictions, outputs = _predict(factory(), REGRESSION_LOGITS)
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    v2_predictions = session.run(reference().predictions(REGRESSION_LOGITS))
  _assert_dicts_close(predictions, v2_predictions)
  np.testing.assert_allclose(predictions['predictions'],
                             link(REGRESSION_LOGITS), rtol=1e-6)
  assert outputs == {'serving_default': 'RegressionOutput',
                     'regression': 'RegressionOutput',
                     'predict': 'PredictOutput'}


def test_logistic_head_refuses_labels_outside_0_1():
  labels = np.array([[0.2], [1.5], [1.], [0.5]], np.float32)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'Labels must be in range \[0, 1\]'):
    _loss_spec(contrib.logistic_regression_head(), REGRESSION_LOGITS, labels,
               features={})


def test_poisson_eval_reports_regression_metrics():
  loss, metrics = _eval(contrib.poisson_regression_head(name='sold'),
                        np.log(np.array([[1.], [2.]], np.float32)),
                        np.array([[1.], [4.]], np.float32), features={})
  assert sorted(metrics) == ['average_loss/sold', 'label/mean/sold',
                             'prediction/mean/sold']
  assert metrics['prediction/mean/sold'] == pytest.approx(1.5)
  assert metrics['label/mean/sold'] == pytest.approx(2.5)
  assert metrics['average_loss/sold'] == pytest.approx(loss)


# The multi-label head.

ML_LOGITS = np.array([[-2., 1., 0.5], [3., -1., 0.], [0.2, 0.4, -4.],
                      [1., 1., 1.]], np.float32)
ML_LABELS = np.array([[0, 1, 1], [1, 0, 0], [0, 1, 0], [1, 1, 0]])


def _v2_loss(head, logits, labels, features=FEATURES):
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    loss = head.loss(labels, tf.constant(logits), features)
    return _init_and_run(session, loss)


@pytest.mark.parametrize('reduction, v2_reduction', [
    (REDUCTION.SUM_OVER_BATCH_SIZE, tf.losses.Reduction.SUM_OVER_BATCH_SIZE),
    (REDUCTION.SUM, tf.losses.Reduction.SUM),
])
def test_multi_label_loss_equals_the_v2_multi_label_head(reduction,
                                                         v2_reduction):
  ours = contrib.multi_label_head(3, weight_column='w',
                                  loss_reduction=reduction)
  reference = tf.estimator.MultiLabelHead(3, weight_column='w',
                                          loss_reduction=v2_reduction)
  spec = _loss_spec(ours, ML_LOGITS, ML_LABELS)
  assert spec['training_loss'] == pytest.approx(
      _v2_loss(reference, ML_LOGITS, ML_LABELS))


def test_multi_label_loss_is_the_class_mean_of_sigmoid_cross_entropy():
  spec = _loss_spec(contrib.multi_label_head(3, weight_column='w'),
                    ML_LOGITS, ML_LABELS)
  probabilities = 1. / (1. + np.exp(-ML_LOGITS))
  per_class = -(ML_LABELS * np.log(probabilities) +
                (1 - ML_LABELS) * np.log(1. - probabilities))
  np.testing.assert_allclose(spec['unreduced_loss'],
                             per_class.mean(axis=1, keepdims=True), rtol=1e-5)
  np.testing.assert_allclose(spec['weights'], WEIGHTS)
  np.testing.assert_array_equal(spec['processed_labels'], ML_LABELS)
  # SUM_OVER_BATCH_SIZE: the weighted losses' sum over the 4 examples.
  assert spec['training_loss'] == pytest.approx(
      np.sum(per_class.mean(axis=1, keepdims=True) * WEIGHTS) / 4, rel=1e-5)


def test_multi_label_takes_tf1_only_reductions():
  spec = _loss_spec(contrib.multi_label_head(3, weight_column='w',
                                             loss_reduction=REDUCTION.MEAN),
                    ML_LOGITS, ML_LABELS)
  # MEAN divides by the sum of the weights, 3.5, not by the batch size.
  assert spec['training_loss'] == pytest.approx(
      np.sum(spec['unreduced_loss'] * WEIGHTS) / 3.5, rel=1e-5)


def _sparse(indices, values, dense_shape=(4, 3)):
  return tf.compat.v1.SparseTensorValue(
      indices=np.array(indices, np.int64), values=np.array(values),
      dense_shape=np.array(dense_shape, np.int64))


SPARSE_IDS = ([[0, 0], [0, 1], [1, 0], [2, 0], [3, 0], [3, 1]],
              [1, 2, 0, 1, 0, 1])


def test_multi_label_sparse_class_ids_equal_the_dense_labels():
  sparse = _loss_spec(contrib.multi_label_head(3), ML_LOGITS,
                      _sparse(*SPARSE_IDS))
  dense = _loss_spec(contrib.multi_label_head(3), ML_LOGITS, ML_LABELS)
  np.testing.assert_array_equal(sparse['processed_labels'], ML_LABELS)
  assert sparse['training_loss'] == pytest.approx(dense['training_loss'])


def test_multi_label_sparse_strings_are_looked_up_in_the_vocabulary():
  names = np.array([b'b', b'c', b'a', b'b', b'a', b'b'])
  head = contrib.multi_label_head(3, label_vocabulary=['a', 'b', 'c'])
  spec = _loss_spec(head, ML_LOGITS, _sparse(SPARSE_IDS[0], names))
  np.testing.assert_array_equal(spec['processed_labels'], ML_LABELS)


def test_multi_label_refuses_labels_outside_0_1():
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'labels must be an integer indicator Tensor'):
    _loss_spec(contrib.multi_label_head(3), ML_LOGITS, ML_LABELS * 2)


def test_multi_label_refuses_sparse_ids_out_of_range():
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'labels must be an integer SparseTensor with '
                     r'values in \[0, 3\)'):
    _loss_spec(contrib.multi_label_head(3), ML_LOGITS,
               _sparse([[0, 0]], [3]))


def test_multi_label_refuses_labels_of_another_width():
  with pytest.raises(ValueError, match='Expected labels dimension=3'):
    _loss_spec(contrib.multi_label_head(3), ML_LOGITS, ML_LABELS[:, :2])


def test_multi_label_loss_fn_gets_the_multi_hot_labels():
  def loss_fn(labels, logits):
    return tf.reduce_sum(
        tf.cast(labels, tf.float32) * logits, axis=-1, keepdims=True)

  spec = _loss_spec(contrib.multi_label_head(3, loss_fn=loss_fn), ML_LOGITS,
                    _sparse(*SPARSE_IDS), features={})
  np.testing.assert_allclose(
      spec['unreduced_loss'],
      np.sum(ML_LABELS * ML_LOGITS, axis=1, keepdims=True))


def test_multi_label_metrics_are_the_binary_metrics_of_every_class():
  head = contrib.multi_label_head(3, weight_column='w', thresholds=[0.4, 0.6],
                                  name='tags')
  loss, metrics = _eval(head, ML_LOGITS, ML_LABELS)
  # Each (example, class) pair as one binary example, with its example's
  # weight, is what TF 1.x's multi-label metrics measured.
  binary = CANNED_BINARY(weight_column='w', thresholds=[0.4, 0.6],
                         name='tags', loss_reduction=SOBS)
  _, binary_metrics = _eval(binary, ML_LOGITS.reshape(-1, 1),
                            ML_LABELS.reshape(-1, 1),
                            features={'w': np.repeat(WEIGHTS, 3, axis=0)})
  shared = ['auc/tags', 'auc_precision_recall/tags'] + [
      f'{metric}/positive_threshold_{threshold}/tags'
      for metric in ('accuracy', 'precision', 'recall')
      for threshold in (0.4, 0.6)]
  _assert_dicts_close({key: metrics[key] for key in shared},
                      {key: binary_metrics[key] for key in shared})
  assert sorted(metrics) == sorted(shared + ['average_loss/tags'])
  unreduced = _loss_spec(head, ML_LOGITS, ML_LABELS)['unreduced_loss']
  assert metrics['average_loss/tags'] == pytest.approx(
      np.sum(unreduced * WEIGHTS) / np.sum(WEIGHTS), rel=1e-5)
  assert loss == pytest.approx(np.sum(unreduced * WEIGHTS) / 4, rel=1e-5)


@pytest.mark.parametrize('vocabulary, classes, suffix', [
    (None, [2], 'class2'),
    (['a', 'b', 'c'], [2], 'c'),
    (['a', 'b', 'c'], ['c'], 'c'),
], ids=['id', 'id_with_vocabulary', 'name'])
def test_multi_label_class_metrics_are_that_class_binary_metrics(
    vocabulary, classes, suffix):
  # Keyed by class name given a vocabulary, else by class id, as in TF 1.x.
  head = contrib.multi_label_head(3, weight_column='w',
                                  label_vocabulary=vocabulary,
                                  classes_for_class_based_metrics=classes)
  _, metrics = _eval(head, ML_LOGITS, ML_LABELS)
  _, binary = _eval(CANNED_BINARY(weight_column='w'), ML_LOGITS[:, 2:],
                    ML_LABELS[:, 2:])
  keys = {f'probability_mean/{suffix}': 'prediction/mean',
          f'auc/{suffix}': 'auc',
          f'auc_precision_recall/{suffix}': 'auc_precision_recall'}
  _assert_dicts_close({key: metrics[key] for key in keys},
                      {key: binary[value] for key, value in keys.items()})


def test_multi_label_eval_adds_the_regularization_loss():
  head = contrib.multi_label_head(3, name='tags')
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    spec = head.create_estimator_spec(
        features={}, mode=ModeKeys.EVAL, logits=tf.constant(ML_LOGITS),
        labels=ML_LABELS, regularization_losses=[tf.constant(0.25)])
    metrics = _metric_values(session, spec.eval_metric_ops)
    loss = session.run(spec.loss)
  assert metrics['regularization_loss/tags'] == pytest.approx(0.25)
  assert loss == pytest.approx(
      _loss_spec(head, ML_LOGITS, ML_LABELS)['training_loss'] + 0.25)


def test_multi_label_predicts_logits_and_probabilities_like_v2():
  predictions, outputs = _predict(contrib.multi_label_head(3), ML_LOGITS)
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    v2 = session.run(tf.estimator.MultiLabelHead(3).predictions(ML_LOGITS))
  assert sorted(predictions) == ['logits', 'probabilities']
  _assert_dicts_close(predictions, {key: v2[key] for key in predictions})
  assert outputs == {'serving_default': 'ClassificationOutput',
                     'classification': 'ClassificationOutput',
                     'predict': 'PredictOutput'}


def test_multi_label_exports_the_vocabulary_as_classes():
  head = contrib.multi_label_head(3, label_vocabulary=['a', 'b', 'c'])
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    spec = head.create_estimator_spec(features={}, mode=ModeKeys.PREDICT,
                                      logits=tf.constant(ML_LOGITS))
    classes = session.run(spec.export_outputs['classification'].classes)
  np.testing.assert_array_equal(classes, [[b'a', b'b', b'c']] * 4)


def test_multi_label_trains_with_a_tf1_optimizer():
  head = contrib.multi_label_head(3, name='tags')
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    step = tf.compat.v1.train.get_or_create_global_step()
    bias = tf.Variable(np.zeros(3, np.float32))
    spec = head.create_estimator_spec(
        features={}, mode=ModeKeys.TRAIN, logits=ML_LOGITS + bias,
        labels=ML_LABELS,
        optimizer=tf.compat.v1.train.GradientDescentOptimizer(1.))
    summaries = [op.name for op in tf.compat.v1.get_collection(
        tf.compat.v1.GraphKeys.SUMMARIES)]
    loss, _ = _init_and_run(session, [spec.loss, spec.train_op])
    bias, step = session.run([bias, step])
  assert step == 1
  # d loss / d bias_c = mean over examples of (sigmoid(logit) - label) / 3.
  probabilities = 1. / (1. + np.exp(-ML_LOGITS))
  np.testing.assert_allclose(
      bias, -np.mean(probabilities - ML_LABELS, axis=0) / 3, rtol=1e-5)
  assert summaries == ['loss/tags:0']
  assert sorted(spec.predictions) == ['logits', 'probabilities']


@pytest.mark.parametrize('kwargs, error, message', [
    ({'n_classes': 1}, ValueError,
     r'multi_label_head: multi-label classification needs n_classes of at '
     r'least 2; given 1'),
    ({'n_classes': 3, 'thresholds': [0.5, 1.]}, ValueError,
     r'every threshold must lie strictly between 0 and 1; thresholds has '
     r'1.0'),
    ({'n_classes': 2, 'label_vocabulary': 'ab'}, ValueError,
     r'label_vocabulary must be a list or tuple of class names, not a str'),
    ({'n_classes': 3, 'label_vocabulary': ['a', 'b']}, ValueError,
     r'label_vocabulary needs one name per class, n_classes=3; it has 2'),
    ({'n_classes': 3, 'loss_reduction': REDUCTION.NONE}, ValueError,
     r"loss_reduction 'none' is not a tf.compat.v1.losses.Reduction other "
     r'than NONE'),
    ({'n_classes': 3, 'loss_reduction': 'sum_over_batch_size'}, ValueError,
     r"loss_reduction 'sum_over_batch_size' is not"),
    ({'n_classes': 3, 'loss_fn': lambda labels, predictions: labels},
     ValueError, r'loss_fn must contain argument: logits'),
    ({'n_classes': 3, 'classes_for_class_based_metrics': [3]}, ValueError,
     r'has class id 3, outside \[0, 2\]'),
    ({'n_classes': 3, 'classes_for_class_based_metrics': ['a']}, ValueError,
     r"has the class name 'a', but there is no label_vocabulary"),
    ({'n_classes': 2, 'label_vocabulary': ['a', 'b'],
      'classes_for_class_based_metrics': ['z']}, ValueError,
     r"classes_for_class_based_metrics has 'z', which is not in "
     r"label_vocabulary \['a', 'b'\]"),
])
def test_multi_label_head_refuses_bad_arguments(kwargs, error, message):
  with pytest.raises(error, match=message):
    contrib.multi_label_head(**kwargs)


@pytest.mark.parametrize('factory, kwargs, message', [
    (contrib.multi_class_head, {'n_classes': 2}, r'n_classes must be > 2'),
    (contrib.multi_class_head,
     {'n_classes': 3, 'loss_reduction': REDUCTION.NONE},
     'Invalid loss_reduction'),
    (contrib.binary_classification_head, {'thresholds': [0.]},
     r'thresholds not in \(0, 1\)'),
    (contrib.regression_head, {'label_dimension': 0},
     'Invalid label_dimension'),
    (contrib.poisson_regression_head, {'loss_reduction': 'sum'},
     'Invalid loss_reduction'),
    (contrib.logistic_regression_head, {'loss_reduction': REDUCTION.NONE},
     'Invalid loss_reduction'),
])
def test_factories_refuse_bad_arguments_as_tf1_did(factory, kwargs, message):
  with pytest.raises(ValueError, match=message):
    factory(**kwargs)


# Every factory's head in a TF 1.x canned estimator.

# (factory, its arguments, the shop label it learns, its TF 1.x metrics)
ESTIMATOR_CASES = {
    'multi_class_head': (
        contrib.multi_class_head, {'n_classes': 3}, 'category',
        ['accuracy', 'average_loss']),
    'binary_classification_head': (
        contrib.binary_classification_head, {}, 'bought',
        ['accuracy', 'accuracy_baseline', 'auc', 'auc_precision_recall',
         'average_loss', 'label/mean', 'precision', 'prediction/mean',
         'recall']),
    'regression_head': (
        contrib.regression_head, {}, 'revenue',
        ['average_loss', 'label/mean', 'prediction/mean']),
    'poisson_regression_head': (
        contrib.poisson_regression_head, {}, 'units_sold',
        ['average_loss', 'label/mean', 'prediction/mean']),
    'logistic_regression_head': (
        contrib.logistic_regression_head, {}, 'return_rate',
        ['average_loss', 'label/mean', 'prediction/mean']),
    'multi_label_head': (
        contrib.multi_label_head, {'n_classes': 3}, 'tags',
        ['auc', 'auc_precision_recall', 'average_loss']),
}


@pytest.fixture(scope='module')
def shop_data():
  return shop.load_data(num_train=32, num_test=16)


@pytest.mark.xdist_group('contrib')
@pytest.mark.parametrize('case', sorted(ESTIMATOR_CASES))
def test_head_trains_and_evaluates_in_a_tf1_dnn_estimator(case, shop_data,
                                                         tmp_path):
  factory, kwargs, label, metric_keys = ESTIMATOR_CASES[case]
  train, test = shop_data
  estimator = tf.compat.v1.estimator.DNNEstimator(
      head=factory(**kwargs), hidden_units=[4],
      feature_columns=shop.feature_columns(), model_dir=str(tmp_path))

  def input_fn(split):
    return lambda: tf.data.Dataset.from_tensor_slices(
        (split.features, split.labels[label])).batch(16)

  estimator.train(input_fn(train), steps=2)
  metrics = estimator.evaluate(input_fn(test))
  assert sorted(metrics) == sorted(metric_keys + ['global_step', 'loss'])
  assert metrics['global_step'] == 2


def test_multi_label_summarizes_the_mean_loss_under_sum_as_tf1_heads():
  head = contrib.multi_label_head(3, weight_column='w',
                                  loss_reduction=REDUCTION.SUM, name='tags')
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    tf.compat.v1.train.get_or_create_global_step()
    head.create_estimator_spec(
        features=FEATURES, mode=ModeKeys.TRAIN,
        logits=tf.constant(ML_LOGITS), labels=ML_LABELS,
        train_op_fn=lambda loss: tf.no_op())
    summaries = {op.name: op for op in tf.compat.v1.get_collection(
        tf.compat.v1.GraphKeys.SUMMARIES)}
    assert sorted(summaries) == ['average_loss/tags:0', 'loss/tags:0']
    summary = tf.compat.v1.Summary.FromString(
        _init_and_run(session, summaries['average_loss/tags:0']))
  unreduced = _loss_spec(head, ML_LOGITS, ML_LABELS)['unreduced_loss']
  assert summary.value[0].simple_value == pytest.approx(
      np.sum(unreduced * WEIGHTS) / np.sum(WEIGHTS), rel=1e-5)
