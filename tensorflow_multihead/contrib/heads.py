"""The head factories of `tf.contrib.estimator`, as TF 1.x had them.

Each returns a TF 1.x `_Head` for `contrib.multi_head`, for the TF 1.x canned
estimators (`tf.compat.v1.estimator.DNNEstimator`, `LinearEstimator`,
`DNNLinearCombinedEstimator`) or for a `model_fn` on its own. Their defaults
are `tf.contrib.estimator`'s, not the canned heads': the training loss is
reduced with `SUM_OVER_BATCH_SIZE`, the mean over the batch, where the canned
heads sum. The multi-class, binary and regression heads are the TF 1.x heads
that tensorflow-estimator still ships; the multi-label head is this
package's own.

>>> import numpy as np
>>> head = regression_head(name='price')
>>> spec = head.create_loss(features={}, mode='train',
...                         logits=np.array([[1.], [2.]], np.float32),
...                         labels=np.array([[2.], [2.]], np.float32))
>>> float(spec.training_loss)  # ((1 - 2)**2 + (2 - 2)**2) / 2
0.5
"""
import tensorflow as tf
from tensorflow_estimator.python.estimator.canned import head as canned_head

from tensorflow_multihead.contrib import multi_label_head as multi_label

_SUM_OVER_BATCH_SIZE = tf.compat.v1.losses.Reduction.SUM_OVER_BATCH_SIZE
# The canned TF 1.x heads that tf.contrib.estimator's factories returned.
# pylint: disable=protected-access
_canned_multi_class_head = (
    canned_head._multi_class_head_with_softmax_cross_entropy_loss)
_canned_binary_head = (
    canned_head._binary_logistic_head_with_sigmoid_cross_entropy_loss)
_canned_regression_head = canned_head._regression_head
_assert_range = canned_head._assert_range
# pylint: enable=protected-access


def multi_class_head(n_classes, weight_column=None, label_vocabulary=None,
                     loss_reduction=_SUM_OVER_BATCH_SIZE, loss_fn=None,
                     name=None):
  """Creates a `_Head` for classification into one of `n_classes` > 2.

  The loss is the softmax cross-entropy of integer class ids (or of strings
  from `label_vocabulary`) shaped `[D0, ... DN, 1]` or `[D0, ... DN]`,
  against logits `[D0, ... DN, n_classes]`.

  Args:
    n_classes: Number of classes, more than 2 (for 2, use
      `binary_classification_head`).
    weight_column: A string or a numeric column naming the example weights
      in `features`.
    label_vocabulary: List or tuple of the class names that string labels
      take; without it labels are class ids in `[0, n_classes)`.
    loss_reduction: A `tf.compat.v1.losses.Reduction` other than `NONE`;
      how the training loss is reduced over the batch.
    loss_fn: Optional `loss_fn(labels, logits[, features])` returning the
      unreduced loss `[D0, ... DN, 1]`, given integer class ids.
    name: The head's name, suffixing its metric and summary keys.

  Raises:
    ValueError: An invalid `n_classes`, `label_vocabulary`, `loss_reduction`
      or `loss_fn`.
  """
  return _canned_multi_class_head(
      n_classes=n_classes, weight_column=weight_column,
      label_vocabulary=label_vocabulary, loss_reduction=loss_reduction,
      loss_fn=loss_fn, name=name)


def binary_classification_head(weight_column=None, thresholds=None,
                               label_vocabulary=None,
                               loss_reduction=_SUM_OVER_BATCH_SIZE,
                               loss_fn=None, name=None):
  """Creates a `_Head` for binary classification.

  The loss is the sigmoid cross-entropy of labels in `[0, 1]` (or strings
  from `label_vocabulary`) against logits `[D0, ... DN, 1]`.

  Args:
    weight_column: A string or a numeric column naming the example weights
      in `features`.
    thresholds: Probabilities in `(0, 1)`, each adding accuracy, precision
      and recall metrics at that threshold.
    label_vocabulary: The two class names that string labels take.
    loss_reduction: A `tf.compat.v1.losses.Reduction` other than `NONE`.
    loss_fn: Optional `loss_fn(labels, logits[, features])` returning the
      unreduced loss `[D0, ... DN, 1]`.
    name: The head's name, suffixing its metric and summary keys.

  Raises:
    ValueError: A threshold outside `(0, 1)`; an invalid `loss_reduction`
      or `loss_fn`.
    TypeError: A `label_vocabulary` that is not a list or tuple.
  """
  return _canned_binary_head(
      weight_column=weight_column, thresholds=thresholds,
      label_vocabulary=label_vocabulary, loss_reduction=loss_reduction,
      loss_fn=loss_fn, name=name)


def regression_head(weight_column=None, label_dimension=1,
                    loss_reduction=_SUM_OVER_BATCH_SIZE, loss_fn=None,
                    inverse_link_fn=None, name=None):
  """Creates a `_Head` for regression, by default with squared error.

  Args:
    weight_column: A string or a numeric column naming the example weights
      in `features`.
    label_dimension: Number of regression targets per example, the last
      dimension of labels and logits.
    loss_reduction: A `tf.compat.v1.losses.Reduction` other than `NONE`.
    loss_fn: Optional `loss_fn(labels, logits[, features])` returning the
      unreduced loss `[D0, ... DN, label_dimension]`.
    inverse_link_fn: Optional function from logits to the predicted values
      (the mean function of a generalized linear model); identity if `None`.
      When given, predictions also hold the `logits`.
    name: The head's name, suffixing its metric and summary keys.

  Raises:
    ValueError: An invalid `label_dimension`, `loss_reduction` or `loss_fn`.
  """
  return _canned_regression_head(
      weight_column=weight_column, label_dimension=label_dimension,
      loss_reduction=loss_reduction, loss_fn=loss_fn,
      inverse_link_fn=inverse_link_fn, name=name)


def poisson_regression_head(weight_column=None, label_dimension=1,
                            loss_reduction=_SUM_OVER_BATCH_SIZE,
                            compute_full_loss=True, name=None):
  """Creates a `_Head` for Poisson regression of counts.

  The logits are the log of the predicted rate: the loss is
  `tf.nn.log_poisson_loss` and the predictions are `exp(logits)`.

  >>> import numpy as np
  >>> head = poisson_regression_head(compute_full_loss=False)
  >>> spec = head.create_loss(features={}, mode='train',
  ...                         logits=np.zeros([2, 1], np.float32),
  ...                         labels=np.array([[1.], [3.]], np.float32))
  >>> float(spec.training_loss)  # exp(0) - label * 0, for each example.
  1.0

  Args:
    weight_column: A string or a numeric column naming the example weights
      in `features`.
    label_dimension: Number of counts per example.
    loss_reduction: A `tf.compat.v1.losses.Reduction` other than `NONE`.
    compute_full_loss: Whether to add Stirling's approximation of
      `log(labels!)`, which does not change the gradients.
    name: The head's name, suffixing its metric and summary keys.
  """

  def poisson_loss(labels, logits):
    return tf.nn.log_poisson_loss(
        targets=labels, log_input=logits,
        compute_full_loss=compute_full_loss)

  return regression_head(
      weight_column=weight_column, label_dimension=label_dimension,
      loss_reduction=loss_reduction, loss_fn=poisson_loss,
      inverse_link_fn=tf.math.exp, name=name)


def logistic_regression_head(weight_column=None,
                             loss_reduction=_SUM_OVER_BATCH_SIZE, name=None):
  """Creates a `_Head` regressing probabilities with the logistic loss.

  Labels are probabilities in `[0, 1]`, not classes: the loss is the sigmoid
  cross-entropy and the predictions are `sigmoid(logits)`.

  Args:
    weight_column: A string or a numeric column naming the example weights
      in `features`.
    loss_reduction: A `tf.compat.v1.losses.Reduction` other than `NONE`.
    name: The head's name, suffixing its metric and summary keys.
  """

  def logistic_loss(labels, logits):
    labels = _assert_range(labels, n_classes=2,
                           message='Labels must be in range [0, 1]')
    return tf.nn.sigmoid_cross_entropy_with_logits(
        labels=labels, logits=logits)

  return regression_head(
      weight_column=weight_column, loss_reduction=loss_reduction,
      loss_fn=logistic_loss, inverse_link_fn=tf.math.sigmoid, name=name)


def multi_label_head(n_classes, weight_column=None, thresholds=None,
                     label_vocabulary=None,
                     loss_reduction=_SUM_OVER_BATCH_SIZE, loss_fn=None,
                     classes_for_class_based_metrics=None, name=None):
  """Creates a `_Head` for multi-label classification.

  Each example may belong to any number of the `n_classes` classes. Labels
  are a multi-hot `Tensor` `[D0, ... DN, n_classes]`, or a `SparseTensor` of
  class ids (of class names, given `label_vocabulary`). An example's loss is
  its sigmoid cross-entropy averaged over the classes.

  >>> import numpy as np
  >>> head = multi_label_head(n_classes=2, name='tags')
  >>> spec = head.create_loss(
  ...     features={}, mode='eval',
  ...     logits=np.array([[-10., 10.], [10., 10.]], np.float32),
  ...     labels=np.array([[0, 1], [0, 1]]))
  >>> # Only the second example's first class is wrong, by 10: mean over its
  >>> # two classes, 5.0; then mean over the batch.
  >>> print(f'{float(spec.training_loss):.2f}')
  2.50

  Args:
    n_classes: Number of classes, more than 1.
    weight_column: A string or a numeric column naming the example weights
      in `features`.
    thresholds: Probabilities in `(0, 1)`, each adding accuracy, precision
      and recall metrics at that threshold.
    label_vocabulary: List or tuple of the `n_classes` class names that
      sparse string labels take.
    loss_reduction: A `tf.compat.v1.losses.Reduction` other than `NONE`.
    loss_fn: Optional `loss_fn(labels, logits[, features])` returning the
      unreduced loss `[D0, ... DN, 1]`, given multi-hot labels.
    classes_for_class_based_metrics: Class ids, or names from
      `label_vocabulary`, whose probability mean, AUC and PR AUC are
      reported: `probability_mean/class<id>`, `auc/class<id>` and
      `auc_precision_recall/class<id>`, or, given a `label_vocabulary`,
      `probability_mean/<class name>`, `auc/<class name>` and
      `auc_precision_recall/<class name>`, as in TF 1.x. Unlike TF 1.x,
      which took only all ids or all names, ids and names may mix.
    name: The head's name, suffixing its metric and summary keys.

  Raises:
    ValueError: An invalid `n_classes`, threshold, `label_vocabulary`,
      `loss_reduction`, `loss_fn` or class for class-based metrics.
  """
  return multi_label.TF1MultiLabelHead(
      n_classes=n_classes, weight_column=weight_column,
      thresholds=thresholds, label_vocabulary=label_vocabulary,
      loss_reduction=loss_reduction, loss_fn=loss_fn,
      classes_for_class_based_metrics=classes_for_class_based_metrics,
      name=name)
