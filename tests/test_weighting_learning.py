"""Learned loss weighting (issue 9, 6b): what each method learns on a toy.

Two regression heads read the same inputs through one shared linear layer
and a linear top; their labels are the same linear function of the inputs
plus noise of standard deviation 0.1 (`near`) and 1.0 (`far`). Each run
trains `MultiHead(..., loss_weighting=...)`'s TRAIN spec for a few hundred
steps in a plain `tf.compat.v1.Session` (the Estimator runs are in
`test_weighting_estimator.py`), feeding batches in a fixed order, and
records what it needs before every step: the model's variables, the
weighting's state, the weights it reports.

What the runs must show is computed apart in NumPy, from the recorded
variables and the data (`weighting_formulas`):

* `Uncertainty`: `exp(s_i)` ends within 25 % of each head's final loss, and
  the noisy head is weighted lower.
* `GradNorm(alpha=0)`: the weighted gradient norms over the shared layer
  end equal within 20 % (with fixed weights they differ more than fivefold),
  while the weights sum to `K = 2` at every step.
* `DynamicWeightAverage`: the weights it reports at every step are those
  computed by hand from the history of the heads' losses.
"""
import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import MultiHead
from tensorflow_multihead import weighting
from tests import weighting_formulas as formulas

pytestmark = pytest.mark.xdist_group('weighting_learning')

NAMES = ('near', 'far')
NOISE = (0.1, 1.0)
ROWS = 512
FEATURES = 4
HIDDEN = 8
SHARED = 'shared/kernel'


def make_data(seed=0):
  """Returns `(x, labels)`: `[ROWS, FEATURES]` and one `[ROWS, 1]` a head."""
  rng = np.random.RandomState(seed)
  x = rng.normal(size=(ROWS, FEATURES)).astype(np.float32)
  coefficients = rng.normal(size=(FEATURES, 1))
  labels = [(x @ coefficients + noise * rng.normal(size=(ROWS, 1))).astype(
      np.float32) for noise in NOISE]
  return x, labels


def head_losses(variables, x, labels):
  """Each head's mean squared error, from the model's variables (NumPy)."""
  logits = x @ variables['shared'] @ variables['top']
  return np.array([np.mean((logits[:, index:index + 1] - label)**2)
                   for index, label in enumerate(labels)])


def shared_gradient_norms(variables, x, labels):
  """`||d loss_i / d shared kernel||` per head (NumPy, by hand)."""
  hidden_to_logits = variables['top']
  norms = []
  for index, label in enumerate(labels):
    residual = x @ variables['shared'] @ hidden_to_logits[:, index:index + 1]
    d_logits = 2. * (residual - label) / len(label)
    gradient = x.T @ d_logits @ hidden_to_logits[:, index:index + 1].T
    norms.append(np.linalg.norm(gradient))
  return np.array(norms)


def train(loss_weighting, steps, batch, optimizer, seed=0):
  """Trains the toy; returns what was recorded before every step.

  Returns:
    A dict of lists, one entry a step: `variables` (the model's, by
    `shared`/`top`), `rows` (the batch's row slice), `state` (the
    weighting's variables) and `summaries` (the TRAIN summary values).
  """
  x, labels = make_data(seed)
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    features = tf.compat.v1.placeholder(tf.float32, [None, FEATURES])
    label_inputs = [tf.compat.v1.placeholder(tf.float32, [None, 1])
                    for _ in NAMES]
    shared = tf.compat.v1.get_variable(
        SHARED, [FEATURES, HIDDEN],
        initializer=tf.compat.v1.glorot_uniform_initializer(seed=seed))
    top = tf.compat.v1.get_variable(
        'top/kernel', [HIDDEN, len(NAMES)],
        initializer=tf.compat.v1.glorot_uniform_initializer(seed=seed + 1))
    head = MultiHead([tf.estimator.RegressionHead(name=name)
                      for name in NAMES], loss_weighting=loss_weighting)
    optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()
    spec = head.create_estimator_spec(
        features={}, mode=tf.estimator.ModeKeys.TRAIN,
        logits=features @ shared @ top,
        labels=dict(zip(NAMES, label_inputs)), optimizer=optimizer,
        trainable_variables=[shared, top])
    summaries = tf.compat.v1.summary.merge_all()
    state = {variable.op.name.rsplit('/', 1)[-1]: variable
             for variable in tf.compat.v1.global_variables()
             if '/loss_weighting/' in variable.op.name and
             'training' not in variable.op.name}
    session.run(tf.compat.v1.global_variables_initializer())
    record = {'variables': [], 'rows': [], 'state': [], 'summaries': []}
    for step in range(steps + 1):  # The last records the end, untrained.
      start = step * batch % ROWS
      rows = slice(start, start + batch)
      record['variables'].append(session.run({'shared': shared, 'top': top}))
      record['rows'].append(rows)
      record['state'].append(session.run(state))
      if step == steps:
        break
      feed = {features: x[rows]}
      feed.update({inputs: label[rows]
                   for inputs, label in zip(label_inputs, labels)})
      serialized, _ = session.run((summaries, spec.train_op), feed)
      summary = tf.compat.v1.Summary.FromString(serialized)
      record['summaries'].append(
          {value.tag: value.simple_value for value in summary.value})
  return record


# Uncertainty.


@pytest.fixture(scope='module')
def uncertainty_run():
  # Full batches: the log-variances settle where the losses do.
  return train(weighting.Uncertainty(), steps=300, batch=ROWS,
               optimizer=tf.keras.optimizers.legacy.Adam(0.05))


def test_uncertainty_variances_end_near_each_heads_converged_loss(
    uncertainty_run):
  x, labels = make_data()
  final_losses = head_losses(uncertainty_run['variables'][-1], x, labels)
  np.testing.assert_allclose(final_losses, np.square(NOISE), rtol=0.25)
  variances = np.exp(uncertainty_run['state'][-1]['log_variances'])
  np.testing.assert_allclose(variances, final_losses, rtol=0.25)


def test_uncertainty_weights_the_noisy_head_lower(uncertainty_run):
  final = uncertainty_run['summaries'][-1]
  near, far = final['loss_weight/near'], final['loss_weight/far']
  assert near > 10 * far
  np.testing.assert_allclose(
      [near, far], formulas.uncertainty_weights(
          uncertainty_run['state'][-2]['log_variances']), rtol=1e-5)


# GradNorm.


# Two batches a pass: with whole batches the gradients vanish as the model
# converges, and GradNorm's steps with them.
GRADNORM_BATCH = 256
GRADNORM_STEPS = 300
LAST_STEPS = 100


def _weighted_norms(run, weights_of):
  """`G_i = w_i * ||grad loss_i||` at every step, computed in NumPy."""
  x, labels = make_data()
  norms = []
  for variables, rows, state in zip(run['variables'][:-1], run['rows'],
                                    run['state']):
    batch_labels = [label[rows] for label in labels]
    norms.append(weights_of(state) *
                 shared_gradient_norms(variables, x[rows], batch_labels))
  return np.array(norms)


@pytest.fixture(scope='module')
def gradnorm_norms():
  run = train(
      weighting.GradNorm(alpha=0., shared_variables=[SHARED],
                         learning_rate=0.05),
      steps=GRADNORM_STEPS, batch=GRADNORM_BATCH,
      optimizer=tf.keras.optimizers.legacy.SGD(0.02))
  return run, _weighted_norms(run, lambda state: state['weights'])


@pytest.fixture(scope='module')
def fixed_weight_norms():
  run = train(None, steps=GRADNORM_STEPS, batch=GRADNORM_BATCH,
              optimizer=tf.keras.optimizers.legacy.SGD(0.02))
  return _weighted_norms(run, lambda state: np.ones(len(NAMES)))


def test_gradnorm_with_alpha_0_ends_with_equal_weighted_gradient_norms(
    gradnorm_norms):
  _, norms = gradnorm_norms
  near, far = norms[-LAST_STEPS:].mean(axis=0)
  np.testing.assert_allclose(near, far, rtol=0.2)


def test_fixed_weights_leave_the_gradient_norms_far_apart(
    fixed_weight_norms):
  # What GradNorm corrects: the noisy head's gradients dominate.
  near, far = fixed_weight_norms[-LAST_STEPS:].mean(axis=0)
  assert far > 5 * near


def test_gradnorm_weights_sum_to_the_number_of_heads_at_every_step(
    gradnorm_norms):
  run, _ = gradnorm_norms
  sums = np.array([state['weights'].sum() for state in run['state']])
  np.testing.assert_allclose(sums, len(NAMES), rtol=1e-5)
  final = run['state'][-1]['weights']
  assert final[0] > 5 * final[1]  # They did move: up for the quiet head.


def test_gradnorm_reports_the_weights_it_trains_with(gradnorm_norms):
  run, _ = gradnorm_norms
  reported = np.array([[summary[f'loss_weight/{name}'] for name in NAMES]
                       for summary in run['summaries']])
  used = np.array([state['weights'] for state in run['state'][:-1]])
  np.testing.assert_allclose(reported, used, rtol=1e-6)


# DynamicWeightAverage.


DWA_WINDOW = 5
DWA_TEMPERATURE = 2.


@pytest.fixture(scope='module')
def dwa_run():
  return train(
      weighting.DynamicWeightAverage(temperature=DWA_TEMPERATURE,
                                     window=DWA_WINDOW),
      steps=60, batch=64, optimizer=tf.keras.optimizers.legacy.SGD(0.05))


def test_dynamic_weight_average_weights_are_those_computed_by_hand(dwa_run):
  x, labels = make_data()
  history = np.array([
      head_losses(variables, x[rows], [label[rows] for label in labels])
      for variables, rows in zip(dwa_run['variables'][:-1], dwa_run['rows'])])
  reported = np.array([[summary[f'loss_weight/{name}'] for name in NAMES]
                       for summary in dwa_run['summaries']])
  expected = formulas.dwa_weights_by_step(history, DWA_WINDOW,
                                          DWA_TEMPERATURE)
  np.testing.assert_allclose(reported, expected, rtol=1e-5)
  assert (reported[:2 * DWA_WINDOW] == 1.).all()
  assert np.abs(reported[2 * DWA_WINDOW:] - 1.).max() > 0.05
  np.testing.assert_allclose(reported.sum(axis=1), len(NAMES), rtol=1e-6)
