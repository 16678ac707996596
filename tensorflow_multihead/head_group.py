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
import hashlib
import numbers
import re

import numpy as np
import tensorflow as tf
from tensorflow_estimator.python.estimator.canned import head as canned_head
from tensorflow_estimator.python.estimator.mode_keys import ModeKeys

from tensorflow_multihead import export_outputs


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
      raise TypeError(f'heads[{position}] is not a {kinds}. Given: {head!r}'
                      f'{_hint_for_tf1_head(head)}')
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


def _hint_for_tf1_head(head):
  """What to do with a TF 1.x `_Head` where only v2 heads are merged."""
  if not isinstance(head, canned_head._Head):  # pylint: disable=protected-access
    return ''
  return ('. It is a TF 1.x head (a _Head, as tf.contrib.estimator and '
          'tensorflow_multihead.contrib build): merge TF 1.x heads with '
          'tensorflow_multihead.contrib.multi_head, or give MultiHead the '
          'tf.estimator heads instead (tf.estimator.BinaryClassHead, '
          'MultiClassHead, RegressionHead, ...).')


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


def _check_missing(given, names, what):
  """Raises unless the dict `given` holds an entry for every head."""
  missing = [name for name in names if name not in given]
  if missing:
    raise ValueError(
        f'{what} has missing values for head(s): {missing}. '
        f'Given keys: {sorted(map(str, given))}.')


def _check_unknown(given, names, what):
  """Raises if the dict `given` holds an entry for no head."""
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


class ErrorsNamingHead:
  """Re-raises an error from inside a head with the head's name on it.

  With two heads of one class, an error a head raises does not say which
  head it is. Every call a multi-head makes into one of its heads runs in
  this context: an error leaves it as the same type, its message prefixed
  with `Head '<name>': ` and otherwise whole, chained to the original.

  >>> with ErrorsNamingHead('kind'):
  ...   raise ValueError('logits shape must be [D0, D1, ... DN, 3]')
  Traceback (most recent call last):
  ...
  ValueError: Head 'kind': logits shape must be [D0, D1, ... DN, 3]

  Args:
    head_name: The name of the head called inside the context.
  """

  def __init__(self, head_name):
    self._prefix = f'Head {head_name!r}: '

  def __enter__(self):
    return self

  def __exit__(self, error_type, error, traceback):
    if not isinstance(error, Exception):
      return False  # No error, or one such as KeyboardInterrupt.
    named = self._named(error)
    if named is None:
      return False  # Re-raised as it is.
    raise named from error

  def _named(self, error):
    """A new error like `error` naming the head, or None to keep `error`."""
    if isinstance(error, tf.errors.OpError):
      message = error.message
      if message.startswith(self._prefix):
        return None
      # An OpError is rebuilt from the op it failed in.
      arguments = (error.node_def, error.op, self._prefix + message)
      if type(error) is tf.errors.OpError:  # pylint: disable=unidiomatic-typecheck
        arguments += (error.error_code,)
    else:
      message = str(error)
      if message.startswith(self._prefix):
        return None  # Named already, by a head that is itself a multi-head.
      arguments = (self._prefix + message,)
    try:
      return type(error)(*arguments)
    except Exception:  # pylint: disable=broad-except
      return None  # A type built from other arguments: kept unnamed.


def call_each(heads, call):
  """Returns `{head.name: call(head)}`, an error naming the head it came from.

  >>> import tensorflow as tf
  >>> heads = [tf.estimator.RegressionHead(name='price'),
  ...          tf.estimator.MultiClassHead(3, name='kind')]
  >>> call_each(heads, lambda head: head.logits_dimension)
  {'price': 1, 'kind': 3}
  >>> call_each(heads, lambda head: head.predictions(tf.zeros([2, 2])))
  Traceback (most recent call last):
  ...
  ValueError: Head 'price': logits shape must be [D0, D1, ... DN, \
logits_dimension], got (2, 2).
  """
  results = {}
  for head in heads:
    with ErrorsNamingHead(head.name):
      results[head.name] = call(head)
  return results


# The longest merged name still used as the name scope of a merged head's
# ops and state; longer ones are replaced by `multi_head_<digest>`.
MAX_SCOPE_LENGTH = 128
# A scope a merged head may be given: one level, as TensorFlow accepts.
_SCOPE_NAME = re.compile(r'[A-Za-z0-9.][A-Za-z0-9_.\-]*')


def default_scope(names):
  """The name scope of a merged head of heads `names`, if not given a name.

  The heads' names joined by `_`, as `tf.estimator.MultiHead` scopes its ops,
  while that is at most `MAX_SCOPE_LENGTH` characters; beyond, so that no op
  or state name grows with the number of heads, `multi_head_` and 8 hex
  digits of the joined name's SHA-256: the same heads give the same scope in
  every process, and other heads another.

  >>> default_scope(['clicks', 'value'])
  'clicks_value'
  >>> default_scope([f'head_{index}' for index in range(1024)])
  'multi_head_8cda2561'
  """
  joined = '_'.join(names)
  if len(joined) <= MAX_SCOPE_LENGTH:
    return joined
  digest = hashlib.sha256(joined.encode('utf-8')).hexdigest()[:8]
  return f'multi_head_{digest}'


def _check_name(name):
  """Raises unless `name` can name a merged head and scope its ops."""
  if name is None:
    return
  if not isinstance(name, str):
    raise TypeError(
        f'name must be a string. Given: {name!r} of type '
        f'{type(name).__name__}.')
  if not _SCOPE_NAME.fullmatch(name):
    raise ValueError(
        f'name {name!r} cannot name a TensorFlow name scope: give letters, '
        'digits, `_`, `.` or `-` (no `/`), starting with a letter, a digit '
        'or `.`.')


class HeadGroup:
  """Named heads, their loss weights and the head served by default.

  Args:
    heads: Sequence of heads with unique, non-empty names.
    head_weights: Optional numbers, one per head, weighting their losses.
    default_head: Name of the head served by default; the first if `None`.
    head_types: The classes a head must be an instance of.
    name: Optional name of the merged head, also the name scope of its ops
      and state; by default the heads' names joined by `_` name it and
      `default_scope` scopes it.

  Attributes:
    name: The merged head's name: `name`, or the heads' names joined by `_`.
    scope: The name scope of the merged head's ops and state.
  """

  def __init__(self, heads, head_weights=None, default_head=None,
               head_types=(tf.estimator.Head,), name=None):
    self.heads = _check_heads(heads, head_types)
    self.weights = _check_head_weights(head_weights, self.heads)
    self.names = tuple(head.name for head in self.heads)
    _check_name(name)
    self.name = '_'.join(self.names) if name is None else name
    self.scope = default_scope(self.names) if name is None else name
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
      _check_missing(logits, self.names, 'logits')
      _check_unknown(logits, self.names, 'logits')  # Always a mistake.
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
      if last is None:
        logits = self._checked_width_when_run(logits, widths)
      elif last != sum(widths):
        raise ValueError(
            f'Could not split logits of shape {logits.shape.as_list()} among '
            f'the heads {list(self.names)} with individual logits '
            f'dimensions: {widths}. The last dimension of the logits tensor '
            f'should equal {sum(widths)} but is {last}.')
      return dict(zip(self.names, tf.split(logits, widths, axis=-1)))

  def _checked_width_when_run(self, logits, widths):
    """`logits`, asserting when run that their last dimension fits the heads.

    Without it, the run would fail with `tf.split`'s message, which names
    neither the heads nor their widths.
    """
    width = tf.shape(logits)[-1]
    assertion = tf.debugging.Assert(
        tf.math.equal(width, sum(widths)),
        # Names unquoted: the op's message would escape the quotes.
        [f'Could not split logits among the heads [{", ".join(self.names)}] '
         f'with individual logits dimensions: {widths}. The last dimension '
         f'of the logits tensor should equal {sum(widths)} but is:', width],
        name='logits_width')
    with tf.control_dependencies([assertion]):
      return tf.identity(logits)

  def labels_by_head(self, labels, mode=None):
    """Returns each head's labels from a dict keyed by head name.

    Entries for no head are left out, as `tf.estimator.MultiHead` and TF
    1.x's `multi_head` ignore them: input functions shared between models,
    or built by a pipeline, often carry more labels than one model learns.
    """
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
    _check_missing(labels, self.names, 'labels')
    return {name: labels[name] for name in self.names}

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

    See `export_outputs.ExportChoice.merged`, which merged heads that choose
    what to export call.
    """
    return export_outputs.ExportChoice(
        self.names, self.default_head).merged(outputs_by_head)


class GroupedHead:
  """The properties a merged head answers from its `HeadGroup`.

  Mixed in before the head base class, so that these implement its abstract
  `name` and `logits_dimension`. The class sets `self._group`.
  """

  @property
  def name(self):
    """The merged head's name: the heads' names joined by `_` unless given."""
    return self._group.name

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


def sum_of(losses):
  """Adds a list (or other iterable) of scalar losses into one."""
  return tf.math.add_n(list(losses))


def sum_or_none(losses):
  """`sum_of(losses)`, or `None` without losses.

  Merged heads add their `regularization_losses` up once, then hand the sum
  to the merged loss, the eval metric and the summary alike.
  """
  return None if losses is None else sum_of(losses)
