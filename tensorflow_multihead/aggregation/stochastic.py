"""Random aggregators: the heads' gradients mixed by a draw at each step.

`GradDrop` keeps, coordinate by coordinate, only the gradients of one sign,
drawn in proportion to how much of the coordinate's gradient is positive;
`Random` takes a random convex combination of the rows. Both draw with
stateless random ops from `[seed, step]` (see `step_randomness`): the same
on every replica of a step, reproducible from the seed.

>>> import tensorflow as tf
>>> jacobian = tf.constant([[1., -2.], [3., -4.]])
>>> GradDrop().aggregate(jacobian).numpy()  # signs agree: all kept
array([ 4., -6.], dtype=float32)
"""
import tensorflow as tf

from tensorflow_multihead.aggregation import base
from tensorflow_multihead.aggregation import small_linalg
from tensorflow_multihead.aggregation import step_randomness


def _identity(purity):
  return purity


def graddrop_direction(jacobian, thresholds, f=_identity, leak=None):
  """GradDrop's direction for the `[n]` uniform `thresholds` of a step.

  Since a coordinate keeps either all its positive entries or all its
  negative ones, `d_c = sum_i l_i J[i, c] + [f(P_c) > U_c] sum_i (1 - l_i)
  max(J[i, c], 0) + [f(P_c) < U_c] sum_i (1 - l_i) min(J[i, c], 0)`: a few
  reductions over the heads, no `[K, n]` mask, a block of columns at a
  time (see `small_linalg.by_column_blocks`).

  Args:
    jacobian: The `[K, n]` Jacobian.
    thresholds: `U`, `[n]` uniform draws in `[0, 1)`, the Jacobian's dtype.
    f: Applied to the purities `P`.
    leak: The `[K]` leaks, or `None` (no leak).
  """
  return small_linalg.by_column_blocks(
      lambda block, block_thresholds: _graddrop_block(
          block, block_thresholds, f, leak), jacobian, thresholds)


def _graddrop_block(jacobian, thresholds, f, leak):
  positive_parts = tf.nn.relu(jacobian)
  negative_parts = tf.minimum(jacobian, 0.)
  positive = tf.reduce_sum(positive_parts, 0)
  negative = tf.reduce_sum(negative_parts, 0)
  # An all-zero coordinate keeps nothing, whichever sign is drawn.
  purity = f(0.5 * (1. + tf.math.divide_no_nan(positive + negative,
                                               positive - negative)))
  keep_positive = tf.cast(purity > thresholds, jacobian.dtype)
  keep_negative = tf.cast(purity < thresholds, jacobian.dtype)
  if leak is None:
    return keep_positive * positive + keep_negative * negative
  leak = tf.constant(leak, jacobian.dtype)
  kept = 1. - leak
  return (tf.linalg.matvec(jacobian, leak, transpose_a=True) +
          keep_positive * tf.linalg.matvec(positive_parts, kept,
                                           transpose_a=True) +
          keep_negative * tf.linalg.matvec(negative_parts, kept,
                                           transpose_a=True))


def random_weights(num_heads, seed):
  """`Random`'s float64 `[K]` weights: a softmax of standard normal draws."""
  return tf.nn.softmax(tf.random.stateless_normal([num_heads], seed,
                                                  dtype=tf.float64))


class _Drawing(base.Aggregator):
  """An aggregator drawing from `[seed, step]` at each `aggregate`."""

  def __init__(self, seed, shared_variables, shared_representation):
    super().__init__(shared_variables=shared_variables,
                     shared_representation=shared_representation)
    name = type(self).__name__
    self.seed = step_randomness.checked_seed(seed, name)
    self._seeds = step_randomness.StepSeeds(self.seed, name.lower())

  def aggregate(self, jacobian):
    name = type(self).__name__
    jacobian = small_linalg.checked_jacobian(jacobian, name)
    with tf.name_scope(name.lower()):
      seed, updates = self._seeds.next()
      direction = self._direction(jacobian, seed)
      with tf.control_dependencies(updates):
        return tf.identity(direction)

  def _direction(self, jacobian, seed):
    raise NotImplementedError


class GradDrop(_Drawing):
  """Gradient sign dropout (GradDrop): one sign kept per coordinate.

  For each coordinate `c`, the purity `P_c = (1 + sum_i J[i, c] / sum_i
  |J[i, c]|) / 2` and a uniform draw `U_c`: head `i`'s entry is kept if
  `f(P_c) > U_c` and `J[i, c] > 0`, or `f(P_c) < U_c` and `J[i, c] < 0`
  (mask `M[i, c]`). `d_c = sum_i (l_i + (1 - l_i) M[i, c]) J[i, c]` with the
  leaks `l`.

  Chen et al., "Just Pick a Sign: Optimizing Deep Multitask Models with
  Gradient Sign Dropout", NeurIPS 2020, Algorithm 1, lines 10 to 15.
  Values as TorchJD 0.18's `GradDrop`.

  Args:
    f: A monotonically increasing function of the purities (tensors in,
      tensors out); the identity by default.
    leak: The `K` leaks `l_i` in `[0, 1]`, how much of head `i`'s gradient
      passes whatever the draw; `None`: 0 each.
    seed: The seed of the draws: `U` is drawn from `[seed, step]` (see
      `step_randomness`), the same on every replica.
    shared_variables, shared_representation: See `Aggregator`.

  >>> import tensorflow as tf
  >>> jacobian = tf.constant([[1., 1.], [-1., 1.]])
  >>> GradDrop(leak=[1., 1.]).aggregate(jacobian).numpy()  # all leak through
  array([0., 2.], dtype=float32)
  """

  def __init__(self, f=_identity, leak=None, *, seed=0,
               shared_variables=None, shared_representation=None):
    super().__init__(seed, shared_variables, shared_representation)
    if not callable(f):
      raise TypeError(f'GradDrop: f must be a function of the purities; '
                      f'given {f!r}.')
    if leak is not None:
      leak = small_linalg.checked_vector(leak, 'leak', 'GradDrop')
    self.f = f
    self.leak = leak

  def _direction(self, jacobian, seed):
    if self.leak is not None:
      small_linalg.check_length(self.leak, 'leak', jacobian.shape[0],
                                'GradDrop')
    thresholds = tf.random.stateless_uniform(tf.shape(jacobian)[1:], seed,
                                             dtype=jacobian.dtype)
    return graddrop_direction(jacobian, thresholds, self.f, self.leak)

  def __repr__(self):
    leak = None if self.leak is None else self.leak.tolist()
    return f'GradDrop(f={self.f!r}, leak={leak}, seed={self.seed})'


class Random(_Drawing):
  """Random weights on the rows: `d = sum_i w_i g_i`, `w = softmax(z)`.

  `z` is drawn from the standard normal at each step, so the weights are
  positive and sum to 1: a random point of the rows' convex hull.

  Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus Test
  for Multi-Task Learning", TMLR 2022, Algorithm 2 (random weights on the
  gradients). Values as TorchJD 0.18's `Random`.

  Args:
    seed: The seed of the draws: `z` is drawn from `[seed, step]` (see
      `step_randomness`), the same on every replica.
    shared_variables, shared_representation: See `Aggregator`.

  >>> import tensorflow as tf
  >>> direction = Random().aggregate(tf.constant([[1., 0.], [0., 1.]]))
  >>> round(float(tf.reduce_sum(direction)), 6), bool(all(direction > 0))
  (1.0, True)
  """

  def __init__(self, *, seed=0, shared_variables=None,
               shared_representation=None):
    super().__init__(seed, shared_variables, shared_representation)

  def _direction(self, jacobian, seed):
    weights = random_weights(tf.shape(jacobian)[0], seed)
    return tf.linalg.matvec(jacobian, tf.cast(weights, jacobian.dtype),
                            transpose_a=True)

  def __repr__(self):
    return f'Random(seed={self.seed})'
