"""`NashMTL`: the heads' Nash bargaining solution.

Navon et al. choose the direction `d = J^T alpha` that maximizes the sum of
the logs of the heads' improvements `g_i . d` within a ball; its weights
solve

    (G alpha)_i = 1 / alpha_i   for every head i,   alpha > 0

(their equation 3), so that `g_i . d = 1 / alpha_i`: each head's share of
the improvement is inversely proportional to its weight. These are the
optimality conditions of the strictly convex function

    f(alpha) = 1/2 alpha^T G alpha - sum_i log(alpha_i),

which has a unique minimizer when no convex combination of the rows is 0,
and none when one is (the heads are Pareto-stationary: no direction
improves them all, and `d = 0` here). Its minimizer is found by Newton's
method, damped by `1 / (1 + lambda)` while the Newton decrement `lambda`
is above 1/4; `f` is self-concordant, so that each such step stays in
`alpha > 0` and lowers `f` by a fixed amount, and the later full steps
converge quadratically (Y. Nesterov, "Introductory Lectures on Convex
Optimization", 2004, section 4.1.5). It starts from `alpha_i` proportional
to `1 / ||g_i||`, the solution where the rows are orthogonal; in float64 it
ends within a few steps, the ill-conditioned cases near Pareto-stationarity
within the bound of `_MAX_NEWTON_STEPS` steps, at about 1e-8 relative.

A. Navon, A. Shamsian, I. Achituve, H. Maron, K. Kawaguchi, G. Chechik and
E. Fetaya, "Multi-Task Learning as a Bargaining Game", ICML 2022.
"""
import numbers

import numpy as np
import tensorflow as tf

from tensorflow_multihead.aggregation import gramian as gramians
from tensorflow_multihead.aggregation import mgda

_MAX_NEWTON_STEPS = 100
# Newton's method stops once lambda^2 / K is below this.
_DECREMENT_TOLERANCE = 1e-20
# The heads are Pareto-stationary when the minimum-norm point of their
# hull has a squared norm below this fraction of ||J||_F^2.
_STATIONARY = 1e-10


def bargaining_weights(gramian_matrix):
  """The `alpha > 0` with `(G alpha)_i alpha_i = 1`, or 0 where none is.

  Args:
    gramian_matrix: `G = J J^T`, `[K, K]` float64.

  Returns:
    `[K]` float64 weights.
  """
  trace = tf.linalg.trace(gramian_matrix)
  normalized = gramians.normalize_by_trace(gramian_matrix, 0.)
  hull_point = mgda.min_norm_weights(normalized)
  stationary = tf.logical_or(
      tf.equal(trace, 0.),
      tf.reduce_sum(hull_point * tf.linalg.matvec(normalized, hull_point))
      <= _STATIONARY)
  size = tf.shape(normalized)[0]
  # Solve on I instead when there is nothing to solve, so that no NaN is
  # computed in the branch not taken.
  solvable = tf.where(stationary, tf.eye(size, dtype=tf.float64), normalized)
  alpha = _newton_minimum(solvable)
  # G = trace * G_n: alpha scales by 1 / sqrt(trace).
  scale = tf.math.rsqrt(tf.where(stationary, tf.ones_like(trace), trace))
  return tf.where(stationary, tf.zeros_like(alpha), alpha * scale)


def _newton_minimum(gram):
  """The minimizer of `1/2 a^T A a - sum log a`, by damped Newton steps."""
  size = tf.shape(gram)[0]
  start = tf.math.rsqrt(tf.linalg.diag_part(gram))
  # The best multiple of the start: t^2 s^T A s = K.
  start *= tf.sqrt(tf.cast(size, tf.float64) / tf.reduce_sum(
      start * tf.linalg.matvec(gram, start)))
  tolerance = _DECREMENT_TOLERANCE * tf.cast(size, tf.float64)

  def newton_step(step, alpha, unused_decrement):
    gradient = tf.linalg.matvec(gram, alpha) - 1. / alpha
    hessian = gram + tf.linalg.diag(tf.square(1. / alpha))
    direction = -tf.linalg.cholesky_solve(tf.linalg.cholesky(hessian),
                                          gradient[:, None])[:, 0]
    decrement = tf.maximum(-tf.reduce_sum(gradient * direction), 0.)
    root = tf.sqrt(decrement)
    damping = tf.where(root > 0.25, 1. / (1. + root), 1.)
    return step + 1, alpha + damping * direction, decrement

  _, alpha, _ = tf.while_loop(
      lambda step, alpha, decrement: tf.logical_and(
          step < _MAX_NEWTON_STEPS, decrement > tolerance),
      newton_step,
      (tf.constant(0), start, tf.constant(float('inf'), tf.float64)),
      parallel_iterations=1)
  return alpha


class NashMTL(gramians.GramianWeighted):
  """The Nash bargaining solution of the heads, its norm capped.

      d = J^T alpha,   (G alpha)_i = 1 / alpha_i  for every i,

  found exactly (Newton's method in float64, see the module), then scaled
  down to `max_norm` if longer. Each head improves by `g_i . d = 1 /
  alpha_i` before the cap; `||J^T alpha|| = sqrt(K)` whatever the scale of
  `J`. `d = 0` where a convex combination of the rows is 0 (their minimum-
  norm point below 1e-5 `||J||_F`): no direction improves every head.

  A. Navon, A. Shamsian, I. Achituve, H. Maron, K. Kawaguchi, G. Chechik and
  E. Fetaya, "Multi-Task Learning as a Bargaining Game", ICML 2022;
  TorchJD's `NashMTL`.

  TorchJD, as the paper's code, approaches `alpha` by a sequence of convex
  programs (`optim_niter=20` of them, warm-started from the previous step's
  `alpha`, and optionally recomputed only every `update_weights_every`
  steps); this one solves for `alpha` at every step and keeps no state, so
  it takes neither parameter.

  Args:
    n_tasks: The number of heads `K`, optional: if given, a Jacobian with
      another number of rows is an error.
    max_norm: The largest norm of `d`; 0 for none. TorchJD's default.
    shared_variables: See `Aggregator`.
    shared_representation: See `Aggregator`.

  >>> import tensorflow as tf
  >>> jacobian = tf.constant([[1., 0.], [-0.5, 2.]])
  >>> direction = NashMTL(max_norm=0.).aggregate(jacobian)
  >>> # Each head's improvement is 1 / alpha_i, and ||d|| = sqrt(2).
  >>> tf.linalg.matvec(jacobian, direction).numpy().round(4)
  array([0.8703, 1.7942], dtype=float32)
  >>> float(tf.norm(NashMTL().aggregate(jacobian)))  # max_norm=1.
  1.0
  """

  def __init__(self, n_tasks=None, max_norm=1.0, shared_variables=None,
               shared_representation=None):
    super().__init__(shared_variables=shared_variables,
                     shared_representation=shared_representation)
    if n_tasks is not None:
      if isinstance(n_tasks, bool) or not isinstance(
          n_tasks, (numbers.Integral, np.integer)):
        raise TypeError(f'NashMTL n_tasks must be an integer; given '
                        f'{n_tasks!r}.')
      if n_tasks <= 0:
        raise ValueError(f'NashMTL n_tasks must be positive; given '
                         f'{n_tasks!r}.')
      n_tasks = int(n_tasks)
    self.n_tasks = n_tasks
    self.max_norm = gramians.non_negative_number(max_norm,
                                                 'NashMTL max_norm')

  def weights(self, gramian_matrix):
    if self.n_tasks is not None:
      rows = gramian_matrix.shape[0]
      if rows is not None and rows != self.n_tasks:
        raise ValueError(f'NashMTL was given n_tasks={self.n_tasks}; the '
                         f'Jacobian has {rows} rows (heads).')
    alpha = bargaining_weights(gramian_matrix)
    if not self.max_norm:
      return alpha
    norm = tf.sqrt(tf.maximum(tf.reduce_sum(
        alpha * tf.linalg.matvec(gramian_matrix, alpha)), 0.))
    return tf.where(norm > self.max_norm, alpha * (self.max_norm / norm),
                    alpha)

  def __repr__(self):
    return f'NashMTL(n_tasks={self.n_tasks!r}, max_norm={self.max_norm!r})'
