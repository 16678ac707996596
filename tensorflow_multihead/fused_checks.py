"""Run-time checks of a fused group, each naming the head at fault.

A head computed alone checks its inputs with assertion ops of its own, and
its name scope names it in their messages. A fused group computes H heads
with one set of ops, so it checks them with one assertion per kind of check
for the whole group: the assertion works out which heads fail and, if any
does, fails naming the first of them, ``Head `<name>`: `` and the message
that head alone would give, followed by that head's own values, gathered
from the group's stacked tensors. Each check costs a dozen ops or so per
group, whatever the number of heads; what the static shapes or values
already prove costs nothing, and so does everything in eager mode, where
every value is checked head by head while the group is built.

Head names are written between backticks, since an assertion's message
prints quotes escaped.

>>> import tensorflow as tf
>>> labels = tf.constant([[[1.], [0.]], [[0.], [-1.]]])  # [batch, heads, 1]
>>> with tf.Graph().as_default():
...   stacked = tf.compat.v1.placeholder(tf.float32, [None, 2, 1])
...   checked = label_range(stacked, 2, ['click', 'conversion'],
...                         ('Labels must be >= 0', 'Labels must be <= 1'))
...   with tf.compat.v1.Session() as session:
...     session.run(checked, {stacked: labels.numpy()})
Traceback (most recent call last):
...
tensorflow.python.framework.errors_impl.InvalidArgumentError: ...
assertion failed: [Head `conversion`: Labels must be >= 0] [labels:] [[0][-1]] \
[lowest, highest:] [-1] [0]
...
"""
import contextlib

import tensorflow as tf

# How many words of a label vocabulary a message lists.
_WORDS_SHOWN = 8


def naming(name):
  """How a run-time message starts that names head `name`."""
  return f'Head `{name}`: '


def after(checks):
  """A context in which new ops wait for `checks` (None entries skipped)."""
  checks = [check for check in checks if check is not None]
  if not checks:
    return contextlib.nullcontext()
  return tf.control_dependencies(checks)


def checked(tensor, checks):
  """`tensor`, readable only once `checks` (None entries skipped) passed."""
  checks = [check for check in checks if check is not None]
  if not checks:
    return tensor
  with tf.control_dependencies(checks):
    return tf.identity(tensor)


def _first_true(flags):
  """The position of the first true entry of the bool vector `flags`."""
  return tf.math.argmax(tf.cast(flags, tf.int32), output_type=tf.int32)


def first_failure(failing, messages, shown):
  """One assertion for K cases: fails if any case fails, naming the first.

  Args:
    failing: Bool `[K]`, true for each case that fails.
    messages: K texts, what the assertion says when that case fails first.
    shown: A function from the failing case (an int32 scalar `Tensor`) to
      the list of tensors and texts shown after its message.

  Returns:
    The assertion op.
  """
  case = _first_true(failing)
  data = [tf.gather(tf.constant(list(messages)), case)] + list(shown(case))
  return tf.debugging.Assert(
      tf.math.logical_not(tf.math.reduce_any(failing)), data,
      name='head_check')


def _head_axis_last(tensor):
  """All axes of a `[D0, ..., DN, H, k]` tensor but the head axis."""
  rank = tensor.shape.rank
  return [axis for axis in range(rank) if axis != rank - 2]


def _of_head(stacked, head):
  """One head's `[D0, ..., DN, k]` slice of a `[D0, ..., DN, H, k]` tensor."""
  return tf.gather(stacked, head, axis=stacked.shape.rank - 2)


# The logits.


def _from_one_split(pieces):
  """Whether every piece is an output of one split op (so of one batch)."""
  ops = {piece.op for piece in pieces}
  return len(ops) == 1 and next(iter(ops)).type in ('Split', 'SplitV')


def _statically_equal(shapes):
  return all(shape.is_fully_defined() for shape in shapes) and all(
      shape == shapes[0] for shape in shapes)


def same_rows(pieces, names):
  """Asserts, when run, that every head's logits have one batch shape.

  Heads given logits from one split tensor, or of statically equal leading
  dimensions, need no check (None is returned). Computed alone, heads may
  take batches of different shapes; stacked, they cannot.

  Args:
    pieces: Each head's logits `[D0, ..., DN, width]`, of one rank.
    names: The heads' names.

  Returns:
    The assertion op, or None.
  """
  if tf.executing_eagerly() or _from_one_split(pieces) or _statically_equal(
      [piece.shape[:-1] for piece in pieces]):
    return None
  shapes = tf.stack(tf.shape_n(pieces))  # [H, rank]
  failing = tf.math.reduce_any(
      tf.math.not_equal(shapes[:, :-1], shapes[:1, :-1]), axis=1)
  messages = [
      f'{naming(name)}its logits have leading dimensions [D0, ..., DN] '
      f'other than those of head `{names[0]}`, which is computed with it in '
      'one fused group: give every head logits of one batch, or build the '
      'MultiHead with fuse_heads=False. Its logits shape, then that of '
      f'`{names[0]}`:' for name in names]
  return first_failure(failing, messages,
                       lambda head: [tf.gather(shapes, head), shapes[0]])


# The labels.


def _expected_shape(logits, width):
  return logits.shape[:-1].concatenate([width])


def _shape_proven(labels, logits, width):
  expected = _expected_shape(logits, width)
  return (labels.shape.is_fully_defined() and expected.is_fully_defined() and
          labels.shape == expected)


def refuse_known_bad_shape(labels, logits, width):
  """Raises `ValueError` now if static shapes prove one head's labels wrong.

  As the head alone does, for processed labels (a sparse tensor's
  indicator too) that cannot be `[D0, ..., DN, width]`, `[D0, ..., DN]` its
  logits' leading dimensions. In eager mode every shape is known, so this
  is the only shape check there.
  """
  expected = _expected_shape(logits, width)
  if not labels.shape.is_compatible_with(expected):
    raise ValueError(
        f'labels shape must be [D0, D1, ... DN, {width}], where [D0, D1, ... '
        'DN] are the leading dimensions of its logits. Suggested Fix: check '
        'your n_classes or label_dimension argument to the head and/or the '
        f'shape of your label. Expected labels shape: {expected}. Labels '
        f'shape: {labels.shape}.')


def labels_shape(labels, pieces, width, names):
  """Asserts, when run, that each head's labels are `[D0, ..., DN, width]`.

  `[D0, ..., DN]` are that head's own logits' leading dimensions, as the
  head alone checks them; the message is its own, and shows the shapes.

  Args:
    labels: Each head's labels, of its logits' rank (dense or indicator).
    pieces: Each head's logits.
    width: The labels' last dimension every head expects.
    names: The heads' names.

  Returns:
    The assertion op, or None when the static shapes prove every shape.
  """
  if tf.executing_eagerly() or all(
      _shape_proven(head_labels, logits, width)
      for head_labels, logits in zip(labels, pieces)):
    return None
  given = tf.stack(tf.shape_n(labels))  # [H, rank]
  rows = tf.stack(tf.shape_n(pieces))[:, :-1]
  expected = tf.concat(
      [rows, tf.fill([len(labels), 1], tf.constant(width, tf.int32))], axis=1)
  failing = tf.math.reduce_any(tf.math.not_equal(given, expected), axis=1)
  messages = [
      f'{naming(name)}labels shape must be [D0, D1, ... DN, {width}], '
      'where [D0, D1, ... DN] are the leading dimensions of its logits. '
      'Suggested Fix: check your n_classes or label_dimension argument to the '
      'head and/or the shape of your label. Expected labels shape, then '
      'labels shape:' for name in names]
  return first_failure(
      failing, messages,
      lambda head: [tf.gather(expected, head), tf.gather(given, head)])


def label_range(stacked, n_classes, names, messages):
  """`stacked` labels, asserted when run to lie in `[0, n_classes - 1]`.

  Args:
    stacked: The group's numeric labels `[D0, ..., DN, H, k]`.
    n_classes: Labels must be below it.
    names: The heads' names.
    messages: `(too low, too high)`: what the head alone says for a label
      below 0, and for one above `n_classes - 1` (or NaN).

  Returns:
    `stacked`, readable once the assertion passed. The failing head's own
    labels are shown, with their lowest and highest value.
  """
  axes = _head_axis_last(stacked)
  too_low = tf.math.reduce_any(
      tf.math.logical_not(tf.math.greater_equal(stacked, 0)), axis=axes)
  too_high = tf.math.reduce_any(
      tf.math.logical_not(tf.math.less_equal(stacked, n_classes - 1)),
      axis=axes)
  low_message, high_message = messages
  texts = ([naming(name) + low_message for name in names] +
           [naming(name) + high_message for name in names])

  def shown(case):
    head_labels = _of_head(stacked, tf.math.floormod(case, len(names)))
    return ['labels:', head_labels, 'lowest, highest:',
            tf.math.reduce_min(head_labels), tf.math.reduce_max(head_labels)]

  check = first_failure(tf.concat([too_low, too_high], axis=0), texts, shown)
  return checked(stacked, [check])


# Label vocabularies.


def _words(vocabulary):
  """The vocabulary's first words, unquoted (quotes would print escaped)."""
  words = [str(word) for word in vocabulary[:_WORDS_SHOWN]]
  more = len(vocabulary) - len(words)
  return '[' + ', '.join(words) + (f', ... ({more} more)' if more else '') + ']'


def vocabulary_message(vocabulary):
  """What a head says of labels that are not in its `vocabulary`."""
  return f'labels must be in its label_vocabulary {_words(vocabulary)}'


def refuse_known_misses(labels, ids, vocabulary, sparse=False):
  """Raises now for labels known to miss `vocabulary`.

  In eager mode, or for constants, the ids a vocabulary lookup gave (-1 for
  a miss) are known while building; the error then shows the misses. It
  is the type the head alone raises: `ValueError` for dense labels (its
  label range check), `InvalidArgumentError` for a `SparseTensor`'s values
  (`sparse`; the head's indicator op fails).
  """
  value = tf.get_static_value(ids)
  if value is None or not (value < 0).any():
    return
  missing = tf.get_static_value(labels)
  shown = '' if missing is None else f': {sorted(set(missing[value < 0]))}'
  message = f'{vocabulary_message(vocabulary)}; these are not{shown}'
  if sparse:
    raise tf.errors.InvalidArgumentError(None, None, message)
  raise ValueError(message)


def vocabularies(names, vocabularies_by_head, strings, ids):
  """Asserts, when run, that every head's string labels are in its vocabulary.

  Args:
    names: The names of the heads with a vocabulary.
    vocabularies_by_head: Their vocabularies.
    strings: Their string labels `[D0, ..., DN, 1]`, of one shape.
    ids: Their labels looked up, int64, -1 where not in the vocabulary.

  Returns:
    The assertion op (None in eager mode). The failing head's labels are
    shown, then those of them not in its vocabulary.
  """
  if tf.executing_eagerly():
    return None
  strings, ids = tf.stack(strings, axis=-2), tf.stack(ids, axis=-2)
  failing = tf.math.reduce_any(ids < 0, axis=_head_axis_last(ids))
  messages = [naming(name) + vocabulary_message(vocabulary)
              for name, vocabulary in zip(names, vocabularies_by_head)]

  def shown(head):
    head_strings = _of_head(strings, head)
    return ['labels:', head_strings, 'not in it:',
            tf.boolean_mask(head_strings, _of_head(ids, head) < 0)]

  return first_failure(failing, messages, shown)


def sparse_values(name, values, ids, n_classes, vocabulary=None):
  """Asserts, when run, that one head's sparse class ids are in range.

  A `SparseTensor`'s values differ in number from head to head, so these
  are checked head by head. With `vocabulary`, `values` are strings and
  `ids` their ids (-1 where missing); else `values` are the ids.

  Returns:
    The assertion op (None in eager mode).
  """
  if tf.executing_eagerly():
    return None
  if vocabulary is not None:
    missing = ids < 0
    return tf.debugging.Assert(
        tf.math.logical_not(tf.math.reduce_any(missing)),
        [naming(name) + vocabulary_message(vocabulary), 'not in it:',
         tf.boolean_mask(values, missing)], name='head_check')
  in_range = tf.math.logical_and(ids >= 0, ids < n_classes)
  return tf.debugging.Assert(
      tf.math.reduce_all(in_range),
      [naming(name) + sparse_range_message(n_classes), 'labels:', ids],
      name='head_check')


def sparse_range_message(n_classes):
  """What a `MultiLabelHead` says of sparse class ids out of range."""
  return (f'labels must be an integer SparseTensor with values in '
          f'[0, {n_classes})')
