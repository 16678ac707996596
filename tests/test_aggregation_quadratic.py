"""The aggregators built on small quadratic programs (issue 14).

`UPGrad`, `DualProj`, `MGDA`, `CAGrad` and `NashMTL` against their formulas
solved apart in float64 NumPy (`quadratic_formulas`, by enumerating active
sets), on conflicting, aligned, duplicated, rank-deficient and badly scaled
(row norms 1 to 10^4) Jacobians; the property each paper claims; the
solvers' optimality conditions; graph and eager mode, a replica context,
dtypes, determinism, 128 heads, and bad input.
"""
import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf

from tensorflow_multihead import aggregation
from tensorflow_multihead.aggregation import quadratic
from tensorflow_multihead.aggregation import quadratic_path
from tensorflow_multihead.aggregation import quadratic_pivoting
from tests import quadratic_formulas as formulas

KINDS = ('conflicting', 'aligned', 'duplicated', 'rank_deficient',
         'scaled')
COLUMNS = 12


def make_jacobian(kind, heads, seed):
  """A seeded `[heads, COLUMNS]` float64 Jacobian of one kind."""
  rng = np.random.default_rng(seed)
  common = rng.normal(size=COLUMNS)
  noise = rng.normal(size=(heads, COLUMNS))
  if kind == 'conflicting':
    return noise + 2. * rng.choice([-1., 1.], size=(heads, 1)) * common
  if kind == 'aligned':
    return 0.3 * noise + 3. * common
  if kind == 'duplicated':
    half = noise[:(heads + 1) // 2] - common
    return np.concatenate([half, half])[:heads]
  if kind == 'rank_deficient':
    return rng.normal(size=(heads, 2)) @ rng.normal(size=(2, COLUMNS)) + common
  return (noise - common) * np.logspace(0, 4, heads)[:, None]


CASES = [(kind, heads, seed) for kind in KINDS for heads in (2, 3, 6)
         for seed in (0, 1)]


def ids(case):
  return '-'.join(str(part) for part in case)


def aggregate(aggregator, jacobian):
  return aggregator.aggregate(tf.constant(jacobian)).numpy()


def in_graph(aggregator, jacobian):
  """The direction from a TF 1 graph run in a session, as Estimator runs."""
  with tf.Graph().as_default():
    direction = aggregator.aggregate(tf.constant(jacobian))
    with tf.compat.v1.Session() as session:
      return session.run(direction)


def relative_error(ours, expected):
  return np.linalg.norm(ours - expected) / max(np.linalg.norm(expected),
                                               1e-300)


def scale_of(jacobian):
  return np.linalg.norm(jacobian)**2


# The formulas, solved apart, on every kind of Jacobian.


@pytest.mark.parametrize('case', CASES, ids=ids)
def test_upgrad_is_its_formula(case):
  jacobian = make_jacobian(*case)
  expected = formulas.upgrad_weights(formulas.gramian(jacobian)) @ jacobian
  assert relative_error(aggregate(aggregation.UPGrad(), jacobian),
                        expected) < 1e-10


@pytest.mark.parametrize('case', CASES, ids=ids)
def test_dualproj_is_its_formula(case):
  jacobian = make_jacobian(*case)
  expected = formulas.dualproj_weights(formulas.gramian(jacobian)) @ jacobian
  assert relative_error(aggregate(aggregation.DualProj(), jacobian),
                        expected) < 1e-10


@pytest.mark.parametrize('case', CASES, ids=ids)
def test_mgda_is_the_exact_minimum_norm_point(case):
  jacobian = make_jacobian(*case)
  expected = formulas.mgda_weights(formulas.gramian(jacobian)) @ jacobian
  ours = aggregate(aggregation.MGDA(), jacobian)
  # Where the hull holds 0, both are 0 to rounding in units of ||J||_F.
  assert np.linalg.norm(ours - expected) <= 1e-9 * max(
      np.linalg.norm(expected), 1e-6 * np.sqrt(scale_of(jacobian)))


@pytest.mark.parametrize('case', CASES, ids=ids)
def test_cagrad_is_its_formula(case):
  jacobian = make_jacobian(*case)
  expected = formulas.cagrad_weights(formulas.gramian(jacobian)) @ jacobian
  assert relative_error(aggregate(aggregation.CAGrad(c=0.5), jacobian),
                        expected) < 1e-8


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_cagrad_without_norm_eps_is_its_formula_on_badly_scaled_rows(seed):
  # With TorchJD's norm_eps, badly scaled rows may give d = 0 (where the
  # best g_w is below 1e-4 ||J||_F); without it, never.
  jacobian = make_jacobian('scaled', 6, seed)
  gramian = formulas.gramian(jacobian)
  expected = formulas.cagrad_weights(gramian, 0.5, norm_eps=0.) @ jacobian
  assert np.linalg.norm(expected) > 0.
  assert relative_error(
      aggregate(aggregation.CAGrad(c=0.5, norm_eps=0.), jacobian),
      expected) < 1e-8


@pytest.mark.parametrize('case', CASES, ids=ids)
def test_nash_mtl_solves_the_bargaining_equations(case):
  # Uncapped, d = J^T alpha with g_i . d = 1 / alpha_i: alpha is read off.
  jacobian = make_jacobian(*case)
  direction = aggregate(aggregation.NashMTL(max_norm=0.), jacobian)
  improvements = jacobian @ direction
  assert np.all(improvements > 0.)
  alpha = 1. / improvements
  assert relative_error(jacobian.T @ alpha, direction) < 1e-7
  assert np.linalg.norm(direction) == pytest.approx(np.sqrt(len(jacobian)),
                                                    rel=1e-7)


@pytest.mark.parametrize('kind', KINDS)
def test_nash_mtl_maximizes_the_sum_of_log_improvements(kind):
  # The bargaining solution maximizes sum_i log(g_i . d) over ||d|| <= 1, a
  # concave problem: SciPy, started near it, finds no better d.
  jacobian = make_jacobian(kind, 4, 7)
  direction = aggregate(aggregation.NashMTL(max_norm=1.), jacobian)

  def negative_log_product(candidate):
    improvements = jacobian @ (candidate / np.linalg.norm(candidate))
    return np.inf if np.any(improvements <= 0.) else -np.sum(
        np.log(improvements))

  start = direction + 0.01 * np.random.default_rng(0).normal(size=COLUMNS)
  found = scipy.optimize.minimize(negative_log_product, start,
                                  method='Nelder-Mead',
                                  options={'xatol': 1e-12, 'fatol': 1e-14,
                                           'maxiter': 40000})
  assert negative_log_product(direction) <= found.fun + 1e-9
  assert np.linalg.norm(direction) == pytest.approx(1.)


@pytest.mark.parametrize('kind', ['conflicting', 'aligned', 'scaled'])
@pytest.mark.parametrize('name', ['UPGrad', 'DualProj'])
def test_without_regularization_the_formula_holds_too(kind, name):
  # reg_eps=0 takes Lawson and Hanson's method instead of block pivoting.
  jacobian = make_jacobian(kind, 6, 8)
  formula = {'UPGrad': formulas.upgrad_weights,
             'DualProj': formulas.dualproj_weights}[name]
  expected = formula(formulas.gramian(jacobian), reg_eps=0.) @ jacobian
  assert relative_error(
      aggregate(getattr(aggregation, name)(reg_eps=0.), jacobian),
      expected) < 1e-9


def test_pref_vector_weights_the_projections():
  jacobian = make_jacobian('conflicting', 4, 3)
  pref = np.array([0.1, 0.2, 0.3, 0.4])
  gramian = formulas.gramian(jacobian)
  assert relative_error(
      aggregate(aggregation.UPGrad(pref_vector=pref), jacobian),
      formulas.upgrad_weights(gramian, pref) @ jacobian) < 1e-10
  assert relative_error(
      aggregate(aggregation.DualProj(pref_vector=pref), jacobian),
      formulas.dualproj_weights(gramian, pref) @ jacobian) < 1e-10


def test_reg_eps_and_norm_eps_are_torchjds():
  jacobian = make_jacobian('conflicting', 4, 4)
  gramian = formulas.gramian(jacobian)
  ours = aggregate(aggregation.UPGrad(norm_eps=0., reg_eps=0.1), jacobian)
  assert relative_error(ours, formulas.upgrad_weights(
      gramian, norm_eps=0., reg_eps=0.1) @ jacobian) < 1e-10
  # ||J||_F^2 below norm_eps: G counts as 0 and UPGrad is the mean.
  tiny = 1e-4 * jacobian
  assert scale_of(tiny) < 1e-4
  np.testing.assert_allclose(aggregate(aggregation.UPGrad(), tiny),
                             tiny.mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize('c', [0., 0.25, 1., 4.])
def test_cagrad_c_is_the_balls_radius(c):
  jacobian = make_jacobian('conflicting', 5, 5)
  ours = aggregate(aggregation.CAGrad(c=c), jacobian)
  expected = formulas.cagrad_weights(formulas.gramian(jacobian), c) @ jacobian
  assert relative_error(ours, expected) < 1e-8
  mean = jacobian.mean(axis=0)
  assert np.linalg.norm(ours - mean) == pytest.approx(
      c * np.linalg.norm(mean), rel=1e-9, abs=1e-12)


# The property each paper claims.


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('name', ['UPGrad', 'DualProj'])
def test_dual_cone_directions_work_against_no_head(kind, name):
  # Exactly with reg_eps=0 (then G may be singular); with the default,
  # g_i . d >= -reg_eps * ||J||_F^2 * v_i, the regularization's slack.
  jacobian = make_jacobian(kind, 6, 11)
  exact = getattr(aggregation, name)(reg_eps=0.)
  assert np.min(jacobian @ aggregate(exact, jacobian)) >= (
      -1e-12 * scale_of(jacobian))
  regularized = aggregate(getattr(aggregation, name)(), jacobian)
  assert np.min(jacobian @ regularized) >= -1e-4 * scale_of(jacobian)


@pytest.mark.parametrize('name', ['UPGrad', 'DualProj'])
def test_without_conflict_the_dual_cone_methods_give_the_mean(name):
  jacobian = np.abs(make_jacobian('aligned', 5, 2))  # Every g_i . g_j > 0.
  np.testing.assert_allclose(aggregate(getattr(aggregation, name)(),
                                       jacobian),
                             jacobian.mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize('kind', KINDS)
def test_mgda_improves_every_head_by_at_least_its_squared_norm(kind):
  jacobian = make_jacobian(kind, 6, 13)
  direction = aggregate(aggregation.MGDA(), jacobian)
  assert np.min(jacobian @ direction - direction @ direction) >= (
      -1e-12 * scale_of(jacobian))


def test_mgda_of_balancing_gradients_is_zero():
  jacobian = np.array([[1., 2., 0.], [-2., -4., 0.], [0., 1., 1.],
                       [1., 2., 0.]])
  direction = aggregate(aggregation.MGDA(), jacobian)
  assert np.linalg.norm(direction) < 1e-12


def test_mgda_of_a_zero_row_is_zero():
  direction = aggregate(aggregation.MGDA(), np.array([[1., 0.], [0., 0.]]))
  np.testing.assert_array_equal(direction, [0., 0.])


@pytest.mark.parametrize('kind', KINDS)
def test_cagrad_improves_the_worst_head_most_within_the_ball(kind):
  # The primal: max_d min_i g_i . d over ||d - g_0|| <= c ||g_0||; SciPy's
  # SLSQP over the ball finds no better d.
  jacobian = make_jacobian(kind, 5, 17)
  c = 0.5
  ours = aggregate(aggregation.CAGrad(c=c), jacobian)
  mean = jacobian.mean(axis=0)
  radius = c * np.linalg.norm(mean)

  def worst(direction):
    return np.min(jacobian @ direction)

  found = scipy.optimize.minimize(
      lambda z: -z[-1], np.append(mean, worst(mean)), method='SLSQP',
      constraints=[
          {'type': 'ineq', 'fun': lambda z: jacobian @ z[:-1] - z[-1]},
          {'type': 'ineq',
           'fun': lambda z: radius**2 - np.sum((z[:-1] - mean)**2)}],
      options={'ftol': 1e-14, 'maxiter': 1000})
  assert np.linalg.norm(ours - mean) <= radius * (1. + 1e-9)
  assert worst(ours) >= worst(found.x[:-1]) - 1e-7 * abs(worst(ours))


def test_cagrad_on_many_rows_in_an_affine_plane():
  # g_i = r_i + c with r_i in a plane: every column of G is an affine
  # combination of three, the path's most degenerate case (this Jacobian
  # once made it cycle, and d = 0). d improves the worst head at least as
  # much as TorchJD's (benchmarks/torchjd_compare_quadratic.py) and does
  # not depend on the rows' order, which changes rounding and pivots.
  rng = np.random.default_rng(332)
  for _ in range(2):
    common = rng.normal(size=50)
    rng.normal(size=(32, 50))
    jacobian = rng.normal(size=(32, 2)) @ rng.normal(size=(2, 50)) + (
        0.5 * common)
  ours = aggregate(aggregation.CAGrad(), jacobian)
  assert np.min(jacobian @ ours) >= 15.6253  # TorchJD's, to its tolerance.
  mean = jacobian.mean(axis=0)
  assert np.linalg.norm(ours - mean) == pytest.approx(
      0.5 * np.linalg.norm(mean), rel=1e-9)
  order = np.random.default_rng(0).permutation(32)
  np.testing.assert_allclose(aggregate(aggregation.CAGrad(),
                                       jacobian[order]), ours, rtol=1e-9)


def test_cagrad_of_balancing_gradients_is_zero():
  jacobian = np.array([[1., 0.], [-1., 0.], [0., 1e-9]])
  np.testing.assert_array_equal(aggregate(aggregation.CAGrad(), jacobian),
                                [0., 0.])


def test_nash_mtl_of_balancing_gradients_is_zero():
  jacobian = np.array([[1., 1.], [-2., -2.], [0., 1.]])
  np.testing.assert_array_equal(aggregate(aggregation.NashMTL(), jacobian),
                                [0., 0.])


def test_one_head():
  jacobian = np.array([[3., 4.]])
  for aggregator, expected in [(aggregation.UPGrad(), [3., 4.]),
                               (aggregation.DualProj(), [3., 4.]),
                               (aggregation.MGDA(), [3., 4.]),
                               (aggregation.CAGrad(c=0.5), [4.5, 6.]),
                               (aggregation.NashMTL(max_norm=0.), [.6, .8])]:
    np.testing.assert_allclose(aggregate(aggregator, jacobian), expected,
                               rtol=1e-12, err_msg=repr(aggregator))


# The solvers themselves.


def random_psd(size, rank, seed, scaled=False):
  rng = np.random.default_rng(seed)
  factor = rng.normal(size=(size, rank))
  if scaled:
    factor *= np.logspace(0, 4, size)[:, None]
  return factor @ factor.T


@pytest.mark.parametrize('size,rank,scaled', [(8, 8, False), (8, 3, False),
                                              (20, 20, True), (20, 5, True),
                                              (40, 60, False)])
def test_nonnegative_minimum_meets_the_kkt_conditions(size, rank, scaled):
  gram = random_psd(size, rank, size + rank, scaled)
  gram /= np.trace(gram)
  rng = np.random.default_rng(rank)
  linear = rng.normal(size=(5, size)) @ gram  # In A's range: bounded.
  solution = quadratic.nonnegative_quadratic_minimum(gram, linear)
  assert solution.converged.numpy().all()
  x = solution.x.numpy()
  gradient = linear - x @ gram
  scale = np.abs(linear).max()
  assert np.all(x >= 0.)
  assert np.all(gradient <= 1e-10 * scale)
  assert np.all(np.abs(x * gradient) <= 1e-10 * scale * (1. + np.abs(x)))


@pytest.mark.parametrize('size,scaled', [(8, False), (30, True),
                                         (64, False)])
def test_block_pivoting_meets_the_kkt_conditions(size, scaled):
  gram = random_psd(size, size + 4, size, scaled)
  gram = gram / np.trace(gram) + 1e-4 * np.eye(size)
  linear = np.random.default_rng(size).normal(size=(size, size)) @ gram
  solution = quadratic_pivoting.block_pivoting_minimum(gram, linear)
  assert solution.converged.numpy().all()
  x = solution.x.numpy()
  gradient = linear - x @ gram
  scale = np.abs(linear).max()
  assert np.all(x >= 0.)
  assert np.all(gradient <= 1e-10 * scale)
  assert np.all(np.abs(x * gradient) <= 1e-10 * scale * (1. + np.abs(x)))
  np.testing.assert_allclose(
      x, quadratic.nonnegative_quadratic_minimum(gram, linear).x.numpy(),
      atol=1e-10 * np.abs(x).max())


def test_nonnegative_minimum_is_scipys_nnls():
  rng = np.random.default_rng(3)
  matrix = rng.normal(size=(30, 12))
  target = rng.normal(size=30)
  expected, _ = scipy.optimize.nnls(matrix, target)
  solution = quadratic.nonnegative_quadratic_minimum(
      matrix.T @ matrix, (matrix.T @ target)[None])
  np.testing.assert_allclose(solution.x.numpy()[0], expected, atol=1e-12)


def test_path_point_meets_its_conditions():
  gram = random_psd(10, 4, 5)  # Singular: the free columns must stay apart.
  towards = gram @ np.full(10, 0.1)
  end = quadratic_path.point_at_norm(gram, towards, 0.3)
  x, offset = end.x.numpy(), float(end.offset)
  assert bool(end.reached)
  gradient = gram @ x + towards - offset
  assert np.all(x >= 0.)
  assert np.all(gradient >= -1e-12)
  assert np.all(np.abs(x * gradient) <= 1e-12)
  assert x @ gram @ x == pytest.approx(0.09, rel=1e-12)


# Where and how it runs.


@pytest.mark.parametrize('name', ['UPGrad', 'DualProj', 'MGDA', 'CAGrad',
                                  'NashMTL'])
def test_graph_mode_gives_what_eager_mode_gives(name):
  jacobian = make_jacobian('conflicting', 6, 21)
  aggregator = getattr(aggregation, name)()
  eager = aggregate(aggregator, jacobian)
  np.testing.assert_array_equal(in_graph(aggregator, jacobian), eager)
  np.testing.assert_array_equal(
      tf.function(aggregator.aggregate)(tf.constant(jacobian)).numpy(),
      eager)
  np.testing.assert_array_equal(aggregate(aggregator, jacobian), eager)


def test_it_runs_in_a_replica_context():
  strategy = tf.distribute.MirroredStrategy(['/cpu:0'])
  jacobian = tf.constant(make_jacobian('conflicting', 4, 22))

  @tf.function
  def step():
    return strategy.run(aggregation.UPGrad().aggregate, args=(jacobian,))

  np.testing.assert_allclose(
      strategy.experimental_local_results(step())[0].numpy(),
      aggregate(aggregation.UPGrad(), jacobian.numpy()), rtol=1e-12)


@pytest.mark.parametrize('dtype', [tf.float16, tf.bfloat16, tf.float32,
                                   tf.float64])
def test_the_direction_has_the_jacobians_dtype(dtype):
  jacobian = make_jacobian('scaled', 5, 23)
  for name in ['UPGrad', 'DualProj', 'MGDA', 'CAGrad', 'NashMTL']:
    direction = getattr(aggregation, name)().aggregate(
        tf.constant(jacobian, dtype))
    assert direction.dtype == dtype
    assert direction.shape == [COLUMNS]


def test_float32_badly_scaled_jacobians_are_solved_in_float64():
  # Row norms from 1 to 10^4: float32 Gramians would lose the small rows.
  jacobian = make_jacobian('scaled', 6, 24).astype(np.float32)
  exact = jacobian.astype(np.float64)
  expected = formulas.mgda_weights(formulas.gramian(exact)) @ exact
  ours = aggregate(aggregation.MGDA(), jacobian)
  assert relative_error(ours, expected) < 1e-5


def test_a_nan_in_the_jacobian_gives_nan():
  jacobian = make_jacobian('conflicting', 3, 25)
  jacobian[1, 2] = np.nan
  for name in ['UPGrad', 'DualProj', 'MGDA', 'CAGrad', 'NashMTL']:
    assert np.all(np.isnan(aggregate(getattr(aggregation, name)(),
                                     jacobian))), name


def test_128_heads():
  # Every head conflicts with about half the others; all properties hold.
  jacobian = make_jacobian('conflicting', 128, 26)
  jacobian = np.concatenate([jacobian, np.random.default_rng(0).normal(
      size=(128, 200))], axis=1)
  scale = scale_of(jacobian)
  upgrad = in_graph(aggregation.UPGrad(reg_eps=0.), jacobian)
  assert np.min(jacobian @ upgrad) >= -1e-12 * scale
  mgda = in_graph(aggregation.MGDA(), jacobian)
  assert np.min(jacobian @ mgda - mgda @ mgda) >= -1e-12 * scale
  cagrad = in_graph(aggregation.CAGrad(), jacobian)
  mean = jacobian.mean(axis=0)
  assert np.linalg.norm(cagrad - mean) == pytest.approx(
      0.5 * np.linalg.norm(mean), rel=1e-9)
  nash = in_graph(aggregation.NashMTL(max_norm=0.), jacobian)
  assert relative_error(jacobian.T @ (1. / (jacobian @ nash)), nash) < 1e-7


@pytest.mark.parametrize('name', ['UPGrad', 'DualProj', 'MGDA', 'CAGrad',
                                  'NashMTL'])
def test_the_graph_does_not_grow_with_the_heads(name):
  # The solvers are loops: 2 heads and 128 build the same ops, but for a
  # few shape constants that a known size folds.
  def op_count(heads):
    with tf.Graph().as_default() as graph:
      getattr(aggregation, name)().aggregate(
          tf.zeros([heads, 3], tf.float32))
      return len(graph.get_operations())

  assert abs(op_count(128) - op_count(2)) <= 8


def test_an_unknown_number_of_heads_works():
  jacobian = make_jacobian('conflicting', 4, 27)
  with tf.Graph().as_default():
    placeholder = tf.compat.v1.placeholder(tf.float64, [None, COLUMNS])
    direction = aggregation.UPGrad().aggregate(placeholder)
    with tf.compat.v1.Session() as session:
      result = session.run(direction, {placeholder: jacobian})
  np.testing.assert_allclose(result, aggregate(aggregation.UPGrad(),
                                               jacobian), rtol=1e-12)


def test_a_pref_vector_of_another_length_fails_when_the_heads_are_unknown():
  with tf.Graph().as_default():
    placeholder = tf.compat.v1.placeholder(tf.float64, [None, COLUMNS])
    direction = aggregation.UPGrad(pref_vector=[0.5, 0.5]).aggregate(
        placeholder)
    with tf.compat.v1.Session() as session:
      with pytest.raises(tf.errors.InvalidArgumentError,
                         match='UPGrad pref_vector and the Jacobian differ'):
        session.run(direction, {placeholder: np.ones((3, COLUMNS))})


# Configuration and bad input.


def test_the_configuration_reaches_the_base():
  aggregator = aggregation.UPGrad(shared_variables=['dense/kernel'])
  assert aggregator.shared_variables == ('dense/kernel',)
  representation = tf.zeros([2, 3])
  for name in ['UPGrad', 'DualProj', 'MGDA', 'CAGrad', 'NashMTL']:
    aggregator = getattr(aggregation, name)(
        shared_representation=representation)
    assert aggregator.shared_representation is representation


def test_reprs_show_the_parameters():
  assert repr(aggregation.UPGrad()) == (
      'UPGrad(pref_vector=None, norm_eps=0.0001, reg_eps=0.0001)')
  assert repr(aggregation.DualProj(pref_vector=[1, 2])) == (
      'DualProj(pref_vector=[1.0, 2.0], norm_eps=0.0001, reg_eps=0.0001)')
  assert repr(aggregation.MGDA()) == 'MGDA()'
  assert repr(aggregation.CAGrad()) == 'CAGrad(c=0.5, norm_eps=0.0001)'
  assert repr(aggregation.NashMTL()) == 'NashMTL(n_tasks=None, max_norm=1.0)'


@pytest.mark.parametrize('make,error,message', [
    (lambda: aggregation.UPGrad(norm_eps=-1.), ValueError, 'norm_eps'),
    (lambda: aggregation.DualProj(reg_eps='small'), TypeError, 'reg_eps'),
    (lambda: aggregation.UPGrad(pref_vector=[[1., 2.]]), ValueError,
     'pref_vector'),
    (lambda: aggregation.UPGrad(pref_vector=[1., np.nan]), ValueError,
     'pref_vector'),
    (lambda: aggregation.CAGrad(c=-0.5), ValueError, 'CAGrad c'),
    (lambda: aggregation.NashMTL(n_tasks=0), ValueError, 'n_tasks'),
    (lambda: aggregation.NashMTL(max_norm=-1.), ValueError, 'max_norm'),
])
def test_bad_parameters_are_refused_at_once(make, error, message):
  with pytest.raises(error, match=message):
    make()


def test_bad_jacobians_are_refused_while_the_graph_is_built():
  with pytest.raises(ValueError, match=r'UPGrad.aggregate needs a \[K, n\]'):
    aggregation.UPGrad().aggregate(tf.zeros([3]))
  with pytest.raises(TypeError, match='MGDA.aggregate needs a floating'):
    aggregation.MGDA().aggregate(tf.zeros([2, 3], tf.int32))
  with pytest.raises(ValueError, match='at least one row'):
    aggregation.CAGrad().aggregate(tf.zeros([0, 3]))
  with pytest.raises(ValueError, match='pref_vector has 3 entries; the '
                     'Jacobian has 2 rows'):
    aggregation.DualProj(pref_vector=[1., 1., 1.]).aggregate(tf.zeros([2, 3]))
  with pytest.raises(ValueError, match='n_tasks=3; the Jacobian has 2 rows'):
    aggregation.NashMTL(n_tasks=3).aggregate(tf.zeros([2, 3]))
