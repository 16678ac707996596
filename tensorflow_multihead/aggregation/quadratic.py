"""Small convex quadratic programs over `x >= 0`, solved exactly in float64.

    minimize_x  1/2 x^T A x - b^T x   subject to   x >= 0

with `A` a `K x K` positive semi-definite matrix (a Gramian, normalized) and
one such problem per row `b` of a `[B, K]` matrix, all sharing `A`. This is
non-negative least squares in the normal-equations form. `MGDA` reduces its
problem to it, and so do `UPGrad` and `DualProj` when a `reg_eps` near 0
leaves their matrix possibly singular; where it is positive definite,
`quadratic_pivoting` solves the same problems in fewer steps.

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

Each step factors `A_PP` afresh (Cholesky of the gathered block, one
refinement step against `A` itself), so that no rounding carries from step
to step. A coordinate
whose column of `A` is, to rounding, a combination of the passive ones is
never freed: in exact arithmetic its gradient is 0 at every step where it
could be chosen, and freeing it would make the passive block singular. The
steps run in one `tf.while_loop` with ops that work in graph and eager
mode, under distribution strategies and on TPUs.

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


FreeBlock = collections.namedtuple('FreeBlock',
                                   ['factor', 'indices', 'valid', 'free'])


def factor_free_block(gram, free, gather=False):
  """The Cholesky factors of `A_FF` for each problem's free set `F`.

  Without `gather`, each factor is that of `A` on `F x F` and the identity
  elsewhere, `K x K`: few ops, for loops of many cheap steps. With it, the
  free coordinates of every problem are gathered first, into `[B, m]`
  indices with `m` the largest free set (a smaller set padded with an
  identity block), so that the batched factorization costs `m^3`, not
  `K^3`, per problem: for few steps on many problems. Where `A_FF` is not
  positive definite (numerically), the factor holds NaN.

  Args:
    gram: `A`, `[K, K]`.
    free: `[B, K]` bool.
    gather: Whether to factor the gathered `[B, m, m]` blocks.

  Returns:
    A `FreeBlock`, for `solve_free_block`.
  """
  if not gather:
    size = tf.shape(gram)[0]
    both = tf.logical_and(free[:, :, None], free[:, None, :])
    masked = tf.where(both, gram[None], tf.eye(size, dtype=tf.float64)[None])
    return FreeBlock(factor=tf.linalg.cholesky(masked), indices=None,
                     valid=None, free=free)
  counts = tf.reduce_sum(tf.cast(free, tf.int32), axis=-1)
  width = tf.reduce_max(counts)
  # Free coordinates first, in order: a stable sort of the fixed flags.
  indices = tf.argsort(tf.cast(tf.logical_not(free), tf.int32), axis=-1,
                       stable=True)[:, :width]
  valid = tf.range(width)[None] < counts[:, None]
  rows = tf.gather(gram, indices)
  block = tf.gather(rows, indices, axis=2, batch_dims=1)
  both = tf.logical_and(valid[:, :, None], valid[:, None, :])
  block = tf.where(both, block, tf.eye(width, dtype=tf.float64)[None])
  return FreeBlock(factor=tf.linalg.cholesky(block), indices=indices,
                   valid=valid, free=free)


def _cholesky_solve(factor, rhs):
  """`L L^T x = rhs`: two triangular solves, the second by `adjoint`.

  (`tf.linalg.cholesky_solve` transposes the factor first, a copy as
  large as it.)
  """
  return tf.linalg.triangular_solve(
      factor, tf.linalg.triangular_solve(factor, rhs, lower=True),
      lower=True, adjoint=True)


def _solve_block(block, rhs):
  """`A_FF^-1 rhs_F` for `rhs` `[B, K, C]` zero off `F`, as `[B, K, C]`."""
  if block.indices is None:
    return _cholesky_solve(block.factor, rhs) * tf.cast(
        block.free, tf.float64)[:, :, None]
  valid = tf.cast(block.valid, tf.float64)[:, :, None]
  gathered = tf.gather(rhs, block.indices, axis=1, batch_dims=1) * valid
  solved = _cholesky_solve(block.factor, gathered) * valid
  batch = tf.shape(rhs)[0]
  width = tf.shape(block.indices)[1]
  positions = tf.stack([
      tf.broadcast_to(tf.range(batch)[:, None], [batch, width]),
      block.indices], axis=-1)
  # Padding entries point at fixed coordinates with a zero value: summed
  # in, they change nothing.
  return tf.scatter_nd(positions, solved, tf.shape(rhs))


def solve_free_block(block, gram, rhs):
  """`A_FF^-1 rhs_F` for each problem (`rhs` `[B, K, C]`), zero off `F`.

  Refined once against `A` itself.
  """
  mask = tf.cast(block.free, tf.float64)[:, :, None]
  rhs = rhs * mask
  solution = _solve_block(block, rhs)
  shape = tf.shape(solution)
  # A x for every problem and column: A is symmetric, so x^T A.
  columns = tf.reshape(tf.transpose(solution, [0, 2, 1]), [-1, shape[1]])
  product = tf.transpose(tf.reshape(tf.matmul(columns, gram),
                                    [shape[0], shape[2], shape[1]]),
                         [0, 2, 1])
  return solution + _solve_block(block, (rhs - product) * mask)


def gradient_tolerance(absolute_gram, linear, x):
  """The rounding error of each entry of `b - A x`, in ROUNDING_UNITS.

  `absolute_gram` is `|A|`, entry by entry; `x` is `[B, K]`.
  """
  size = tf.cast(tf.shape(absolute_gram)[0], tf.float64)
  epsilon = tf.constant(2.0**-52, tf.float64)
  scale = tf.abs(linear) + tf.matmul(tf.abs(x), absolute_gram)
  return ROUNDING_UNITS * epsilon * size * scale


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
  return NonnegativeSolution(x=final.x, converged=final.converged,
                             iterations=final.iteration)


# The loop's state: `x` the last feasible point, `passive` the free set
# `P`, `blocked` the coordinates not to free (dependent columns), `active`
# the problems still running, `converged` those that met the conditions.
_State = collections.namedtuple('_State', [
    'iteration', 'x', 'passive', 'blocked', 'active', 'converged',
    'last_freed'])


def _initial_state(batch, size, linear):
  """Every coordinate fixed at 0."""
  flags = tf.zeros([batch, size], tf.bool)
  return _State(
      iteration=tf.constant(0), x=tf.zeros_like(linear), passive=flags,
      blocked=flags, active=tf.ones([batch], tf.bool),
      converged=tf.zeros([batch], tf.bool),
      last_freed=-tf.ones([batch], tf.int32))


def _pick(condition, if_true, if_false):
  """`tf.where` over the problems: `condition` is `[B]`, values `[B, K]`."""
  return tf.where(condition[:, None], if_true, if_false)


def _lawson_hanson_step(gram, linear):
  """One step of every problem still running: the loop's body."""
  diagonal = tf.linalg.diag_part(gram)
  absolute_gram = tf.abs(gram)
  infinity = tf.constant(float('inf'), tf.float64)

  def step(state):
    size = tf.shape(gram)[0]
    passive, x = state.passive, state.x
    block = factor_free_block(gram, passive)
    z = solve_free_block(block, gram, linear[:, :, None])[:, :, 0]
    # A NaN factor: A_PP is numerically singular after all; stop there.
    broken = tf.reduce_any(tf.math.is_nan(z), axis=-1)
    z = tf.where(tf.math.is_nan(z), tf.zeros_like(z), z)
    gradient = linear - tf.matmul(z, gram)
    feasible = tf.logical_not(tf.reduce_any(
        tf.logical_and(passive, z <= 0.), axis=-1))

    # At a feasible z: free the coordinate most clearly worth freeing,
    # unless its column is (to rounding) one of the passive ones'.
    excess = tf.where(tf.logical_or(passive, state.blocked), -infinity,
                      gradient - gradient_tolerance(absolute_gram, linear, z))
    entering = tf.argmax(excess, axis=-1, output_type=tf.int32)
    worth_freeing = tf.reduce_max(excess, axis=-1) > 0.
    optimal = tf.logical_and(feasible, tf.logical_not(worth_freeing))
    entering_column = tf.gather(gram, entering)
    projected = solve_free_block(block, gram,
                                 entering_column[:, :, None])[:, :, 0]
    schur = (tf.gather(diagonal, entering) -
             tf.reduce_sum(entering_column * projected, axis=-1))
    dependent = tf.logical_not(
        schur > DEPENDENT_FRACTION * tf.gather(diagonal, entering))
    frees = tf.logical_and(feasible, worth_freeing)
    skipped = tf.logical_and(frees, dependent)
    frees = tf.logical_and(frees, tf.logical_not(dependent))

    # At an infeasible z: step from x towards z up to the first coordinate
    # reaching 0, and fix that one.
    ratio = tf.where(tf.logical_and(passive, z <= 0.),
                     tf.math.divide_no_nan(x, x - z), infinity)
    leaving = tf.argmin(ratio, axis=-1, output_type=tf.int32)
    length = tf.reduce_min(ratio, axis=-1)
    unit_in = tf.one_hot(entering, size, on_value=True, off_value=False)
    unit_out = tf.one_hot(leaving, size, on_value=True, off_value=False)
    stepped = tf.where(unit_out, tf.zeros_like(x), tf.maximum(
        x + length[:, None] * (z - x), 0.))

    running = tf.logical_and(state.active, tf.logical_not(broken))
    frees = tf.logical_and(frees, running)
    skipped = tf.logical_and(skipped, running)
    fixes = tf.logical_and(tf.logical_not(feasible), running)
    # Fixing a coordinate may make a skipped one independent again; but a
    # coordinate fixed at once, at step length 0, after being freed is a
    # rounding cycle: it stays out.
    cycled = tf.logical_and(fixes, tf.logical_and(
        tf.equal(leaving, state.last_freed), length <= 0.))
    return _State(
        iteration=state.iteration + 1,
        x=_pick(running, _pick(feasible, z, stepped), x),
        passive=tf.logical_or(
            tf.logical_and(passive, tf.logical_not(
                tf.logical_and(fixes[:, None], unit_out))),
            tf.logical_and(frees[:, None], unit_in)),
        blocked=_pick(fixes, tf.logical_and(cycled[:, None], unit_out),
                      tf.logical_or(state.blocked, tf.logical_and(
                          skipped[:, None], unit_in))),
        active=tf.logical_and(running, tf.logical_not(optimal)),
        converged=tf.logical_or(state.converged,
                                tf.logical_and(running, optimal)),
        last_freed=tf.where(frees, entering, state.last_freed)),

  return step
