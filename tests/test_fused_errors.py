"""Run-time errors name the head at fault and show its own values, fused or not.

Each case gives a few heads of one fusable kind inputs that are wrong for
one head only (`CULPRIT`), in a form that is found wrong only when the graph
runs: placeholders of unknown batch size (or width), fed when run, as an
Estimator's input pipeline leaves them. The TRAIN spec is built in a graph
and its loss run in a `Session` (for a few cases, the EVAL metric updates
too):

* fused (the default), the error's message starts with ``Head `<culprit>`:``
  and shows the culprit's own values, never another head's;
* per head (`fuse_heads=False`), the op that failed lies in the culprit's
  name scope, which its message shows (a `MaskedHead`'s own checks name it
  in their text as the fused ones do);
* both raise `InvalidArgumentError`, as `tf.estimator.MultiHead` does with
  the same input, side by side, where it can take it (not a `MaskedHead`).

Every run-time check a fused group makes is here: label range (binary,
multi-class, multi-label dense and sparse, logistic), vocabulary misses
(binary, multi-class, multi-label), label shapes known only when run (batch
size and width, dense and sparse), the weight column's shape, logits of
different batch shapes given to heads of one group, and a `MaskedHead`'s
marks. Eagerly, where every value is known while building, each case
raises then, naming the head. A last test trains on the first case with a
real `Estimator`.
"""
import dataclasses
import functools
import re
import typing

import numpy as np
import pytest
import tensorflow as tf

import tensorflow_multihead as tmh

TRAIN = tf.estimator.ModeKeys.TRAIN
EVAL = tf.estimator.ModeKeys.EVAL
CULPRIT = 'conversion'
BATCH = 3
_SIDES = {
    'fused': lambda heads: tmh.MultiHead(heads),
    'per_head': lambda heads: tmh.MultiHead(heads, fuse_heads=False),
    'reference': tf.estimator.MultiHead,
}


@dataclasses.dataclass(frozen=True)
class Case:
  """Heads (the culprit among them), their inputs and what must be shown.

  `labels` and `features` hold NumPy values fed when run; their
  placeholders have an unknown batch size, and an unknown last dimension
  too for the keys in `unknown_width`. `tf.compat.v1.SparseTensorValue`
  labels get a sparse placeholder. `shown` are texts every side's message
  holds (the culprit's values), `fused_shown` and `per_head_shown` those of
  one side only; `hidden`, texts no message may hold (others' values).
  """
  heads: typing.Callable[[], list]
  labels: dict
  features: dict = dataclasses.field(default_factory=dict)
  unknown_width: tuple = ()
  shown: tuple = ()
  fused_shown: tuple = ()
  per_head_shown: tuple = ()
  hidden: tuple = ()
  dict_logits: bool = False
  logits_rows: typing.Optional[dict] = None  # Rows of each head's logits.
  masked: bool = False  # No reference side.


def _binary(**options):
  return lambda: [
      tf.estimator.BinaryClassHead(name='click', **options.get('click', {})),
      tf.estimator.BinaryClassHead(name=CULPRIT, **options.get(CULPRIT, {}))]


def _multi_class(**options):
  return lambda: [
      tf.estimator.MultiClassHead(3, name='kind', **options),
      tf.estimator.MultiClassHead(3, name=CULPRIT, **options)]


def _multi_label(**options):
  return lambda: [
      tf.estimator.MultiLabelHead(3, name='tags', **options),
      tf.estimator.MultiLabelHead(3, name=CULPRIT, **options)]


def _masked(inner=None, **marks):
  def heads():
    culprit = inner() if inner else tf.estimator.BinaryClassHead(name=CULPRIT)
    return [tf.estimator.BinaryClassHead(name='click'),
            tmh.MaskedHead(culprit, **marks)]
  return heads


def _sparse(indices, values, dense_shape):
  return tf.compat.v1.SparseTensorValue(
      np.array(indices, np.int64), np.array(values), np.array(dense_shape,
                                                              np.int64))


_CLICKS = np.array([[1], [1], [0]])
_WORDS = ['ant', 'bee', 'cat']
_TAGS = _sparse([[0, 0], [1, 0], [2, 0]], [0, 1, 2], [3, 1])
_TAG_WORDS = _sparse([[0, 0], [1, 0], [2, 0]], [b'ant', b'bee', b'cat'],
                     [3, 1])
_PRICES = np.array([[1., 2.], [3., 4.], [5., 6.]], np.float32)

CASES = {
    'binary_label_below_0': Case(
        _binary(), {'click': _CLICKS, CULPRIT: np.array([[0], [-1], [1]])},
        shown=('[[0][-1][1]]',), hidden=('[[1][1][0]]',)),
    'binary_label_above_1': Case(
        _binary(), {'click': _CLICKS, CULPRIT: np.array([[0], [2], [1]])},
        shown=('[[0][2][1]]',), hidden=('[[1][1][0]]',)),
    'binary_vocabulary_miss': Case(
        _binary(click={'label_vocabulary': ['no', 'yes']},
                conversion={'label_vocabulary': ['no', 'yes']}),
        {'click': np.array([[b'yes'], [b'yes'], [b'no']]),
         CULPRIT: np.array([[b'no'], [b'maybe'], [b'yes']])},
        fused_shown=('label_vocabulary [no, yes]', '[[no][maybe][yes]]',
                     '[not in it:] [maybe]'),
        per_head_shown=('[[0][-1][1]]',)),
    'binary_label_width_when_run': Case(
        _binary(), {'click': _CLICKS, CULPRIT: np.array([[0, 1]] * BATCH)},
        unknown_width=('click', CULPRIT), shown=('[3 1]', '[3 2]')),
    'binary_label_batch_when_run': Case(
        _binary(), {'click': _CLICKS, CULPRIT: np.array([[0], [1]])},
        shown=('[3 1]', '[2 1]')),
    'binary_weight_column_shape': Case(
        _binary(click={'weight_column': 'click_weight'},
                conversion={'weight_column': 'conversion_weight'}),
        {'click': _CLICKS, CULPRIT: np.array([[0], [1], [1]])},
        features={'click_weight': np.ones([BATCH, 1], np.float32),
                  'conversion_weight': np.ones([BATCH, 2], np.float32)},
        unknown_width=('click_weight', 'conversion_weight'),
        shown=('weights shape must be', '[3 2]')),
    'multi_class_label_above_range': Case(
        _multi_class(), {'kind': np.array([[2], [1], [0]]),
                         CULPRIT: np.array([[0], [5], [1]])},
        shown=('Labels must be <= n_classes - 1', '[[0][5][1]]'),
        hidden=('[[2][1][0]]',)),
    'multi_class_vocabulary_miss': Case(
        _multi_class(label_vocabulary=_WORDS),
        {'kind': np.array([[b'cat'], [b'bee'], [b'ant']]),
         CULPRIT: np.array([[b'ant'], [b'bee'], [b'dog']])},
        fused_shown=('[not in it:] [dog]',),
        per_head_shown=('[[0][1][-1]]',)),
    'multi_label_indicator_out_of_range': Case(
        _multi_label(), {'tags': np.array([[0, 1, 1]] * BATCH),
                         CULPRIT: np.array([[0, 2, 1]] * BATCH)},
        shown=('integer indicator Tensor with values in [0, 1]',
               '[[0 2 1]')),
    'multi_label_indicator_width_when_run': Case(
        _multi_label(), {'tags': np.array([[0, 1, 1]] * BATCH),
                         CULPRIT: np.array([[0, 1]] * BATCH)},
        unknown_width=('tags', CULPRIT), shown=('[3 3]', '[3 2]')),
    'multi_label_sparse_id_out_of_range': Case(
        _multi_label(), {'tags': _TAGS,
                         CULPRIT: _sparse([[0, 0], [2, 0]], [1, 3], [3, 1])},
        shown=('SparseTensor with values in [0, 3)', '[1 3]')),
    'multi_label_sparse_vocabulary_miss': Case(
        _multi_label(label_vocabulary=_WORDS),
        {'tags': _TAG_WORDS,
         CULPRIT: _sparse([[0, 0], [1, 0]], [b'bee', b'dog'], [3, 1])},
        fused_shown=('label_vocabulary [ant, bee, cat]',
                     '[not in it:] [dog]')),
    'multi_label_sparse_batch_when_run': Case(
        _multi_label(), {'tags': _TAGS,
                         CULPRIT: _sparse([[0, 0], [1, 0]], [1, 2], [2, 1])},
        shown=('[3 3]', '[2 3]')),
    'regression_label_width_when_run': Case(
        lambda: [tf.estimator.RegressionHead(label_dimension=2, name='price'),
                 tf.estimator.RegressionHead(label_dimension=2, name=CULPRIT)],
        {'price': _PRICES, CULPRIT: np.ones([BATCH, 3], np.float32)},
        unknown_width=('price', CULPRIT), shown=('[3 2]', '[3 3]')),
    'poisson_label_batch_when_run': Case(
        lambda: [tf.estimator.PoissonRegressionHead(name='visits'),
                 tf.estimator.PoissonRegressionHead(name=CULPRIT)],
        {'visits': np.ones([BATCH, 1], np.float32),
         CULPRIT: np.ones([4, 1], np.float32)},
        shown=('[3 1]', '[4 1]')),
    'logistic_label_above_1': Case(
        lambda: [tf.estimator.LogisticRegressionHead(name='share'),
                 tf.estimator.LogisticRegressionHead(name=CULPRIT)],
        {'share': np.array([[.1], [.2], [.3]], np.float32),
         CULPRIT: np.array([[.5], [1.5], [.25]], np.float32)},
        shown=('Labels must be in range [0, 1]', '[[0.5][1.5][0.25]]')),
    'masked_label_above_1': Case(
        _masked(missing_label=-1),
        {'click': _CLICKS, CULPRIT: np.array([[1], [-1], [2]])},
        # Fused, its unlabelled row holds a valid label (0); alone, the row
        # is cut out.
        fused_shown=('[[1][0][2]]',), per_head_shown=('[[1][2]]',),
        masked=True),
    'masked_label_batch_when_run': Case(
        _masked(missing_label=-1),
        {'click': _CLICKS, CULPRIT: np.array([[1], [-1]])},
        shown=('MaskedHead `conversion`: the leading dimensions of the labels',
               '[2]', '[3]'), masked=True),
    'masked_mask_feature_shape': Case(
        _masked(mask_key='clicked'),
        {'click': _CLICKS, CULPRIT: np.array([[1], [0], [1]])},
        features={'clicked': np.ones([BATCH, 2], bool)},
        unknown_width=('clicked',),
        shown=('MaskedHead `conversion`: the mask feature `clicked`', '2'),
        masked=True),
    'masked_sparse_batch_when_run': Case(
        lambda: [tf.estimator.MultiLabelHead(3, name='tags'),
                 tmh.MaskedHead(tf.estimator.MultiLabelHead(3, name=CULPRIT),
                                missing_label=-1)],
        {'tags': _TAGS, CULPRIT: _sparse([[0, 0]], [1], [2, 1])},
        shown=('MaskedHead `conversion`: labels and logits have different '
               'batch sizes', '[2]', '[3]'), masked=True),
}


def _placeholder(value, unknown_width, feeds):
  if isinstance(value, tf.compat.v1.SparseTensorValue):
    tensor = tf.compat.v1.sparse_placeholder(
        tf.as_dtype(value.values.dtype), shape=[None, None])
  else:
    shape = [None] + list(value.shape[1:])
    if unknown_width:
      shape[-1] = None
    tensor = tf.compat.v1.placeholder(tf.as_dtype(value.dtype), shape)
  feeds[tensor] = value
  return tensor


def _logits(heads, case, feeds):
  widths = {head.name: head.logits_dimension for head in heads}
  if case.logits_rows is None and not case.dict_logits:
    return _placeholder(np.zeros([BATCH, sum(widths.values())], np.float32),
                        False, feeds)
  rows = case.logits_rows or {}
  return {name: _placeholder(
      np.zeros([rows.get(name, BATCH), width], np.float32), False, feeds)
          for name, width in widths.items()}


def _no_train_op(loss):
  del loss  # Only the checks before the loss are of interest.
  return tf.no_op()


def _run(side, case, mode=TRAIN):
  """Builds `side`'s spec in `mode` and runs it; returns its error, or None.

  TRAIN runs the loss; EVAL runs every metric's update, not the loss.
  """
  with tf.Graph().as_default():
    feeds = {}
    heads = case.heads()
    labels = {name: _placeholder(value, name in case.unknown_width, feeds)
              for name, value in case.labels.items()}
    features = {key: _placeholder(value, key in case.unknown_width, feeds)
                for key, value in case.features.items()}
    spec = _SIDES[side](heads).create_estimator_spec(
        features=features, mode=mode, logits=_logits(heads, case, feeds),
        labels=labels, train_op_fn=_no_train_op)
    if mode == TRAIN:
      fetches = spec.loss
    else:
      fetches = [update for _, update in spec.eval_metric_ops.values()]
    with tf.compat.v1.Session() as session:
      session.run([tf.compat.v1.local_variables_initializer(),
                   tf.compat.v1.tables_initializer()])
      try:
        session.run(fetches, feeds)
      except tf.errors.OpError as error:
        return error
  return None


def _heads_named(message, names):
  """The heads a message names: as `Head `x`` or by a name scope `x/`."""
  return {name for name in names
          if f'Head `{name}`' in message or
          re.search(rf'(?<![\w.-]){re.escape(name)}/', message)}


@functools.lru_cache(maxsize=None)
def _error(name, side):
  return _run(side, CASES[name])


def _names(case):
  return [head.name for head in case.heads()]


@pytest.mark.parametrize('name', sorted(CASES))
def test_fused_error_starts_by_naming_the_head_at_fault(name):
  error = _error(name, 'fused')
  assert type(error) is tf.errors.InvalidArgumentError, error
  assert re.search(rf'\[(Masked)?Head `{CULPRIT}`: ', error.message), (
      error.message)
  assert _heads_named(error.message, _names(CASES[name])) == {CULPRIT}


@pytest.mark.parametrize('name', sorted(CASES))
def test_fused_error_shows_the_values_of_the_head_at_fault(name):
  case = CASES[name]
  message = _error(name, 'fused').message
  for text in case.shown + case.fused_shown:
    assert text in message, (text, message)
  for text in case.hidden:
    assert text not in message, (text, message)


@pytest.mark.parametrize('name', sorted(CASES))
def test_per_head_error_names_the_head_at_fault_and_shows_its_values(name):
  case = CASES[name]
  error = _error(name, 'per_head')
  assert type(error) is tf.errors.InvalidArgumentError, error
  assert _heads_named(error.message, _names(case)) == {CULPRIT}, (
      error.message)
  for text in case.shown + case.per_head_shown:
    assert text in error.message, (text, error.message)


@pytest.mark.parametrize(
    'name', sorted(name for name, case in CASES.items() if not case.masked))
def test_reference_raises_the_same_exception_type(name):
  assert type(_error(name, 'reference')) is type(_error(name, 'fused'))


# Eagerly every value is known while the loss is built: each case raises
# then, naming the head as every error raised while building does.


def _eager(value):
  if isinstance(value, tf.compat.v1.SparseTensorValue):
    return tf.sparse.SparseTensor(value.indices, value.values,
                                  value.dense_shape)
  return value


def _eager_error(side, case):
  """The error `side`'s eager `loss()` raises on `case`'s inputs, or None."""
  heads = case.heads()
  width = sum(head.logits_dimension for head in heads)
  try:
    _SIDES[side](heads).loss(
        {name: _eager(value) for name, value in case.labels.items()},
        tf.zeros([BATCH, width]),
        features={key: tf.constant(value)
                  for key, value in case.features.items()})
  except Exception as error:  # pylint: disable=broad-except
    return error
  return None


@pytest.mark.parametrize('side', ['fused', 'per_head'])
@pytest.mark.parametrize('name', sorted(CASES))
def test_eager_loss_names_the_head_at_fault_as_the_reference_fails(name,
                                                                   side):
  case = CASES[name]
  error = _eager_error(side, case)
  assert str(error).startswith(f"Head '{CULPRIT}': "), error
  expected = _eager_error('per_head' if case.masked else 'reference', case)
  assert type(error) is type(expected), (error, expected)


# Computed alone, heads may be given logits of different batch shapes; in one
# fused group, which stacks them, they cannot.

_LOGITS_ROWS = Case(
    _binary(), {'click': _CLICKS, CULPRIT: np.array([[0], [1]])},
    logits_rows={CULPRIT: 2})


def test_fused_logits_of_another_batch_shape_fail_naming_the_head():
  error = _run('fused', _LOGITS_ROWS)
  assert type(error) is tf.errors.InvalidArgumentError, error
  assert error.message.count(f'[Head `{CULPRIT}`: its logits have leading '
                             'dimensions') == 1, error.message
  assert 'fuse_heads=False' in error.message
  assert '[2 1] [3 1]' in error.message  # Its logits' shape, then click's.


@pytest.mark.parametrize('side', ['per_head', 'reference'])
def test_heads_computed_alone_take_logits_of_other_batch_shapes(side):
  assert _run(side, _LOGITS_ROWS) is None


# The EVAL metrics check what the loss checks. Per head they are computed
# outside the merged spec's name scopes, in the head's own.

_EVAL_CASES = ['binary_label_below_0', 'multi_class_vocabulary_miss',
               'binary_weight_column_shape']


@pytest.mark.parametrize('name', _EVAL_CASES)
@pytest.mark.parametrize('side', ['fused', 'per_head'])
def test_eval_metric_updates_fail_naming_the_head_at_fault(side, name):
  case = CASES[name]
  error = _run(side, case, mode=EVAL)
  assert type(error) is tf.errors.InvalidArgumentError, error
  assert _heads_named(error.message, _names(case)) == {CULPRIT}, (
      error.message)
  for text in case.shown + (case.fused_shown if side == 'fused' else
                            case.per_head_shown):
    assert text in error.message, (text, error.message)


# Under a real Estimator: labels from a tf.data pipeline.


def _click_conversion_input_fn():
  features = {'x': np.ones([4, 2], np.float32)}
  labels = {'click': np.array([[1], [1], [0], [1]]),
            CULPRIT: np.array([[0], [-1], [1], [0]])}
  return tf.data.Dataset.from_tensor_slices((features, labels)).batch(4)


def _click_conversion_model_fn(fuse_heads):
  def model_fn(features, labels, mode):
    heads = [tf.estimator.BinaryClassHead(name='click'),
             tf.estimator.BinaryClassHead(name=CULPRIT)]
    logits = tf.compat.v1.layers.dense(features['x'], 2)
    return tmh.MultiHead(heads, fuse_heads=fuse_heads).create_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels,
        train_op_fn=lambda loss: tf.compat.v1.train.GradientDescentOptimizer(
            0.1).minimize(loss,
                          global_step=tf.compat.v1.train.get_global_step()))
  return model_fn


@pytest.mark.parametrize('fuse_heads', [True, False])
def test_estimator_training_on_a_bad_label_names_its_head(fuse_heads,
                                                         tmp_path):
  estimator = tf.estimator.Estimator(
      _click_conversion_model_fn(fuse_heads), model_dir=str(tmp_path))
  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    estimator.train(_click_conversion_input_fn, steps=1)
  message = info.value.message
  assert _heads_named(message, ['click', CULPRIT]) == {CULPRIT}, message
  assert '[[0][-1][1]...]' in message  # Its labels, not those of click.
  if fuse_heads:
    assert f'[Head `{CULPRIT}`: Labels must be >= 0]' in message
