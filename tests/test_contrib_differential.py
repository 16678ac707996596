"""`contrib` behaves as TF 1.15's `tf.contrib.estimator`, side by side.

TF 1.15's own `tf.contrib.estimator` head factories and `multi_head`
(`tests/support/tf1_reference.py` loads them from the tensorflow-estimator
1.15.2 wheel; they run on TF 2.15 unchanged) and this package's
`tensorflow_multihead.contrib` build the same heads from the same arguments.
Each test builds one of them in a fresh `tf.Graph`, feeds both the same
batches through placeholders and runs them in a `Session`, as an Estimator
does, then compares all that a caller can observe:

* `create_loss`: every `LossSpec` field's value;
* TRAIN, by a `train_op_fn` or by a TF 1.x optimizer: the loss, the loss the
  `train_op_fn` got, the predictions, every summary's tag and value, the
  trained logits bias and global step;
* EVAL: the loss, the predictions and every metric's value after two
  batches;
* PREDICT: the predictions and every export output's key, class and values;
* bad arguments and inputs: the exception type.

Where `contrib` deliberately differs (its README and docstrings say so: two
heads of one name, labels or logits missing a head, regularization losses,
`default_head`, ...), the tests pin both behaviours.
"""
import dataclasses
import functools
import inspect

import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import contrib
from tests import differential as diff
from tests.support import tf1_reference

pytestmark = pytest.mark.xdist_group('contrib_differential')

TF1_HEAD, TF1_MULTI_HEAD = tf1_reference.modules()
FACTORIES = {'tf1': TF1_HEAD, 'ours': contrib}
MULTI_HEADS = {'tf1': TF1_MULTI_HEAD.multi_head, 'ours': contrib.multi_head}

TRAIN = tf.estimator.ModeKeys.TRAIN
EVAL = tf.estimator.ModeKeys.EVAL
PREDICT = tf.estimator.ModeKeys.PREDICT
REDUCTION = tf.compat.v1.losses.Reduction

# What a test runs.
LOSS = 'create_loss'
TRAIN_OP_FN = 'train_with_train_op_fn'
OPTIMIZER = 'train_with_optimizer'
RUNS = (LOSS, TRAIN_OP_FN, OPTIMIZER, EVAL, PREDICT)

# How labels are given: with a last dimension (of 1, or of the head's
# width), without the last dimension of 1, or as a `SparseTensor` of class
# ids or names (multi-label only).
DENSE = 'dense'
FLAT = 'flat'
SPARSE = 'sparse'

VOCABULARY = ('ant', 'bee', 'cat', 'dog')
LEARNING_RATE = 0.1
BATCH_SIZES = (4, 3)


def _absolute_error(labels, logits):
  return tf.math.abs(labels - logits)


def _probability_error(labels, logits, features):
  """A multi-label loss_fn taking features: each class' probability error."""
  errors = tf.math.abs(tf.cast(labels, tf.float32) - tf.math.sigmoid(logits))
  scale = 1. + tf.math.square(features['x'])
  return tf.math.reduce_mean(errors, axis=-1, keepdims=True) * scale


@dataclasses.dataclass
class Case:
  """A head factory, the arguments it gets, and the form of its labels.

  `regularization` holds the scalar regularization losses that a head on its
  own gets in TRAIN and EVAL.
  """
  factory: str
  kwargs: dict = dataclasses.field(default_factory=dict)
  labels: str = DENSE
  regularization: tuple = None

  def build(self, implementation, **overrides):
    factory = getattr(FACTORIES[implementation], self.factory)
    return factory(**{**self.kwargs, **overrides})

  @property
  def width(self):
    return self.kwargs.get('n_classes', self.kwargs.get('label_dimension', 1))


CASES = {
    'multi_class': Case('multi_class_head', dict(n_classes=3)),
    'multi_class_vocabulary_weighted': Case('multi_class_head', dict(
        n_classes=4, label_vocabulary=list(VOCABULARY), weight_column='w',
        name='kind')),
    'multi_class_sum_flat_labels': Case(
        'multi_class_head',
        dict(n_classes=3, loss_reduction=REDUCTION.SUM, name='kind'), FLAT,
        regularization=(0.25, 0.5)),
    'multi_class_sum_by_nonzero_weights': Case('multi_class_head', dict(
        n_classes=3, weight_column='w',
        loss_reduction=REDUCTION.SUM_BY_NONZERO_WEIGHTS)),
    'binary': Case('binary_classification_head'),
    'binary_thresholds_weighted': Case('binary_classification_head', dict(
        weight_column='w', thresholds=(0.3, 0.6), name='buy')),
    'binary_vocabulary_mean_flat_labels': Case(
        'binary_classification_head', dict(
            label_vocabulary=['no', 'yes'], loss_reduction=REDUCTION.MEAN,
            name='buy'), FLAT),
    'regression': Case('regression_head'),
    'regression_2d_weighted_sum': Case('regression_head', dict(
        label_dimension=2, weight_column='w', loss_reduction=REDUCTION.SUM,
        name='price'), regularization=(1.5,)),
    'regression_inverse_link_flat_labels': Case('regression_head', dict(
        inverse_link_fn=tf.math.exp, weight_column='w',
        loss_reduction=REDUCTION.SUM_OVER_NONZERO_WEIGHTS), FLAT),
    'regression_loss_fn': Case('regression_head', dict(
        loss_fn=_absolute_error, name='price')),
    'poisson': Case('poisson_regression_head'),
    'poisson_partial_loss_2d_weighted': Case('poisson_regression_head', dict(
        compute_full_loss=False, label_dimension=2, weight_column='w',
        name='count')),
    'logistic': Case('logistic_regression_head'),
    'logistic_weighted_sum': Case('logistic_regression_head', dict(
        weight_column='w', loss_reduction=REDUCTION.SUM, name='share')),
    'multi_label': Case('multi_label_head', dict(n_classes=3)),
    'multi_label_thresholds_classes_weighted': Case(
        'multi_label_head',
        dict(n_classes=4, weight_column='w', thresholds=(0.4, 0.7),
             classes_for_class_based_metrics=(0, 3), name='tags'),
        regularization=(0.75,)),
    'multi_label_sparse_ids_sum': Case('multi_label_head', dict(
        n_classes=3, loss_reduction=REDUCTION.SUM, thresholds=(0.5,),
        name='tags'), SPARSE, regularization=(0.5, 0.25)),
    'multi_label_sparse_names_class_names': Case('multi_label_head', dict(
        n_classes=3, label_vocabulary=list(VOCABULARY[:3]),
        classes_for_class_based_metrics=('cat', 'ant'), name='tags'), SPARSE),
    'multi_label_vocabulary_class_ids': Case('multi_label_head', dict(
        n_classes=3, label_vocabulary=list(VOCABULARY[:3]),
        classes_for_class_based_metrics=(1,))),
    'multi_label_loss_fn_nonzero_weights': Case('multi_label_head', dict(
        n_classes=2, loss_fn=_probability_error, weight_column='w',
        loss_reduction=REDUCTION.SUM_OVER_NONZERO_WEIGHTS)),
}


# Inputs: two batches of NumPy features, logits and labels, keyed by head.


def _labels(rng, case, batch_shape):
  """Draws labels of `batch_shape` examples that `case`'s head takes."""
  vocabulary = case.kwargs.get('label_vocabulary')
  kind = case.factory
  shape = batch_shape + (case.width,)
  if kind == 'multi_label_head':
    indicator = rng.integers(0, 2, shape)
    if case.labels != SPARSE:
      return indicator
    return _sparse_labels(indicator, vocabulary)
  if kind in ('multi_class_head', 'binary_classification_head'):
    ids = rng.integers(0, max(case.width, 2), batch_shape + (1,))
    if vocabulary:
      labels = np.array(vocabulary)[ids]
    elif kind == 'binary_classification_head':
      labels = ids.astype(np.float32)
    else:
      labels = ids
  elif kind == 'regression_head':
    labels = rng.normal(1., 1., shape).astype(np.float32)
  elif kind == 'poisson_regression_head':
    labels = rng.integers(0, 5, shape).astype(np.float32)
  else:
    labels = rng.uniform(size=shape).astype(np.float32)
  return labels[..., 0] if case.labels == FLAT else labels


def _sparse_labels(indicator, vocabulary):
  """The class ids (or names) of a multi-hot indicator, as sparse values."""
  rows, ids = np.nonzero(indicator)
  columns = [int(np.sum(rows[:i] == row)) for i, row in enumerate(rows)]
  values = np.array(vocabulary)[ids] if vocabulary else ids.astype(np.int64)
  most = max(columns, default=0) + 1  # Class ids of the fullest example.
  return tf.compat.v1.SparseTensorValue(
      indices=np.stack([rows, columns], axis=1).astype(np.int64).reshape(-1, 2),
      values=values, dense_shape=(len(indicator), most))


@dataclasses.dataclass
class Batch:
  features: dict
  logits: dict
  labels: dict


def _batches(cases, seed, inner_shape=()):
  """Two batches for heads `{name: Case}`, drawn from `seed` alone.

  Their examples have shape `inner_shape` (`()`: logits of rank 2).
  """
  rng = np.random.default_rng(seed)
  batches = []
  for size in BATCH_SIZES:
    batch_shape = (size,) + tuple(inner_shape)
    features = {'x': rng.normal(size=batch_shape + (1,)).astype(np.float32)}
    logits, labels = {}, {}
    for name, case in cases.items():
      logits[name] = rng.normal(
          0., 2., batch_shape + (case.width,)).astype(np.float32)
      labels[name] = _labels(rng, case, batch_shape)
      column = case.kwargs.get('weight_column')
      if column:
        # Some zero weights, for the reductions over non-zero weights.
        features[column] = rng.choice(
            [0., 0.5, 1., 2.], batch_shape + (1,)).astype(np.float32)
    batches.append(Batch(features, logits, labels))
  return batches


# One run of one implementation, in its own graph.


class _Feed:
  """Placeholders for a batch's features, logits and labels.

  The logits are the fed logits plus a trainable bias, zero at first, so
  that a training step shows the gradient of the loss. `form` is `'single'`
  (one head: its logits and labels as they are), `'dict'` (logits by head)
  or `'tensor'` (one logits tensor, split among the heads).
  """

  def __init__(self, cases, batch, form):
    self._sources = []
    widths = [case.width for case in cases.values()]
    self.bias = tf.compat.v1.get_variable(
        'bias', initializer=tf.zeros([sum(widths)]))
    self.features = {
        key: self._placeholder(tf.float32, _unknown_batch(value),
                               ('features', key))
        for key, value in batch.features.items()}
    self.labels = {name: self._labels(name, batch.labels[name])
                   for name in cases}
    if form == 'tensor':
      batch_shape = _unknown_batch(batch.features['x'])[:-1]
      self.logits = self.bias + self._placeholder(
          tf.float32, batch_shape + (sum(widths),), ('joined_logits', None))
    else:
      self.logits = {
          name: bias + self._placeholder(
              tf.float32, _unknown_batch(batch.logits[name]),
              ('logits', name))
          for (name, case), bias in zip(cases.items(),
                                        tf.split(self.bias, widths))}
    if form == 'single':
      (self.logits,) = self.logits.values()
      (self.labels,) = self.labels.values()

  def _placeholder(self, dtype, shape, source):
    placeholder = tf.compat.v1.placeholder(dtype, shape)
    self._sources.append((placeholder, source))
    return placeholder

  def _labels(self, name, value):
    if isinstance(value, tf.compat.v1.SparseTensorValue):
      dtype = tf.string if value.values.dtype.kind == 'U' else tf.int64
      placeholder = tf.compat.v1.sparse_placeholder(dtype, (None, None))
      self._sources.append((placeholder, ('labels', name)))
      return placeholder
    dtype = tf.string if value.dtype.kind == 'U' else tf.as_dtype(value.dtype)
    return self._placeholder(dtype, _unknown_batch(value), ('labels', name))

  def feed_dict(self, batch):
    """Feeds `batch`: its features, logits and labels."""
    values = {
        'features': batch.features.get, 'logits': batch.logits.get,
        'labels': batch.labels.get,
        'joined_logits': lambda _: np.concatenate(
            list(batch.logits.values()), axis=-1)}
    return {placeholder: values[part](key)
            for placeholder, (part, key) in self._sources}


def _unknown_batch(value):
  """The shape of `value`, its first dimension (the batch size) unknown."""
  return (None,) + value.shape[1:]


def _fetch(session, structure, feed=None):
  """Runs the tensors in `structure`, keeping its other leaves as they are."""
  leaves = tf.nest.flatten(structure)
  tensors = [leaf for leaf in leaves if tf.is_tensor(leaf)]
  values = iter(session.run(tensors, feed))
  return tf.nest.pack_sequence_as(
      structure, [next(values) if tf.is_tensor(leaf) else leaf
                  for leaf in leaves])


def _session():
  """A `Session` that skips Grappler: these small graphs run once or twice."""
  config = tf.compat.v1.ConfigProto()
  config.graph_options.rewrite_options.disable_meta_optimizer = True
  return tf.compat.v1.Session(config=config)


def _initialize(session):
  session.run([tf.compat.v1.global_variables_initializer(),
               tf.compat.v1.local_variables_initializer(),
               tf.compat.v1.tables_initializer()])


def _regularization(losses):
  if losses is None:
    return {}
  return {'regularization_losses': [tf.constant(loss) for loss in losses]}


def run(make_head, cases, batches, what, form='single', regularization=None):
  """Builds `make_head()` in a new graph, runs `what`; returns the values."""
  with tf.Graph().as_default():
    head = make_head()
    feed = _Feed(cases, batches[0], form)
    first = feed.feed_dict(batches[0])
    if what == LOSS:
      loss_spec = head.create_loss(features=feed.features, mode=TRAIN,
                                   logits=feed.logits, labels=feed.labels)
      with _session() as session:
        _initialize(session)
        return _fetch(session, loss_spec._asdict(), first)
    if what == PREDICT:
      return _predict(head, feed, first)
    if what == EVAL:
      return _eval(head, feed, batches, regularization)
    return _train(head, feed, first, what, regularization)


def _predict(head, feed, first):
  spec = head.create_estimator_spec(
      features=feed.features, mode=PREDICT, logits=feed.logits)
  described = diff.export_output_tensors(spec.export_outputs)
  with _session() as session:
    _initialize(session)
    predictions, outputs = _fetch(
        session, (spec.predictions,
                  {key: fields for key, (_, fields) in described.items()}),
        first)
  return {'predictions': predictions,
          'export_outputs': {key: (kind, outputs[key])
                             for key, (kind, _) in described.items()}}


def _eval(head, feed, batches, regularization):
  spec = head.create_estimator_spec(
      features=feed.features, mode=EVAL, logits=feed.logits,
      labels=feed.labels, **_regularization(regularization))
  with _session() as session:
    _initialize(session)
    updates = [update for _, update in spec.eval_metric_ops.values()]
    # The loss and predictions of the first batch, as its update ops run.
    results = _fetch(session, {'loss': spec.loss,
                               'predictions': spec.predictions,
                               'updates': updates},
                     feed.feed_dict(batches[0]))
    del results['updates']
    for batch in batches[1:]:
      session.run(updates, feed.feed_dict(batch))
    results['metrics'] = session.run(
        {key: value for key, (value, _) in spec.eval_metric_ops.items()})
  return results


def _train(head, feed, first, what, regularization):
  step = tf.compat.v1.train.get_or_create_global_step()
  given = {}
  if what == OPTIMIZER:
    trainer = {'optimizer': tf.compat.v1.train.GradientDescentOptimizer(
        LEARNING_RATE)}
  else:
    def train_op_fn(loss):
      given['train_op_fn_loss'] = loss
      return tf.compat.v1.train.GradientDescentOptimizer(
          LEARNING_RATE).minimize(loss, var_list=[feed.bias])
    trainer = {'train_op_fn': train_op_fn}
  spec = head.create_estimator_spec(
      features=feed.features, mode=TRAIN, logits=feed.logits,
      labels=feed.labels, **trainer, **_regularization(regularization))
  summaries = tf.compat.v1.summary.merge_all()
  with _session() as session:
    _initialize(session)
    results = _fetch(session, {
        'loss': spec.loss, 'predictions': spec.predictions,
        'summaries': summaries, **given}, first)
    results['summaries'] = diff.parse_summary(results['summaries'])
    session.run(spec.train_op, first)
    results['trained_bias'], results['global_step'] = session.run(
        [feed.bias, step])
  results['train_metric_keys'] = sorted(spec.eval_metric_ops or {})
  return results


def assert_same(make_tf1, make_ours, cases, what, form='single', seed=0,
                regularization=None, inner_shape=()):
  """Runs both implementations on the same batches; asserts equal values.

  Returns TF 1.15's values, for tests that also check absolute ones.
  """
  batches = _batches(cases, seed, inner_shape)
  tf1 = run(make_tf1, cases, batches, what, form, regularization)
  ours = run(make_ours, cases, batches, what, form, regularization)
  diff.assert_same_results(ours, tf1)
  return tf1


# Each factory on its own. Every case runs every way, except that training
# by an optimizer, the canned heads' own code on both sides, runs for one
# case of each factory and for the multi-label heads, this package's own.
_OPTIMIZER_CASES = {'multi_class', 'binary', 'regression', 'poisson',
                    'logistic'} | {name for name, case in CASES.items()
                                   if case.factory == 'multi_label_head'}
FACTORY_RUNS = [
    pytest.param(name, what, id=f'{name}-{what}')
    for name in sorted(CASES) for what in RUNS
    if what != OPTIMIZER or name in _OPTIMIZER_CASES]


@functools.lru_cache(maxsize=None)
def factory_values(name, what):
  """Asserts `CASES[name]` runs `what` as TF 1.15; returns TF 1.15's values.

  Cached, so that the tests pinning some of the values share the run.
  """
  case = CASES[name]
  return assert_same(lambda: case.build('tf1'), lambda: case.build('ours'),
                     {name: case}, what, seed=sorted(CASES).index(name),
                     regularization=case.regularization)


@pytest.mark.parametrize('name, what', FACTORY_RUNS)
def test_factory_head_behaves_as_tf1(name, what):
  factory_values(name, what)


@pytest.mark.parametrize('factory', sorted(
    {case.factory for case in CASES.values()}))
def test_factory_default_loss_reduction_is_tf1s_batch_mean(factory):
  defaults = {
      implementation: inspect.signature(getattr(factories, factory)).parameters[
          'loss_reduction'].default
      for implementation, factories in FACTORIES.items()}
  assert defaults == {'tf1': REDUCTION.SUM_OVER_BATCH_SIZE,
                      'ours': REDUCTION.SUM_OVER_BATCH_SIZE}
  name = next(name for name, case in CASES.items()
              if case.factory == factory and
              'loss_reduction' not in case.kwargs)
  # The weighted sum of the unreduced losses over their number.
  values = factory_values(name, LOSS)
  weights = np.broadcast_to(values['weights'], values['unreduced_loss'].shape)
  expected = np.sum(values['unreduced_loss'] * weights) / np.size(
      values['unreduced_loss'])
  assert values['training_loss'] == pytest.approx(expected, rel=1e-5)


def test_multi_label_metric_and_prediction_keys_are_tf1s():
  values = factory_values('multi_label_sparse_names_class_names', EVAL)
  assert sorted(values['metrics']) == [
      'auc/ant/tags', 'auc/cat/tags', 'auc/tags',
      'auc_precision_recall/ant/tags', 'auc_precision_recall/cat/tags',
      'auc_precision_recall/tags', 'average_loss/tags',
      'probability_mean/ant/tags', 'probability_mean/cat/tags']
  assert sorted(values['predictions']) == ['logits', 'probabilities']


def test_multi_label_sum_reduction_summarizes_the_mean_loss_as_tf1():
  values = factory_values('multi_label_sparse_ids_sum', TRAIN_OP_FN)
  assert sorted(values['summaries']) == [
      'average_loss/tags', 'loss/tags', 'regularization_loss/tags']


# multi_head over mixes of the factories.


@dataclasses.dataclass
class Mix:
  """Named heads from `CASES`, their weights and how logits are given.

  `inner_shape` is the shape of an example: `()` for logits
  `[batch, logits_dimension]`, `(2,)` for `[batch, 2, logits_dimension]`.
  """
  heads: tuple
  head_weights: tuple = None
  form: str = 'dict'
  inner_shape: tuple = ()

  @property
  def cases(self):
    """`{head name: Case}`, each weight column named after its head."""
    cases = {}
    for name, case_name in self.heads:
      case = CASES[case_name]
      kwargs = {**case.kwargs, 'name': name}
      if 'weight_column' in kwargs:
        kwargs['weight_column'] = f'{name}_weight'
      cases[name] = dataclasses.replace(case, kwargs=kwargs)
    return cases

  def build(self, implementation):
    heads = [case.build(implementation) for case in self.cases.values()]
    return MULTI_HEADS[implementation](heads, head_weights=self.head_weights)


MIXES = {
    'classifiers_logits_dict': Mix(
        (('kind', 'multi_class_vocabulary_weighted'),
         ('buy', 'binary_thresholds_weighted'))),
    'weighted_logits_tensor': Mix(
        (('price', 'regression_2d_weighted_sum'),
         ('tags', 'multi_label_thresholds_classes_weighted'),
         ('count', 'poisson')),
        head_weights=(1., 0.5, 2.), form='tensor'),
    'every_factory_weighted': Mix(
        (('kind', 'multi_class'), ('buy', 'binary'), ('price', 'regression'),
         ('count', 'poisson_partial_loss_2d_weighted'),
         ('share', 'logistic_weighted_sum'),
         ('tags', 'multi_label_sparse_names_class_names')),
        head_weights=(0.5, 1., 1.5, 2., 0.25, 3.), form='tensor'),
    'flat_labels_and_sparse_ids': Mix(
        (('kind', 'multi_class_sum_flat_labels'),
         ('tags', 'multi_label_sparse_ids_sum'),
         ('value', 'regression_inverse_link_flat_labels'))),
    'one_head_weighted': Mix((('buy', 'binary_vocabulary_mean_flat_labels'),),
                             head_weights=(2.,)),
    'rank_3_logits_tensor': Mix(
        (('kind', 'multi_class_vocabulary_weighted'),
         ('price', 'regression_2d_weighted_sum'), ('tags', 'multi_label'),
         ('share', 'logistic')),
        head_weights=(1., 2., 0.5, 1.), form='tensor', inner_shape=(2,)),
    'rank_3_logits_dict': Mix(
        (('buy', 'binary'),
         ('count', 'poisson_partial_loss_2d_weighted')),
        inner_shape=(3,)),
    'empty_head_weights': Mix(
        (('share', 'logistic'),
         ('tags', 'multi_label_loss_fn_nonzero_weights')),
        head_weights=(), form='tensor'),
}


# Training by an optimizer instead of a train_op_fn runs for the weighted
# mixes only.
MIX_RUNS = [pytest.param(name, what, id=f'{name}-{what}')
            for name, mix in sorted(MIXES.items()) for what in RUNS
            if what != OPTIMIZER or mix.head_weights is not None]


def _mix_seed(name):
  return 100 + sorted(MIXES).index(name)


@functools.lru_cache(maxsize=None)
def mix_values(name, what):
  """Asserts `MIXES[name]` runs `what` as TF 1.15; returns TF 1.15's values.

  Cached, so that the tests pinning some of the values share the run.
  """
  mix = MIXES[name]
  return assert_same(lambda: mix.build('tf1'), lambda: mix.build('ours'),
                     mix.cases, what, form=mix.form, seed=_mix_seed(name),
                     inner_shape=mix.inner_shape)


@pytest.mark.parametrize('name, what', MIX_RUNS)
def test_multi_head_behaves_as_tf1(name, what):
  mix_values(name, what)


def test_multi_head_create_loss_weights_the_training_loss_and_head_parts():
  # TF 1.15 weights the merged training loss and, in the LossSpec's dicts,
  # each head's unreduced loss and example weights; not its labels.
  mix = MIXES['weighted_logits_tensor']
  values = mix_values('weighted_logits_tensor', LOSS)
  heads = {name: case.build('ours') for name, case in mix.cases.items()}
  batch = _batches(mix.cases, _mix_seed('weighted_logits_tensor'))[0]
  own = {name: run(lambda head=head: head, {name: mix.cases[name]},
                   [dataclasses.replace(
                       batch, logits={name: batch.logits[name]},
                       labels={name: batch.labels[name]})], LOSS)
         for name, head in heads.items()}
  weights = dict(zip(heads, mix.head_weights))
  assert values['training_loss'] == pytest.approx(
      sum(weights[name] * own[name]['training_loss'] for name in heads),
      rel=1e-5)
  for name in heads:
    np.testing.assert_allclose(values['unreduced_loss'][name],
                               weights[name] * own[name]['unreduced_loss'],
                               rtol=1e-5)
    np.testing.assert_allclose(values['weights'][name],
                               weights[name] * own[name]['weights'],
                               rtol=1e-5)
    np.testing.assert_array_equal(values['processed_labels'][name],
                                  own[name]['processed_labels'])


def test_multi_head_serves_every_head_under_tf1s_export_keys():
  values = mix_values('classifiers_logits_dict', PREDICT)
  assert {key: kind for key, (kind, _) in values['export_outputs'].items()} == {
      'serving_default': 'ClassificationOutput',
      'kind': 'ClassificationOutput',
      'kind/classification': 'ClassificationOutput',
      'kind/predict': 'PredictOutput',
      'buy': 'ClassificationOutput',
      'buy/classification': 'ClassificationOutput',
      'buy/regression': 'RegressionOutput',
      'buy/predict': 'PredictOutput',
      'predict': 'PredictOutput'}


def test_multi_head_train_writes_tf1s_summaries():
  values = mix_values('weighted_logits_tensor', OPTIMIZER)
  # Only heads reducing by SUM also summarize their mean loss.
  assert sorted(values['summaries']) == [
      'average_loss/price', 'loss', 'loss/count', 'loss/price', 'loss/tags']
  assert values['global_step'] == 1


# Bad arguments and inputs raise the same exception type.


def _error(build):
  """The type of what `build()` raises in a new graph, or `None`."""
  with tf.Graph().as_default():
    try:
      build()
    except Exception as error:  # pylint: disable=broad-except
      return type(error)
  return None


def _assert_same_error(build, ours_match):
  """`build(implementation)` raises the same exception type with both.

  Ours must also say what is wrong: its message must match `ours_match`, so
  that the two sides cannot agree by failing for another reason.
  """
  tf1 = _error(lambda: build('tf1'))
  assert tf1 is not None
  with tf.Graph().as_default(), pytest.raises(tf1, match=ours_match):
    build('ours')


# Each case: the factory, its arguments, and what our message must say.
FACTORY_ERRORS = {
    'multi_class_2_classes': (
        'multi_class_head', dict(n_classes=2), r'n_classes must be > 2'),
    'multi_class_vocabulary_string': (
        'multi_class_head', dict(n_classes=3, label_vocabulary='abc'),
        r'label_vocabulary should be a list'),
    'multi_class_reduction_none': (
        'multi_class_head', dict(n_classes=3, loss_reduction='none'),
        r'Invalid loss_reduction: none'),
    'multi_class_loss_fn_arguments': (
        'multi_class_head', dict(n_classes=3, loss_fn=lambda x, y: x),
        r'loss_fn must contain argument: labels'),
    'binary_threshold_1': (
        'binary_classification_head', dict(thresholds=[0.5, 1.]),
        r'thresholds not in \(0, 1\)'),
    'binary_vocabulary_string': (
        'binary_classification_head', dict(label_vocabulary='ab'),
        r'label_vocabulary should be a list'),
    'binary_reduction_keras': (
        'binary_classification_head',
        dict(loss_reduction='sum_over_batch_size'),
        r'Invalid loss_reduction: sum_over_batch_size'),
    'regression_dimension_0': (
        'regression_head', dict(label_dimension=0),
        r'Invalid label_dimension 0'),
    'regression_reduction_none': (
        'regression_head', dict(loss_reduction='none'),
        r'Invalid loss_reduction: none'),
    'poisson_dimension_0': (
        'poisson_regression_head', dict(label_dimension=0),
        r'Invalid label_dimension 0'),
    'logistic_reduction_bogus': (
        'logistic_regression_head', dict(loss_reduction='bogus'),
        r'Invalid loss_reduction: bogus'),
    'multi_label_1_class': (
        'multi_label_head', dict(n_classes=1, name='tags'),
        r"multi_label_head 'tags': .* needs n_classes of at least 2"),
    'multi_label_threshold_0': (
        'multi_label_head', dict(n_classes=2, thresholds=[0.]),
        r'every threshold must lie strictly between 0 and 1'),
    'multi_label_vocabulary_string': (
        'multi_label_head', dict(n_classes=2, label_vocabulary='ab'),
        r'label_vocabulary must be a list or tuple of class names'),
    'multi_label_vocabulary_size': (
        'multi_label_head', dict(n_classes=3, label_vocabulary=['a', 'b']),
        r'label_vocabulary needs one name per class, n_classes=3'),
    'multi_label_reduction_none': (
        'multi_label_head', dict(n_classes=2, loss_reduction='none'),
        r"loss_reduction 'none' is not a tf.compat.v1.losses.Reduction"),
    'multi_label_loss_fn_arguments': (
        'multi_label_head', dict(n_classes=2, loss_fn=lambda x, y, z, w: x),
        r'loss_fn must contain argument: labels'),
    'multi_label_class_out_of_range': (
        'multi_label_head',
        dict(n_classes=3, classes_for_class_based_metrics=[3]),
        r'class id 3, outside \[0, 2\]'),
    'multi_label_negative_class': (
        'multi_label_head',
        dict(n_classes=3, classes_for_class_based_metrics=[-1]),
        r'class id -1, outside \[0, 2\]'),
    'multi_label_class_name_without_vocabulary': (
        'multi_label_head',
        dict(n_classes=3, classes_for_class_based_metrics=['a']),
        r'but there is no label_vocabulary'),
    'multi_label_unknown_class_name': (
        'multi_label_head',
        dict(n_classes=3, label_vocabulary=['a', 'b', 'c'],
             classes_for_class_based_metrics=['z']),
        r"'z', which is not in label_vocabulary"),
}


@pytest.mark.parametrize('name', sorted(FACTORY_ERRORS))
def test_factory_refuses_bad_arguments_as_tf1(name):
  factory, kwargs, ours_match = FACTORY_ERRORS[name]
  _assert_same_error(
      lambda implementation: getattr(FACTORIES[implementation], factory)(
          **kwargs), ours_match)


_ZERO_LOGITS = np.zeros([2, 3], np.float32)
# Each case: the labels, and what our message must say.
MULTI_LABEL_INPUT_ERRORS = {
    'labels_none': (None, r'You must provide a labels Tensor'),
    'dense_labels_of_another_width': (
        np.zeros([2, 2], np.int64), r'Expected labels dimension=3'),
    # Known while the graph is built, so refused then.
    'dense_label_2': (np.array([[0, 2, 1], [1, 0, 0]]),
                      r'integer indicator Tensor with values in \[0, 1\]'),
    'sparse_id_3': (
        tf.compat.v1.SparseTensorValue([[0, 0]], np.array([3]), [2, 1]),
        r'integer SparseTensor with values in \[0, 3\)'),
    'sparse_float_labels': (
        tf.compat.v1.SparseTensorValue(
            [[0, 0]], np.array([1.], np.float32), [2, 1]),
        r"Head 'tags': sparse labels must hold integer class ids"),
    'sparse_names_without_vocabulary': (
        tf.compat.v1.SparseTensorValue([[0, 0]], np.array([b'ant']), [2, 1]),
        r"Head 'tags': its labels are strings, but without a "
        r'label_vocabulary'),
}


@pytest.mark.parametrize('name', sorted(MULTI_LABEL_INPUT_ERRORS))
def test_multi_label_head_refuses_bad_labels_as_tf1(name):
  labels, ours_match = MULTI_LABEL_INPUT_ERRORS[name]

  def create_loss(implementation):
    given = labels
    if isinstance(given, tf.compat.v1.SparseTensorValue):
      given = tf.sparse.SparseTensor(*given)
    FACTORIES[implementation].multi_label_head(3, name='tags').create_loss(
        features={}, mode=TRAIN, logits=_ZERO_LOGITS, labels=given)

  _assert_same_error(create_loss, ours_match)


def test_multi_label_head_refuses_labels_out_of_range_when_run():
  errors = {}
  for implementation in FACTORIES:
    with tf.Graph().as_default(), _session() as session:
      labels = tf.compat.v1.placeholder(tf.int64, (None, 3))
      loss_spec = FACTORIES[implementation].multi_label_head(3).create_loss(
          features={}, mode=TRAIN, logits=_ZERO_LOGITS, labels=labels)
      feed = {labels: [[0, 2, 1], [1, 0, 0]]}
      errors[implementation] = _error(
          lambda spec=loss_spec: session.run(spec.training_loss, feed))
  assert errors == {'tf1': tf.errors.InvalidArgumentError,
                    'ours': tf.errors.InvalidArgumentError}


@pytest.mark.parametrize('factory', ['multi_label_head', 'multi_class_head'])
@pytest.mark.parametrize('trainer', ['neither', 'both'])
def test_head_needs_exactly_one_trainer_as_tf1(factory, trainer):
  trainers = {'neither': {}, 'both': {
      'train_op_fn': lambda loss: tf.no_op(),
      'optimizer': tf.compat.v1.train.GradientDescentOptimizer(0.1)}}

  def train(implementation):
    head = getattr(FACTORIES[implementation], factory)(n_classes=3)
    head.create_estimator_spec(
        features={}, mode=TRAIN, logits=_ZERO_LOGITS,
        labels=np.array([[0], [1]]) if factory == 'multi_class_head'
        else np.array([[0, 1, 0], [1, 0, 0]]), **trainers[trainer])

  _assert_same_error(
      train, {'neither': 'cannot both be None',
              'both': 'cannot both be set'}[trainer])


def _two_heads(implementation, **overrides):
  factories = FACTORIES[implementation]
  return [factories.multi_class_head(3, name='kind'),
          factories.regression_head(**{'name': 'price', **overrides})]


_TWO_HEAD_LOGITS = {'kind': np.zeros([2, 3], np.float32),
                    'price': np.zeros([2, 1], np.float32)}
_TWO_HEAD_LABELS = {'kind': np.array([[0], [2]]),
                    'price': np.array([[1.], [0.]], np.float32)}


def _spec(implementation, mode=EVAL, logits=None, labels=_TWO_HEAD_LABELS,
          **kwargs):
  """Builds the two-head multi_head's spec for `mode`."""
  head = MULTI_HEADS[implementation](_two_heads(implementation))
  return head.create_estimator_spec(
      features={}, mode=mode,
      logits=_TWO_HEAD_LOGITS if logits is None else logits, labels=labels,
      **kwargs)


# Each case: what to build, and what our message must say.
MULTI_HEAD_ERRORS = {
    'no_heads': (lambda implementation: MULTI_HEADS[implementation]([]),
                 r'Must specify heads'),
    'heads_none': (lambda implementation: MULTI_HEADS[implementation](None),
                   r'Must specify heads'),
    'unnamed_head': (
        lambda implementation: MULTI_HEADS[implementation](
            _two_heads(implementation, name=None)),
        r'heads\[1\] has name None'),
    'head_weights_size': (
        lambda implementation: MULTI_HEADS[implementation](
            _two_heads(implementation), head_weights=[1., 2., 3.]),
        r'Given len\(heads\): 2\. Given len\(head_weights\): 3'),
    'weights_without_heads': (
        lambda implementation: MULTI_HEADS[implementation](
            [], head_weights=[1.]),
        r'Must specify heads'),
    'labels_none_in_train': (
        lambda implementation: _spec(
            implementation, mode=TRAIN, labels=None,
            train_op_fn=lambda loss: tf.no_op()),
        r"labels are required in mode train: .* \['kind', 'price'\]"),
    'labels_none_in_eval': (
        lambda implementation: _spec(implementation, labels=None),
        r"labels are required in mode eval: .* \['kind', 'price'\]"),
    'no_trainer': (
        lambda implementation: _spec(implementation, mode=TRAIN),
        r'train_op_fn and optimizer cannot both be None'),
    'two_trainers': (
        lambda implementation: _spec(
            implementation, mode=TRAIN, train_op_fn=lambda loss: tf.no_op(),
            optimizer=tf.compat.v1.train.GradientDescentOptimizer(0.1)),
        r'train_op_fn and optimizer cannot both be set'),
    'logits_width': (
        lambda implementation: _spec(
            implementation, logits=np.zeros([2, 5], np.float32)),
        r"among the heads \['kind', 'price'\] .* should equal 4 but is 5"),
    'unknown_mode': (
        lambda implementation: _spec(implementation, mode='serve'),
        r'mode=serve unrecognized'),
}


@pytest.mark.parametrize('name', sorted(MULTI_HEAD_ERRORS))
def test_multi_head_refuses_bad_input_as_tf1(name):
  _assert_same_error(*MULTI_HEAD_ERRORS[name])


def test_empty_head_weights_weigh_heads_equally_as_tf1():
  for implementation, multi_head in MULTI_HEADS.items():
    head = multi_head(_two_heads(implementation), head_weights=[])
    with tf.Graph().as_default(), _session() as session:
      loss_spec = head.create_loss(features={}, mode=TRAIN,
                                   logits=_TWO_HEAD_LOGITS,
                                   labels=_TWO_HEAD_LABELS)
      # Uniform over 3 classes: ln 3; squared errors 1 and 0: mean 0.5.
      assert session.run(loss_spec.training_loss) == pytest.approx(
          np.log(3.) + 0.5), implementation


# Deliberate, documented improvements: TF 1.15 accepted these or failed with
# a less telling error.


def test_two_heads_of_one_name_are_refused_where_tf1_overwrote_one():
  def build(implementation):
    factories = FACTORIES[implementation]
    MULTI_HEADS[implementation]([factories.regression_head(name='a'),
                                 factories.regression_head(name='a')])

  assert _error(lambda: build('tf1')) is None
  assert _error(lambda: build('ours')) is ValueError


@pytest.mark.parametrize('logits, labels', [
    ({'kind': _TWO_HEAD_LOGITS['kind']}, _TWO_HEAD_LABELS),
    (_TWO_HEAD_LOGITS, {'kind': _TWO_HEAD_LABELS['kind']}),
], ids=['logits', 'labels'])
def test_a_head_missing_from_a_dict_is_a_value_error_not_a_key_error(logits,
                                                                     labels):
  assert _error(lambda: _spec('tf1', logits=logits, labels=labels)) is (
      KeyError)
  assert _error(lambda: _spec('ours', logits=logits, labels=labels)) is (
      ValueError)


def test_labels_not_a_dict_are_refused_naming_the_heads():
  # TF 1.15 fails too, but by accident: it tests a NumPy array's truth value.
  labels = _TWO_HEAD_LABELS['kind']
  with tf.Graph().as_default(), pytest.raises(ValueError,
                                              match='truth value'):
    _spec('tf1', labels=labels)
  with tf.Graph().as_default(), pytest.raises(
      ValueError,
      match=r"labels must be a dict keyed by head name \['kind', 'price'\]"):
    _spec('ours', labels=labels)


def test_logits_for_an_unknown_head_are_refused_where_tf1_ignored_them():
  logits = {**_TWO_HEAD_LOGITS, 'buy': np.zeros([2, 1], np.float32)}
  assert _error(lambda: _spec('tf1', logits=logits)) is None
  assert _error(lambda: _spec('ours', logits=logits)) is ValueError


def test_labels_for_no_head_are_ignored_as_tf1_did():
  labels = {**_TWO_HEAD_LABELS, 'buy': np.zeros([2, 1], np.float32)}
  assert _error(lambda: _spec('tf1', labels=labels)) is None
  assert _error(lambda: _spec('ours', labels=labels)) is None


def test_create_loss_without_labels_is_a_value_error_not_a_type_error():
  def create_loss(implementation):
    MULTI_HEADS[implementation](_two_heads(implementation)).create_loss(
        features={}, mode=TRAIN, logits=_TWO_HEAD_LOGITS, labels=None)

  assert _error(lambda: create_loss('tf1')) is TypeError
  assert _error(lambda: create_loss('ours')) is ValueError


def test_something_not_a_head_is_a_type_error_not_an_attribute_error():
  def build(implementation):
    MULTI_HEADS[implementation](_two_heads(implementation) + ['not a head'])

  assert _error(lambda: build('tf1')) is AttributeError
  assert _error(lambda: build('ours')) is TypeError


def test_a_head_weight_that_is_no_number_is_refused_at_once():
  def build(implementation):
    MULTI_HEADS[implementation](_two_heads(implementation),
                                head_weights=[1., '2'])

  assert _error(lambda: build('tf1')) is None
  assert _error(lambda: build('ours')) is TypeError


def test_a_keras_optimizer_is_a_value_error_naming_the_fix():
  def train(implementation):
    _spec(implementation, mode=TRAIN,
          optimizer=tf.keras.optimizers.legacy.SGD(0.1))

  assert _error(lambda: train('tf1')) is TypeError
  assert _error(lambda: train('ours')) is ValueError


def test_multi_label_class_metrics_may_mix_class_ids_and_names():
  def build(implementation):
    FACTORIES[implementation].multi_label_head(
        3, label_vocabulary=['a', 'b', 'c'],
        classes_for_class_based_metrics=[0, 'c'])

  assert _error(lambda: build('tf1')) is TypeError
  assert _error(lambda: build('ours')) is None


def test_multi_head_adds_regularization_losses_tf1_did_not_take():
  mix = Mix((('kind', 'multi_class'), ('price', 'regression')))
  batches = _batches(mix.cases, 0)
  regularization = (0.25, 0.5)
  assert _error(lambda: run(lambda: mix.build('tf1'), mix.cases, batches,
                            EVAL, regularization=regularization,
                            form=mix.form)) is TypeError
  tf1 = run(lambda: mix.build('tf1'), mix.cases, batches, EVAL, mix.form)
  ours = run(lambda: mix.build('ours'), mix.cases, batches, EVAL, mix.form,
             regularization=regularization)
  assert ours['loss'] == pytest.approx(tf1['loss'] + 0.75, rel=1e-5)
  assert ours['metrics'].pop('regularization_loss/kind_price') == (
      pytest.approx(0.75))
  diff.assert_same_results(ours['metrics'], tf1['metrics'])


def test_multi_head_serves_the_default_head_tf1_could_not_choose():
  def build(implementation):
    return MULTI_HEADS[implementation](_two_heads(implementation),
                                       default_head='price')

  assert _error(lambda: build('tf1')) is TypeError
  with tf.Graph().as_default():
    spec = build('ours').create_estimator_spec(
        features={}, mode=PREDICT, logits=_TWO_HEAD_LOGITS)
    assert spec.export_outputs['serving_default'] is (
        spec.export_outputs['price'])


# Heads of different loss_reductions: TF 1.x's multi_head did not compare
# them, and neither does ours, in any mode.


def _mixed_reduction_values(implementation, mode):
  """The merged loss (and, but in TRAIN, the first prediction) of a spec."""
  with tf.Graph().as_default(), _session() as session:
    head = MULTI_HEADS[implementation](
        _two_heads(implementation, loss_reduction=REDUCTION.SUM))
    spec = head.create_estimator_spec(
        features={}, mode=mode, logits=_TWO_HEAD_LOGITS,
        labels=None if mode == PREDICT else _TWO_HEAD_LABELS,
        train_op_fn=lambda loss: tf.no_op())
    _initialize(session)
    if mode == PREDICT:
      return session.run(spec.predictions[('price', 'predictions')])
    return session.run({'loss': spec.loss})


@pytest.mark.parametrize('mode', [TRAIN, EVAL, PREDICT])
def test_heads_of_mixed_loss_reductions_merge_in_every_mode_as_tf1(mode):
  ours = _mixed_reduction_values('ours', mode)
  diff.assert_same_results(ours, _mixed_reduction_values('tf1', mode))
  if mode != PREDICT:
    # kind: ln 3, the batch mean; price: (1 - 0)**2 + 0, summed.
    assert ours['loss'] == pytest.approx(np.log(3.) + 1.)


# An error that a head raises names it, as the same type TF 1.x raised.


_KIND_LABELS_OUT_OF_RANGE = {**_TWO_HEAD_LABELS, 'kind': np.array([[0], [3]])}
# Each case: the head at fault, logits and labels.
HEAD_ERRORS = {
    'logits_width': ('kind', {**_TWO_HEAD_LOGITS,
                              'kind': np.zeros([2, 2], np.float32)},
                     _TWO_HEAD_LABELS),
    'label_width': ('price', _TWO_HEAD_LOGITS,
                    {**_TWO_HEAD_LABELS,
                     'price': np.zeros([2, 2], np.float32)}),
    'string_labels_without_vocabulary': (
        'kind', _TWO_HEAD_LOGITS,
        {**_TWO_HEAD_LABELS, 'kind': np.array([[b'a'], [b'b']])}),
    'label_out_of_range': ('kind', _TWO_HEAD_LOGITS,
                           _KIND_LABELS_OUT_OF_RANGE),
}


def _raised(build):
  """What `build()` raises in a new graph."""
  with tf.Graph().as_default():
    with pytest.raises(Exception) as raised:
      build()
  return raised.value


def _head_error_builds(case):
  _, logits, labels = HEAD_ERRORS[case]

  def spec(implementation, mode):
    return _spec(implementation, mode=mode, logits=logits, labels=labels,
                 train_op_fn=lambda loss: tf.no_op())

  builds = {
      'create_loss': lambda implementation: MULTI_HEADS[implementation](
          _two_heads(implementation)).create_loss(
              features={}, mode=TRAIN, logits=logits, labels=labels),
      'eval': lambda implementation: spec(implementation, EVAL),
      'train': lambda implementation: spec(implementation, TRAIN),
  }
  if case == 'logits_width':
    # TF 1.x's create_loss takes logits of any width; its specs check them.
    del builds['create_loss']
    builds['predict'] = lambda implementation: spec(implementation, PREDICT)
  return builds


@pytest.mark.parametrize('case, call', [
    (case, call) for case in sorted(HEAD_ERRORS)
    for call in sorted(_head_error_builds(case))])
def test_an_error_inside_a_head_names_it_as_the_type_tf1_raised(case, call):
  build = _head_error_builds(case)[call]
  tf1 = _raised(lambda: build('tf1'))
  ours = _raised(lambda: build('ours'))
  assert type(ours) is type(tf1)
  assert type(ours.__cause__) is type(ours)
  assert str(ours) == f"Head '{HEAD_ERRORS[case][0]}': {ours.__cause__}"
  assert str(tf1).splitlines()[0] in str(ours)


def test_an_error_inside_a_v2_head_names_it_too():
  def build():
    head = contrib.multi_head([tf.estimator.MultiClassHead(3, name='kind'),
                               contrib.regression_head(name='price')])
    head.create_estimator_spec(
        features={}, mode=EVAL, labels=_TWO_HEAD_LABELS,
        logits={**_TWO_HEAD_LOGITS, 'kind': np.zeros([2, 2], np.float32)})

  error = _raised(build)
  assert type(error) is ValueError
  assert str(error).startswith(
      "Head 'kind': logits shape must be [D0, D1, ... DN, logits_dimension], "
      'got (2, 2).')
