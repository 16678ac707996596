"""GradNorm keeps fused groups fused (issue 14, item 2).

Its heads' gradient norms come from one vectorized Jacobian of the stacked
losses, so a fused group's losses stay one batched op: the step it takes
equals the per-head computation's, its TRAIN graph grows by the fused
heads' few ops a head, and a head whose logits ignore the shared variables
is still named, fused or not.
"""
import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import MultiHead
from tensorflow_multihead import weighting
from tests import aggregation_model as model

TRAIN = tf.estimator.ModeKeys.TRAIN
STATE = {'weights': [1.4, 0.6, 1.0], 'initial_losses': [2., 1., 0.5],
         'has_initial_losses': 1.}


def _gradnorm():
  return weighting.GradNorm(alpha=1.5, shared_variables=['trunk/kernel'],
                            learning_rate=0.2)


def _state_after_a_step(fuse_heads):
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    variables = model.build_variables()
    _, logits, _ = model.build_forward(variables)
    head = model.make_multi_head(fuse_heads=fuse_heads,
                                 loss_weighting=_gradnorm())
    spec = head.create_estimator_spec(
        features={}, mode=TRAIN, logits=logits, labels=model.LABELS,
        optimizer=tf.keras.optimizers.legacy.SGD(0.1),
        trainable_variables=tf.compat.v1.trainable_variables())
    session.run(tf.compat.v1.global_variables_initializer())
    state = {variable.op.name.rpartition('/')[2]: variable
             for variable in tf.compat.v1.global_variables()
             if '/loss_weighting/' in variable.op.name}
    for name, value in STATE.items():
      state[name].load(np.asarray(value, np.float32), session)
    session.run(spec.train_op)
    return head.fuse_heads, session.run(state)


def test_fused_gradnorm_takes_the_per_head_step():
  fused, after_fused = _state_after_a_step(True)
  per_head, after_per_head = _state_after_a_step(False)
  assert (fused, per_head) == (True, False)
  assert not np.allclose(after_fused['weights'], STATE['weights'])
  np.testing.assert_allclose(after_fused['weights'], after_per_head['weights'],
                             rtol=1e-6)


def _train_ops(count):
  with tf.Graph().as_default() as graph:
    trunk = tf.compat.v1.layers.dense(tf.ones([4, 3]), 5, tf.nn.relu,
                                      name='trunk')
    logits = tf.compat.v1.layers.dense(trunk, count, name='out')
    head = MultiHead([tf.estimator.RegressionHead(name=f'r{index}')
                      for index in range(count)], loss_weighting=_gradnorm())
    start = len(graph.get_operations())
    head.create_estimator_spec(
        features={}, mode=TRAIN, logits=logits,
        labels={f'r{index}': tf.zeros([4, 1]) for index in range(count)},
        train_op_fn=lambda loss: tf.no_op())
    return len(graph.get_operations()) - start


def test_fused_gradnorm_graph_grows_by_a_few_ops_a_head():
  # Each head's weight, loss summary and piece of the stacked losses; no
  # backward pass of its own.
  assert (_train_ops(16) - _train_ops(8)) / 8 < 20


@pytest.mark.parametrize('fuse_heads', [True, False])
def test_a_head_whose_logits_ignore_the_shared_variables_is_named(fuse_heads):
  with tf.Graph().as_default():
    variables = model.build_variables()
    _, logits, _ = model.build_forward(variables)
    pieces = dict(zip(model.HEAD_NAMES, tf.split(logits, 3, axis=1)))
    pieces['b'] = tf.zeros([model.ROWS, 1])  # In a's fused group.
    head = model.make_multi_head(fuse_heads=fuse_heads,
                                 loss_weighting=_gradnorm())
    with pytest.raises(ValueError, match=(
        r"GradNorm: the loss of head\(s\) \['b'\] depends on none of the "
        'shared_variables')):
      head.create_estimator_spec(
          features={}, mode=TRAIN, logits=pieces, labels=model.LABELS,
          train_op_fn=lambda loss: tf.no_op())
