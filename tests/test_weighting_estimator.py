"""Learned loss weighting under `tf.estimator.Estimator` (issue 9, 6c).

For each method, one module fixture trains the three-headed model of
`estimator_fixtures` (a shared hidden layer, then the logits) for a few
steps, stops, resumes with a new `Estimator` on the same `model_dir`,
evaluates, exports and serves it:

* the weighting's state is in the checkpoint, and the resumed run starts
  from it: the weights it reports at its first step are those of the
  checkpointed state, not the initial ones;
* EVAL reports `loss_weight/<head>` for the checkpoint and a merged `loss`
  by the formula TRAIN uses;
* the export serves the same signatures and outputs as the same checkpoint
  exported under a `MultiHead` without `loss_weighting`, and holds no
  weighting variable.

`Uncertainty` trains through a `train_op_fn` minimizing a TF1 optimizer over
`TRAINABLE_VARIABLES`, the others (DynamicWeightAverage, GradNorm, RLW,
FAMO) through `optimizer=`.

Canned estimators given the merged head train and report the learned
weights too: the v2 `DNNEstimator` with `Uncertainty` and with `GradNorm`
(naming its hidden layer), TF 1.x's `DNNLinearCombinedEstimator` with
`DynamicWeightAverage`. TF 1.x's refuses `Uncertainty`, whose log-variances
its own variable lists would leave untrained.
"""
import glob
import os
import types

import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import MultiHead
from tensorflow_multihead import weighting
from tests import estimator_fixtures as fx
from tests import test_estimator_integration as integration
from tests import weighting_formulas as formulas

pytestmark = pytest.mark.xdist_group('weighting_estimator')

FIRST_STEPS = 3
MORE_STEPS = 2
PRIOR = np.array(fx.HEAD_WEIGHTS)
STATE_SCOPE = f'{fx.MULTI_HEAD_NAME}/loss_weighting/'
METHODS = ('uncertainty', 'dynamic_weight_average', 'gradnorm', 'random',
           'famo')
STATE_NAMES = {
    'uncertainty': {'log_variances'},
    'dynamic_weight_average': {'window_sums', 'window_steps', 'window_means',
                               'complete_windows'},
    'gradnorm': {'weights', 'initial_losses', 'has_initial_losses'},
    'random': {'weights'},
    'famo': {'logits', 'adam_m', 'adam_v', 'adam_steps', 'previous_losses',
             'has_previous_losses'},
}
DWA_TEMPERATURE = 2.
RLW_SEED = 17


def make_method(name):
  return {
      'uncertainty': weighting.Uncertainty,
      # Windows of one step, so that a few steps complete several.
      'dynamic_weight_average': lambda: weighting.DynamicWeightAverage(
          temperature=DWA_TEMPERATURE, window=1),
      'gradnorm': lambda: weighting.GradNorm(
          alpha=1., shared_variables=['shared/kernel'], learning_rate=0.5),
      'random': lambda: weighting.RandomLossWeighting(seed=RLW_SEED),
      'famo': lambda: weighting.FAMO(learning_rate=0.1),
  }[name]()


def model_fn(features, labels, mode, params):
  """A hidden layer shared by the heads, then their logits."""
  head = MultiHead(fx.make_heads(), head_weights=list(fx.HEAD_WEIGHTS),
                   loss_weighting=(make_method(params['method'])
                                   if params['method'] else None))
  hidden = tf.compat.v1.layers.dense(features['x'], 8, tf.nn.tanh,
                                     name='shared')
  logits = tf.compat.v1.layers.dense(hidden, head.logits_dimension,
                                     name='logits')
  trainers = {}
  if mode == tf.estimator.ModeKeys.TRAIN and params['method'] == 'uncertainty':
    trainers['train_op_fn'] = lambda loss: (
        tf.compat.v1.train.AdagradOptimizer(fx.LEARNING_RATE).minimize(
            loss, global_step=tf.compat.v1.train.get_global_step()))
  elif mode == tf.estimator.ModeKeys.TRAIN:
    optimizer = tf.keras.optimizers.legacy.Adagrad(fx.LEARNING_RATE)
    optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()
    trainers['optimizer'] = optimizer
    trainers['trainable_variables'] = tf.compat.v1.trainable_variables()
  return head.create_estimator_spec(features=features, mode=mode,
                                    logits=logits, labels=labels, **trainers)


def make_estimator(method, model_dir):
  """`method=None` builds the same model under a plain `MultiHead`."""
  config = tf.estimator.RunConfig(
      model_dir=str(model_dir), tf_random_seed=1234, save_summary_steps=1,
      log_step_count_steps=1000)
  return tf.estimator.Estimator(model_fn, config=config,
                                params={'method': method})


def read_state(estimator):
  """The weighting's variables in the latest checkpoint (not their slots)."""
  return {name[len(STATE_SCOPE):]: estimator.get_variable_value(name)
          for name in estimator.get_variable_names()
          if name.startswith(STATE_SCOPE) and
          '/' not in name[len(STATE_SCOPE):]}


def weight_summaries(model_dir):
  """`{step: [weight of each head]}` from the TRAIN summaries."""
  by_step = {}
  for path in glob.glob(os.path.join(model_dir, 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag.startswith('loss_weight/'):
          by_step.setdefault(event.step, {})[value.tag] = value.simple_value
  return {step: [tags[f'loss_weight/{name}'] for name in fx.HEAD_NAMES]
          for step, tags in by_step.items()}


def expected_weights(method, state):
  return formulas.weights_of_state(method, state, DWA_TEMPERATURE)


INITIAL_WEIGHTS = {
    'uncertainty': [0.5] * 3, 'dynamic_weight_average': [1.] * 3,
    'gradnorm': [1.] * 3, 'famo': [1. / 3] * 3,
    # The draw of global step 0.
    'random': weighting.RandomLossWeighting(seed=RLW_SEED).draw(3, 0).numpy(),
}


def run_signatures(export_dir):
  x = fx.make_data()[0]['x'][:5]
  examples = tf.constant(fx.serialized_examples(x))
  loaded = tf.saved_model.load(export_dir)
  outputs = {}
  for key, signature in loaded.signatures.items():
    (input_name,) = signature.structured_input_signature[1]
    outputs[key] = {name: value.numpy() for name, value in
                    signature(**{input_name: examples}).items()}
  return outputs


@pytest.fixture(scope='module', params=METHODS)
def run(request, tmp_path_factory):
  method = request.param
  root = tmp_path_factory.mktemp(method)
  model_dir = root / 'model'
  make_estimator(method, model_dir).train(fx.train_input_fn(),
                                          steps=FIRST_STEPS)
  stopped = make_estimator(method, model_dir)
  checkpointed = read_state(stopped)
  resumed = make_estimator(method, model_dir)
  resumed.train(fx.train_input_fn(), steps=MORE_STEPS)
  checkpoint = resumed.latest_checkpoint()
  exports = {
      kind: estimator.export_saved_model(
          str(root / f'export_{kind}'), fx.serving_input_receiver_fn(),
          checkpoint_path=checkpoint).decode()
      for kind, estimator in (('learned', resumed),
                              ('plain', make_estimator(None, model_dir)))}
  return types.SimpleNamespace(
      method=method, checkpoint=checkpoint, checkpointed=checkpointed,
      final=read_state(resumed),
      summaries=weight_summaries(str(model_dir)),
      metrics=resumed.evaluate(fx.eval_input_fn()),
      exports=exports,
      served={kind: run_signatures(path) for kind, path in exports.items()})


def test_training_checkpoints_the_weighting_state(run):
  assert run.checkpoint.endswith(f'model.ckpt-{FIRST_STEPS + MORE_STEPS}')
  assert set(run.checkpointed) == set(run.final) == STATE_NAMES[run.method]


def test_state_moves_with_training(run):
  assert not np.allclose(expected_weights(run.method, run.checkpointed),
                         INITIAL_WEIGHTS[run.method])
  assert not np.allclose(expected_weights(run.method, run.final),
                         expected_weights(run.method, run.checkpointed))


def test_resumed_training_starts_from_the_checkpointed_weights(run):
  # Each step's summary holds the weights it trained with, under the global
  # step it ended with: the first resumed step's is FIRST_STEPS + 1.
  assert sorted(run.summaries) == list(range(1, FIRST_STEPS + MORE_STEPS + 1))
  np.testing.assert_allclose(run.summaries[FIRST_STEPS + 1],
                             expected_weights(run.method, run.checkpointed),
                             rtol=1e-5)
  np.testing.assert_allclose(run.summaries[1], INITIAL_WEIGHTS[run.method])


@pytest.mark.parametrize('run', ['random'], indirect=True)
def test_random_weights_are_the_draws_of_each_global_step(run):
  draw = weighting.RandomLossWeighting(seed=RLW_SEED).draw
  # The summary of the step ending at global step t: the draw of t - 1.
  for step, weights in run.summaries.items():
    np.testing.assert_allclose(weights, draw(3, step - 1).numpy(), rtol=1e-6)
  np.testing.assert_allclose(run.final['weights'],
                             draw(3, FIRST_STEPS + MORE_STEPS).numpy(),
                             rtol=1e-6)


@pytest.mark.parametrize('run', ['famo'], indirect=True)
def test_famo_continues_its_adam_steps_across_the_resumption(run):
  # No logit update at the first step, then one a step.
  assert run.checkpointed['adam_steps'] == FIRST_STEPS - 1
  assert run.final['adam_steps'] == FIRST_STEPS + MORE_STEPS - 1
  assert run.final['has_previous_losses'] == 1.


@pytest.mark.parametrize('run', ['gradnorm'], indirect=True)
def test_gradnorm_keeps_its_first_losses_across_the_resumption(run):
  assert run.checkpointed['has_initial_losses'] == 1.
  np.testing.assert_array_equal(run.final['initial_losses'],
                                run.checkpointed['initial_losses'])


def test_eval_reports_the_weights_of_the_checkpoint(run):
  assert run.metrics['global_step'] == FIRST_STEPS + MORE_STEPS
  np.testing.assert_allclose(
      [run.metrics[f'loss_weight/{name}'] for name in fx.HEAD_NAMES],
      expected_weights(run.method, run.final), rtol=1e-5)


def test_eval_loss_merges_the_head_losses_by_the_training_formula(run):
  # Each batch's merged loss is affine in its head losses (but FAMO's), and
  # the eval batches are of one size: the mean of the merged losses merges
  # the means.
  losses = PRIOR * [run.metrics[f'loss/{name}'] for name in fx.HEAD_NAMES]
  if run.method == 'uncertainty':
    expected = formulas.uncertainty_loss(losses, run.final['log_variances'])
  elif run.method == 'famo':
    # Not affine: each batch's loss is the weighted harmonic mean of its
    # losses, a concave function, whose mean over the batches is at most
    # its value at the mean losses (Jensen), and above 0.
    at_mean_losses = formulas.famo_loss(losses, run.final['logits'])
    assert 0 < run.metrics['loss'] <= at_mean_losses * (1 + 1e-5)
    return
  else:
    expected = np.sum(expected_weights(run.method, run.final) * losses)
  np.testing.assert_allclose(run.metrics['loss'], expected, rtol=1e-5)


def test_export_serves_what_it_serves_without_loss_weighting(run):
  learned, plain = run.served['learned'], run.served['plain']
  assert set(learned) == set(plain)
  assert 'serving_default' in learned and 'predict' in learned
  for key, outputs in plain.items():
    assert set(learned[key]) == set(outputs), key
    for name, value in outputs.items():
      np.testing.assert_array_equal(learned[key][name], value,
                                    err_msg=f'{key}: {name}')


def test_export_holds_no_weighting_variable(run):
  names = [name for name, _ in tf.train.list_variables(
      os.path.join(run.exports['learned'], 'variables', 'variables'))]
  assert 'shared/kernel' in names
  assert not [name for name in names if 'loss_weighting' in name]


# Canned estimators, which build the head's spec themselves: given the
# merged head at construction, the weighting's state still lives in their
# graphs (GradNorm names its shared layer, created later, by name).

CANNED_STEPS = 2


# The integration tests' builders, `(head, model_dir) -> estimator`; TF1's
# estimator trains through the head's `train_op_fn`.
_dnn = integration.CANNED['DNNEstimator'][0]
_v1_dnn_linear_combined = integration.CANNED['v1.DNNLinearCombinedEstimator'][0]

CANNED = {
    ('DNNEstimator', 'uncertainty'): (_dnn, weighting.Uncertainty),
    ('DNNEstimator', 'gradnorm'): (_dnn, lambda: weighting.GradNorm(
        shared_variables=['dnn/hiddenlayer_0/kernel'], learning_rate=0.5)),
    ('v1.DNNLinearCombinedEstimator', 'dynamic_weight_average'): (
        _v1_dnn_linear_combined,
        lambda: weighting.DynamicWeightAverage(window=1)),
}


@pytest.mark.parametrize('estimator_name, method', sorted(CANNED))
def test_canned_estimator_trains_and_evaluates_the_learned_weights(
    tmp_path, estimator_name, method):
  build, make = CANNED[estimator_name, method]
  head = MultiHead(fx.make_heads(), head_weights=list(fx.HEAD_WEIGHTS),
                   loss_weighting=make())
  estimator = build(head, tmp_path)
  estimator.train(fx.train_input_fn(), steps=CANNED_STEPS)
  state = read_state(estimator)
  assert set(state) == STATE_NAMES[method]
  weights = expected_weights(method, state)
  if method == 'dynamic_weight_average':  # Not yet two complete windows.
    assert state['complete_windows'] == CANNED_STEPS
  else:
    assert not np.allclose(weights, INITIAL_WEIGHTS[method])  # Trained.
  metrics = estimator.evaluate(fx.eval_input_fn(), steps=1)
  np.testing.assert_allclose(
      [metrics[f'loss_weight/{name}'] for name in fx.HEAD_NAMES], weights,
      rtol=1e-5)


def test_a_tf1_canned_estimator_that_would_not_train_uncertainty_raises(
    tmp_path):
  head = MultiHead(fx.make_heads(), loss_weighting=weighting.Uncertainty())
  estimator = _v1_dnn_linear_combined(head, tmp_path)
  with pytest.raises(ValueError, match=(
      r"does not train the loss weighting's variables \['clicks_color_value/"
      r"loss_weighting/log_variances:0'\]")):
    estimator.train(fx.train_input_fn(), steps=1)
