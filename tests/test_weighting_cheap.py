"""RLW and FAMO (issue 14, item 4), and GradNorm's floor (issue 13, item 5).

The two cheap methods' formulas, for a state set by hand, are tested with
the others in `test_weighting.py` (merged loss, summaries, metrics, eager
and graph). Here: what a training step does, computed by hand in NumPy
(`weighting_formulas`), on the same two regression heads `near` and `far`
with priors `[2, 0.5]`, over logits `LOGITS + bias`:

* RLW's weights are the softmax of TensorFlow's stateless normals seeded
  with `[seed, global step]`; a step trains with the state's draw and
  stores the draw of the global step it ended at.
* FAMO's model update is the paper's direction `c * sum_i z_i grad log D_i`;
  its logits take an Adam step from the change of the log losses between
  two consecutive steps (the "after" losses of a step are the next step's).
  Its cost does not grow with the number of heads, which stay fused.
* GradNorm's floor `min_weight` holds after renormalizing, and reaching it
  prints a warning naming the head.
"""
import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import MultiHead
from tensorflow_multihead import weighting
from tests import test_weighting as base
from tests import weighting_formulas as formulas

TRAIN = tf.estimator.ModeKeys.TRAIN
LR = base.LEARNING_RATE
# The set-up of test_weighting, shared.
# pylint: disable=protected-access
_heads = base._heads
_state_variables = base._state_variables
_load = base._load
_renormalized_with_floor = weighting._renormalized_with_floor
# pylint: enable=protected-access


def _steps(method, state=None, steps=1, trainer='optimizer'):
  """Runs `steps` SGD steps from `state`; returns `(state, bias)` after."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    spec = _spec(method, trainer)
    session.run(tf.compat.v1.global_variables_initializer())
    variables = _state_variables()
    _load(session, variables, state or {})
    (bias,) = [variable for variable in tf.compat.v1.global_variables()
               if variable.op.name == 'bias']
    for _ in range(steps):
      session.run(spec.train_op)
    return session.run(variables), session.run(bias)


def _spec(method, trainer='optimizer'):
  return base._spec(method, TRAIN, trainer)  # pylint: disable=protected-access


def _bias_after_one_sgd_step(coefficients):
  """Bias `i` after one step of `sum_i coefficient_i * L_i`, from 0."""
  return -LR * np.asarray(coefficients) * base.PRIOR * base.BIAS_GRADIENTS


# RandomLossWeighting.


def test_rlw_weights_are_the_softmax_of_the_seeded_normals():
  drawn = weighting.RandomLossWeighting(seed=3).draw(4, step=11).numpy()
  np.testing.assert_allclose(drawn, base.rlw_draw(11, num_heads=4, seed=3),
                             rtol=1e-6)
  np.testing.assert_allclose(drawn.sum(), 1., rtol=1e-6)


def test_rlw_logits_are_standard_normal_over_many_steps():
  # log w_i - mean_j log w_j = lambda_i - mean_j lambda_j: of mean 0 and
  # variance 1 - 1 / K for standard normal lambda.
  rlw = weighting.RandomLossWeighting(seed=5)
  logs = np.log(np.stack([rlw.draw(4, step).numpy() for step in range(800)]))
  centred = logs - logs.mean(axis=1, keepdims=True)
  assert abs(centred.mean()) < 0.05
  np.testing.assert_allclose(centred.var(), 0.75, rtol=0.08)
  # A fresh draw every step: no two steps alike.
  assert len({tuple(row) for row in logs.round(6)}) == 800


def test_rlw_draws_depend_on_the_seed_and_the_step_only():
  same = [weighting.RandomLossWeighting(seed=9).draw(3, 4).numpy()
          for _ in range(2)]
  np.testing.assert_array_equal(same[0], same[1])
  other_seed = weighting.RandomLossWeighting(seed=10).draw(3, 4).numpy()
  assert not np.allclose(same[0], other_seed)


@pytest.mark.parametrize('trainer', base.TRAINERS)
def test_rlw_step_trains_with_its_draw_and_stores_the_next_steps(trainer):
  state, bias = _steps('random', trainer=trainer)
  np.testing.assert_allclose(bias, _bias_after_one_sgd_step(
      base.rlw_draw(step=0)), rtol=1e-5)
  # The optimizer counted the step: global step 1.
  np.testing.assert_allclose(state['weights'], base.rlw_draw(step=1),
                             rtol=1e-6)


def test_rlw_three_steps_store_the_draw_of_step_three_in_every_run():
  runs = [_steps('random', steps=3)[0]['weights'] for _ in range(2)]
  np.testing.assert_array_equal(runs[0], runs[1])
  np.testing.assert_allclose(runs[0], base.rlw_draw(step=3), rtol=1e-6)


def test_rlw_without_a_global_step_raises_value_error():
  with tf.Graph().as_default():
    head = MultiHead(_heads(), loss_weighting=(
        weighting.RandomLossWeighting()))
    bias = tf.compat.v1.get_variable('bias', [2])
    with pytest.raises(ValueError, match=r"RandomLossWeighting \(heads "
                       r"\['near', 'far'\]\) draws each step's weights from "
                       'the global step, and this graph has none'):
      head.create_estimator_spec(
          features={}, mode=TRAIN, logits=tf.constant(base.LOGITS) + bias,
          labels=base.LABELS, train_op_fn=lambda loss: tf.no_op())


@pytest.mark.parametrize('seed', ['1', 1.5, True, None])
def test_rlw_seed_must_be_an_integer(seed):
  with pytest.raises(TypeError, match='seed must be an integer'):
    weighting.RandomLossWeighting(seed=seed)


# FAMO.


def _famo_step(state, losses):
  return formulas.famo_step(state, losses, base.FAMO_LEARNING_RATE,
                            base.FAMO_WEIGHT_DECAY, base.FAMO_MIN_LOSSES)


def test_famo_model_descends_the_papers_direction():
  # d = c * sum_i z_i * grad log D_i = sum_i (c z_i / D_i) * grad L_i.
  state = base.STATES['famo']
  _, bias = _steps('famo', state)
  coefficients = formulas.famo_coefficients(base.LOSSES, state['logits'],
                                            base.FAMO_MIN_LOSSES)
  np.testing.assert_allclose(bias, _bias_after_one_sgd_step(coefficients),
                             rtol=1e-5)
  np.testing.assert_allclose(coefficients.sum(), 1.)  # A convex combination.


@pytest.mark.parametrize('trainer', base.TRAINERS)
def test_famo_step_moves_the_logits_by_adam_on_the_log_loss_decrease(
    trainer):
  state = base.STATES['famo']
  after, _ = _steps('famo', state, trainer=trainer)
  expected = _famo_step(state, base.LOSSES)
  for name, value in expected.items():
    np.testing.assert_allclose(after[name], value, rtol=1e-5, atol=1e-7,
                               err_msg=name)
  assert not np.allclose(after['logits'], state['logits'])


def test_famo_first_step_only_records_its_losses():
  after, _ = _steps('famo')
  np.testing.assert_allclose(after['previous_losses'], base.LOSSES,
                             rtol=1e-6)
  assert after['has_previous_losses'] == 1.
  for name in ('logits', 'adam_m', 'adam_v'):
    np.testing.assert_array_equal(after[name], [0., 0.], err_msg=name)
  assert after['adam_steps'] == 0.


def test_famo_takes_the_next_steps_losses_as_the_after_losses():
  after, bias = _steps('famo', steps=2)
  # Step 1 trains with z = [0.5, 0.5] on LOSSES; step 2's losses, at the
  # bias step 1 left, are step 1's "after".
  first_bias = _bias_after_one_sgd_step(formulas.famo_coefficients(
      base.LOSSES, [0., 0.], base.FAMO_MIN_LOSSES))
  second_losses = base.PRIOR * np.array([
      np.mean((base.LOGITS[:, index:index + 1] + first_bias[index] -
               base.LABELS[name])**2)
      for index, name in enumerate(base.NAMES)])
  initial = {'logits': [0., 0.], 'adam_m': [0., 0.], 'adam_v': [0., 0.],
             'adam_steps': 0., 'previous_losses': [0., 0.],
             'has_previous_losses': 0.}
  expected = _famo_step(_famo_step(initial, base.LOSSES), second_losses)
  assert expected['adam_steps'] == 1.
  for name, value in expected.items():
    np.testing.assert_allclose(after[name], value, rtol=1e-5, atol=1e-7,
                               err_msg=name)
  # Step 2 trained with z = [0.5, 0.5] too: the logits move after it.
  second_coefficients = formulas.famo_coefficients(
      second_losses, [0., 0.], base.FAMO_MIN_LOSSES)
  second_gradients = base.PRIOR * np.array([
      2. * np.mean(base.LOGITS[:, index:index + 1] + first_bias[index] -
                   base.LABELS[name])
      for index, name in enumerate(base.NAMES)])
  np.testing.assert_allclose(
      bias, first_bias - LR * second_coefficients * second_gradients,
      rtol=1e-5, atol=1e-7)


def _fused_train_graph(heads, method):
  """Builds TRAIN for `heads` fused binary heads; returns the graph's ops."""
  with tf.Graph().as_default() as graph:
    names = [f'h{index}' for index in range(heads)]
    head = MultiHead([tf.estimator.BinaryClassHead(name=name)
                      for name in names], loss_weighting=method)
    assert head.fuse_heads
    kernel = tf.compat.v1.get_variable('kernel', [3, heads])
    logits = tf.matmul(tf.ones([4, 3]), kernel)
    optimizer = tf.keras.optimizers.legacy.SGD(0.1)
    optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()
    head.create_estimator_spec(
        features={}, mode=TRAIN, logits=logits,
        labels={name: tf.zeros([4, 1], tf.int64) for name in names},
        optimizer=optimizer, trainable_variables=[kernel])
    return graph.get_operations()


@pytest.mark.parametrize('method', ['random', 'famo'])
def test_state_update_takes_as_many_ops_for_8_as_for_64_fused_heads(method):
  make = {'random': weighting.RandomLossWeighting, 'famo': weighting.FAMO}
  update_ops = {}
  for heads in (8, 64):
    ops = _fused_train_graph(heads, make[method]())
    update_ops[heads] = [op for op in ops
                         if 'loss_weighting_update' in op.name]
    assert not [op for op in update_ops[heads]
                if 'gradients' in op.name.lower()]  # No per-head gradient.
  assert len(update_ops[8]) == len(update_ops[64]) > 0


@pytest.mark.parametrize('kwargs, error, message', [
    ({'learning_rate': 0.}, ValueError,
     'FAMO learning_rate must be positive; given 0.0'),
    ({'weight_decay': -0.1}, ValueError,
     'FAMO weight_decay must be >= 0; given -0.1'),
    ({'weight_decay': '0'}, TypeError, 'FAMO weight_decay must be a number'),
    ({'epsilon': 0.}, ValueError, 'FAMO epsilon must be positive'),
    ({'min_losses': 'zero'}, TypeError,
     'FAMO min_losses must be a number or a list of numbers'),
    ({'min_losses': [0., None]}, TypeError,
     'FAMO min_losses must be a number or a list of numbers'),
])
def test_famo_bad_arguments_raise(kwargs, error, message):
  with pytest.raises(error, match=message):
    weighting.FAMO(**kwargs)


def test_famo_min_losses_of_the_wrong_length_raise_when_the_graph_is_built():
  with tf.Graph().as_default():
    head = MultiHead(_heads(), loss_weighting=weighting.FAMO(
        min_losses=[0., 0., 0.]))
    with pytest.raises(ValueError, match='FAMO min_losses has 3 entries for '
                       '2 heads'):
      head.loss(base.LABELS, base.LOGITS)


def test_famo_loss_below_its_bound_fails_at_run_time():
  head = MultiHead(_heads(), loss_weighting=weighting.FAMO(
      min_losses=[0., 100.]))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="FAMO needs each head's loss to be at least its "
                     'min_losses entry'):
    head.loss(base.LABELS, base.LOGITS)


def test_rlw_and_famo_keep_fused_groups():
  for method in (weighting.RandomLossWeighting(), weighting.FAMO()):
    assert MultiHead(_heads(), loss_weighting=method).fuse_heads


# GradNorm's floor.


def _gradnorm(min_weight):
  return weighting.GradNorm(alpha=base.GRADNORM_ALPHA,
                            shared_variables=['bias'],
                            learning_rate=base.GRADNORM_LEARNING_RATE,
                            min_weight=min_weight)


def _gradnorm_step(state, min_weight):
  """One GradNorm step from `state`; returns `(weights after, stderr)`."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    head = MultiHead(_heads(), head_weights=list(base.PRIOR),
                     loss_weighting=_gradnorm(min_weight))
    bias = tf.compat.v1.get_variable(
        'bias', [2], initializer=tf.compat.v1.zeros_initializer())
    spec = head.create_estimator_spec(
        features={}, mode=TRAIN, logits=tf.constant(base.LOGITS) + bias,
        labels=base.LABELS, train_op_fn=lambda loss: tf.no_op())
    session.run(tf.compat.v1.global_variables_initializer())
    variables = _state_variables()
    _load(session, variables, state)
    session.run(spec.train_op)
    return session.run(variables['weights'])


def _expected_gradnorm_step(state, min_weight):
  return formulas.gradnorm_step(
      state['weights'], np.abs(base.PRIOR * base.BIAS_GRADIENTS), base.LOSSES,
      state['initial_losses'], base.GRADNORM_ALPHA,
      base.GRADNORM_LEARNING_RATE, min_weight)


# `far`'s step lowers its weight (its weighted gradient norm is above its
# target): from 0.5 to below a floor of 0.4.
FLOOR_STATE = dict(base.STATES['gradnorm'], weights=[1.5, 0.5])


def test_gradnorm_default_floor_is_a_hundredth_of_the_mean_weight():
  assert _gradnorm(weighting.MIN_GRADNORM_WEIGHT).min_weight == 0.01
  assert weighting.GradNorm(shared_variables=['bias']).min_weight == 0.01


def test_gradnorm_weight_falling_below_the_floor_ends_at_it(capfd):
  stepped = np.array(FLOOR_STATE['weights']) - base.GRADNORM_LEARNING_RATE * (
      np.sign([-1., 1.]) * np.abs(base.PRIOR * base.BIAS_GRADIENTS))
  assert 2. * stepped[1] / stepped.sum() < 0.4  # Below the floor unclipped.
  weights = _gradnorm_step(FLOOR_STATE, min_weight=0.4)
  np.testing.assert_allclose(weights, [1.6, 0.4], rtol=1e-6)
  np.testing.assert_allclose(
      weights, _expected_gradnorm_step(FLOOR_STATE, 0.4), rtol=1e-6)
  assert ('GradNorm weights of heads ["far"] reached their floor '
          'min_weight=0.4') in capfd.readouterr().err


def test_gradnorm_above_its_floor_renormalizes_by_the_sum(capfd):
  weights = _gradnorm_step(FLOOR_STATE, min_weight=0.01)
  expected = _expected_gradnorm_step(FLOOR_STATE, 0.01)
  assert expected.min() > 0.01
  np.testing.assert_allclose(weights, expected, rtol=1e-6)
  np.testing.assert_allclose(weights.sum(), 2., rtol=1e-6)
  assert 'GradNorm weights' not in capfd.readouterr().err


def test_gradnorm_weight_staying_at_the_floor_warns_no_more(capfd):
  state = dict(FLOOR_STATE, weights=[1.6, 0.4])
  weights = _gradnorm_step(state, min_weight=0.4)
  np.testing.assert_allclose(weights, [1.6, 0.4], rtol=1e-6)
  assert 'GradNorm weights' not in capfd.readouterr().err


def test_renormalizing_with_a_floor_matches_the_pinning_formula():
  rng = np.random.RandomState(3)
  for _ in range(20):
    stepped = rng.normal(1., 1.5, size=6)
    floor = rng.uniform(0.01, 0.5)
    ours = _renormalized_with_floor(
        tf.constant(stepped), floor).numpy()
    np.testing.assert_allclose(
        ours, formulas.renormalized_with_floor(stepped, floor), rtol=1e-9)
    assert ours.min() >= floor - 1e-12
    np.testing.assert_allclose(ours.sum(), 6.)


@pytest.mark.parametrize('min_weight, error', [
    (0., ValueError), (1., ValueError), (-0.1, ValueError),
    ('0.1', TypeError)])
def test_gradnorm_floor_must_be_between_0_and_1(min_weight, error):
  with pytest.raises(error, match='GradNorm min_weight'):
    _gradnorm(min_weight)
