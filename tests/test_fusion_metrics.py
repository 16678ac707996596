"""`fused_metrics`: one state object per statistic, one column per metric.

Each column must hold exactly what the Keras metric a `tf.estimator` head
keeps would hold, batch after batch: the tests feed random batches to both
and compare every column with its own Keras metric, to 1e-6 relative.
"""
import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import fused_metrics

pytestmark = pytest.mark.xdist_group('fusion')

COLUMNS = 3
BATCHES = 3
ROWS = 40


def _batches(seed, weighted):
  """Random (labels, scores, weights) per batch, each `[COLUMNS, ROWS]`."""
  rng = np.random.default_rng(seed)
  batches = []
  for _ in range(BATCHES):
    labels = rng.integers(0, 2, (COLUMNS, ROWS)).astype(np.float32)
    scores = rng.uniform(0., 1., (COLUMNS, ROWS)).astype(np.float32)
    # Scores on and next to AUC thresholds, and at the ends.
    scores[:, :4] = [0., 1., 100. / 199., np.float32(100. / 199.) + 1e-7]
    weights = (rng.uniform(0.1, 3., (COLUMNS, ROWS)).astype(np.float32)
               if weighted else None)
    batches.append((labels, scores, weights))
  return batches


def _keras_column(make_metric, batches, column, update):
  metric = make_metric()
  for labels, scores, weights in batches:
    update(metric, labels[column][:, None], scores[column][:, None],
           None if weights is None else weights[column][:, None])
  return metric.result().numpy()


def _column_values(state, batches, update, part):
  for labels, scores, weights in batches:
    update(state, tf.constant(labels), tf.constant(scores),
           None if weights is None else tf.constant(weights))
  return np.array(state.result()[part])


@pytest.mark.parametrize('weighted', [False, True])
def test_column_mean_is_a_keras_mean_per_column(weighted):
  batches = _batches(1, weighted)
  ours = _column_values(
      fused_metrics.ColumnMean(COLUMNS, 'means'), batches,
      lambda state, labels, scores, weights: state.update_state(scores,
                                                                weights),
      'mean')
  for column in range(COLUMNS):
    expected = _keras_column(
        tf.keras.metrics.Mean, batches, column,
        lambda metric, labels, scores, weights: metric.update_state(
            scores, sample_weight=weights))
    np.testing.assert_allclose(ours[column], expected, rtol=1e-6)


def test_label_mean_baseline_is_the_likelier_class_share():
  state = fused_metrics.LabelMean(2, 'labels')
  state.update_state(tf.constant([[1., 1., 0.], [0., 0., 0.]]))
  state.update_state(tf.constant([[1., 0., 0.], [1., 0., 0.]]))
  result = state.result()
  np.testing.assert_allclose(np.array(result['mean']), [0.5, 1. / 6.])
  np.testing.assert_allclose(np.array(result['baseline']), [0.5, 5. / 6.])


@pytest.mark.parametrize('weighted', [False, True])
def test_column_confusion_is_keras_precision_and_recall_per_threshold(
    weighted):
  thresholds = [0.3, 0.5, 0.8]
  batches = _batches(2, weighted)
  state = fused_metrics.ColumnConfusion(thresholds, 'confusion')

  def update(state, labels, scores, weights):
    state.update_state(labels, scores, weights)

  for labels, scores, weights in batches:
    update(state, tf.constant(labels), tf.constant(scores),
           None if weights is None else tf.constant(weights))
  result = state.result()
  for column, threshold in enumerate(thresholds):
    for part, keras_class in (('precision', tf.keras.metrics.Precision),
                              ('recall', tf.keras.metrics.Recall)):
      expected = _keras_column(
          lambda keras_class=keras_class, threshold=threshold: keras_class(
              thresholds=threshold), batches, column,
          lambda metric, labels, scores, weights: metric.update_state(
              labels, scores, sample_weight=weights))
      np.testing.assert_allclose(result[part][column].numpy(), expected,
                                 rtol=1e-6,
                                 err_msg=f'{part} at {threshold}')


@pytest.mark.parametrize('weighted', [False, True])
@pytest.mark.parametrize('part,curve', [('roc', 'ROC'), ('pr', 'PR')])
def test_column_auc_is_keras_auc_per_column(weighted, part, curve):
  batches = _batches(3, weighted)
  ours = _column_values(
      fused_metrics.ColumnAUC(COLUMNS, 'auc'), batches,
      lambda state, labels, scores, weights: state.update_state(
          labels, scores, weights), part)
  for column in range(COLUMNS):
    expected = _keras_column(
        lambda: tf.keras.metrics.AUC(curve=curve), batches, column,
        lambda metric, labels, scores, weights: metric.update_state(
            labels, scores, sample_weight=weights))
    np.testing.assert_allclose(ours[column], expected, rtol=1e-6,
                               err_msg=f'column {column}')


def test_column_auc_keeps_keras_confusion_counts():
  labels, scores, weights = _batches(4, weighted=True)[0]
  state = fused_metrics.ColumnAUC(COLUMNS, 'auc')
  state.update_state(tf.constant(labels), tf.constant(scores),
                     tf.constant(weights))
  keras_auc = tf.keras.metrics.AUC()
  keras_auc.update_state(labels[1][:, None], scores[1][:, None],
                         sample_weight=weights[1][:, None])
  for ours, theirs in ((state.true_positives, keras_auc.true_positives),
                       (state.false_positives, keras_auc.false_positives),
                       (state.true_negatives, keras_auc.true_negatives),
                       (state.false_negatives, keras_auc.false_negatives)):
    np.testing.assert_array_equal(ours.numpy()[1], theirs.numpy())


def test_auc_of_one_class_only_is_zero_like_keras():
  state = fused_metrics.ColumnAUC(1, 'auc')
  state.update_state(tf.ones([1, 4]), tf.constant([[.1, .4, .6, .9]]))
  keras_auc = tf.keras.metrics.AUC()
  keras_auc.update_state(tf.ones([4, 1]), [[.1], [.4], [.6], [.9]])
  assert state.result()['roc'][0].numpy() == keras_auc.result().numpy() == 0.


def test_roc_auc_of_a_perfect_ranking_is_one():
  state = fused_metrics.ColumnAUC(2, 'auc')
  state.update_state(tf.constant([[0., 0., 1., 1.], [1., 1., 0., 0.]]),
                     tf.constant([[.1, .2, .8, .9], [.1, .2, .8, .9]]))
  np.testing.assert_allclose(np.array(state.result()['roc']), [1., 0.],
                             atol=1e-6)


def test_metrics_accumulate_in_a_graph_and_reset():
  with tf.Graph().as_default():
    values = tf.compat.v1.placeholder(tf.float32, [2, None])
    state = fused_metrics.ColumnMean(2, 'means')
    update = state.update_state(values)
    result = state.result()['mean']  # One scalar per column.
    assert isinstance(update, tf.Operation)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.variables_initializer(state.variables))
      session.run(update, {values: [[1., 2.], [3., 3.]]})
      session.run(update, {values: [[4., 5., 6.], [0., 0., 0.]]})
      np.testing.assert_allclose(session.run(result), [18. / 5., 6. / 5.])


def test_metric_view_reads_its_column_and_resets_the_shared_state():
  state = fused_metrics.ColumnMean(2, 'means')
  views = [fused_metrics.MetricView(f'mean/{name}', state, 'mean', column)
           for column, name in enumerate('ab')]
  state.update_state(tf.constant([[1., 3.], [5., 7.]]))
  assert [float(view.result()) for view in views] == [2., 6.]
  assert views[0].variables == state.variables
  views[1].reset_state()
  assert [float(view.result()) for view in views] == [0., 0.]
  assert repr(views[0]) == "<MetricView 'mean/a' of 'means'>"
