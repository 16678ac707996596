"""Learned loss weighting (issue 9): the formulas (6a) and bad input (6d).

With each method's state set by hand, the merged loss and the reported
weights equal the formulas, computed apart in NumPy (`weighting_formulas`):
in eager and graph mode through `LossMerger`, the code `MultiHead` calls, and
through `MultiHead`'s TRAIN spec (loss, summaries `loss_weight/<head>`) and
EVAL spec (loss, metrics `loss_weight/<head>`). One training step changes
the state as the formulas say, with `optimizer=` and with `train_op_fn=`.
PREDICT creates no state. Bad arguments raise errors that name the problem.

Every set-up has two regression heads, `near` and `far`, with the fixed
priors `head_weights=[2, 0.5]`, so each formula's `L_i` is `p_i * loss_i`.
"""
import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import MultiHead
from tensorflow_multihead import head_group
from tensorflow_multihead import loss_merger
from tensorflow_multihead import weighting
from tests import weighting_formulas as formulas

TRAIN = tf.estimator.ModeKeys.TRAIN
EVAL = tf.estimator.ModeKeys.EVAL
PREDICT = tf.estimator.ModeKeys.PREDICT

NAMES = ('near', 'far')
PRIOR = np.array([2., 0.5])
LOGITS = np.array([[1., 0.], [2., 1.], [0., -1.]], np.float32)
LABELS = {'near': np.array([[1.5], [1.], [0.5]], np.float32),
          'far': np.array([[2.], [-1.], [1.]], np.float32)}
REGULARIZATION = 0.25
LEARNING_RATE = 0.1
# Each head's mean squared error at LOGITS, and times its prior.
HEAD_LOSSES = np.array([
    np.mean((LOGITS[:, index:index + 1] - LABELS[name])**2)
    for index, name in enumerate(NAMES)])
LOSSES = PRIOR * HEAD_LOSSES
# d(loss_i)/d(bias_i) at bias 0: each head's logits take one bias entry.
BIAS_GRADIENTS = np.array([
    2. * np.mean(LOGITS[:, index:index + 1] - LABELS[name])
    for index, name in enumerate(NAMES)])

DWA_TEMPERATURE = 1.5
DWA_WINDOW = 3
GRADNORM_ALPHA = 1.5
GRADNORM_LEARNING_RATE = 0.2
RLW_SEED = 42
FAMO_LEARNING_RATE = 0.05
FAMO_WEIGHT_DECAY = 0.01
FAMO_MIN_LOSSES = [0.1, 0.]


def make_method(name):
  return {
      'uncertainty': weighting.Uncertainty,
      'dynamic_weight_average': lambda: weighting.DynamicWeightAverage(
          temperature=DWA_TEMPERATURE, window=DWA_WINDOW),
      'gradnorm': lambda: weighting.GradNorm(
          alpha=GRADNORM_ALPHA, shared_variables=['bias'],
          learning_rate=GRADNORM_LEARNING_RATE),
      'random': lambda: weighting.RandomLossWeighting(seed=RLW_SEED),
      'famo': lambda: weighting.FAMO(
          learning_rate=FAMO_LEARNING_RATE, weight_decay=FAMO_WEIGHT_DECAY,
          min_losses=FAMO_MIN_LOSSES),
  }[name]()


METHODS = ('uncertainty', 'dynamic_weight_average', 'gradnorm', 'random',
           'famo')

# A state set by hand per method, and the weights and merged loss the
# formulas give for it.
STATES = {
    'uncertainty': {'log_variances': [0.7, -1.2]},
    'dynamic_weight_average': {
        'window_sums': [0.4, 0.6], 'window_steps': 2.,
        'window_means': [[2., 1.], [1., 1.5]], 'complete_windows': 2.},
    'gradnorm': {'weights': [1.4, 0.6], 'initial_losses': [3., 2.],
                 'has_initial_losses': 1.},
    'random': {'weights': [0.3, 0.7]},
    'famo': {'logits': [0.4, -0.2], 'adam_m': [0.01, -0.02],
             'adam_v': [1e-4, 3e-4], 'adam_steps': 3.,
             'previous_losses': [2.5, 1.5], 'has_previous_losses': 1.},
}


def rlw_draw(step, num_heads=2, seed=RLW_SEED):
  """RLW's weights at `step`: the softmax, in NumPy, of TF's normals."""
  return formulas.softmax(tf.random.stateless_normal(
      [num_heads], seed=[seed, step]).numpy())


def expected_weights(method_name, state):
  return formulas.weights_of_state(method_name, state, DWA_TEMPERATURE)


def expected_loss(method_name, state, regularization=REGULARIZATION):
  if method_name == 'uncertainty':
    merged = formulas.uncertainty_loss(LOSSES, state['log_variances'])
  elif method_name == 'famo':
    merged = formulas.famo_loss(LOSSES, state['logits'], FAMO_MIN_LOSSES)
  else:
    merged = np.sum(expected_weights(method_name, state) * LOSSES)
  return merged + regularization


def _heads():
  return [tf.estimator.RegressionHead(name=name) for name in NAMES]


def _state_variables():
  """The merged head's weighting variables in this graph, by short name."""
  prefix = '_'.join(NAMES) + '/loss_weighting/'
  return {variable.op.name[len(prefix):]: variable
          for variable in tf.compat.v1.global_variables()
          if variable.op.name.startswith(prefix)}


def _load(session, variables, state):
  for name, value in state.items():
    variables[name].load(np.asarray(value, np.float32), session)


# (a) The formulas, in eager and graph mode, through LossMerger.


def _merged(execution, method_name, state):
  """Merges LOSSES with the state set by hand; returns (loss, weights)."""
  group = head_group.HeadGroup(_heads(), PRIOR)

  def merge(merger):
    return merger.merge([tf.constant(loss, tf.float32) for loss in
                         HEAD_LOSSES], tf.constant(REGULARIZATION))

  merger = loss_merger.LossMerger(group, make_method(method_name))
  if execution == 'eager':
    for name, value in state.items():
      merger.variables()[name].assign(np.asarray(value, np.float32))
    merged = merge(merger)
    return merged.loss.numpy(), {
        name: weight.numpy() for name, weight in merged.weights.items()}
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    merged = merge(merger)
    session.run(tf.compat.v1.global_variables_initializer())
    _load(session, merger.variables(), state)
    return session.run((merged.loss, merged.weights))


@pytest.mark.parametrize('execution', ['eager', 'graph'])
@pytest.mark.parametrize('method_name', METHODS)
def test_merged_loss_and_weights_follow_the_formula_for_a_state_set_by_hand(
    method_name, execution):
  state = STATES[method_name]
  loss, weights = _merged(execution, method_name, state)
  np.testing.assert_allclose(loss, expected_loss(method_name, state),
                             rtol=1e-6)
  np.testing.assert_allclose([weights[name] for name in NAMES],
                             expected_weights(method_name, state), rtol=1e-6)


@pytest.mark.parametrize('execution', ['eager', 'graph'])
def test_dynamic_weight_average_weights_are_one_until_two_windows_complete(
    execution):
  state = dict(STATES['dynamic_weight_average'], complete_windows=1.)
  loss, weights = _merged(execution, 'dynamic_weight_average', state)
  assert [weights[name] for name in NAMES] == [1., 1.]
  np.testing.assert_allclose(loss, LOSSES.sum() + REGULARIZATION, rtol=1e-6)


@pytest.mark.parametrize('method_name', METHODS)
def test_initial_state_merges_like_the_formula(method_name):
  loss, weights = _merged('eager', method_name, {})
  initial = {'uncertainty': {'log_variances': [0., 0.]},
             'dynamic_weight_average': {'window_means': [[1., 1.], [1., 1.]],
                                        'complete_windows': 0.},
             'gradnorm': {'weights': [1., 1.]},
             'random': {'weights': rlw_draw(step=0)},
             'famo': {'logits': [0., 0.]}}[method_name]
  np.testing.assert_allclose(loss, expected_loss(method_name, initial),
                             rtol=1e-6)
  np.testing.assert_allclose([weights[name] for name in NAMES],
                             expected_weights(method_name, initial))


def test_head_weights_multiply_each_loss_before_the_learned_weighting():
  state = STATES['uncertainty']
  with_prior, _ = _merged('eager', 'uncertainty', state)
  group = head_group.HeadGroup(_heads())  # No prior: give p_i * loss_i.
  merger = loss_merger.LossMerger(group, weighting.Uncertainty())
  merger.variables()['log_variances'].assign(state['log_variances'])
  merged = merger.merge([tf.constant(loss, tf.float32) for loss in LOSSES],
                        tf.constant(REGULARIZATION))
  np.testing.assert_allclose(with_prior, merged.loss.numpy(), rtol=1e-6)
  # 0.5 * exp(-0.7) * 2 * loss_near + 0.5 * exp(1.2) * 0.5 * loss_far + ...
  np.testing.assert_allclose(
      with_prior,
      np.sum(0.5 * np.exp([-0.7, 1.2]) * PRIOR * HEAD_LOSSES) +
      0.5 * (0.7 - 1.2) + REGULARIZATION, rtol=1e-6)


def test_multi_head_loss_in_eager_mode_keeps_one_state():
  head = MultiHead(_heads(), head_weights=list(PRIOR),
                   loss_weighting=weighting.Uncertainty())
  first = head.loss(LABELS, LOGITS).numpy()
  np.testing.assert_allclose(first, 0.5 * LOSSES.sum(), rtol=1e-6)
  assert head.loss(LABELS, LOGITS).numpy() == first
  assert isinstance(head.loss_weighting, weighting.Uncertainty)


def test_a_method_needs_no_base_class_only_the_four_functions():

  class Fixed:
    """Weights 3 and 1, whatever happens."""

    def initial_state(self, num_heads):
      return {'unused': (np.zeros(num_heads, np.float32), False)}

    def weights(self, state):
      del state
      return tf.constant([3., 1.])

    def merged_loss(self, losses, state):
      return tf.reduce_sum(self.weights(state) * losses)

    def next_state(self, losses, state, head_losses, head_names):
      return {}

  head = MultiHead(_heads(), head_weights=list(PRIOR), loss_weighting=Fixed())
  np.testing.assert_allclose(head.loss(LABELS, LOGITS).numpy(),
                             3. * LOSSES[0] + LOSSES[1], rtol=1e-6)


# (a) Through MultiHead's specs in graph mode, as an Estimator builds them.


def _spec(method_name, mode, trainer='optimizer'):
  """Builds the spec over logits `LOGITS + bias` in the current graph."""
  head = MultiHead(_heads(), head_weights=list(PRIOR),
                   loss_weighting=make_method(method_name))
  bias = tf.compat.v1.get_variable(
      'bias', [2], initializer=tf.compat.v1.zeros_initializer())
  trainers = {}
  if mode == TRAIN and trainer == 'optimizer':
    optimizer = tf.keras.optimizers.legacy.SGD(LEARNING_RATE)
    optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()
    # Only the model's variable: the head adds its own trainable ones.
    trainers = {'optimizer': optimizer, 'trainable_variables': [bias]}
  elif mode == TRAIN:
    trainers = {'train_op_fn': lambda loss: (
        tf.compat.v1.train.GradientDescentOptimizer(LEARNING_RATE).minimize(
            loss, tf.compat.v1.train.get_or_create_global_step()))}
  return head.create_estimator_spec(
      features={}, mode=mode, logits=tf.constant(LOGITS) + bias,
      labels=LABELS, regularization_losses=[tf.constant(REGULARIZATION)],
      **trainers)


def _summaries(serialized):
  summary = tf.compat.v1.Summary.FromString(serialized)
  return {value.tag: value.simple_value for value in summary.value}


@pytest.mark.parametrize('method_name', METHODS)
def test_train_spec_loss_and_weight_summaries_follow_the_formula(method_name):
  state = STATES[method_name]
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    spec = _spec(method_name, TRAIN)
    summaries = tf.compat.v1.summary.merge_all()
    session.run(tf.compat.v1.global_variables_initializer())
    _load(session, _state_variables(), state)
    loss, serialized = session.run((spec.loss, summaries))
  np.testing.assert_allclose(loss, expected_loss(method_name, state),
                             rtol=1e-6)
  values = _summaries(serialized)
  assert set(values) == {'loss', 'regularization_loss', 'loss/near',
                         'loss/far', 'loss_weight/near', 'loss_weight/far'}
  np.testing.assert_allclose(
      [values['loss_weight/near'], values['loss_weight/far']],
      expected_weights(method_name, state), rtol=1e-6)


@pytest.mark.parametrize('method_name', METHODS)
def test_eval_spec_loss_and_weight_metrics_follow_the_formula(method_name):
  state = STATES[method_name]
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    spec = _spec(method_name, EVAL)
    session.run(tf.compat.v1.global_variables_initializer())
    session.run(tf.compat.v1.local_variables_initializer())
    _load(session, _state_variables(), state)
    session.run([update for _, update in spec.eval_metric_ops.values()])
    loss, metrics = session.run(
        (spec.loss, {key: value
                     for key, (value, _) in spec.eval_metric_ops.items()}))
  np.testing.assert_allclose(loss, expected_loss(method_name, state),
                             rtol=1e-6)
  np.testing.assert_allclose(
      [metrics['loss_weight/near'], metrics['loss_weight/far']],
      expected_weights(method_name, state), rtol=1e-6)
  # The heads' own losses, unweighted, as without loss_weighting.
  np.testing.assert_allclose([metrics['loss/near'], metrics['loss/far']],
                             HEAD_LOSSES, rtol=1e-6)


def test_eval_metrics_are_the_unweighted_ones_plus_loss_weights():
  with tf.Graph().as_default():
    plain = MultiHead(_heads(), head_weights=list(PRIOR)).create_estimator_spec(
        features={}, mode=EVAL, logits=LOGITS, labels=LABELS)
  with tf.Graph().as_default():
    learned = _spec('gradnorm', EVAL)
  assert set(learned.eval_metric_ops) == set(plain.eval_metric_ops) | {
      'loss_weight/near', 'loss_weight/far', 'regularization_loss/near_far'}


def test_predict_spec_creates_no_state_and_predicts_as_without_it():
  with tf.Graph().as_default():
    spec = _spec('uncertainty', PREDICT)
    assert _state_variables() == {}
    assert [variable.op.name
            for variable in tf.compat.v1.global_variables()] == ['bias']
  with tf.Graph().as_default():
    plain = MultiHead(_heads()).create_estimator_spec(
        features={}, mode=PREDICT, logits=LOGITS)
  assert set(spec.predictions) == set(plain.predictions)
  assert set(spec.export_outputs) == set(plain.export_outputs)


def test_a_graph_holds_one_state_for_the_spec_and_loss_calls():
  with tf.Graph().as_default():
    head = MultiHead(_heads(), loss_weighting=weighting.Uncertainty())
    head.create_estimator_spec(features={}, mode=EVAL, logits=LOGITS,
                               labels=LABELS)
    head.loss(LABELS, LOGITS)
    assert [variable.op.name for variable in
            tf.compat.v1.global_variables()] == [
                'near_far/loss_weighting/log_variances']


@pytest.mark.parametrize('method_name', METHODS)
def test_only_uncertainty_state_is_trainable(method_name):
  with tf.Graph().as_default():
    _spec(method_name, TRAIN, trainer='train_op_fn')
    trainable = {variable.op.name
                 for variable in tf.compat.v1.trainable_variables()}
  learned = {'near_far/loss_weighting/log_variances'}
  assert trainable == {'bias'} | (
      learned if method_name == 'uncertainty' else set())


def test_a_train_op_fn_that_leaves_the_log_variances_untrained_raises():
  with tf.Graph().as_default():
    head = MultiHead(_heads(), loss_weighting=weighting.Uncertainty())
    bias = tf.compat.v1.get_variable('bias', [2])
    with pytest.raises(ValueError, match=(
        "The train op does not train the loss weighting's variables "
        r"\['near_far/loss_weighting/log_variances:0'\]")):
      head.create_estimator_spec(
          features={}, mode=TRAIN, logits=tf.constant(LOGITS) + bias,
          labels=LABELS, train_op_fn=lambda loss: (
              tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(
                  loss, var_list=[bias])))


# One training step changes the state as the formulas say.


def _one_step(method_name, trainer, state):
  """Runs one training step from `state`; returns the state after it."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    spec = _spec(method_name, TRAIN, trainer)
    session.run(tf.compat.v1.global_variables_initializer())
    variables = _state_variables()
    _load(session, variables, state)
    session.run(spec.train_op)
    return session.run(variables)


TRAINERS = ('optimizer', 'train_op_fn')


def _ancestors(op):
  seen, pending = set(), [op]
  while pending:
    current = pending.pop()
    if current not in seen:
      seen.add(current)
      pending.extend(tensor.op for tensor in current.inputs)
      pending.extend(current.control_inputs)
  return seen


@pytest.mark.parametrize('method_name', ['dynamic_weight_average',
                                         'gradnorm', 'random', 'famo'])
def test_every_state_update_waits_for_every_read_of_the_state(method_name):
  # Else a write whose value does not depend on its variable's read (once
  # Grappler folds GradNorm's `ones_like(has_initial_losses)`) may run first.
  with tf.Graph().as_default() as graph:
    _spec(method_name, TRAIN)
    handles = {variable.handle.op for variable in _state_variables().values()}
    touching = [op for op in graph.get_operations()
                if op.inputs and op.inputs[0].op in handles]
    reads = [op for op in touching if op.type == 'ReadVariableOp' and
             '/merge_losses/' in op.name]  # The reads of the step.
    writes = [op for op in touching if op.type == 'AssignVariableOp' and
              'loss_weighting_update' in op.name]
  assert len(reads) == len(handles) and len(writes) == len(handles)
  for write in writes:
    assert set(reads) <= _ancestors(write), write.name


@pytest.mark.parametrize('trainer', TRAINERS)
def test_uncertainty_step_descends_the_merged_loss_in_log_variances(trainer):
  state = STATES['uncertainty']
  after = _one_step('uncertainty', trainer, state)
  np.testing.assert_allclose(
      after['log_variances'],
      np.array(state['log_variances']) - LEARNING_RATE *
      formulas.uncertainty_gradient(LOSSES, state['log_variances']),
      rtol=1e-6)


@pytest.mark.parametrize('trainer', TRAINERS)
def test_dynamic_weight_average_step_closes_a_window_with_its_mean(trainer):
  state = STATES['dynamic_weight_average']  # Two of three steps are in.
  after = _one_step('dynamic_weight_average', trainer, state)
  window_mean = (np.array(state['window_sums']) + LOSSES) / DWA_WINDOW
  np.testing.assert_allclose(
      after['window_means'], [state['window_means'][1], window_mean],
      rtol=1e-6)
  assert after['complete_windows'] == 3.
  assert after['window_steps'] == 0.
  assert list(after['window_sums']) == [0., 0.]


def test_dynamic_weight_average_step_within_a_window_adds_up_its_losses():
  state = dict(STATES['dynamic_weight_average'], window_steps=0.,
               window_sums=[0., 0.])
  after = _one_step('dynamic_weight_average', 'optimizer', state)
  np.testing.assert_allclose(after['window_sums'], LOSSES, rtol=1e-6)
  assert after['window_steps'] == 1.
  np.testing.assert_array_equal(after['window_means'], state['window_means'])
  assert after['complete_windows'] == 2.


@pytest.mark.parametrize('trainer', TRAINERS)
def test_gradnorm_step_follows_its_own_loss_and_renormalizes(trainer):
  state = STATES['gradnorm']
  after = _one_step('gradnorm', trainer, state)
  expected = formulas.gradnorm_step(
      state['weights'], np.abs(PRIOR * BIAS_GRADIENTS), LOSSES,
      state['initial_losses'], GRADNORM_ALPHA, GRADNORM_LEARNING_RATE)
  np.testing.assert_allclose(after['weights'], expected, rtol=1e-5)
  assert not np.allclose(after['weights'], state['weights'])
  np.testing.assert_allclose(after['weights'].sum(), 2., rtol=1e-6)
  np.testing.assert_array_equal(after['initial_losses'],
                                state['initial_losses'])


def test_gradnorm_first_step_records_the_initial_losses():
  after = _one_step('gradnorm', 'optimizer', {})
  np.testing.assert_allclose(after['initial_losses'], LOSSES, rtol=1e-6)
  assert after['has_initial_losses'] == 1.
  # At the first step every r_i is 1: the target is the mean norm.
  expected = formulas.gradnorm_step(
      [1., 1.], np.abs(PRIOR * BIAS_GRADIENTS), LOSSES, LOSSES,
      GRADNORM_ALPHA, GRADNORM_LEARNING_RATE)
  np.testing.assert_allclose(after['weights'], expected, rtol=1e-5)


def test_gradnorm_clips_a_weight_that_its_step_would_make_negative():
  state = dict(STATES['gradnorm'], weights=[1.999, 0.001])
  after = _one_step('gradnorm', 'optimizer', state)
  expected = formulas.gradnorm_step(
      state['weights'], np.abs(PRIOR * BIAS_GRADIENTS), LOSSES,
      state['initial_losses'], GRADNORM_ALPHA, GRADNORM_LEARNING_RATE)
  np.testing.assert_allclose(after['weights'], expected, rtol=1e-5)
  assert after['weights'].min() > 0


# (d) Bad input.


@pytest.mark.parametrize('loss_weighting', [
    'uncertainty', object(), [weighting.Uncertainty()], 2.
], ids=['string', 'object', 'list', 'number'])
def test_unknown_loss_weighting_raises_type_error(loss_weighting):
  with pytest.raises(TypeError, match='loss_weighting must be None or a '
                     'tensorflow_multihead.weighting method') as info:
    MultiHead(_heads(), loss_weighting=loss_weighting)
  assert type(loss_weighting).__name__ in str(info.value)


def test_a_weighting_class_instead_of_an_instance_raises_type_error():
  with pytest.raises(TypeError, match=r'given the class Uncertainty; give '
                     r'an instance, such as Uncertainty\(\)'):
    MultiHead(_heads(), loss_weighting=weighting.Uncertainty)


def test_a_nested_multi_head_with_a_loss_weighting_raises_value_error():
  inner = MultiHead(_heads(), loss_weighting=weighting.Uncertainty())
  with pytest.raises(ValueError, match="Head 'near_far' is a merged head "
                     'with a loss_weighting, inside another merged head'):
    MultiHead([inner, tf.estimator.BinaryClassHead(name='clicks')])


@pytest.mark.parametrize('shared_variables', [None, [], ()])
def test_gradnorm_without_shared_variables_raises_value_error(
    shared_variables):
  with pytest.raises(ValueError, match='GradNorm needs shared_variables'):
    weighting.GradNorm(shared_variables=shared_variables)


def test_gradnorm_shared_variable_of_a_wrong_type_raises_type_error():
  with pytest.raises(TypeError, match='variables or variable names; given 3'):
    weighting.GradNorm(shared_variables=['bias', 3])


def _train_spec_with_shared(shared_variables, make_variables=None):
  with tf.Graph().as_default():
    if make_variables:
      make_variables()
    head = MultiHead(_heads(), loss_weighting=weighting.GradNorm(
        shared_variables=shared_variables))
    bias = tf.compat.v1.get_variable(
        'bias', [2], initializer=tf.compat.v1.zeros_initializer())
    head.create_estimator_spec(
        features={}, mode=TRAIN, logits=tf.constant(LOGITS) + bias,
        labels=LABELS, train_op_fn=lambda loss: tf.no_op())


def test_gradnorm_with_variables_no_head_uses_raises_value_error():
  with pytest.raises(ValueError, match=r"GradNorm shared_variables "
                     r"\['unused:0'\]: no head's loss depends on them"):
    _train_spec_with_shared(['bias', 'unused'], lambda: tf.compat.v1.
                            get_variable('unused', [3]))


def test_gradnorm_with_a_variable_only_one_head_uses_names_the_other():
  with tf.Graph().as_default():
    near = tf.compat.v1.get_variable('near_bias', [1])  # 'far' reads none.
    head = MultiHead(_heads(), loss_weighting=weighting.GradNorm(
        shared_variables=[near]))
    logits = {'near': tf.constant(LOGITS[:, :1]) + near,
              'far': tf.constant(LOGITS[:, 1:])}
    with pytest.raises(ValueError, match=r"the loss of head\(s\) \['far'\] "
                       'depends on none of the shared_variables'):
      head.create_estimator_spec(features={}, mode=TRAIN, logits=logits,
                                 labels=LABELS,
                                 train_op_fn=lambda loss: tf.no_op())


def test_gradnorm_with_an_unknown_variable_name_raises_value_error():
  with pytest.raises(ValueError, match="GradNorm shared variable 'dense/k' "
                     'is not a variable of the graph'):
    _train_spec_with_shared(['dense/k'])


def test_gradnorm_with_a_variable_of_another_graph_raises_value_error():
  with tf.Graph().as_default():
    elsewhere = tf.compat.v1.get_variable('bias', [2])
  with pytest.raises(ValueError, match='belongs to another graph'):
    _train_spec_with_shared([elsewhere])


@pytest.mark.parametrize('kwargs, error, message', [
    ({'alpha': -0.5}, ValueError, 'alpha must be >= 0; given -0.5'),
    ({'alpha': '1'}, TypeError, 'alpha must be a number'),
    ({'learning_rate': 0.}, ValueError,
     'learning_rate must be positive; given 0.0'),
])
def test_gradnorm_bad_numbers_raise(kwargs, error, message):
  with pytest.raises(error, match=message):
    weighting.GradNorm(shared_variables=['bias'], **kwargs)


@pytest.mark.parametrize('kwargs, error, message', [
    ({'temperature': 0.}, ValueError,
     'temperature must be positive; given 0.0'),
    ({'temperature': -2.}, ValueError,
     'temperature must be positive; given -2.0'),
    ({'temperature': '2'}, TypeError, 'temperature must be a number'),
    ({'window': 0}, ValueError, 'window must be positive; given 0'),
    ({'window': -3}, ValueError, 'window must be positive; given -3'),
    ({'window': 2.5}, TypeError, 'window must be an integer; given 2.5'),
    ({'window': True}, TypeError, 'window must be an integer; given True'),
])
def test_dynamic_weight_average_bad_numbers_raise(kwargs, error, message):
  with pytest.raises(error, match=message):
    weighting.DynamicWeightAverage(**kwargs)


def test_every_method_keeps_fusion():
  # GradNorm takes its heads' gradients from one vectorized Jacobian, and
  # tells a head that ignores the shared variables by its logits.
  shared = ['dense/kernel']
  assert MultiHead(_heads(), loss_weighting=weighting.GradNorm(
      shared_variables=shared)).fuse_heads
  assert MultiHead(_heads(), loss_weighting=weighting.Uncertainty()).fuse_heads
  assert MultiHead(
      _heads(), loss_weighting=weighting.DynamicWeightAverage()).fuse_heads
