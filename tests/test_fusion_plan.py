"""`fusion`: which heads a `MultiHead` computes together.

Heads fuse only when one batched computation gives each exactly its own
values: the same class (not a subclass), the same width and loss
reduction, no custom loss or link function.
"""
import pytest
import tensorflow as tf

import tensorflow_multihead as tmh
from tensorflow_multihead import fusion

pytestmark = pytest.mark.xdist_group('fusion')

estimator = tf.estimator
SUM = tf.losses.Reduction.SUM


def _plan(*heads):
  return fusion.plan(heads)


def test_heads_of_one_class_fuse_whatever_their_names_and_options():
  assert _plan(estimator.BinaryClassHead(name='a'),
               estimator.BinaryClassHead(name='b', weight_column='w',
                                         thresholds=[0.2, 0.4],
                                         label_vocabulary=['no', 'yes'])
               ) == [(0, 1)]


def test_groups_are_listed_by_their_first_head_singles_in_place():
  heads = [estimator.RegressionHead(name='r0'),
           estimator.BinaryClassHead(name='b1'),
           estimator.MultiClassHead(3, name='m2'),
           estimator.BinaryClassHead(name='b3'),
           estimator.RegressionHead(name='r4')]
  assert fusion.plan(heads) == [(0, 4), (1, 3), (2,)]


def test_a_head_alone_of_its_kind_takes_its_own_path():
  assert _plan(estimator.BinaryClassHead(name='a'),
               estimator.MultiLabelHead(2, name='b')) == [(0,), (1,)]


@pytest.mark.parametrize('make', [
    lambda name: estimator.MultiClassHead(3 + (name == 'b'), name=name),
    lambda name: estimator.MultiLabelHead(2 + (name == 'b'), name=name),
    lambda name: estimator.RegressionHead(1 + (name == 'b'), name=name),
    lambda name: estimator.PoissonRegressionHead(
        name=name, compute_full_loss=name == 'b'),
    lambda name: estimator.BinaryClassHead(
        name=name, loss_reduction=SUM if name == 'b' else 'sum_over_batch_size'),
])
def test_heads_of_different_width_or_loss_do_not_fuse(make):
  assert _plan(make('a'), make('b')) == [(0,), (1,)]


def test_regression_kinds_fuse_each_with_its_own_kind():
  heads = [estimator.RegressionHead(name='r0'),
           estimator.PoissonRegressionHead(name='p1'),
           estimator.LogisticRegressionHead(name='l2'),
           estimator.PoissonRegressionHead(name='p3'),
           estimator.LogisticRegressionHead(name='l4')]
  assert fusion.plan(heads) == [(0,), (1, 3), (2, 4)]


def test_custom_loss_or_link_functions_keep_a_head_on_its_own():
  def loss_fn(labels, logits):
    return tf.math.abs(labels - logits)

  assert _plan(estimator.RegressionHead(name='a', loss_fn=loss_fn),
               estimator.RegressionHead(name='b', loss_fn=loss_fn),
               estimator.RegressionHead(name='c')) == [(0,), (1,), (2,)]
  assert _plan(estimator.RegressionHead(name='a', inverse_link_fn=tf.exp),
               estimator.RegressionHead(name='b', inverse_link_fn=tf.exp)
               ) == [(0,), (1,)]


def test_subclasses_and_other_heads_are_never_fused():
  class Overriding(estimator.BinaryClassHead):

    def loss(self, *args, **kwargs):  # pylint: disable=useless-super-delegation
      return super().loss(*args, **kwargs)

  inner = tmh.MultiHead([estimator.BinaryClassHead(name='x')])
  assert _plan(Overriding(name='a'), Overriding(name='b'), inner,
               estimator.BinaryClassHead(name='c')) == [(0,), (1,), (2,),
                                                        (3,)]


def test_fuse_heads_false_keeps_every_head_on_its_own_path():
  heads = [estimator.BinaryClassHead(name='a'),
           estimator.BinaryClassHead(name='b')]
  assert tmh.MultiHead(heads).fuse_heads
  fused = tmh.MultiHead(heads)._parts()  # pylint: disable=protected-access
  alone = tmh.MultiHead(heads, fuse_heads=False)._parts()  # pylint: disable=protected-access
  assert [part.names for part in fused] == [('a', 'b')]
  assert [part.names for part in alone] == [('a',), ('b',)]


@pytest.mark.parametrize('logits,labels,fusable', [
    (tf.zeros([2, 1]), tf.zeros([2, 1]), True),
    (tf.zeros([2, 1]), [[0], [1]], True),
    (tf.zeros([2, 1]), tf.sparse.from_dense([[0, 1]]), True),
    (tf.zeros([2]), None, False),
])
def test_inputs_of_known_rank_can_be_stacked(logits, labels, fusable):
  assert fusion.fusable_inputs(logits, labels) is fusable


def test_inputs_of_unknown_rank_cannot_be_stacked():
  with tf.Graph().as_default():
    unknown = tf.compat.v1.placeholder(tf.float32)
    assert not fusion.fusable_inputs(unknown)
    assert not fusion.fusable_inputs(tf.zeros([2, 1]), unknown)
    assert not fusion.fusable_inputs(
        tf.compat.v1.placeholder(tf.float32, [None, None]))


def test_a_group_stacks_only_logits_of_one_rank():
  assert fusion.fusable_group([tf.zeros([2, 1]), tf.zeros([2, 1])])
  assert not fusion.fusable_group([tf.zeros([2, 1]), tf.zeros([2, 3, 1])])


def test_heads_given_logits_of_different_ranks_are_computed_apart():
  heads = [tf.estimator.BinaryClassHead(name='a'),
           tf.estimator.BinaryClassHead(name='b')]
  logits = {'a': tf.zeros([2, 1]), 'b': tf.zeros([2, 3, 1])}
  parts = tmh.MultiHead(heads)._parts(logits)  # pylint: disable=protected-access
  assert [part.names for part in parts] == [('a',), ('b',)]
