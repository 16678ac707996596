"""The path of a non-negative quadratic problem with a moving linear term.

    x(k) = argmin_{x >= 0}  1/2 x^T A x - (k 1 - a)^T x

with `A` positive semi-definite and `a` in its range (`a = A u` for some
`u`, as in `CAGrad`). `x(k)` is 0 up to `k = min_i a_i`, then
piecewise linear in `k`: on a piece where the free coordinates are `P`,
`x_P(k) = k p - q` with `A_PP p = 1` and `A_PP q = a_P`. A piece ends where
a free coordinate reaches 0 (it is fixed) or a fixed one's gradient
`(A x + a - k 1)_j` reaches 0 (it is freed). Along the path `x^T A x`
grows (its derivative is `2 sum(x)`), so the first `k` at which it reaches
`radius^2` is found by following the pieces, the last one's length from a
quadratic equation: a finite, exact method (homotopy or parametric
active-set method, as LARS follows the lasso's path: B. Efron, T. Hastie,
I. Johnstone and R. Tibshirani, "Least Angle Regression", Annals of
Statistics 32, 2004).

The free columns of `A` are kept linearly independent: a column that they
span can only have to be freed at `k = 0` (with `a = A u`, its gradient is
`k (1 - 1^T t)`, `t` its coordinates in them), where `x` can slide along a
direction `A` maps to 0; it is then swapped with the first free coordinate
that the slide brings to 0 (a degenerate pivot), or, if none, the path is
unbounded: some non-negative combination of the rows of `A` is 0.

`CAGrad` reduces its problem to this one. Each piece factors `A_PP`
afresh, as `quadratic` does.

>>> import tensorflow as tf
>>> a = tf.constant([[2., 0.], [0., 1.]], tf.float64)
>>> # x(k) = [(k - 1) / 2, 0] from k = 1 until the second coordinate is
>>> # freed at k = 3, then [(k - 1) / 2, k - 3]: x^T A x = 12 at k = 5.
>>> end = point_at_norm(a, tf.constant([1., 3.], tf.float64), 12.**0.5)
>>> end.x.numpy(), float(end.offset)
(array([2., 2.]), 5.0)
"""
import collections

import tensorflow as tf

from tensorflow_multihead.aggregation import quadratic

PathEnd = collections.namedtuple('PathEnd',
                                 ['x', 'offset', 'reached', 'iterations'])

_State = collections.namedtuple('_State', [
    'iteration', 'offset', 'x', 'passive', 'running', 'reached',
    'last_changed', 'pending'])


def point_at_norm(gram, linear, radius, max_iterations=None):
  """`x(k)` at the first `k` where `x(k)^T A x(k) = radius^2`.

  Args:
    gram: `A`, `[K, K]` float64, positive semi-definite.
    linear: `a`, `[K]` float64, in the range of `A`.
    radius: A float64 scalar `> 0`.
    max_iterations: A bound on the pieces followed; by default
      `quadratic.default_max_iterations(K)`.

  Returns:
    A `PathEnd`: `x`; `offset`, its `k`; `reached`, False where the path
    stopped short (it is unbounded: some `x >= 0` has `A x = 0` and
    `sum(x) > 0`; or the bound on the pieces was met); `iterations`, the
    pieces followed.
  """
  gram = tf.convert_to_tensor(gram, tf.float64)
  linear = tf.convert_to_tensor(linear, tf.float64)
  radius = tf.convert_to_tensor(radius, tf.float64)
  size = tf.shape(gram)[0]
  if max_iterations is None:
    max_iterations = quadratic.default_max_iterations(size)
  initial = _State(
      iteration=tf.constant(0), offset=tf.reduce_min(linear),
      x=tf.zeros_like(linear), passive=tf.zeros([size], tf.bool),
      running=tf.constant(True),
      reached=tf.constant(False), last_changed=tf.constant(-1),
      pending=tf.constant(-1))
  final = tf.while_loop(
      lambda state: tf.logical_and(state.running,
                                   state.iteration < max_iterations),
      _piece(gram, linear, radius), [initial], parallel_iterations=1)[0]
  return PathEnd(x=final.x, offset=final.offset, reached=final.reached,
                 iterations=final.iteration)


def _piece(gram, linear, radius):
  """Follows one piece of the path: the loop's body."""
  diagonal = tf.linalg.diag_part(gram)
  absolute_gram = tf.abs(gram)
  infinity = tf.constant(float('inf'), tf.float64)
  size = tf.shape(gram)[0]
  indices = tf.range(size)

  def follow(state):
    # p and q, solved on P by a fresh factorization, refined once.
    free = state.passive[None]
    block = quadratic.factor_free_block(gram, free)
    solved = quadratic.solve_free_block(
        block, gram, tf.stack([tf.ones_like(linear), linear], axis=-1)[None])[0]
    broken = tf.reduce_any(tf.math.is_nan(solved))
    solved = tf.where(tf.math.is_nan(solved), tf.zeros_like(solved), solved)
    slope, intercept = tf.unstack(solved, axis=-1)
    x = state.offset * slope - intercept
    gram_x, gram_slope = tf.unstack(
        tf.matmul(gram, tf.stack([x, slope], axis=-1)), axis=-1)
    gradient = gram_x + linear - state.offset
    rate = gram_slope - 1.
    tolerance = quadratic.gradient_tolerance(
        absolute_gram, tf.ones_like(linear)[None], tf.abs(slope)[None])[0]
    not_last = tf.not_equal(indices, state.last_changed)

    # The next events: a fixed coordinate's gradient falling to 0, a free
    # one reaching 0, and the norm reaching the radius; or the second half
    # of a swap (below), at once.
    freeable = tf.logical_and(tf.logical_and(
        tf.logical_not(state.passive), rate < -tolerance), not_last)
    free_length = tf.where(freeable, tf.maximum(gradient, 0.) / -rate,
                           infinity)
    fixable = tf.logical_and(tf.logical_and(state.passive, slope < 0.),
                             not_last)
    fix_length = tf.where(fixable, tf.maximum(x, 0.) / -slope, infinity)
    to_free = tf.reduce_min(free_length)
    to_fix = tf.reduce_min(fix_length)
    to_radius = _length_to_radius(x, gram_x, slope, radius)
    pending = state.pending >= 0
    length = tf.where(pending, tf.zeros_like(to_fix), tf.minimum(
        to_radius, tf.minimum(to_free, to_fix)))
    reached = tf.logical_and(tf.logical_not(pending), tf.logical_and(
        to_radius <= tf.minimum(to_free, to_fix),
        tf.math.is_finite(to_radius)))
    frees = tf.logical_or(pending, tf.logical_and(
        tf.logical_not(reached), to_free <= to_fix))
    fixes = tf.logical_and(tf.logical_not(reached), tf.logical_not(frees))
    entering = tf.where(pending, state.pending,
                        tf.argmin(free_length, output_type=tf.int32))
    leaving = tf.argmin(fix_length, output_type=tf.int32)
    offset = state.offset + tf.where(tf.math.is_finite(length), length,
                                     tf.zeros_like(length))
    x = tf.maximum(offset * slope - intercept, 0.)

    # A column of A that the free ones span can only have to enter where
    # k = 0 (its gradient is k (1 - 1^T t) there, t its coordinates): then
    # x can move along the null direction e_j - t without changing A x, up
    # to the first free coordinate reaching 0, which leaves first and is
    # replaced. With no such coordinate, a non-negative combination of the
    # rows is 0: the path ends, unbounded.
    entering_column = tf.gather(gram, entering)
    projected = quadratic.solve_free_block(
        block, gram, entering_column[None, :, None])[0, :, 0]
    schur = (tf.gather(diagonal, entering) -
             tf.reduce_sum(entering_column * projected))
    dependent = tf.logical_and(frees, tf.logical_not(schur > (
        quadratic.DEPENDENT_FRACTION * tf.gather(diagonal, entering))))
    shrinking = tf.logical_and(state.passive, projected > (
        quadratic.DEPENDENT_FRACTION * tf.reduce_max(tf.abs(projected))))
    swap_ratio = tf.where(shrinking, x / tf.where(
        shrinking, projected, tf.ones_like(projected)), infinity)
    swaps = tf.logical_and(dependent, tf.math.is_finite(
        tf.reduce_min(swap_ratio)))
    frees = tf.logical_and(frees, tf.logical_not(dependent))
    fixes = tf.logical_or(fixes, swaps)
    leaving = tf.where(swaps, tf.argmin(swap_ratio, output_type=tf.int32),
                       leaving)

    passive = tf.logical_or(
        tf.logical_and(state.passive, tf.logical_not(
            tf.logical_and(fixes, tf.equal(indices, leaving)))),
        tf.logical_and(frees, tf.equal(indices, entering)))
    return _State(
        iteration=state.iteration + 1, offset=offset, x=x,
        passive=passive,
        running=tf.logical_and(tf.logical_or(frees, fixes),
                               tf.logical_not(broken)),
        reached=tf.logical_and(reached, tf.logical_not(broken)),
        last_changed=tf.where(frees, entering,
                              tf.where(fixes, leaving, -1)),
        pending=tf.where(swaps, entering, -1)),

  return follow


def _length_to_radius(x, gram_x, slope, radius):
  """The `t >= 0` with `(x + t p)^T A (x + t p) = radius^2` on this piece.

  `p^T A x = sum(x)` and `p^T A p = sum(p)` there (`A_PP p = 1`); the
  root is taken in the form that does not cancel. Infinite with `P` empty.
  """
  gap = tf.square(radius) - tf.reduce_sum(x * gram_x)
  linear_term = tf.reduce_sum(x)
  quadratic_term = tf.reduce_sum(slope)
  root = linear_term + tf.sqrt(tf.maximum(
      tf.square(linear_term) + quadratic_term * gap, 0.))
  length = tf.where(gap > 0., tf.math.divide_no_nan(gap, root), 0.)
  return tf.where(quadratic_term > 0., length,
                  tf.constant(float('inf'), tf.float64))
