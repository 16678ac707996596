"""Which heads of a `MultiHead` are computed together, as one fused group.

Heads fuse when they are of exactly the same `tf.estimator` class (not a
subclass, which may override anything) and their configuration lets one
batched computation give each of them exactly what it would compute alone:
the same `n_classes` or `label_dimension`, the same `loss_reduction`, no
custom `loss_fn` or `inverse_link_fn`. Thresholds, label vocabularies,
weight columns and per-class metrics may differ within a group. Every other
head, and a head alone of its kind, keeps its own path.

A `MaskedHead` fuses as the head it wraps, with masked and unmasked heads
alike: in the group its unlabelled rows get a valid label, logits of 0 and
a weight of 0, and its mean loss is divided by its labelled rows, which
gives exactly what it computes alone (see `fused_masks`). A subclass of
`MaskedHead`, or one wrapping a head that cannot fuse (a custom head, a
`MaskedHead`, a head with a `loss_fn`), keeps its own path.

The configuration is read from the heads' private attributes: the
`tf.estimator` heads have no public accessors for it, and their line ends
with TensorFlow 2.15.

>>> import tensorflow as tf
>>> heads = [tf.estimator.BinaryClassHead(name='a'),
...          tf.estimator.RegressionHead(name='b'),
...          tf.estimator.BinaryClassHead(name='c', thresholds=[0.3]),
...          tf.estimator.MultiClassHead(3, name='d')]
>>> plan(heads)
[(0, 2), (1,), (3,)]
>>> from tensorflow_multihead import MaskedHead
>>> plan(heads + [MaskedHead(tf.estimator.RegressionHead(name='e'),
...                          missing_label=float('nan'))])
[(0, 2), (1, 4), (3,)]
"""
import collections

import numpy as np
import tensorflow as tf

from tensorflow_multihead import fused_classifiers
from tensorflow_multihead import fused_masks
from tensorflow_multihead import fused_regressions

_BINARY = tf.estimator.BinaryClassHead
_MULTI_CLASS = tf.estimator.MultiClassHead
_MULTI_LABEL = tf.estimator.MultiLabelHead
_REGRESSION = tf.estimator.RegressionHead
_POISSON = tf.estimator.PoissonRegressionHead
_LOGISTIC = tf.estimator.LogisticRegressionHead

_FUSED_REDUCTIONS = (tf.losses.Reduction.SUM,
                     tf.losses.Reduction.SUM_OVER_BATCH_SIZE)


def _own_loss(head):
  """Whether the head computes the loss its class defines (no `loss_fn`)."""
  if type(head) in (_POISSON, _LOGISTIC):
    return True  # Their loss_fn is their own method, fixed by the class.
  return head._loss_fn is None  # pylint: disable=protected-access


def fusion_key(head):
  """What heads must share to fuse with `head`; None if it cannot fuse."""
  head, _ = fused_masks.unwrapped(head)
  kind = type(head)
  if kind not in (_BINARY, _MULTI_CLASS, _MULTI_LABEL, _REGRESSION, _POISSON,
                  _LOGISTIC):
    return None
  if head.loss_reduction not in _FUSED_REDUCTIONS or not _own_loss(head):
    return None
  # pylint: disable=protected-access
  if kind is _REGRESSION and head._inverse_link_fn is not None:
    return None
  key = (kind, head.logits_dimension, head.loss_reduction)
  if kind is _POISSON:
    key += (bool(head._compute_full_loss),)
  return key


def plan(heads):
  """Splits head positions into groups, in the order of their first head.

  Returns:
    A list of tuples of positions into `heads`: a tuple of two or more is a
    fused group, a tuple of one a head on its own path.
  """
  groups = collections.OrderedDict()
  for position, head in enumerate(heads):
    key = fusion_key(head)
    groups.setdefault(key if key is not None else ('alone', position),
                      []).append(position)
  result = []
  for key, positions in groups.items():
    if key[0] == 'alone' or len(positions) == 1:
      result.extend((position,) for position in positions)
    else:
      result.append(tuple(positions))
  return sorted(result)


_GROUP_CLASSES = {
    _BINARY: fused_classifiers.BinaryGroup,
    _MULTI_CLASS: fused_classifiers.MultiClassGroup,
    _MULTI_LABEL: fused_classifiers.MultiLabelGroup,
    _REGRESSION: fused_regressions.RegressionGroup,
    _POISSON: fused_regressions.RegressionGroup,
    _LOGISTIC: fused_regressions.RegressionGroup,
}


def build_group(heads):
  """The `fused_heads.FusedGroup` computing `heads`, one group of `plan`."""
  return _GROUP_CLASSES[type(fused_masks.unwrapped(heads[0])[0])](heads)


def _known_rank(value, at_least):
  rank = getattr(getattr(value, 'shape', None), 'rank', None)
  return rank is not None and rank >= at_least


def fusable_inputs(logits, labels=None):
  """Whether one head's logits (and labels) have ranks a group can stack.

  Logits need a known rank of at least 2 and a known last dimension;
  labels (a dense or sparse tensor, or anything convertible) a known rank.
  Inputs that fail go the head's own way, which checks them as it always
  did.
  """
  if not tf.is_tensor(logits):  # NumPy arrays and lists, as heads take.
    try:
      logits = tf.convert_to_tensor(logits)
    except (TypeError, ValueError):
      return False
  if not (_known_rank(logits, 2) and logits.shape[-1] is not None):
    return False
  if labels is None:
    return True
  if isinstance(labels, tf.sparse.SparseTensor):
    return labels.shape.rank is not None
  if not tf.is_tensor(labels):
    try:
      labels = tf.convert_to_tensor(labels)
    except (TypeError, ValueError):
      return False
  return _known_rank(labels, 1)


def _rank(value):
  if tf.is_tensor(value):
    return value.shape.rank
  return np.ndim(value)


def fusable_group(logits, labels=None):
  """Whether a group's heads' inputs can be stacked: see `fusable_inputs`.

  Each head's must be, and their logits must have one rank.

  Args:
    logits: The heads' logits, in order.
    labels: The heads' labels, in order, or None.
  """
  if labels is None:
    labels = [None] * len(logits)
  return (all(fusable_inputs(head_logits, head_labels)
              for head_logits, head_labels in zip(logits, labels)) and
          len({_rank(head_logits) for head_logits in logits}) == 1)
