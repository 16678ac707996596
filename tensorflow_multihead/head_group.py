"""`HeadGroup`: what every multi-head merger shares, whatever its head API.

Both `MultiHead` (the `tf.estimator.Head` API) and `contrib.multi_head` (the
TF 1.x `_Head` API) check their heads and weights the same way, route logits
and labels to the heads by name the same way, and merge the heads' losses,
predictions and export outputs the same way. They differ only in how a head
reports metrics and how the merged loss is trained, which stays with them.

>>> import tensorflow as tf
>>> group = HeadGroup([tf.estimator.BinaryClassHead(name='clicks'),
...                    tf.estimator.MultiClassHead(3, name='kind')],
...                   head_weights=[2., 1.])
>>> group.names, group.logits_dimension
(('clicks', 'kind'), 4)
>>> pieces = group.logits_by_head(tf.zeros([5, 4]))
>>> {name: piece.shape.as_list() for name, piece in pieces.items()}
{'clicks': [5, 1], 'kind': [5, 3]}
>>> float(group.weighted_sum([tf.constant(1.), tf.constant(3.)]))
5.0
"""
import collections.abc
import numbers

import numpy as np
import tensorflow as tf
from tensorflow_estimator.python.estimator.mode_keys import ModeKeys

from tensorflow_multihead import base_head


def _is_sequence(value):
  return (isinstance(value, collections.abc.Iterable) and
          not isinstance(value, (str, bytes, dict)))


def _check_heads(heads, head_types):
  """Raises if `heads` cannot be merged; returns them as a tuple."""
  if not heads:
    raise ValueError(f'Must specify heads. Given: {heads}')
  if not _is_sequence(heads):
    raise TypeError(
        f'heads must be a list or tuple of heads. Given: {heads!r}')
  heads = tuple(heads)
  first_position = {}
  for position, head in enumerate(heads):
    if not isinstance(head, head_types):
      kinds = ' or '.join(kind.__name__ for kind in head_types)
      raise TypeError(f'heads[{position}] is not a {kinds}. Given: {head!r}')
    if head.name is None or head.name == '':
      raise ValueError(
          'All given heads must have name specified. '
          f'heads[{position}] has name {head.name!r}. Given: {head}')
    if head.name in first_position:
      raise ValueError(
          f'Head names must be unique: heads[{first_position[head.name]}] '
          f'and heads[{position}] are both named {head.name!r}, so one would '
          "overwrite the other's predictions and metrics.")
    first_position[head.name] = position
  return heads


def _is_weight(value):
  if isinstance(value, bool):
    return False
  return isinstance(value, (numbers.Real, np.number)) or tf.is_tensor(value)


def _check_head_weights(head_weights, heads):
  """Raises if `head_weights` cannot weight `heads`; returns a tuple."""
  if head_weights is None:
    return ()
  if not _is_sequence(head_weights):
    raise TypeError(
        'head_weights must be a list or tuple of numbers. '
        f'Given: {head_weights!r}')
  head_weights = tuple(head_weights)
  if not head_weights:  # An empty list means equal weights, as before.
    return ()
  if len(head_weights) != len(heads):
    raise ValueError(
        'heads and head_weights must have the same size. '
        f'Given len(heads): {len(heads)}. '
        f'Given len(head_weights): {len(head_weights)}.')
  for head, weight in zip(heads, head_weights):
    if not _is_weight(weight):
      raise TypeError(
          f'head_weights must be numbers: the weight of head {head.name!r} '
          f'is {weight!r} of type {type(weight).__name__}.')
  return head_weights


def _check_keys(given, names, what):
  """Raises unless the dict `given` holds exactly one entry per head."""
  missing = [name for name in names if name not in given]
  if missing:
    raise ValueError(
        f'{what} has missing values for head(s): {missing}. '
        f'Given keys: {sorted(map(str, given))}.')
  unknown = [key for key in given if key not in names]
  if unknown:
    raise ValueError(
        f'{what} has values for unknown head(s): {unknown}. '
        f'The heads are: {list(names)}.')


def merge_unique(merged, extra, head_name, what):
  """Adds the dict `extra` into `merged`, refusing a key given before.

  >>> merge_unique({'auc/a': 1}, {'auc/b': 2}, 'b', 'metric')
  {'auc/a': 1, 'auc/b': 2}
  >>> merge_unique({'auc': 1}, {'auc': 2}, 'b', 'metric')
  Traceback (most recent call last):
  ...
  ValueError: Head 'b' gives metric key 'auc', which another head already \
gave; name the heads so that their keys differ.
  """
  for key, value in (extra or {}).items():
    if key in merged:
      raise ValueError(
          f'Head {head_name!r} gives {what} key {key!r}, which another head '
          'already gave; name the heads so that their keys differ.')
    merged[key] = value
  return merged


def _default_output(export_outputs, head_name):
  """Picks the output a head serves by default from its `export_outputs`."""
  if len(export_outputs) == 1:
    return next(iter(export_outputs.values()))
  if base_head.DEFAULT_SERVING_KEY in export_outputs:
    return export_outputs[base_head.DEFAULT_SERVING_KEY]
  raise ValueError(
      f'{head_name} did not specify default export_outputs. Given: '
      f'{export_outputs} Suggested fix: Use one of the heads in tf.estimator, '
      f'or include key {base_head.DEFAULT_SERVING_KEY} in export_outputs.')


class HeadGroup:
  """Named heads, their loss weights and the head served by default.

  Args:
    heads: Sequence of heads with unique, non-empty names.
    head_weights: Optional numbers, one per head, weighting their losses.
    default_head: Name of the head served by default; the first if `None`.
    head_types: The classes a head must be an instance of.
  """

  def __init__(self, heads, head_weights=None, default_head=None,
               head_types=(tf.estimator.Head,)):
    self.heads = _check_heads(heads, head_types)
    self.weights = _check_head_weights(head_weights, self.heads)
    self.names = tuple(head.name for head in self.heads)
    if default_head is None:
      default_head = self.names[0]
    if default_head not in self.names:
      raise ValueError(
          f'default_head {default_head!r} is not one of the heads: '
          f'{list(self.names)}.')
    self.default_head = default_head
    self.logits_dimension = sum(head.logits_dimension for head in self.heads)

  def logits_by_head(self, logits):
    """Returns each head's logits from a dict or one `Tensor` to split."""
    if isinstance(logits, dict):
      _check_keys(logits, self.names, 'logits')
      return dict(logits)
    return self._split(logits)

  def _split(self, logits):
    """Splits logits `[D0, ..., DN, logits_dimension]` among the heads."""
    with tf.name_scope('split_logits'):
      logits = tf.convert_to_tensor(logits)
      widths = [head.logits_dimension for head in self.heads]
      if logits.shape.rank == 0:
        raise ValueError(
            'logits must be a dict keyed by head name or a Tensor of shape '
            f'[D0, ..., DN, {sum(widths)}]; given a scalar.')
      last = logits.shape[-1] if logits.shape.rank else None
      if last is not None and last != sum(widths):
        raise ValueError(
            f'Could not split logits of shape {logits.shape.as_list()} among '
            f'the heads {list(self.names)} with individual logits '
            f'dimensions: {widths}. The last dimension of the logits tensor '
            f'should equal {sum(widths)} but is {last}.')
      # When the last dimension is unknown while building, `tf.split`
      # checks at run time that the widths add up to it.
      return dict(zip(self.names, tf.split(logits, widths, axis=-1)))

  def labels_by_head(self, labels, mode=None):
    """Checks that `labels` is a dict with one entry per head."""
    if labels is None:
      if mode in (ModeKeys.TRAIN, ModeKeys.EVAL):
        raise ValueError(
            f'labels are required in mode {mode}: give a dict keyed by head '
            f'name, with keys {list(self.names)}.')
      return dict.fromkeys(self.names)
    if not isinstance(labels, dict):
      raise ValueError(
          f'labels must be a dict keyed by head name {list(self.names)}. '
          f'Given: {labels}')
    _check_keys(labels, self.names, 'labels')
    return labels

  def weighted_sum(self, losses, regularization_loss=None):
    """Adds the heads' losses, each times its weight, and regularization.

    `regularization_loss` is one scalar (as `sum_or_none` gives) or `None`.
    """
    with tf.name_scope('merge_losses'):
      losses = list(losses)
      if self.weights:
        losses = [tf.math.multiply(loss, weight)
                  for loss, weight in zip(losses, self.weights)]
      total = sum_of(losses)
      if regularization_loss is not None:
        total += regularization_loss
      return total

  def merged_predictions(self, predictions_by_head):
    """Keys every head's predictions by `(head name, prediction key)`."""
    return {(name, key): value
            for name, predictions in predictions_by_head.items()
            for key, value in predictions.items()}

  def merged_export_outputs(self, outputs_by_head):
    """Serves every head's outputs; the default head's as the default.

    A head's default output is served as `<head>`, its others as
    `<head>/<key>`; `predict` gathers every head's `PredictOutput` tensors,
    keyed `<head>/<output key>`.
    """
    served = {base_head.DEFAULT_SERVING_KEY: _default_output(
        outputs_by_head[self.default_head], self.default_head)}
    gathered = {}
    for name, outputs in outputs_by_head.items():
      served.update({_served_name(name, key): output
                     for key, output in outputs.items()})
      own_predict = outputs.get(base_head.PREDICT_SERVING_KEY)
      if isinstance(own_predict, tf.estimator.export.PredictOutput):
        gathered.update({f'{name}/{key}': tensor
                         for key, tensor in own_predict.outputs.items()})
    served[base_head.PREDICT_SERVING_KEY] = (
        tf.estimator.export.PredictOutput(gathered))
    return served


class GroupedHead:
  """The properties a merged head answers from its `HeadGroup`.

  Mixed in before the head base class, so that these implement its abstract
  `name` and `logits_dimension`. The class sets `self._group`.
  """

  @property
  def name(self):
    """The heads' names joined by `_`."""
    return '_'.join(self._group.names)

  @property
  def logits_dimension(self):
    """The sum of the heads' `logits_dimension`s."""
    return self._group.logits_dimension

  @property
  def heads(self):
    """The merged heads, in order, as given."""
    return self._group.heads

  @property
  def head_weights(self):
    """The heads' loss weights, or `()` when every loss counts once."""
    return self._group.weights

  @property
  def default_head(self):
    """The name of the head served as `serving_default`."""
    return self._group.default_head


def _served_name(head_name, output_key):
  if output_key == base_head.DEFAULT_SERVING_KEY:
    return head_name
  return f'{head_name}/{output_key}'


def sum_of(losses):
  """Adds a list (or other iterable) of scalar losses into one."""
  return tf.math.add_n(list(losses))


def sum_or_none(losses):
  """`sum_of(losses)`, or `None` without losses.

  Merged heads add their `regularization_losses` up once, then hand the sum
  to the merged loss, the eval metric and the summary alike.
  """
  return None if losses is None else sum_of(losses)
