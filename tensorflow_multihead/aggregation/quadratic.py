"""Small convex quadratic programs over `x >= 0`, solved exactly in float64.

    minimize_x  1/2 x^T A x - b^T x   subject to   x >= 0

with `A` a `K x K` positive semi-definite matrix (a Gramian, normalized) and
one such problem per row `b` of a `[B, K]` matrix, all sharing `A`. This is
non-negative least squares in the normal-equations form: the aggregators
reduce their problems to it (`UPGrad` solves `K` of them at once).

The method is Lawson and Hanson's active-set algorithm (C. L. Lawson and
R. J. Hanson, "Solving Least Squares Problems", 1974, chapter 23; in this
normal-equations form, R. Bro and S. De Jong, "A fast non-negativity-
constrained least squares algorithm", J. Chemometrics 1997). It keeps a
passive set `P` of free coordinates; each step either frees the coordinate
whose gradient most violates optimality, or, when the least-squares
solution on `P` leaves the feasible region, steps back to its boundary and
fixes a coordinate at 0. In exact arithmetic it ends, after finitely many
steps, at a point meeting the Karush-Kuhn-Tucker conditions

    x >= 0,   w = b - A x <= 0,   x_i w_i = 0,

so the answer is exact, unlike a fixed number of projected-gradient steps.

Each step costs `O(B K^2)`: the inverse of `A` restricted to `P` is kept and
updated by a rank-one formula when `P` grows or shrinks (one refinement step
against `A` itself keeps the rounding of many updates out of the
solutions). A coordinate whose column of `A` is, to rounding, a combination
of the passive ones is never freed: in exact arithmetic its gradient is 0
at every step where it could be chosen, and freeing it would make the
passive block singular. The steps run in one `tf.while_loop` with ops that
work in graph and eager mode, under distribution strategies and on TPUs.

>>> import tensorflow as tf
>>> a = tf.constant([[2., 1.], [1., 2.]], tf.float64)
>>> # The unconstrained minimum of the first problem, A^-1 b = [1, -1], is
>>> # infeasible: with x_1 fixed at 0, x_0 = 3 / 2. The second is feasible.
>>> solution = nonnegative_quadratic_minimum(a, tf.constant([[3., 0.],
...                                                          [3., 3.]],
...                                                         tf.float64))
>>> solution.x.numpy()
array([[1.5, 0. ],
       [1. , 1. ]])
>>> bool(tf.reduce_all(solution.converged))
True
"""
import collections

import tensorflow as tf

# A gradient entry counts as positive (its coordinate should be freed) only
# above this many units of its own rounding error: the float64 epsilon
# times |b_j| + sum_k |A_jk| x_k, times the number of terms summed.
ROUNDING_UNITS = 8.0
# A coordinate is dependent when the part of its column of A not explained
# by the passive columns (the Schur complement) is below this fraction of
# its diagonal entry: the sine of its angle to their span is below 1e-6.
DEPENDENT_FRACTION = 1e-12

NonnegativeSolution = collections.namedtuple(
    'NonnegativeSolution', ['x', 'converged', 'iterations'])


def default_max_iterations(size):
  """A bound on the steps: Lawson and Hanson's `3K`, with room to spare.

  In practice the method takes about `K` steps; the bound only stops a
  rounding cycle. On reaching it the last feasible point is returned, with
  `converged` False.
  """
  return 6 * size + 20


def nonnegative_quadratic_minimum(gram, linear, max_iterations=None):
  """Minimizes `1/2 x^T A x - b^T x` over `x >= 0`, for each row `b`.

  Args:
    gram: `A`, a `[K, K]` symmetric positive semi-definite float64 tensor.
    linear: `b`, a `[B, K]` float64 tensor: one problem per row.
    max_iterations: A bound on the steps (a Python or scalar int); by
      default `default_max_iterations(K)`.

  Returns:
    A `NonnegativeSolution`: `x`, the `[B, K]` minimizers; `converged`, a
    `[B]` bool tensor, whether each met the optimality conditions within
    the step bound; `iterations`, the steps taken, a scalar.
  """
  gram = tf.convert_to_tensor(gram, tf.float64)
  linear = tf.convert_to_tensor(linear, tf.float64)
  size = tf.shape(gram)[0]
  if max_iterations is None:
    max_iterations = default_max_iterations(size)
  final = tf.while_loop(
      lambda state: tf.logical_and(state.iteration < max_iterations,
                                   tf.reduce_any(state.active)),
      _lawson_hanson_step(gram, linear),
      [_initial_state(tf.shape(linear)[0], size, linear)],
      parallel_iterations=1)[0]
  return NonnegativeSolution(x=final.x,
                             converged=tf.logical_not(final.active),
                             iterations=final.iteration)


# The loop's state. `z` is the least-squares solution on the passive set
# `P` (zero off it), `x` the last feasible point, `inverse` holds `A_PP^-1`
# on `P x P` and the identity elsewhere; `blocked` marks coordinates not to
# free (dependent columns), `active` the problems still running.
_State = collections.namedtuple('_State', [
    'iteration', 'x', 'z', 'passive', 'blocked', 'inverse', 'active',
    'last_freed'])


def _initial_state(batch, size, linear):
  """Every coordinate fixed at 0; the passive block's inverse is `I`."""
  flags = tf.zeros([batch, size], tf.bool)
  return _State(
      iteration=tf.constant(0), x=tf.zeros_like(linear),
      z=tf.zeros_like(linear), passive=flags, blocked=flags,
      inverse=tf.eye(size, batch_shape=[batch], dtype=tf.float64),
      active=tf.ones([batch], tf.bool),
      last_freed=-tf.ones([batch], tf.int32))


def gradient_tolerance(absolute_gram, linear, x):
  """The rounding error of each entry of `b - A x`, in ROUNDING_UNITS.

  `absolute_gram` is `|A|`, entry by entry; `x` is `[B, K]`.
  """
  size = tf.cast(tf.shape(absolute_gram)[0], tf.float64)
  epsilon = tf.constant(2.0**-52, tf.float64)
  scale = tf.abs(linear) + tf.matmul(tf.abs(x), absolute_gram)
  return ROUNDING_UNITS * epsilon * size * scale


def rank_two_update(inverse, first, first_scale, second, second_scale):
  """`inverse + s1 u1 u1^T + s2 u2 u2^T` for each problem, in one product."""
  vectors = tf.stack([first, second], axis=-1)
  scaled = vectors * tf.stack([first_scale, second_scale], axis=-1)[:, None]
  return inverse + tf.matmul(scaled, vectors, transpose_b=True)


def _pick(condition, if_true, if_false):
  """`tf.where` over the problems: `condition` is `[B]`, values `[B, ...]`."""
  condition = tf.reshape(condition, tf.concat(
      [tf.shape(condition), tf.ones([tf.rank(if_true) - 1], tf.int32)], 0))
  return tf.where(condition, if_true, if_false)


def _safe_reciprocal(condition, value):
  """`1 / value` where `condition`, 0 elsewhere (where it may be 0)."""
  return tf.where(condition, 1. / tf.where(condition, value,
                                           tf.ones_like(value)),
                  tf.zeros_like(value))


def _lawson_hanson_step(gram, linear):
  """One step of every problem still running: the loop's body.

  The step reads `inverse` once, for the three vectors it may need (the
  entering column `A_Pj` mapped by `A_PP^-1`, the correction refining `z`,
  and the inverse's column of the leaving coordinate), and changes it by
  one rank-two product; `z` follows by the bordering formulas.
  """
  diagonal = tf.linalg.diag_part(gram)
  absolute_gram = tf.abs(gram)
  infinity = tf.constant(float('inf'), tf.float64)

  def step(state):
    passive_f = tf.cast(state.passive, tf.float64)
    z, x = state.z, state.x
    gradient = linear - tf.matmul(z, gram)
    feasible = tf.logical_not(tf.reduce_any(
        tf.logical_and(state.passive, z <= 0.), axis=-1))
    tolerance = gradient_tolerance(absolute_gram, linear, z)

    # At a feasible z: free the coordinate most clearly worth freeing.
    excess = tf.where(tf.logical_or(state.passive, state.blocked),
                      -infinity, gradient - tolerance)
    entering = tf.argmax(excess, axis=-1, output_type=tf.int32)
    worth_freeing = tf.reduce_max(excess, axis=-1) > 0.
    optimal = tf.logical_and(feasible, tf.logical_not(worth_freeing))
    frees = tf.logical_and(state.active,
                           tf.logical_and(feasible, worth_freeing))
    # At an infeasible z: step from x towards z up to the first coordinate
    # reaching 0, and fix that one.
    ratio = tf.where(tf.logical_and(state.passive, z <= 0.),
                     tf.math.divide_no_nan(x, x - z), infinity)
    leaving = tf.argmin(ratio, axis=-1, output_type=tf.int32)
    fixes = tf.logical_and(state.active, tf.logical_not(feasible))

    size = tf.shape(gram)[0]
    unit_in = tf.one_hot(entering, size, dtype=tf.float64)
    unit_out = tf.one_hot(leaving, size, dtype=tf.float64)
    entering_row = tf.gather(gram, entering)
    mapped = tf.matmul(state.inverse, tf.stack(
        [entering_row * passive_f, gradient * passive_f, unit_out], axis=-1))
    projected, correction, leaving_column = tf.unstack(mapped, axis=-1)

    # Refine z against A itself, so that many rank-one updates of the
    # inverse leave no drift in it.
    correction *= passive_f
    z += correction
    entering_gradient = (tf.reduce_sum(unit_in * gradient, axis=-1) -
                         tf.reduce_sum(entering_row * correction, axis=-1))
    schur = (tf.gather(diagonal, entering) -
             tf.reduce_sum(entering_row * passive_f * projected, axis=-1))
    dependent = schur <= DEPENDENT_FRACTION * tf.gather(diagonal, entering)
    skipped = tf.logical_and(frees, dependent)
    frees = tf.logical_and(frees, tf.logical_not(dependent))
    pivot = tf.reduce_sum(leaving_column * unit_out, axis=-1)

    stepped = tf.maximum(
        x + tf.reduce_min(ratio, axis=-1)[:, None] * (state.z - x),
        0.) * (1. - unit_out)
    x = _pick(state.active, _pick(feasible, z, stepped), x)
    joined = (z + (entering_gradient * _safe_reciprocal(frees, schur))[:, None]
              * (unit_in - projected * passive_f))
    left = (z - (tf.reduce_sum(z * unit_out, axis=-1) *
                 _safe_reciprocal(fixes, pivot))[:, None] * leaving_column
           ) * (1. - unit_out)
    z = _pick(frees, joined, _pick(fixes, left, z))
    inverse = rank_two_update(
        state.inverse,
        _pick(frees, unit_in, unit_out),
        tf.where(frees, -tf.ones_like(schur), tf.cast(fixes, tf.float64)),
        _pick(frees, projected * passive_f - unit_in, leaving_column),
        _safe_reciprocal(frees, schur) - _safe_reciprocal(fixes, pivot))

    passive = tf.logical_or(
        tf.logical_and(state.passive, tf.logical_not(
            tf.logical_and(fixes[:, None], unit_out > 0.))),
        tf.logical_and(frees[:, None], unit_in > 0.))
    # Fixing a coordinate may make a skipped one independent again; but a
    # coordinate fixed at once, at step length 0, after being freed is a
    # rounding cycle: it stays out.
    cycled = tf.logical_and(fixes, tf.logical_and(
        tf.equal(leaving, state.last_freed),
        tf.reduce_min(ratio, axis=-1) <= 0.))
    blocked = _pick(
        fixes, tf.logical_and(cycled[:, None], unit_out > 0.),
        tf.logical_or(state.blocked,
                      tf.logical_and(skipped[:, None], unit_in > 0.)))
    return _State(
        iteration=state.iteration + 1, x=x, z=z, passive=passive,
        blocked=blocked, inverse=inverse,
        active=tf.logical_and(state.active, tf.logical_not(optimal)),
        last_freed=tf.where(frees, entering, state.last_freed)),

  return step
