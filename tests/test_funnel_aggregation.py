"""A funnel under gradient aggregation (issues 14 and 15 together).

Model: a tanh trunk, a linear logits layer, heads `click`, `conversion`
(a `ConditionalHead` given `click`) and `value` (a regression). One SGD
step with `gradient_aggregation=` must move the trunk by the aggregate of
the heads' rows, where `conversion`'s row is the gradient of its loss on
the joint logits, the term it adds to the merged loss. Each row is taken
here apart from the aggregation code: the gradient of the plain merged loss
of a `MultiHead` whose `head_weights` keep that head alone. A linear
aggregator (fixed row weights) makes the expected step exact; the logits
layer, not shared, gets its plain gradient.
"""
import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import ConditionalHead
from tensorflow_multihead import MultiHead
from tensorflow_multihead import aggregation
from tests import aggregation_cases as cases

TRAIN = tf.estimator.ModeKeys.TRAIN
HEAD_NAMES = ('click', 'conversion', 'value')
HEAD_WEIGHTS = (1., 2., 0.5)
LEARNING_RATE = 0.1
SHARED = ('trunk/kernel', 'trunk/bias')
OWN = ('out/kernel', 'out/bias')

_RNG = np.random.default_rng(1415)
_ROWS = 8
X = _RNG.normal(size=(_ROWS, 3)).astype(np.float32)
_CLICKS = np.array([[1], [1], [0], [1], [0], [0], [1], [0]], np.int64)
LABELS = {
    'click': _CLICKS,
    # Conversions only where there was a click.
    'conversion': _CLICKS * np.array([[1], [0], [0], [1], [0], [0], [0], [0]]),
    'value': _RNG.normal(size=(_ROWS, 1)).astype(np.float32),
}
INITIAL = {
    'trunk/kernel': _RNG.normal(size=(3, 4)).astype(np.float32),
    'trunk/bias': 0.1 * _RNG.normal(size=4).astype(np.float32),
    'out/kernel': _RNG.normal(size=(4, 3)).astype(np.float32),
    'out/bias': 0.1 * _RNG.normal(size=3).astype(np.float32),
}


def _heads():
  return [tf.estimator.BinaryClassHead(name='click'),
          ConditionalHead(tf.estimator.BinaryClassHead(name='conversion'),
                          given='click'),
          tf.estimator.RegressionHead(name='value')]


def _forward():
  """The model's variables and logits in the default graph."""
  variables = {
      name: tf.compat.v1.get_variable(name, initializer=value)
      for name, value in INITIAL.items()}
  hidden = tf.tanh(tf.matmul(X, variables['trunk/kernel']) +
                   variables['trunk/bias'], name='representation')
  logits = tf.matmul(hidden, variables['out/kernel']) + variables['out/bias']
  pieces = tf.split(logits, 3, axis=1)
  return variables, dict(zip(HEAD_NAMES, pieces))


def _merged_loss(head, logits):
  return head.loss(labels=LABELS, logits=logits, features={}, mode=TRAIN)


def _spec(head, logits, optimizer):
  return head.create_estimator_spec(
      features={}, mode=TRAIN, logits=logits, labels=LABELS,
      optimizer=optimizer,
      trainable_variables=tf.compat.v1.trainable_variables())


def _rows_and_plain_gradient(fuse_heads):
  """`{variable: [K, ...] row gradients}` and the plain merged gradient."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    variables, logits = _forward()
    rows = {name: [] for name in variables}
    for index, _ in enumerate(HEAD_NAMES):
      alone = [weight if i == index else 0.
               for i, weight in enumerate(HEAD_WEIGHTS)]
      loss = _merged_loss(MultiHead(_heads(), head_weights=alone,
                                    fuse_heads=fuse_heads), logits)
      for name, gradient in zip(
          variables, tf.gradients(loss, list(variables.values()))):
        rows[name].append(gradient)
    plain = _merged_loss(MultiHead(
        _heads(), head_weights=list(HEAD_WEIGHTS), fuse_heads=fuse_heads),
                         logits)
    plain_gradients = dict(zip(
        variables, tf.gradients(plain, list(variables.values()))))
    session.run(tf.compat.v1.global_variables_initializer())
    rows, plain_gradients, plain_loss = session.run(
        [rows, plain_gradients, plain])
  return ({name: np.stack(value) for name, value in rows.items()},
          plain_gradients, plain_loss)


def _aggregated_step(aggregator, fuse_heads):
  """`(gradients the step applied, spec's loss)` with aggregation."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    variables, logits = _forward()
    head = MultiHead(_heads(), head_weights=list(HEAD_WEIGHTS),
                     fuse_heads=fuse_heads, gradient_aggregation=aggregator)
    spec = _spec(head, logits,
                 tf.keras.optimizers.legacy.SGD(LEARNING_RATE))
    session.run(tf.compat.v1.global_variables_initializer())
    before, loss = session.run([variables, spec.loss])
    session.run(spec.train_op)
    after = session.run(variables)
  return ({name: (before[name] - after[name]) / LEARNING_RATE
           for name in variables}, loss)


@pytest.mark.parametrize('fuse_heads', [True, False])
def test_the_trunk_moves_by_the_aggregate_of_the_funnel_rows(fuse_heads):
  rows, plain, plain_loss = _rows_and_plain_gradient(fuse_heads)
  aggregator = cases.FixedCombination(shared_variables=list(SHARED))
  gradients, loss = _aggregated_step(aggregator, fuse_heads)
  weights = np.asarray(cases.FIXED_WEIGHTS)
  for name in SHARED:
    expected = np.tensordot(weights, rows[name], axes=1)
    np.testing.assert_allclose(gradients[name], expected, rtol=2e-4,
                               atol=2e-6, err_msg=name)
  for name in OWN:
    np.testing.assert_allclose(gradients[name], plain[name], rtol=2e-4,
                               atol=2e-6, err_msg=name)
  assert loss == pytest.approx(plain_loss, rel=1e-6)


def test_the_conversion_row_is_its_joint_loss_gradient_not_zero():
  # The joint logits depend on click's logits too: conversion's row reaches
  # the click column of the logits layer, which a row of the conditional
  # logits alone would not.
  rows, _, _ = _rows_and_plain_gradient(fuse_heads=True)
  conversion_row = rows['out/kernel'][1]
  assert np.abs(conversion_row[:, 0]).max() > 1e-3  # click's column
  assert np.abs(conversion_row[:, 2]).max() == 0.  # value's column


def test_upgrad_over_the_representation_trains_the_funnel_finitely():
  aggregator = aggregation.UPGrad(shared_representation='representation')
  gradients, loss = _aggregated_step(aggregator, fuse_heads=True)
  _, plain, plain_loss = _rows_and_plain_gradient(fuse_heads=True)
  assert loss == pytest.approx(plain_loss, rel=1e-6)
  for name in SHARED + OWN:
    assert np.all(np.isfinite(gradients[name])), name
  for name in OWN:
    np.testing.assert_allclose(gradients[name], plain[name], rtol=2e-4,
                               atol=2e-6, err_msg=name)
  # UPGrad changes the trunk's step: it is not the plain sum.
  assert not np.allclose(gradients['trunk/kernel'], plain['trunk/kernel'],
                         rtol=1e-3)
