"""The vectorized Jacobian, and what it adds to a TRAIN graph (issue 14, 3).

`jacobian.jacobian` must equal `K` separate gradients (`jacobian_by_rows`)
for every head type, fused or not, a `MaskedHead` too, without falling back
to a loop. In a TRAIN graph, aggregation adds the same ops whatever the
number of fused heads (one vectorized backward pass, not one a head), the
forward pass is not repeated, and in representation mode the trunk below
the representation is differentiated once: by the trained loss.
"""
import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import MaskedHead
from tensorflow_multihead import MultiHead
from tensorflow_multihead import aggregation
from tensorflow_multihead import graph_walk
from tensorflow_multihead import head_jacobian
from tensorflow_multihead import jacobian

TRAIN = tf.estimator.ModeKeys.TRAIN
ROWS = 8
_RNG = np.random.RandomState(3)


def _mixed_heads():
  return [
      tf.estimator.BinaryClassHead(name='click'),
      tf.estimator.BinaryClassHead(name='buy', weight_column='w'),
      tf.estimator.MultiClassHead(3, label_vocabulary=['r', 'g', 'b'],
                                  name='color'),
      tf.estimator.MultiLabelHead(2, name='tags'),
      tf.estimator.RegressionHead(name='price'),
      tf.estimator.RegressionHead(name='size'),
      tf.estimator.PoissonRegressionHead(name='count'),
      tf.estimator.LogisticRegressionHead(name='share'),
      MaskedHead(tf.estimator.BinaryClassHead(name='convert'),
                 missing_label=-1),
      MaskedHead(tf.estimator.BinaryClassHead(name='return'),
                 missing_label=-1),
  ]


def _mixed_labels():
  binary = lambda: _RNG.randint(0, 2, size=(ROWS, 1))  # pylint: disable=unnecessary-lambda-assignment
  masked = lambda: _RNG.randint(-1, 2, size=(ROWS, 1))  # pylint: disable=unnecessary-lambda-assignment
  return {
      'click': binary(), 'buy': binary(),
      'color': _RNG.choice(['r', 'g', 'b'], size=(ROWS, 1)),
      'tags': _RNG.randint(0, 2, size=(ROWS, 2)),
      'price': _RNG.normal(size=(ROWS, 1)).astype(np.float32),
      'size': _RNG.normal(size=(ROWS, 1)).astype(np.float32),
      'count': _RNG.poisson(2., size=(ROWS, 1)).astype(np.float32),
      'share': _RNG.uniform(size=(ROWS, 1)).astype(np.float32),
      'convert': masked(), 'return': masked(),
  }


FEATURES = {'w': _RNG.uniform(0.5, 1.5, size=(ROWS, 1)).astype(np.float32)}
X = _RNG.normal(size=(ROWS, 3)).astype(np.float32)
LABELS = _mixed_labels()


def _loss_vector(head, logits):
  """The heads' losses in order, as `MultiHead` computes them."""
  group_logits = head._group.logits_by_head(logits)  # pylint: disable=protected-access
  losses = {}
  for part in head._parts(group_logits, LABELS):  # pylint: disable=protected-access
    losses.update(part.losses(FEATURES, group_logits, LABELS, TRAIN))
  return tf.stack([losses[name] for name in head._group.names])  # pylint: disable=protected-access


def test_the_vectorized_jacobian_equals_one_gradient_a_head():
  # Two fused groups (the four binaries, masked or not; the regressions)
  # and a head of each other type.
  with tf.Graph().as_default() as graph, tf.compat.v1.Session() as session:
    head = MultiHead(_mixed_heads())
    assert head._funnel.layout().plan == [(0, 1, 8, 9), (2,), (3,), (4, 5), (6,), (7,)]  # pylint: disable=protected-access
    trunk = tf.compat.v1.layers.dense(tf.constant(X), 5, tf.nn.relu,
                                      name='trunk')
    logits = tf.compat.v1.layers.dense(trunk, head.logits_dimension,
                                       name='logits')
    losses = _loss_vector(head, logits)
    sources = [tf.compat.v1.trainable_variables()[0], trunk]
    vectorized = jacobian.jacobian(losses, sources)
    by_rows = jacobian.jacobian_by_rows(losses, sources)
    loop_ops = [op.type for op in graph.get_operations()
                if op.type in ('While', 'StatelessWhile', 'Enter')]
    session.run((tf.compat.v1.global_variables_initializer(),
                 tf.compat.v1.tables_initializer()))
    fast, slow = session.run((vectorized, by_rows))
  assert not loop_ops  # pfor vectorized every op: no fallback loop.
  assert fast.shape == (10, 3 * 5 + ROWS * 5)
  assert np.abs(slow).sum(axis=1).min() > 0  # Every head has a gradient.
  np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-7)


def _variable(name, shape):
  return tf.compat.v1.get_variable(
      name, initializer=tf.constant(_RNG.normal(size=shape), tf.float32))


def _dense_and_other_uses():
  """Losses reading variables as dense weights and in other ways.

  Returns `(losses, variables)`: `twice` feeds two `MatMul`s, `transposed`
  one with `transpose_b`, `bias` a rank-3 `BiasAdd`; `scale` is read
  elementwise and `left` as a `MatMul`'s first operand, so the Jacobian
  differentiates those two directly.
  """
  x = tf.constant(_RNG.normal(size=(ROWS, 3)), tf.float32)
  twice, transposed = _variable('twice', [3, 3]), _variable('transposed',
                                                             [2, 3])
  bias, scale = _variable('bias', [2]), _variable('scale', [3])
  left = _variable('left', [4, ROWS])
  hidden = tf.tanh(tf.matmul(tf.matmul(x, twice), twice))
  wide = tf.matmul(hidden * scale, transposed, transpose_b=True)
  sequence = tf.nn.bias_add(tf.reshape(tf.tile(wide, [1, 2]), [ROWS, 2, 2]),
                            bias)
  mixed = tf.matmul(left, hidden)
  losses = tf.stack([tf.reduce_mean(tf.square(sequence)),
                     tf.reduce_mean(tf.sin(sequence[:, 0])),
                     tf.reduce_sum(mixed**2) / 10.])
  return losses, [twice, transposed, bias, scale, left]


def test_dense_weights_and_other_variables_give_one_gradient_a_head():
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    losses, variables = _dense_and_other_uses()
    on_path = graph_walk.ancestors([losses.op])
    through_layers = [variable.op.name for variable in variables
                      if jacobian._dense_uses(variable, on_path)]  # pylint: disable=protected-access
    vectorized = jacobian.jacobian(losses, variables)
    by_rows = jacobian.jacobian_by_rows(losses, variables)
    session.run(tf.compat.v1.global_variables_initializer())
    fast, slow = session.run((vectorized, by_rows))
  assert through_layers == ['twice', 'transposed', 'bias']
  assert fast.shape == (3, 9 + 6 + 2 + 3 + 4 * ROWS)
  np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)


def test_an_unused_source_gives_zero_columns():
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    weights = tf.constant([1., 2.])
    unused = tf.constant([5.])
    losses = tf.stack([tf.reduce_sum(weights**2), 3. * weights[1]])
    rows = session.run(jacobian.jacobian(losses, [weights, unused]))
  np.testing.assert_array_equal(rows, [[2., 4., 0.], [0., 3., 0.]])


def test_a_vector_of_unknown_length_raises_value_error():
  with tf.Graph().as_default():
    losses = tf.compat.v1.placeholder(tf.float32, [None])
    with pytest.raises(ValueError, match='vector of losses of known length'):
      jacobian.jacobian(losses, [losses])


# What aggregation adds to a TRAIN graph.


def _train_graph_ops(count, mode=None, fuse_heads=True):
  """The ops of a TRAIN spec (SGD included) of `count` regression heads."""
  with tf.Graph().as_default() as graph:
    trunk = tf.compat.v1.layers.dense(tf.ones([ROWS, 3]), 4, tf.tanh,
                                      name='trunk')
    logits = tf.compat.v1.layers.dense(trunk, count, name='out')
    config = {'variables': {'shared_variables': ['trunk/kernel']},
              'representation': {'shared_representation': trunk}}.get(mode)
    head = MultiHead(
        [tf.estimator.RegressionHead(name=f'r{index}')
         for index in range(count)], fuse_heads=fuse_heads,
        gradient_aggregation=config and aggregation.Mean(**config))
    start = len(graph.get_operations())
    head.create_estimator_spec(
        features={}, mode=TRAIN, logits=logits,
        labels={f'r{index}': tf.zeros([ROWS, 1]) for index in range(count)},
        optimizer=tf.keras.optimizers.legacy.SGD(0.1),
        trainable_variables=tf.compat.v1.trainable_variables())
    return graph.get_operations()[start:], graph.get_operations()


@pytest.mark.parametrize('mode', ['variables', 'representation'])
def test_aggregating_a_fused_group_adds_the_same_ops_at_any_size(mode):
  added = {count: len(_train_graph_ops(count, mode)[0]) -
                  len(_train_graph_ops(count)[0]) for count in (4, 8, 16)}
  assert added[4] > 0
  assert added[4] == added[8] == added[16], added


@pytest.mark.parametrize('mode', ['variables', 'representation'])
def test_the_forward_pass_is_built_once(mode):
  _, every_op = _train_graph_ops(8, mode)
  assert [op.type for op in every_op].count('Tanh') == 1
  assert not [op for op in every_op
              if op.type in ('While', 'StatelessWhile', 'Enter')]


def test_in_representation_mode_the_trunk_is_differentiated_once():
  _, every_op = _train_graph_ops(8, 'representation')
  # The trunk's activation, differentiated by the trained loss alone.
  assert [op.type for op in every_op].count('TanhGrad') == 1
  _, in_variables_mode = _train_graph_ops(8, 'variables')
  vectorized = [op.name for op in in_variables_mode
                if op.type == 'TanhGrad' and '/pfor/' in op.name]
  assert len(vectorized) == 1  # The heads' rows through the trunk, at once.


# The heads' Jacobian through a linear logits layer.


def _two_layer_model(logits_kind, widths=(1, 1, 2)):
  """`(losses, logits pieces, variables by name, h, first hidden layer)`.

  `logits_kind`: 'split' (one dense layer split among the heads) or 'each'
  (one dense layer a head). Head `k`'s loss reads its piece only.
  """
  x = tf.constant(_RNG.normal(size=(ROWS, 3)), tf.float32)
  first = tf.compat.v1.layers.dense(x, 5, tf.tanh, name='first')
  h = tf.compat.v1.layers.dense(first, 4, tf.nn.relu, name='second')
  if logits_kind == 'split':
    logits = tf.compat.v1.layers.dense(h, sum(widths), name='logits')
    pieces = tf.split(logits, list(widths), axis=-1)
  else:
    pieces = [tf.compat.v1.layers.dense(h, width, name=f'logits_{index}')
              for index, width in enumerate(widths)]
  targets = [tf.constant(_RNG.normal(size=(ROWS, width)), tf.float32)
             for width in widths]
  losses = tf.stack([tf.reduce_mean(tf.square(piece - target)) * (index + 1.)
                     for index, (piece, target) in enumerate(zip(pieces,
                                                                 targets))])
  variables = {variable.op.name: variable
               for variable in tf.compat.v1.trainable_variables()}
  return losses, pieces, variables, h, first


@pytest.mark.parametrize('logits_kind, widths', [
    ('split', (1, 1, 1)), ('split', (1, 3, 2)), ('each', (2, 2, 2)),
    ('each', (1, 2, 1))])
@pytest.mark.parametrize('over', ['h', 'first', 'variables', 'logits layer'])
def test_the_heads_jacobian_equals_one_gradient_a_head(logits_kind, widths,
                                                       over):
  with tf.Graph().as_default() as graph, tf.compat.v1.Session() as session:
    losses, pieces, variables, h, first = _two_layer_model(logits_kind,
                                                           widths)
    sources = {
        'h': [h], 'first': [first],
        'variables': [variables['first/kernel'], variables['second/bias']],
        'logits layer': [variables['second/kernel'], variables[
            'logits/kernel' if logits_kind == 'split' else
            'logits_1/kernel']],
    }[over]
    before = len(graph.get_operations())
    fast, total = head_jacobian.jacobian_and_sum(losses, pieces, sources)
    vectorized = [op for op in graph.get_operations()[before:]
                  if '/pfor/' in op.name]
    slow = jacobian.jacobian_by_rows(losses, sources)
    session.run(tf.compat.v1.global_variables_initializer())
    fast, total, slow = session.run((fast, total, slow))
  np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(total, slow.sum(axis=0), rtol=1e-5, atol=1e-6)
  # Over h itself no vectorized pass at all; one from h down, or, with a
  # source past h (the logits layer's own kernel), the whole way.
  assert bool(vectorized) == (over != 'h')
