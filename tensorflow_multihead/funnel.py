"""Funnels in a `MultiHead`: its `ConditionalHead`s as the heads it computes.

A `MultiHead` hands its heads to a `Funnel`, which checks every chain of
`given` names while the `MultiHead` is built, and stands each
`ConditionalHead` named `conversion`, given `click`, for two heads:

* `conversion` itself: the wrapped head, fed the joint logits
  `joint_logits.joint_logit(click logits, conversion logits)` and the
  conversion labels of every row: an ordinary binary head, which fuses with
  the other binary heads;
* `conversion_given_click`, a view: a `MaskedHead` over a copy of the
  wrapped head so named, fed the conditional logits and the same labels,
  its rows those whose click label is 1 (a bool feature, added under
  `view_mask_key(...)`, marks them). It reports metrics and predictions and
  serves its signatures; it is in no loss, and TRAIN leaves it out.

`layout(mode)` gives the heads a mode computes (`head_layout.Layout`), and
`inputs(...)` their logits, labels and features, keyed by their names.

The rows of a view are those where the given head's label is known and 1
(its vocabulary's second word): a `MaskedHead` parent's unlabelled rows are
in no view. A parent's weight column weighs the parent's own loss and
metrics only. Where the parent's label is known and 0, the child's must be
0 (a conversion needs a click): a 1 there raises when the graph runs.

>>> import numpy as np
>>> import tensorflow as tf
>>> from tensorflow_multihead import conditional_head
>>> funnel = Funnel([
...     tf.estimator.BinaryClassHead(name='click'),
...     conditional_head.ConditionalHead(
...         tf.estimator.BinaryClassHead(name='conversion'), given='click')],
...     fuse_heads=True)
>>> funnel.layout(tf.estimator.ModeKeys.TRAIN).names
('click', 'conversion')
>>> funnel.layout(tf.estimator.ModeKeys.EVAL).names
('click', 'conversion', 'conversion_given_click')
>>> inputs = funnel.inputs(
...     tf.estimator.ModeKeys.EVAL,
...     logits={'click': np.zeros([3, 1], np.float32),
...             'conversion': np.zeros([3, 1], np.float32)},  # p = 1/4
...     labels={'click': np.array([[1], [0], [1]]),
...             'conversion': np.array([[1], [0], [0]])}, features={})
>>> [f'{value:.4f}' for value in inputs.logits['conversion'].numpy().ravel()]
['-1.0986', '-1.0986', '-1.0986']
>>> inputs.features[view_mask_key('conversion_given_click')].numpy().tolist()
[True, False, True]
"""
import collections
import copy

import tensorflow as tf
from tensorflow_estimator.python.estimator.mode_keys import ModeKeys

from tensorflow_multihead import conditional_head
from tensorflow_multihead import fused_masks
from tensorflow_multihead import head_group
from tensorflow_multihead import head_layout
from tensorflow_multihead import joint_logits
from tensorflow_multihead import masked_head

ConditionalHead = conditional_head.ConditionalHead

# What the heads of one mode are given, keyed by the names they compute.
Inputs = collections.namedtuple('Inputs', ['logits', 'labels', 'features'])


def view_mask_key(view_name):
  """The feature marking a view's rows (true where the given event is 1)."""
  return f'tensorflow_multihead/{view_name}/rows'


def _renamed(head, name):
  """A copy of the `BinaryClassHead` `head` named `name`, same otherwise.

  Its `__init__` runs again on the copy, so that the metric keys it makes
  from the name follow; a subclass keeps its own attributes.
  """
  # pylint: disable=protected-access
  clone = copy.copy(head)
  tf.estimator.BinaryClassHead.__init__(
      clone, weight_column=head._weight_column, thresholds=head._thresholds,
      label_vocabulary=head._label_vocabulary,
      loss_reduction=head._loss_reduction, loss_fn=head._loss_fn, name=name)
  return clone


class _Link:
  """One `ConditionalHead`, its given head and its view."""

  def __init__(self, head, given):
    self.head = head  # The ConditionalHead.
    self.given = given  # The head it is given: any binary head.
    self.name = head.name
    self.view_name = head.conditional_name
    core, _ = conditional_head.binary_core(head.head)
    self.view = masked_head.MaskedHead(_renamed(core, self.view_name),
                                       mask_key=view_mask_key(self.view_name))


def _event_head(head):
  """The binary head whose labels say whether `head`'s event happened."""
  return head.head if isinstance(head, ConditionalHead) else head


def _refuse_hidden(head):
  """Raises for a `MaskedHead` over a `ConditionalHead`: wrap it inside."""
  inner = head
  while isinstance(inner, masked_head.MaskedHead):
    inner = inner.head
  if inner is not head and isinstance(inner, ConditionalHead):
    raise TypeError(
        f'Head {head.name!r}: a MaskedHead over a ConditionalHead is not '
        'computed as a funnel step; put the MaskedHead inside: '
        f'ConditionalHead(MaskedHead(...), given={inner.given!r}).')


def _check_given(head, by_name):
  """The head `head` is given, checked to exist and be binary."""
  if head.given not in by_name:
    raise ValueError(
        f'ConditionalHead {head.name!r} is given {head.given!r}, which names '
        f'no head of the MultiHead. The heads are: {list(by_name)}.')
  given = by_name[head.given]
  if not isinstance(given, ConditionalHead) and (
      conditional_head.binary_core(given) is None):
    raise TypeError(
        f'ConditionalHead {head.name!r} is given head {head.given!r}, a '
        f'{type(given).__name__}, which is not binary: give a '
        'BinaryClassHead, a MaskedHead of one or a ConditionalHead.')
  return given


def _chain(head, by_name):
  """The names from `head` up its `given`s; raises on a loop."""
  names = [head.name]
  while isinstance(head, ConditionalHead):
    head = by_name[head.given]
    if head.name in names:
      loop = names[names.index(head.name):] + [head.name]
      raise ValueError(
          f'ConditionalHeads {sorted(set(loop))} are given each other in a '
          f'loop ({" -> ".join(loop)}): a chain of given heads must end at '
          'a head that is not a ConditionalHead.')
    names.append(head.name)
  return names


def _links(heads):
  """The `ConditionalHead`s as `_Link`s, every given head before its heads."""
  by_name = {head.name: head for head in heads}
  for head in heads:
    _refuse_hidden(head)
  conditionals = [head for head in heads if isinstance(head, ConditionalHead)]
  givens = {head.name: _check_given(head, by_name) for head in conditionals}
  depth = {head.name: len(_chain(head, by_name)) for head in conditionals}
  for head in conditionals:
    if head.conditional_name in by_name:
      raise ValueError(
          f'ConditionalHead {head.name!r} reports its conditional view as '
          f'{head.conditional_name!r}, which is also the name of a head; '
          'rename one of them.')
  return [_Link(head, givens[head.name])
          for head in sorted(conditionals, key=lambda head: depth[head.name])]


def _float_logits(logits, name):
  with head_group.ErrorsNamingHead(name):
    return tf.cast(tf.convert_to_tensor(logits), tf.float32)


def _same_shape(given_logits, logits, link):
  """`logits`, checked to have the shape of the given head's logits."""
  message = (f'Heads {link.given.name} and {link.name} (a ConditionalHead '
             f'given {link.given.name}) must have logits of one shape.')
  if not given_logits.shape.is_compatible_with(logits.shape):
    raise ValueError(f'{message} Given shapes {given_logits.shape} and '
                     f'{logits.shape}.')
  if given_logits.shape.is_fully_defined() and logits.shape.is_fully_defined():
    return logits
  check = tf.debugging.assert_equal(tf.shape(given_logits), tf.shape(logits),
                                    message=message)
  with tf.control_dependencies([check]):
    return tf.identity(logits)


def _event_ids(head, labels, logits, features):
  """`(ids, known)`: a binary head's 0/1 label ids, and where it has one.

  Both `[D0, ..., DN]`; `ids` is valid everywhere (0 where the head has no
  label), `known` is None for a head that is not a `MaskedHead`.
  """
  core, masks = conditional_head.binary_core(head)
  known = None
  with head_group.ErrorsNamingHead(head.name):
    for mask in masks:
      labels, keep = fused_masks.labelled(core, mask.row_marks, labels,
                                          logits, features)
      known = keep if known is None else tf.math.logical_and(known, keep)
    ids = core._processed_labels(logits, labels)  # pylint: disable=protected-access
  return ids[..., 0], known


def _and(*conditions):
  present = [condition for condition in conditions if condition is not None]
  result = present[0]
  for condition in present[1:]:
    result = tf.math.logical_and(result, condition)
  return result


class Funnel:
  """A `MultiHead`'s heads, each `ConditionalHead` standing for two.

  Args:
    heads: The `MultiHead`'s heads, checked by `head_group.HeadGroup`.
    fuse_heads: Whether heads that `fusion.plan` groups are fused.

  Raises:
    ValueError: A `given` naming no head; `ConditionalHead`s given each
      other in a loop; a view's name taken by a head.
    TypeError: A given head that is not binary; a `MaskedHead` over a
      `ConditionalHead`.
  """

  def __init__(self, heads, fuse_heads):
    self._links = _links(heads)
    training = [head.head if isinstance(head, ConditionalHead) else head
                for head in heads]
    self._training = head_layout.Layout(training, fuse_heads)
    self._reporting = self._training
    if self._links:
      views = {link.name: link.view for link in self._links}
      reporting = []
      for head in training:
        reporting += [head] + ([views[head.name]] if head.name in views
                               else [])
      self._reporting = head_layout.Layout(reporting, fuse_heads)

  def layout(self, mode=None):
    """The heads `mode` computes: TRAIN without the views, else with them.

    `mode=None`, for the `Head` API's `predictions` and `metrics`, gives
    the views too.
    """
    return self._training if mode == ModeKeys.TRAIN else self._reporting

  def inputs(self, mode, logits, labels, features):
    """The logits, labels and features of `layout(mode)`'s heads.

    Args:
      mode: The mode, or None (with views).
      logits: Each head's logits, keyed by the `MultiHead`'s head names.
      labels: Each head's labels alike, or None.
      features: The features dict.

    Returns:
      `Inputs`: logits, labels and features keyed by the names of
      `layout(mode)`: joint logits for a `ConditionalHead`, conditional ones
      for its view, labels checked against the given head's, and the views'
      row masks among the features when there are labels.
    """
    if not self._links:
      return Inputs(logits, labels, features)
    views = mode != ModeKeys.TRAIN
    logits, conditional = self._logits(logits)
    if views:
      logits.update({link.view_name: conditional[link.name]
                     for link in self._links})
    if labels is None:
      return Inputs(logits, labels, features)
    if all(value is None for value in labels.values()):  # PREDICT's.
      if views:
        labels = dict(labels, **dict.fromkeys(
            link.view_name for link in self._links))
      return Inputs(logits, labels, features)
    labels, features = self._labels(labels, logits, features, views)
    return Inputs(logits, labels, features)

  def logits(self, logits):
    """Every head's logits, views too (see `inputs`), keyed by name."""
    return self.inputs(None, logits, None, None).logits

  def _logits(self, logits):
    """Joint logits for the conditional heads; also the conditional ones."""
    logits = dict(logits)
    conditional = {}
    for link in self._links:  # Given heads first: their logits are joint.
      given = _float_logits(logits[link.given.name], link.given.name)
      logits[link.given.name] = given  # As its labels are checked against.
      own = _same_shape(given, _float_logits(logits[link.name], link.name),
                        link)
      conditional[link.name] = own
      logits[link.name] = joint_logits.joint_logit(given, own)
    return logits, conditional

  def _labels(self, labels, logits, features, views):
    """Checked labels, and features with the views' row masks."""
    labels = dict(labels)
    features = dict(features or {})
    for link in self._links:
      if labels[link.name] is None or labels[link.given.name] is None:
        if views:  # The heads say what is missing.
          labels[link.view_name] = labels[link.name]
        continue
      checked, rows = self._checked_labels(link, labels, logits, features)
      labels[link.name] = checked
      if views:
        key = view_mask_key(link.view_name)
        if key in features:
          raise ValueError(
              f'The feature {key!r} is taken; it would mark the rows of '
              f'ConditionalHead {link.name!r}\'s view {link.view_name!r}.')
        features[key] = rows
        labels[link.view_name] = checked
    return labels, features

  def _checked_labels(self, link, labels, logits, features):
    """The head's labels, checked to be 0 where the given event is 0.

    Returns them and the view's rows, bool `[D0, ..., DN]`: where the given
    head's label is known and 1 and the head has a label.
    """
    name, given_name = link.name, link.given.name
    with tf.name_scope(f'funnel_{name}'):
      own = tf.compat.v1.convert_to_tensor_or_sparse_tensor(labels[name])
      own_ids, own_known = _event_ids(link.head.head, own, logits[name],
                                      features)
      given_ids, given_known = _event_ids(
          _event_head(link.given), labels[given_name], logits[given_name],
          features)
      wrong = _and(tf.math.equal(given_ids, 0.),
                   tf.math.not_equal(own_ids, 0.), given_known)
      # Names unquoted: the op's message would escape the quotes. Counts
      # rather than row indices: shapes known ahead, as XLA wants them.
      flat = tf.reshape(tf.cast(wrong, tf.int32), [-1])
      check = tf.debugging.Assert(
          tf.math.logical_not(tf.math.reduce_any(wrong)),
          [f'Head {name} is a ConditionalHead given head {given_name}: its '
           f'label must be 0 wherever the label of {given_name} is 0 (its '
           f'event happens only after that of {given_name}). Rows with a '
           f'label of {name} but 0 for {given_name}:',
           tf.math.reduce_sum(flat), 'the first at flat position',
           tf.math.argmax(flat)], name='given_event_check')
      with tf.control_dependencies([check]):
        own = tf.identity(own)
      return own, _and(tf.math.equal(given_ids, 1.), given_known, own_known)
