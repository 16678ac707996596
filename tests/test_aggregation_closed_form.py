"""The closed-form aggregators (issue 14): PCGrad, GradVac, IMTLG, AlignedMTL,
ConFIG, GradDrop and Random.

Each gives, in eager and graph mode, what its formula gives in float64 NumPy
(`tests/aggregation_formulas.py`, written on the gradient vectors where the
papers are) on conflicting, aligned, duplicated, linearly dependent,
rank-deficient, zero-row and badly scaled Jacobians, and the property its
paper claims. The random ones draw from `[seed, step]`: the same seed and
step give the same direction, successive steps other draws, and the draw
they made is the one the NumPy formula is given. GradVac's cosine targets
carry over calls eagerly, and over session runs and a checkpoint in a graph.
`tests/test_aggregation_distributed.py` runs them mirrored and under
`TPUEstimator`.
"""
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import aggregation_closed_form
from tensorflow_multihead import aggregation
from tensorflow_multihead.aggregation import balancing
from tensorflow_multihead.aggregation import projection
from tensorflow_multihead.aggregation import small_linalg
from tensorflow_multihead.aggregation import stochastic
from tests import aggregation_formulas as formulas

SEED = 17


def _jacobians():
  """`{kind: float64 [K, n] Jacobian}`."""
  rng = np.random.default_rng(2024)
  base = rng.normal(size=(4, 6))
  conflicting = base.copy()  # pairs (0, 1) and (2, 3) at cosines ~ -0.9
  conflicting[1] = -0.8 * base[0] + 0.3 * base[1]
  conflicting[3] = -0.6 * base[2] + 0.4 * base[3]
  common = rng.normal(size=6)  # every cosine above 0.5
  aligned = (common * np.array([[1.], [0.5], [2.], [1.5]]) +
             0.2 * rng.normal(size=(4, 6)))
  duplicated = rng.normal(size=(4, 6))
  duplicated[2] = duplicated[0]
  dependent = rng.normal(size=(4, 6))
  dependent[3] = dependent[0] - 2. * dependent[1]
  zero_row = rng.normal(size=(4, 6))
  zero_row[1] = 0.
  return {
      'conflicting': conflicting,
      'aligned': aligned,
      'duplicated': duplicated,
      'dependent': dependent,
      'more_heads_than_parameters': rng.normal(size=(5, 3)),
      'zero_row': zero_row,
      # Row norms 10^4 apart.
      'badly_scaled': rng.normal(size=(4, 6)) * np.array(
          [[1e2], [1.], [1e-2], [1.]]),
  }


JACOBIANS = _jacobians()
KINDS = sorted(JACOBIANS)
# In graph mode, the kinds where the rank decisions and guards act (eager
# mode takes them all): one graph holds every configuration on each.
GRAPH_KINDS = ['badly_scaled', 'conflicting', 'dependent', 'duplicated',
               'zero_row']


def _first_uniform(jacobian):
  """GradDrop's thresholds at step 0 (the first call)."""
  return tf.random.stateless_uniform([jacobian.shape[1]], [SEED, 0],
                                     dtype=tf.float64).numpy()


def _first_weights(jacobian):
  """Random's weights at step 0 (the first call)."""
  return stochastic.random_weights(len(jacobian), [SEED, 0]).numpy()


def _preferences(jacobian):
  return np.linspace(0.5, 2., len(jacobian))


# label: (a new aggregator for the Jacobian, the formula of the Jacobian).
# PCGrad and GradVac in head order here; their drawn orders further down.
CONFIGURATIONS = {
    'PCGrad': (lambda j: aggregation.PCGrad(shuffle=False),
               lambda j: formulas.pcgrad(j, formulas.head_order(len(j)))),
    'GradVac': (lambda j: aggregation.GradVac(shuffle=False),
                lambda j: formulas.gradvac(
                    j, formulas.head_order(len(j)),
                    np.zeros([len(j)] * 2), 0.5)[0]),
    'GradVac(beta=0.2, eps=0.001)': (
        lambda j: aggregation.GradVac(0.2, 1e-3, shuffle=False),
        lambda j: formulas.gradvac(j, formulas.head_order(len(j)),
                                   np.zeros([len(j)] * 2), 0.2, 1e-3)[0]),
    'IMTLG': (lambda j: aggregation.IMTLG(), formulas.imtlg),
    'AlignedMTL': (lambda j: aggregation.AlignedMTL(), formulas.aligned_mtl),
    'AlignedMTL(median)': (
        lambda j: aggregation.AlignedMTL(scale_mode='median'),
        lambda j: formulas.aligned_mtl(j, scale_mode='median')),
    'AlignedMTL(rmse)': (
        lambda j: aggregation.AlignedMTL(scale_mode='rmse'),
        lambda j: formulas.aligned_mtl(j, scale_mode='rmse')),
    'AlignedMTL(pref_vector)': (
        lambda j: aggregation.AlignedMTL(pref_vector=_preferences(j)),
        lambda j: formulas.aligned_mtl(j, _preferences(j))),
    'ConFIG': (lambda j: aggregation.ConFIG(), formulas.config),
    'ConFIG(pref_vector)': (
        lambda j: aggregation.ConFIG(_preferences(j)),
        lambda j: formulas.config(j, _preferences(j))),
    'GradDrop': (lambda j: aggregation.GradDrop(seed=SEED),
                 lambda j: formulas.graddrop(j, _first_uniform(j))),
    'GradDrop(f, leak)': (
        lambda j: aggregation.GradDrop(lambda p: p * p, _preferences(j) / 2.,
                                       seed=SEED),
        lambda j: formulas.graddrop(j, _first_uniform(j), lambda p: p * p,
                                    _preferences(j) / 2.)),
    'Random': (lambda j: aggregation.Random(seed=SEED),
               lambda j: _first_weights(j) @ j),
}


def assert_direction(actual, expected, jacobian, rtol=1e-9):
  """Equal within `rtol` of the larger of the direction and the Jacobian.

  (Where the heads cancel out the direction is rounding noise of the
  Jacobian's scale.)
  """
  scale = max(np.abs(expected).max(), 1e-6 * np.abs(jacobian).max())
  np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.fixture(scope='module')
def graph_directions():
  """Every configuration on every Jacobian, built in one graph, run once."""
  with tf.Graph().as_default():
    directions = {
        (label, kind): make(JACOBIANS[kind]).aggregate(
            tf.constant(JACOBIANS[kind]))
        for label, (make, _) in CONFIGURATIONS.items()
        for kind in GRAPH_KINDS}
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      return session.run(directions)


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('label', sorted(CONFIGURATIONS))
def test_eager_direction_is_the_formula(label, kind):
  make, formula = CONFIGURATIONS[label]
  jacobian = JACOBIANS[kind]
  direction = make(jacobian).aggregate(jacobian)
  assert direction.dtype == tf.float64
  assert_direction(direction.numpy(), formula(jacobian), jacobian)


@pytest.mark.parametrize('kind', GRAPH_KINDS)
@pytest.mark.parametrize('label', sorted(CONFIGURATIONS))
def test_graph_direction_is_the_formula(graph_directions, label, kind):
  jacobian = JACOBIANS[kind]
  assert_direction(graph_directions[label, kind],
                   CONFIGURATIONS[label][1](jacobian), jacobian)


@pytest.mark.parametrize('label', sorted(CONFIGURATIONS))
def test_float32_jacobian_gives_a_float32_direction_near_float64(label):
  make, formula = CONFIGURATIONS[label]
  jacobian = JACOBIANS['badly_scaled'].astype(np.float32)
  if label == 'GradDrop':  # its thresholds drawn in float32
    thresholds = tf.random.stateless_uniform([6], [SEED, 0]).numpy()
    expected = formulas.graddrop(jacobian, thresholds)
  elif label == 'GradDrop(f, leak)':
    thresholds = tf.random.stateless_uniform([6], [SEED, 0]).numpy()
    expected = formulas.graddrop(jacobian, thresholds, lambda p: p * p,
                                 _preferences(jacobian) / 2.)
  else:
    expected = formula(jacobian.astype(np.float64))
  direction = make(jacobian).aggregate(jacobian)
  assert direction.dtype == tf.float32
  assert_direction(direction.numpy(), expected, jacobian, rtol=1e-5)


@pytest.mark.parametrize('label', sorted(CONFIGURATIONS))
def test_zero_jacobian_gives_the_zero_direction(label):
  jacobian = np.zeros([3, 4])
  direction = CONFIGURATIONS[label][0](jacobian).aggregate(jacobian)
  np.testing.assert_array_equal(direction.numpy(), np.zeros(4))


@pytest.mark.parametrize('label', sorted(CONFIGURATIONS))
def test_one_head_gives_its_gradient(label):
  jacobian = np.array([[3., -4.]])
  direction = CONFIGURATIONS[label][0](jacobian).aggregate(jacobian)
  expected = (jacobian[0] if label != 'AlignedMTL(pref_vector)'
              else 0.5 * jacobian[0])  # its one preference weight, 0.5
  np.testing.assert_allclose(direction.numpy(), expected, rtol=1e-12)


def test_float32_gramian_is_the_float64_product_block_by_block():
  # Three blocks of 87,381 columns and a partial one.
  jacobian = np.random.default_rng(3).normal(size=(3, 300_001)).astype(
      np.float32)
  exact = jacobian.astype(np.float64) @ jacobian.T.astype(np.float64)
  gramian = small_linalg.gramian(tf.constant(jacobian))
  assert gramian.dtype == tf.float64
  np.testing.assert_allclose(gramian.numpy(), exact, rtol=1e-13)


# The papers' claims.


def _rows(coefficients, jacobian):
  return coefficients.numpy() @ jacobian


def test_pcgrad_leaves_each_of_two_conflicting_gradients_normal_to_the_other():
  jacobian = np.array([[1., 0.5, -1.], [-2., 1., 0.5]])
  assert jacobian[0] @ jacobian[1] < 0.
  projected = _rows(projection.pcgrad_coefficients(
      jacobian @ jacobian.T, projection.visiting_order(2)), jacobian)
  assert abs(projected[0] @ jacobian[1]) < 1e-12
  assert abs(projected[1] @ jacobian[0]) < 1e-12


def test_pcgrad_leaves_no_projected_gradient_against_the_last_head_visited():
  jacobian = JACOBIANS['conflicting']
  order = projection.visiting_order(4, [SEED, 3])
  projected = _rows(projection.pcgrad_coefficients(jacobian @ jacobian.T,
                                                   order), jacobian)
  for i, last in enumerate(order.numpy()[:, -1]):
    assert projected[i] @ jacobian[last] > -1e-12


def test_pcgrad_changes_nothing_without_conflict():
  jacobian = JACOBIANS['aligned']
  np.testing.assert_allclose(
      aggregation.PCGrad().aggregate(jacobian).numpy(), jacobian.sum(0),
      rtol=1e-14)


def test_gradvac_turns_a_conflicting_pair_to_its_target_cosine():
  jacobian = np.array([[1., 0.5, -1.], [-2., 1., 0.5]])
  targets = tf.constant([[0., 0.3], [0.3, 0.]], tf.float64)
  coefficients, _ = projection.gradvac_coefficients(
      jacobian @ jacobian.T, projection.visiting_order(2), targets, 0.5, 0.)
  corrected = _rows(coefficients, jacobian)
  for i, j in ((0, 1), (1, 0)):
    cosine = corrected[i] @ jacobian[j] / (
        np.linalg.norm(corrected[i]) * np.linalg.norm(jacobian[j]))
    np.testing.assert_allclose(cosine, 0.3, rtol=1e-12)


def test_gradvac_first_step_is_pcgrad():
  jacobian = JACOBIANS['conflicting']
  np.testing.assert_allclose(
      aggregation.GradVac(shuffle=False, eps=0.).aggregate(jacobian).numpy(),
      aggregation.PCGrad(shuffle=False).aggregate(jacobian).numpy(),
      rtol=1e-12)


@pytest.mark.parametrize('kind', ['conflicting', 'aligned', 'badly_scaled'])
def test_imtlg_projects_equally_on_every_unit_gradient(kind):
  jacobian = JACOBIANS[kind]
  direction = aggregation.IMTLG().aggregate(jacobian).numpy()
  units = jacobian / np.linalg.norm(jacobian, axis=1, keepdims=True)
  projections = units @ direction
  np.testing.assert_allclose(projections, projections[0], rtol=1e-9)
  weights = balancing.imtlg_weights(jacobian @ jacobian.T).numpy()
  np.testing.assert_allclose(weights.sum(), 1., rtol=1e-12)


@pytest.mark.parametrize('scale_mode', balancing.SCALE_MODES)
@pytest.mark.parametrize('kind', ['conflicting', 'dependent', 'badly_scaled'])
def test_aligned_mtl_aligns_the_nonzero_eigenvalues_to_its_scale(
    kind, scale_mode):
  jacobian = JACOBIANS[kind]
  gramian = jacobian @ jacobian.T
  balance = balancing.balance_transformation(gramian, scale_mode).numpy()
  aligned = np.linalg.eigvalsh(balance @ gramian @ balance.T)
  eigenvalues = np.linalg.eigvalsh(gramian)
  kept = eigenvalues[eigenvalues > 1e-10 * eigenvalues.max()]
  scale = {'min': kept.min(), 'median': np.sort(kept)[(len(kept) - 1) // 2],
           'rmse': kept.mean()}[scale_mode]
  nonzero = aligned[aligned > 1e-8 * aligned.max()]
  assert len(nonzero) == len(kept)
  np.testing.assert_allclose(nonzero, scale, rtol=1e-7)


@pytest.mark.parametrize('kind', ['conflicting', 'aligned', 'badly_scaled'])
def test_config_has_one_positive_cosine_with_every_gradient(kind):
  jacobian = JACOBIANS[kind]
  direction = aggregation.ConFIG().aggregate(jacobian).numpy()
  cosines = jacobian @ direction / (np.linalg.norm(jacobian, axis=1) *
                                    np.linalg.norm(direction))
  assert cosines[0] > 0.
  np.testing.assert_allclose(cosines, cosines[0], rtol=1e-9)


def test_config_cosines_follow_the_preferences():
  jacobian = JACOBIANS['conflicting']
  preferences = _preferences(jacobian)
  direction = aggregation.ConFIG(preferences).aggregate(jacobian).numpy()
  cosines = jacobian @ direction / (np.linalg.norm(jacobian, axis=1) *
                                    np.linalg.norm(direction))
  np.testing.assert_allclose(cosines / preferences,
                             cosines[0] / preferences[0], rtol=1e-9)


def test_graddrop_keeps_one_sign_per_coordinate():
  jacobian = np.random.default_rng(1).normal(size=(5, 200))
  direction = aggregation.GradDrop(seed=SEED).aggregate(jacobian).numpy()
  positive = np.where(jacobian > 0, jacobian, 0.).sum(0)
  negative = np.where(jacobian < 0, jacobian, 0.).sum(0)
  kept_positive = np.isclose(direction, positive, rtol=1e-12, atol=0)
  kept_negative = np.isclose(direction, negative, rtol=1e-12, atol=0)
  assert np.all(kept_positive | kept_negative)
  # Both signs are drawn somewhere: it is not a fixed rule.
  assert kept_positive.sum() > 50 and kept_negative.sum() > 50


def test_graddrop_is_its_formula_over_several_blocks_of_columns():
  # Blocks of 2**18 // 40 = 6,553 columns: two and a partial one.
  jacobian = np.random.default_rng(4).normal(size=(40, 14_000))
  leak = np.linspace(0., 0.5, 40)
  direction = aggregation.GradDrop(leak=leak, seed=SEED).aggregate(jacobian)
  thresholds = tf.random.stateless_uniform([14_000], [SEED, 0],
                                           dtype=tf.float64).numpy()
  np.testing.assert_allclose(
      direction.numpy(), formulas.graddrop(jacobian, thresholds, leak=leak),
      rtol=1e-12, atol=1e-12)


def test_graddrop_keeps_coordinates_whose_signs_agree():
  jacobian = np.abs(np.random.default_rng(1).normal(size=(3, 50)))
  jacobian[:, ::2] *= -1.
  np.testing.assert_allclose(
      aggregation.GradDrop(seed=SEED).aggregate(jacobian).numpy(),
      jacobian.sum(0), rtol=1e-14)


def test_graddrop_with_full_leak_is_the_sum():
  jacobian = JACOBIANS['conflicting']
  np.testing.assert_allclose(
      aggregation.GradDrop(leak=np.ones(4)).aggregate(jacobian).numpy(),
      jacobian.sum(0), rtol=1e-14)


def test_random_weights_are_positive_and_sum_to_one():
  weights = stochastic.random_weights(6, [SEED, 4]).numpy()
  assert np.all(weights > 0.)
  np.testing.assert_allclose(weights.sum(), 1., rtol=1e-14)
  normals = tf.random.stateless_normal([6], [SEED, 4], dtype=tf.float64)
  np.testing.assert_allclose(weights, formulas.softmax(normals.numpy()),
                             rtol=1e-14)


# The draws: [seed, step].


def test_visiting_order_in_head_order_skips_each_head_itself():
  np.testing.assert_array_equal(projection.visiting_order(4).numpy(),
                                formulas.head_order(4))


def test_drawn_visiting_order_holds_the_other_heads_of_each_row():
  order = projection.visiting_order(6, [SEED, 0]).numpy()
  for i, row in enumerate(order):
    assert sorted(row) == [j for j in range(6) if j != i]
  # A draw, not the head order, and each row its own.
  assert order.tolist() != formulas.head_order(6)
  # Each row drawn on its own: two rows visit the heads they share (all but
  # the two rows' own) in different relative orders.
  assert any(
      [h for h in order[i] if h != k] != [h for h in order[k] if h != i]
      for i in range(6) for k in range(i))


def test_visiting_order_is_the_same_for_the_same_seed_and_step():
  np.testing.assert_array_equal(
      projection.visiting_order(6, [SEED, 3]).numpy(),
      projection.visiting_order(6, [SEED, 3]).numpy())
  assert (projection.visiting_order(6, [SEED, 3]).numpy().tolist() !=
          projection.visiting_order(6, [SEED, 4]).numpy().tolist())


def _surgery_formula(label, jacobian, order, targets=None):
  if label == 'PCGrad':
    return formulas.pcgrad(jacobian, order)
  if targets is None:
    targets = np.zeros([len(jacobian)] * 2)
  return formulas.gradvac(jacobian, order, targets, 0.5)


def _surgery(label, **kwargs):
  return getattr(aggregation, label)(seed=SEED, **kwargs)


@pytest.mark.parametrize('label', ['PCGrad', 'GradVac'])
def test_eager_shuffled_steps_use_the_drawn_orders(label):
  jacobian = JACOBIANS['conflicting']
  aggregator = _surgery(label)
  targets = np.zeros([4, 4])
  for step in range(3):
    order = projection.visiting_order(4, [SEED, step]).numpy()
    assert order.tolist() != formulas.head_order(4)
    expected = _surgery_formula(label, jacobian, order, targets)
    if label == 'GradVac':
      expected, targets = expected
    assert_direction(aggregator.aggregate(jacobian).numpy(), expected,
                     jacobian)


@pytest.mark.parametrize('label', ['PCGrad', 'GradVac'])
def test_the_order_changes_the_direction(label):
  jacobian = JACOBIANS['conflicting']
  shuffled = _surgery(label).aggregate(jacobian).numpy()
  in_head_order = _surgery(label, shuffle=False).aggregate(jacobian).numpy()
  assert np.abs(shuffled - in_head_order).max() > 1e-3


def _run_at_global_step(make, jacobian, steps):
  """The directions of one aggregator's graph, the global step set to each."""
  with tf.Graph().as_default():
    global_step = tf.compat.v1.train.get_or_create_global_step()
    direction = make().aggregate(tf.constant(jacobian))
    step = tf.compat.v1.placeholder(tf.int64, [])
    set_step = global_step.assign(step)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      results = []
      for value in steps:
        session.run(set_step, {step: value})
        results.append(session.run(direction))
      names = [v.op.name for v in tf.compat.v1.global_variables()]
  return results, names


def test_pcgrad_in_a_graph_draws_from_the_global_step():
  jacobian = JACOBIANS['conflicting']
  (five, seven, five_again), names = _run_at_global_step(
      lambda: _surgery('PCGrad'), jacobian, [5, 7, 5])
  for direction, step in ((five, 5), (seven, 7)):
    order = projection.visiting_order(4, [SEED, step]).numpy()
    assert_direction(direction, formulas.pcgrad(jacobian, order), jacobian)
  np.testing.assert_array_equal(five, five_again)
  assert names == ['global_step']  # no counter of its own


@pytest.mark.parametrize('label', ['GradDrop', 'Random'])
def test_random_aggregators_in_a_graph_draw_from_the_global_step(label):
  jacobian = JACOBIANS['conflicting']
  (five, five_again, six), _ = _run_at_global_step(
      getattr(aggregation, label), jacobian, [5, 5, 6])
  np.testing.assert_array_equal(five, five_again)
  assert np.abs(five - six).max() > 1e-3
  if label == 'Random':
    weights = stochastic.random_weights(4, [0, 5]).numpy()
    assert_direction(five, weights @ jacobian, jacobian)
  else:
    thresholds = tf.random.stateless_uniform([6], [0, 5], dtype=tf.float64)
    assert_direction(five, formulas.graddrop(jacobian, thresholds.numpy()),
                     jacobian)


def test_without_a_global_step_each_session_run_takes_the_next_step():
  jacobian = JACOBIANS['conflicting']
  with tf.Graph().as_default():
    aggregator = _surgery('PCGrad')
    direction = aggregator.aggregate(tf.constant(jacobian))
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      directions = [session.run(direction) for _ in range(3)]
  for step, actual in enumerate(directions):
    order = projection.visiting_order(4, [SEED, step]).numpy()
    assert_direction(actual, formulas.pcgrad(jacobian, order), jacobian)


@pytest.mark.parametrize('label', ['PCGrad', 'GradVac', 'GradDrop', 'Random'])
def test_same_seed_same_directions_other_seed_others(label):
  jacobian = JACOBIANS['conflicting']

  def directions(seed):
    aggregator = getattr(aggregation, label)(seed=seed)
    return [aggregator.aggregate(jacobian).numpy() for _ in range(2)]

  first, again, other = directions(3), directions(3), directions(4)
  np.testing.assert_array_equal(first, again)
  assert max(np.abs(a - b).max() for a, b in zip(first, other)) > 1e-3


# GradVac's state.


def test_gradvac_targets_carry_over_eager_calls():
  jacobians = [JACOBIANS['conflicting'], JACOBIANS['aligned'],
               JACOBIANS['conflicting']]
  gradvac = aggregation.GradVac(0.3, shuffle=False)
  targets = np.zeros([4, 4])
  for jacobian in jacobians:
    expected, targets = formulas.gradvac(jacobian, formulas.head_order(4),
                                         targets, 0.3)
    assert_direction(gradvac.aggregate(jacobian).numpy(), expected, jacobian)
    np.testing.assert_allclose(gradvac.targets().numpy(), targets,
                               rtol=1e-9, atol=1e-12)
  # Not a step that would be the same from zero targets.
  fresh = aggregation.GradVac(0.3, shuffle=False).aggregate(jacobians[-1])
  assert np.abs(fresh.numpy() - expected).max() > 1e-3


def test_gradvac_targets_carry_over_tf_function_calls():
  gradvac = aggregation.GradVac(shuffle=False)
  step = tf.function(gradvac.aggregate)
  jacobian = JACOBIANS['conflicting']
  targets = np.zeros([4, 4])
  for _ in range(3):
    expected, targets = formulas.gradvac(jacobian, formulas.head_order(4),
                                         targets, 0.5)
    assert_direction(step(tf.constant(jacobian)).numpy(), expected, jacobian)


def test_gradvac_reset_starts_from_zero_targets():
  jacobian = JACOBIANS['conflicting']
  gradvac = aggregation.GradVac(shuffle=False)
  first = gradvac.aggregate(jacobian).numpy()
  gradvac.aggregate(jacobian)
  gradvac.reset()
  np.testing.assert_array_equal(gradvac.aggregate(jacobian).numpy(), first)


def test_gradvac_refuses_another_number_of_heads():
  gradvac = aggregation.GradVac()
  gradvac.aggregate(np.ones([3, 2]))
  with pytest.raises(ValueError, match='targets are for 3 heads, but the '
                     'Jacobian has 4 rows'):
    gradvac.aggregate(np.ones([4, 2]))


def _gradvac_graph(jacobian_value):
  global_step = tf.compat.v1.train.get_or_create_global_step()
  gradvac = aggregation.GradVac(0.3)
  direction = gradvac.aggregate(tf.constant(jacobian_value))
  with tf.control_dependencies([direction]):
    train_op = global_step.assign_add(1)
  return gradvac, direction, train_op


def test_gradvac_targets_carry_over_session_runs_and_a_checkpoint(tmp_path):
  jacobian = JACOBIANS['conflicting']
  expected, targets = [], np.zeros([4, 4])
  for step in range(4):
    order = projection.visiting_order(4, [0, step]).numpy()
    direction, targets = formulas.gradvac(jacobian, order, targets, 0.3)
    expected.append((direction, targets))
  with tf.Graph().as_default():
    gradvac, direction, train_op = _gradvac_graph(jacobian)
    variable = gradvac.targets()
    assert variable.op.name == 'gradvac/cosine_targets'
    assert variable in tf.compat.v1.global_variables()
    assert variable not in tf.compat.v1.trainable_variables()
    saver = tf.compat.v1.train.Saver()
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      for step in range(3):
        actual, _ = session.run([direction, train_op])
        assert_direction(actual, expected[step][0], jacobian)
        np.testing.assert_allclose(session.run(variable), expected[step][1],
                                   rtol=1e-9, atol=1e-12)
      path = saver.save(session, str(tmp_path / 'model'))
  with tf.Graph().as_default():
    _, direction, train_op = _gradvac_graph(jacobian)
    with tf.compat.v1.Session() as session:
      tf.compat.v1.train.Saver().restore(session, path)
      actual, _ = session.run([direction, train_op])
  assert_direction(actual, expected[3][0], jacobian)


def test_gradvac_direction_alone_updates_the_targets():
  jacobian = JACOBIANS['conflicting']
  with tf.Graph().as_default():
    gradvac = aggregation.GradVac(shuffle=False)
    direction = gradvac.aggregate(tf.constant(jacobian))
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      session.run(direction)
      targets = session.run(gradvac.targets())
  _, expected = formulas.gradvac(jacobian, formulas.head_order(4),
                                 np.zeros([4, 4]), 0.5)
  np.testing.assert_allclose(targets, expected, rtol=1e-9, atol=1e-12)


# The graph's size and bad input.


@pytest.mark.parametrize('label', [
    'PCGrad', 'GradVac', 'IMTLG', 'AlignedMTL(pref_vector)', 'ConFIG',
    'GradDrop(f, leak)', 'Random'])
def test_graph_does_not_grow_with_the_number_of_heads(label):

  def operations(num_heads):
    jacobian = np.ones([num_heads, 3])
    make = CONFIGURATIONS[label][0]
    with tf.Graph().as_default() as graph:
      make(jacobian).aggregate(tf.constant(jacobian))
      return len(graph.get_operations())

  assert operations(2) == operations(32)


@pytest.mark.parametrize('make', [
    aggregation.PCGrad, aggregation.GradVac, aggregation.IMTLG,
    aggregation.AlignedMTL, aggregation.ConFIG, aggregation.GradDrop,
    aggregation.Random])
def test_every_aggregator_keeps_where_it_aggregates(make):
  by_variables = make(shared_variables=['trunk/kernel', 'trunk/bias'])
  assert by_variables.shared_variables == ('trunk/kernel', 'trunk/bias')
  assert make(shared_representation='trunk/Relu:0').shared_representation \
      == 'trunk/Relu:0'


@pytest.mark.parametrize('make', [
    aggregation.PCGrad, aggregation.GradVac, aggregation.IMTLG,
    aggregation.AlignedMTL, aggregation.ConFIG, aggregation.GradDrop,
    aggregation.Random])
def test_bad_jacobians_are_refused_naming_the_aggregator(make):
  name = make.__name__
  with pytest.raises(ValueError, match=f'{name}.aggregate needs a \\[K, n\\]'):
    make().aggregate(np.ones(3))
  with pytest.raises(ValueError, match=f'{name}.aggregate needs at least one'):
    make().aggregate(np.ones([0, 3]))
  with pytest.raises(TypeError, match=f'{name}.aggregate needs a floating'):
    make().aggregate(np.ones([2, 3], np.int32))


def test_gradvac_needs_the_number_of_heads_while_the_graph_is_built():
  with tf.Graph().as_default():
    jacobian = tf.compat.v1.placeholder(tf.float32, [None, 3])
    with pytest.raises(ValueError, match='GradVac needs the number of heads'):
      aggregation.GradVac().aggregate(jacobian)


def test_pcgrad_takes_any_number_of_heads_at_run_time():
  jacobian = JACOBIANS['conflicting']
  with tf.Graph().as_default():
    placeholder = tf.compat.v1.placeholder(tf.float64, [None, None])
    direction = aggregation.PCGrad(shuffle=False).aggregate(placeholder)
    with tf.compat.v1.Session() as session:
      actual = session.run(direction, {placeholder: jacobian})
  assert_direction(actual, formulas.pcgrad(jacobian, formulas.head_order(4)),
                   jacobian)


@pytest.mark.parametrize('make, message', [
    (lambda: aggregation.AlignedMTL(pref_vector=[1., 2.]), 'pref_vector has '
     '2 entries but the Jacobian has 3 rows'),
    (lambda: aggregation.ConFIG([1., 2.]), 'pref_vector has 2 entries'),
    (lambda: aggregation.GradDrop(leak=[0., 1.]), 'leak has 2 entries'),
])
def test_vectors_of_the_wrong_length_are_refused(make, message):
  with pytest.raises(ValueError, match=message):
    make().aggregate(np.ones([3, 2]))


@pytest.mark.parametrize('make, error, message', [
    (lambda: aggregation.PCGrad(shuffle='yes'), TypeError,
     'shuffle must be True or False'),
    (lambda: aggregation.PCGrad(seed=1.5), TypeError, 'seed must be an int'),
    (lambda: aggregation.Random(seed=True), TypeError, 'seed must be an int'),
    (lambda: aggregation.GradVac(beta=1.5), ValueError,
     r'beta must be in \[0, 1\]'),
    (lambda: aggregation.GradVac(eps=-1.), ValueError,
     'eps must be non-negative'),
    (lambda: aggregation.AlignedMTL(scale_mode='max'), ValueError,
     "scale_mode must be one of \\('min', 'median', 'rmse'\\)"),
    (lambda: aggregation.AlignedMTL(pref_vector=[[1.]]), ValueError,
     'pref_vector must be a vector'),
    (lambda: aggregation.ConFIG([1., np.nan]), ValueError,
     'pref_vector must be finite'),
    (lambda: aggregation.GradDrop(f=2.), TypeError, 'f must be a function'),
])
def test_bad_arguments_are_refused(make, error, message):
  with pytest.raises(error, match=message):
    make()


def test_reprs_show_the_parameters():
  assert repr(aggregation.PCGrad()) == 'PCGrad(shuffle=True, seed=0)'
  assert repr(aggregation.GradVac(0.2, seed=3)) == (
      'GradVac(beta=0.2, eps=1e-08, shuffle=True, seed=3)')
  assert repr(aggregation.AlignedMTL([1, 2])) == (
      "AlignedMTL(pref_vector=[1.0, 2.0], scale_mode='min')")
  assert repr(aggregation.IMTLG()) == 'IMTLG()'


def test_benchmark_rows_count_the_ops_of_each_aggregator():
  rows = aggregation_closed_form.run([2, 3], width=4, repeats=1,
                                     names=['Mean', 'PCGrad'],
                                     log=lambda line: None)
  ops = {(row['aggregator'], row['heads']): (row['ops'], row['function_ops'])
         for row in rows}
  assert ops['Mean', 2] == ops['Mean', 3] == (3, 0)
  assert ops['PCGrad', 2] == ops['PCGrad', 3]
  assert ops['PCGrad', 2][1] > 0  # its loop, compiled, in a function
  assert all(row['step_ms'] > 0. for row in rows)
