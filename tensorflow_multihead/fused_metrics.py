"""Metric state shared by a fused group of heads: one column per metric.

A `tf.estimator` head keeps each metric in its own Keras object: one `Mean`
per mean, one `AUC` (four `[200]` variables) per area under a curve. A group
of H heads of one type keeps instead one object per kind of statistic, whose
variables have one column per head (or per head and threshold, or per head
and class). Each object is updated by a few batched ops over *rows*: a
`[columns, N]` tensor holding, in row k, the N values that column k's metric
sees in the batch, in the order the head's own metric would see them. Sums
over a row are then the very sums the head's metric takes, term for term and
in the same order, so values agree to the last bit or nearly.

The state objects are `tf.keras.metrics.Metric`s so that their variables are
metric variables wherever Keras' are (local, summed across replicas under a
distribution strategy, their `result()` read in cross-replica context). In a
graph, Keras runs their `update_state` as a `tf.function`, whose call op is
the update op.

>>> means = ColumnMean(columns=2, name='means')
>>> _ = means.update_state(tf.constant([[1., 3.], [2., 2.]]))
>>> [float(mean) for mean in means.result()['mean']]
[2.0, 2.0]
>>> _ = means.update_state(tf.constant([[5., 5.], [2., 2.]]),
...                        weights=tf.constant([[2., 0.], [1., 1.]]))
>>> [float(mean) for mean in means.result()['mean']]  # 14 / 4, 8 / 4
[3.5, 2.0]
"""
import numpy as np
import tensorflow as tf

# As `tf.keras.metrics.AUC()`: 200 thresholds spread evenly over [0, 1].
AUC_THRESHOLDS = 200


def _row_sums(rows):
  return tf.math.reduce_sum(rows, axis=1)


def _columns(vector):
  """A result vector as one scalar per column.

  Results are split inside `result()`, which Keras runs in cross-replica
  context under a distribution strategy, so that every replica reads the
  very same tensors; reading one column then costs nothing more.
  """
  return tf.unstack(vector)


class _ColumnState(tf.keras.metrics.Metric):
  """A Keras metric whose variables are vectors or matrices."""

  def reset_state(self):
    # Keras' own assigns a scalar 0, which only fits scalar variables.
    for variable in self.variables:
      variable.assign(tf.zeros_like(variable))


class ColumnMean(_ColumnState):
  """Weighted means of `columns` columns, each kept as `keras.metrics.Mean`.

  `update_state(rows, weights)` adds `sum(rows * weights)` to each column's
  total and `sum(weights)` (the row length without weights) to its count;
  `result()` is `total / count`, 0 where the count is 0, as `mean`: a list
  of one scalar per column (so are the other states' results).
  """

  def __init__(self, columns, name):
    super().__init__(name=name)
    self.columns = columns
    self.total = self.add_weight('total', shape=[columns], initializer='zeros')
    self.count = self.add_weight('count', shape=[columns], initializer='zeros')

  def update_state(self, rows, weights=None):  # pylint: disable=arguments-differ
    rows = tf.cast(rows, tf.float32)
    if weights is None:
      counts = tf.fill([self.columns], tf.cast(tf.shape(rows)[1], tf.float32))
    else:
      rows = tf.math.multiply(rows, weights)
      counts = _row_sums(weights)
    self.total.assign_add(_row_sums(rows))
    self.count.assign_add(counts)

  def result(self):
    return {'mean': _columns(tf.math.divide_no_nan(self.total, self.count))}


class LabelMean(ColumnMean):
  """Label means, and the accuracy of always guessing the likelier class.

  The baseline is `max(mean, 1 - mean)` for 0/1 labels, read from the
  mean's own total and count as `BinaryClassHead` reads it.
  """

  def result(self):
    baseline = tf.math.divide_no_nan(
        tf.math.maximum(self.total, self.count - self.total), self.count)
    return dict(super().result(), baseline=_columns(baseline))


class ColumnConfusion(_ColumnState):
  """Weighted true/false positives and false negatives, per column.

  Column k predicts positive where its prediction exceeds `thresholds[k]`,
  as `keras.metrics.Precision(thresholds=t)` and `Recall` do; a label is
  positive where it is not 0. `result()` gives `precision` and `recall`.
  """

  def __init__(self, thresholds, name):
    super().__init__(name=name)
    self.thresholds = np.asarray(thresholds, np.float32)[:, np.newaxis]
    shape = [len(thresholds)]
    self.true_positives = self.add_weight('tp', shape=shape,
                                          initializer='zeros')
    self.false_positives = self.add_weight('fp', shape=shape,
                                           initializer='zeros')
    self.false_negatives = self.add_weight('fn', shape=shape,
                                           initializer='zeros')

  def update_state(self, labels, predictions, weights=None):  # pylint: disable=arguments-differ
    actual = tf.cast(labels, tf.bool)
    predicted = tf.math.greater(tf.cast(predictions, tf.float32),
                                self.thresholds)

    def weighted_count(both):
      counted = tf.cast(both, tf.float32)
      if weights is not None:
        counted = tf.math.multiply(counted, weights)
      return _row_sums(counted)

    self.true_positives.assign_add(
        weighted_count(tf.math.logical_and(actual, predicted)))
    self.false_positives.assign_add(weighted_count(
        tf.math.logical_and(tf.math.logical_not(actual), predicted)))
    self.false_negatives.assign_add(weighted_count(
        tf.math.logical_and(actual, tf.math.logical_not(predicted))))

  def result(self):
    return {
        'precision': _columns(tf.math.divide_no_nan(
            self.true_positives, self.true_positives + self.false_positives)),
        'recall': _columns(tf.math.divide_no_nan(
            self.true_positives, self.true_positives + self.false_negatives)),
    }


class ColumnAUC(_ColumnState):
  """Areas under the ROC and precision-recall curves, per column.

  Keeps, per column, the weighted confusion counts at the thresholds
  `-eps, 1/199, 2/199, ..., 198/199, 1 + eps` of `keras.metrics.AUC()`,
  bucketing each prediction once instead of comparing it with every
  threshold. `result()` gives `roc` and `pr`; see `roc_auc` and `pr_auc`.
  """

  def __init__(self, columns, name):
    super().__init__(name=name)
    self.columns = columns
    shape = [columns, AUC_THRESHOLDS]
    self.true_positives = self.add_weight('tp', shape=shape,
                                          initializer='zeros')
    self.false_positives = self.add_weight('fp', shape=shape,
                                           initializer='zeros')
    self.true_negatives = self.add_weight('tn', shape=shape,
                                          initializer='zeros')
    self.false_negatives = self.add_weight('fn', shape=shape,
                                           initializer='zeros')

  def update_state(self, labels, predictions, weights=None):  # pylint: disable=arguments-differ
    predictions = tf.clip_by_value(tf.cast(predictions, tf.float32), 0., 1.)
    positive = tf.cast(tf.cast(labels, tf.bool), tf.float32)
    weight = 1. if weights is None else weights
    positive_weight = tf.math.multiply(positive, weight)
    negative_weight = tf.math.multiply(1. - positive, weight)
    # A prediction p counts as positive at every threshold below it: at the
    # thresholds of index <= ceil(p * 199) - 1 (and at least at index 0).
    last_below = tf.nn.relu(
        tf.math.ceil(predictions * (AUC_THRESHOLDS - 1)) - 1.)
    buckets = tf.cast(last_below, tf.int32) + tf.range(
        0, self.columns * AUC_THRESHOLDS, AUC_THRESHOLDS)[:, tf.newaxis]

    def above_each_threshold(weight_of_row):
      per_bucket = tf.math.unsorted_segment_sum(
          weight_of_row, buckets, self.columns * AUC_THRESHOLDS)
      return tf.math.cumsum(
          tf.reshape(per_bucket, [self.columns, AUC_THRESHOLDS]), axis=1,
          reverse=True)

    true_positives = above_each_threshold(positive_weight)
    false_positives = above_each_threshold(negative_weight)
    positives = _row_sums(positive_weight)[:, tf.newaxis]
    negatives = _row_sums(negative_weight)[:, tf.newaxis]
    self.true_positives.assign_add(true_positives)
    self.false_positives.assign_add(false_positives)
    self.true_negatives.assign_add(negatives - false_positives)
    self.false_negatives.assign_add(positives - true_positives)

  def result(self):
    counts = (self.true_positives, self.false_positives,
              self.true_negatives, self.false_negatives)
    return {'roc': _columns(roc_auc(*counts)), 'pr': _columns(pr_auc(*counts))}


def _ends(curve):
  """A curve's values at each interval's left and right threshold."""
  return curve[..., :-1], curve[..., 1:]


def roc_auc(true_positives, false_positives, true_negatives,
            false_negatives):
  """Area under the ROC curve by the trapezoidal rule, per row.

  Each row holds confusion counts at increasing thresholds; the curve runs
  through the points (false positive rate, true positive rate) at each, and
  the area sums `(x_left - x_right) * (y_left + y_right) / 2` over the
  intervals between consecutive thresholds (x falls as the threshold rises).
  A rate with a zero denominator counts as 0. This is
  `keras.metrics.AUC(curve='ROC', summation_method='interpolation')`.

  >>> tp = tf.constant([[2., 1., 0.]]); fn = 2. - tp
  >>> fp = tf.constant([[2., 0., 0.]]); tn = 2. - fp
  >>> roc_auc(tp, fp, tn, fn).numpy().tolist()  # (1 - 0) * (1 + .5) / 2
  [0.75]
  """
  recall = tf.math.divide_no_nan(true_positives,
                                 true_positives + false_negatives)
  fall_out = tf.math.divide_no_nan(false_positives,
                                   false_positives + true_negatives)
  recall_left, recall_right = _ends(recall)
  fall_out_left, fall_out_right = _ends(fall_out)
  mean_heights = (recall_left + recall_right) / 2.
  return _row_sums(tf.math.multiply(fall_out_left - fall_out_right,
                                    mean_heights))


def pr_auc(true_positives, false_positives, true_negatives, false_negatives):
  """Area under the precision-recall curve, interpolated, per row.

  Between two consecutive thresholds, true positives TP and predicted
  positives P = TP + FP are taken to vary linearly, so precision TP / P is
  `slope + offset / P` with `slope = dTP / dP` and `offset = TP - slope * P`.
  Integrating precision over recall (TP / positives) across the interval
  gives `slope * (dTP + offset * log(P_left / P_right)) / positives`, the
  log term dropped where either P is 0 (Davis & Goadrich, "The
  relationship between precision-recall and ROC curves", ICML 2006). This is
  `keras.metrics.AUC(curve='PR', summation_method='interpolation')`.

  >>> tp = tf.constant([[2., 2., 0.]]); fp = tf.constant([[2., 0., 0.]])
  >>> pr_auc(tp, fp, 4. - tp - fp, 2. - tp).numpy().round(4).tolist()
  [1.0]
  """
  del true_negatives  # Precision and recall do not need them.
  predicted = true_positives + false_positives
  tp_left, tp_right = _ends(true_positives)
  predicted_left, predicted_right = _ends(predicted)
  tp_gain = tp_left - tp_right
  slope = tf.math.divide_no_nan(
      tp_gain, tf.math.maximum(predicted_left - predicted_right, 0.))
  offset = tp_right - tf.math.multiply(slope, predicted_right)
  both_positive = tf.math.logical_and(predicted_left > 0.,
                                      predicted_right > 0.)
  ratio = tf.where(
      both_positive,
      tf.math.divide_no_nan(predicted_left,
                            tf.math.maximum(predicted_right, 0.)),
      tf.ones_like(predicted_right))
  positives = tf.math.maximum(tp_right + _ends(false_negatives)[1], 0.)
  increments = tf.math.divide_no_nan(
      slope * (tp_gain + offset * tf.math.log(ratio)), positives)
  return _row_sums(increments)


class MetricView:
  """What `MultiHead.metrics()` gives for one key of a fused group.

  It reads one column of a shared state object: `result()` is that head's
  metric value, and it accumulates as the group's state is updated.
  `reset_state()` resets the whole shared state, i.e. every head's metric
  of that kind in the group.
  """

  def __init__(self, name, state, part, column):
    self.name = name
    self.state = state
    self.part = part
    self.column = column

  def result(self):
    return self.state.result()[self.part][self.column]

  def reset_state(self):
    self.state.reset_state()

  @property
  def variables(self):
    return self.state.variables

  def __repr__(self):
    return f'<MetricView {self.name!r} of {self.state.name!r}>'
