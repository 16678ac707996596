"""Aggregated gradients in TRAIN (issue 14, item 2): one step, by hand.

The model of `tests/aggregation_model.py` (a tanh trunk, a linear logits
layer, three heads: two fused regressions and a binary classifier) takes
one SGD step with `gradient_aggregation=`. The shared variables (or, in
representation mode, the trunk below the representation) must move by the
aggregator's direction for the Jacobian of the heads' weighted losses, plus
regularization's gradient; every other variable by its plain gradient. The
expected steps are computed in float64 NumPy, the aggregators' directions
too (`tests/aggregation_cases.py`). The spec's loss keeps its value exactly.
"""
import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import weighting
from tests import aggregation_cases as cases
from tests import aggregation_model as model

TRAIN = tf.estimator.ModeKeys.TRAIN
MODES = ('variables', 'representation')
AGGREGATORS = sorted(cases.AGGREGATORS)


def _config(mode, representation=None):
  if mode == 'variables':
    return {'shared_variables': list(model.SHARED_VARIABLES)}
  return {'shared_representation': (
      model.REPRESENTATION if representation is None else representation)}


def _trainer(trainer, seen):
  """`create_estimator_spec` arguments training with SGD, either way."""
  if trainer == 'optimizer':
    return {'optimizer': tf.keras.optimizers.legacy.SGD(model.LEARNING_RATE),
            'trainable_variables': tf.compat.v1.trainable_variables()}

  def train_op_fn(loss):
    seen['trained_loss'] = loss
    return tf.compat.v1.train.GradientDescentOptimizer(
        model.LEARNING_RATE).minimize(loss)

  return {'train_op_fn': train_op_fn}


def train_step(aggregator=None, mode='variables', trainer='optimizer',
               fuse_heads=True, loss_weighting=None, state=None,
               representation_as_tensor=False):
  """Builds the TRAIN spec and takes one step.

  `aggregator` is a name in `cases.AGGREGATORS` or an aggregator class.

  Returns:
    `{'loss': spec's loss, 'trained_loss': what train_op_fn got (if it
    did), 'gradients': {variable name: (before - after) / learning rate},
    'state': the weighting's state after the step}`.
  """
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    variables = model.build_variables()
    representation, logits, regularization = model.build_forward(variables)
    kwargs = {'fuse_heads': fuse_heads, 'loss_weighting': loss_weighting}
    if aggregator is not None:
      make = (aggregator if callable(aggregator) else
              cases.AGGREGATORS[aggregator][0])
      kwargs['gradient_aggregation'] = make(**_config(
          mode, representation if representation_as_tensor else None))
    head = model.make_multi_head(**kwargs)
    seen = {}
    spec = head.create_estimator_spec(
        features={}, mode=TRAIN, logits=logits, labels=model.LABELS,
        regularization_losses=[regularization], **_trainer(trainer, seen))
    session.run(tf.compat.v1.global_variables_initializer())
    state_variables = _state_variables()
    for name, value in (state or {}).items():
      state_variables[name].load(np.asarray(value, np.float32), session)
    before = session.run(variables)
    result = session.run({'loss': spec.loss, **seen})
    session.run(spec.train_op)
    after = session.run(variables)
    result['gradients'] = {
        name: (before[name] - after[name]) / model.LEARNING_RATE
        for name in variables}
    result['state'] = session.run(state_variables)
    result['before'] = before
    return result


def _state_variables():
  return {variable.op.name.rpartition('/')[2]: variable
          for variable in tf.compat.v1.global_variables()
          if '/loss_weighting/' in variable.op.name}


def assert_gradients(actual, expected):
  for name in model.VARIABLE_NAMES:
    np.testing.assert_allclose(actual[name], expected[name], rtol=2e-4,
                               atol=2e-5, err_msg=name)


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('aggregator', AGGREGATORS)
def test_shared_parameters_move_by_the_aggregate_others_by_their_gradient(
    aggregator, mode):
  result = train_step(aggregator, mode)
  expected = model.expected_step(
      model.INITIAL, lambda jacobian: cases.direction(aggregator, jacobian),
      over_representation=mode == 'representation')
  assert_gradients(result['gradients'], expected)


@pytest.mark.parametrize('mode', MODES)
def test_a_train_op_fn_trains_on_the_aggregate_too(mode):
  result = train_step('unit_rows', mode, trainer='train_op_fn')
  expected = model.expected_step(
      model.INITIAL, lambda jacobian: cases.direction('unit_rows', jacobian),
      over_representation=mode == 'representation')
  assert_gradients(result['gradients'], expected)


@pytest.mark.parametrize('mode', MODES)
def test_the_test_aggregators_move_the_shared_parameters_off_the_plain_step(
    mode):
  # Otherwise the test above could not tell aggregation from none.
  plain = train_step(None)['gradients']
  for aggregator in ('fixed', 'unit_rows'):
    aggregated = train_step(aggregator, mode)['gradients']
    assert not np.allclose(aggregated['trunk/kernel'], plain['trunk/kernel'],
                           rtol=0.05)
    np.testing.assert_allclose(aggregated['out/kernel'], plain['out/kernel'],
                               rtol=1e-5)


def test_without_aggregation_the_step_is_the_plain_gradient():
  # The NumPy model itself, checked against TF's plain training.
  result = train_step(None)
  expected = model.expected_step(
      model.INITIAL, lambda jacobian: jacobian.sum(axis=0),
      over_representation=False)
  assert_gradients(result['gradients'], expected)


def test_the_representation_by_name_or_as_a_tensor_trains_alike():
  by_name = train_step('unit_rows', 'representation')['gradients']
  as_tensor = train_step('unit_rows', 'representation',
                         representation_as_tensor=True)['gradients']
  for name in model.VARIABLE_NAMES:
    np.testing.assert_array_equal(by_name[name], as_tensor[name])


@pytest.mark.parametrize('mode', MODES)
def test_fused_and_per_head_computations_take_the_same_step(mode):
  fused = train_step('unit_rows', mode, fuse_heads=True)['gradients']
  per_head = train_step('unit_rows', mode, fuse_heads=False)['gradients']
  for name in model.VARIABLE_NAMES:
    np.testing.assert_allclose(fused[name], per_head[name], rtol=1e-5,
                               atol=1e-7, err_msg=name)


@pytest.mark.parametrize('mode', MODES)
def test_regularization_keeps_its_plain_gradient(mode):
  # Zero takes the heads' part away: what is left is regularization's.
  gradients = train_step(cases.Zero, mode)['gradients']
  np.testing.assert_allclose(
      gradients['trunk/kernel'],
      model.regularization_gradient(model.INITIAL)['trunk/kernel'],
      rtol=1e-5, atol=2e-6)
  np.testing.assert_allclose(gradients['trunk/bias'], 0., atol=2e-6)


@pytest.mark.parametrize('mode', MODES)
def test_the_loss_keeps_its_value_exactly(mode):
  plain = train_step(None, trainer='train_op_fn')
  aggregated = train_step('unit_rows', mode, trainer='train_op_fn')
  assert aggregated['loss'] == plain['loss']
  # What train_op_fn minimizes has the same value, bit for bit.
  assert aggregated['trained_loss'] == aggregated['loss']
  _, _, losses = model.numpy_forward(model.INITIAL)
  np.testing.assert_allclose(
      aggregated['loss'],
      np.dot(model.HEAD_WEIGHTS, losses) + model.REGULARIZATION * np.sum(
          model.INITIAL['trunk/kernel'].astype(np.float64)**2), rtol=1e-6)


# With a learned loss weighting, its weights multiply the rows.

LOG_VARIANCES = np.array([0.7, -1.2, 0.3])


@pytest.mark.parametrize('mode', MODES)
def test_with_uncertainty_the_learned_weights_multiply_the_rows(mode):
  result = train_step('unit_rows', mode, loss_weighting=weighting.Uncertainty(),
                      state={'log_variances': LOG_VARIANCES})
  # d loss / d loss_i = prior_i * 0.5 * exp(-s_i).
  row_weights = np.array(model.HEAD_WEIGHTS) * 0.5 * np.exp(-LOG_VARIANCES)
  expected = model.expected_step(
      model.INITIAL, lambda jacobian: cases.direction('unit_rows', jacobian),
      over_representation=mode == 'representation', row_weights=row_weights)
  assert_gradients(result['gradients'], expected)


def test_with_uncertainty_its_log_variances_train_on_their_plain_gradient():
  result = train_step('unit_rows', 'variables',
                      loss_weighting=weighting.Uncertainty(),
                      state={'log_variances': LOG_VARIANCES})
  _, _, losses = model.numpy_forward(model.INITIAL)
  prior_losses = np.array(model.HEAD_WEIGHTS) * losses
  gradient = -0.5 * np.exp(-LOG_VARIANCES) * prior_losses + 0.5
  np.testing.assert_allclose(
      result['state']['log_variances'],
      LOG_VARIANCES - model.LEARNING_RATE * gradient, rtol=1e-5)


def test_with_gradnorm_its_weights_multiply_the_rows_and_it_still_learns():
  gradnorm = weighting.GradNorm(alpha=1., shared_variables=['out/kernel'],
                                learning_rate=0.1)
  weights = np.array([1.4, 0.6, 1.0])
  result = train_step('fixed', 'variables', loss_weighting=gradnorm,
                      state={'weights': weights,
                             'initial_losses': [1., 1., 1.],
                             'has_initial_losses': 1.})
  expected = model.expected_step(
      model.INITIAL, lambda jacobian: cases.direction('fixed', jacobian),
      over_representation=False,
      row_weights=np.array(model.HEAD_WEIGHTS) * weights)
  assert_gradients(result['gradients'], expected)
  assert not np.allclose(result['state']['weights'], weights)
  np.testing.assert_allclose(result['state']['weights'].sum(), 3., rtol=1e-6)
