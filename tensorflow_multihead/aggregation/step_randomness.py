"""Reproducible randomness for aggregators: a seed and the training step.

The random aggregators (`PCGrad`'s and `GradVac`'s visiting orders,
`GradDrop`'s thresholds, `Random`'s weights) draw with stateless random ops
seeded by `[seed, step]`. The same seed and step give the same draw, on
every replica of a mirrored step, in every process and after a restart from
a checkpoint. The step is the graph's global step where there is one (under
`Estimator` there always is); otherwise a counter the aggregator keeps: per
graph, as a checkpointed variable, and eagerly, one the object owns, each
`aggregate` call taking the next value.

>>> import tensorflow as tf
>>> seeds = StepSeeds(seed=7, scope='example')
>>> [seeds.next()[0].numpy().tolist() for _ in range(3)]
[[7, 0], [7, 1], [7, 2]]
"""
import numbers

import numpy as np
import tensorflow as tf

from tensorflow_multihead.aggregation import graph_state


def checked_seed(seed, aggregator):
  """`seed` as an int, or a `TypeError` naming `aggregator`."""
  if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
    raise TypeError(f'{aggregator}: seed must be an integer; given '
                    f'{seed!r}.')
  if not np.iinfo(np.int64).min <= seed <= np.iinfo(np.int64).max:
    raise ValueError(f'{aggregator}: seed must fit in 64 bits; given {seed}.')
  return int(seed)


class StepSeeds:
  """Gives each step's `[seed, step]` seed of the stateless random ops.

  Args:
    seed: The aggregator's seed, an integer.
    scope: The name scope of the step counter (made only in a graph without
      a global step, or eagerly).
  """

  def __init__(self, seed, scope):
    self.seed = seed
    self._counters = graph_state.PerGraph(lambda: self._new_counter(scope))

  @staticmethod
  def _new_counter(scope):
    with tf.compat.v1.name_scope(f'{scope}/'):
      return graph_state.state_variable('step', np.int64(0))

  def next(self):
    """Returns `(seed, updates)`: an int64 `[2]` seed, the ops to run with it.

    `updates` (advancing the aggregator's own counter) must run with the
    direction computed from the draw: give them to its control dependencies.
    """
    step, updates = self._step()
    return tf.stack([tf.constant(self.seed, tf.int64), step]), updates

  def _step(self):
    if not tf.compat.v1.executing_eagerly_outside_functions():
      global_step = tf.compat.v1.train.get_global_step()
      if global_step is not None:
        # Read before the train op increments it: the optimizer's update,
        # and the increment after it, depend on the direction.
        return tf.cast(tf.convert_to_tensor(global_step), tf.int64), []
    counter = self._counters.get()
    step = tf.convert_to_tensor(counter)
    with tf.control_dependencies([step]):
      advance = counter.assign_add(1, read_value=False)
    return step, [advance] if advance is not None else []
