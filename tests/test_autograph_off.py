"""AutoGraph leaves this package's heads as written (`autograph_off`)."""
import importlib

import pytest
import tensorflow as tf

import tensorflow_multihead as tfmh
from tensorflow_multihead import autograph_off
from tensorflow_multihead import base_head
from tensorflow_multihead.contrib import head_adapter

# The package's `multi_head` function hides its module of that name.
contrib_multi_head = importlib.import_module(
    'tensorflow_multihead.contrib.multi_head')


def _is_left_alone(method):
  # The mark `do_not_convert` leaves, which AutoGraph's `converted_call`
  # looks for before it rewrites a function.
  return hasattr(method, 'autograph_info__')


@pytest.mark.parametrize('cls', [
    base_head.Head, tfmh.MultiHead, tfmh.MaskedHead, tfmh.ConditionalHead,
    contrib_multi_head.TF1MultiHead, head_adapter.TF1HeadAdapter])
def test_every_head_method_a_model_fn_calls_is_left_alone(cls):
  defined = [name for name in autograph_off.HEAD_METHODS
             if callable(vars(cls).get(name))]
  assert defined
  assert [name for name in defined
          if not _is_left_alone(getattr(cls, name))] == []


def test_a_users_own_head_is_converted_as_before():

  class UsersHead(base_head.Head):
    name = 'mine'
    logits_dimension = 1
    loss_reduction = tf.losses.Reduction.SUM

    def loss(self, labels, logits, features=None, mode=None,
             regularization_losses=None):
      return tf.reduce_sum(logits)

    def predictions(self, logits, keys=None):
      return {'logits': logits}

    def metrics(self, regularization_losses=None):
      return {}

    def update_metrics(self, eval_metrics, features, logits, labels,
                       regularization_losses=None):
      return eval_metrics

  assert not _is_left_alone(UsersHead.loss)
  assert _is_left_alone(UsersHead.create_estimator_spec)  # Inherited.


def test_a_head_left_alone_builds_the_same_loss_in_a_mirrored_replica():
  head = tfmh.MultiHead([tf.estimator.BinaryClassHead(name='click'),
                         tf.estimator.RegressionHead(name='price')])
  logits = {'click': [[0.5], [-1.]], 'price': [[2.], [3.]]}
  labels = {'click': [[1], [0]], 'price': [[1.], [5.]]}
  alone = head.loss(labels, logits, mode=tf.estimator.ModeKeys.TRAIN)
  strategy = tf.distribute.MirroredStrategy(['/cpu:0'])
  in_replica = strategy.run(tf.function(
      lambda: head.loss(labels, logits, mode=tf.estimator.ModeKeys.TRAIN)))
  assert float(strategy.experimental_local_results(in_replica)[0]) == (
      pytest.approx(float(alone), rel=1e-6))
