"""Aggregators the training tests run with, and their directions in NumPy.

`AGGREGATORS` maps a name to `(factory, direction)`: `factory(**config)`
builds the aggregator with `shared_variables=` or `shared_representation=`;
`direction(jacobian)` is its direction for a float64 NumPy Jacobian, or
`None` to take the aggregator's own `aggregate` of that float64 matrix
(for a method tested against its formula elsewhere). Add a deterministic
method here (UPGrad, `PCGrad(shuffle=False)`, ...) and every training test
runs with it too.

The test aggregators differ from the mean on purpose: `FixedCombination`
weighs the rows by fixed numbers (linear), `UnitRows` adds the rows divided
by their norms, which is neither linear nor changed by scaling the matrix:
it tells a replica's Jacobian from the global one, and a sum from a mean.
`UnitRows` reads the matrix only through its Gramian, so over a linear
layer's input it takes the Jacobian factored (`layer_jacobian`).
"""
import numpy as np
import tensorflow as tf

from tensorflow_multihead import aggregation
from tensorflow_multihead.aggregation import base as aggregation_base

# Row weights of `FixedCombination`, one a head (the tests have three).
FIXED_WEIGHTS = (0.3, 1.7, -0.4)


class FixedCombination(aggregation.Aggregator):
  """`d = sum_i a_i g_i` for the fixed `FIXED_WEIGHTS` `a`."""

  def aggregate(self, jacobian):
    jacobian = tf.convert_to_tensor(jacobian)
    weights = tf.constant(FIXED_WEIGHTS[:jacobian.shape[0]], jacobian.dtype)
    return tf.linalg.matvec(jacobian, weights, transpose_a=True)


class UnitRows(aggregation_base.GramianWeighted):
  """`d = sum_i g_i / |g_i|`: each head pulls with a unit step.

  Weighted from the Gramian (`|g_i| = sqrt(G[i, i])`), it takes the heads'
  Jacobian over a linear layer's input factored, as UPGrad does, where
  `FixedCombination` reads the matrix itself: the training tests run both.
  """

  def weights(self, gramian64):
    return 1. / tf.sqrt(tf.linalg.diag_part(gramian64))


class Zero(aggregation.Aggregator):
  """`d = 0`: the shared parameters get no gradient from the heads."""

  def aggregate(self, jacobian):
    return tf.zeros_like(jacobian[0])


def _fixed_direction(jacobian):
  return np.asarray(FIXED_WEIGHTS[:len(jacobian)]) @ jacobian


def _unit_rows_direction(jacobian):
  return np.sum(jacobian / np.linalg.norm(jacobian, axis=1, keepdims=True),
                axis=0)


AGGREGATORS = {
    'mean': (aggregation.Mean, lambda jacobian: jacobian.mean(axis=0)),
    'fixed': (FixedCombination, _fixed_direction),
    'unit_rows': (UnitRows, _unit_rows_direction),
}


def make(name, **config):
  return AGGREGATORS[name][0](**config)


def direction(name, jacobian):
  """The `[n]` direction of aggregator `name` for a float64 `jacobian`."""
  factory, formula = AGGREGATORS[name]
  if formula is not None:
    return formula(jacobian)
  own = factory(shared_variables=['unused']).aggregate(
      tf.constant(jacobian, tf.float64))
  return np.asarray(own, np.float64)
