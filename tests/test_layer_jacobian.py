"""The heads' Jacobian over a linear layer's input, kept as its factors.

Over a representation `h` that every head's logits are a linear layer of,
the aggregators that read the Jacobian only through its Gramian and their
combination of its rows take it factored (`LayerJacobian`): the Gramian
from `D^T D` and `W^T W`, never the `[K, batch * d]` matrix. Each is
checked here against that matrix, formed in float64 NumPy.
"""
import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import MultiHead
from tensorflow_multihead import aggregation
from tensorflow_multihead import head_jacobian
from tensorflow_multihead import jacobian
from tensorflow_multihead.aggregation import layer_jacobian

ROWS, UNITS = 5, 4
_RNG = np.random.RandomState(11)


def _factors(widths, scales=None):
  """`(D, W)` in float32; head `k`'s logits gradients times `scales[k]`."""
  gradients = _RNG.normal(size=(ROWS, sum(widths)))
  if scales is not None:
    gradients *= np.repeat(scales, widths)[np.newaxis, :]
  kernel = _RNG.normal(size=(UNITS, sum(widths)))
  return gradients.astype(np.float32), kernel.astype(np.float32)


def _numpy_matrix(gradients, kernel, widths):
  """Row `k`: `D_k W_k^T` flattened, in float64."""
  ends = np.cumsum(widths)
  return np.stack([
      (gradients[:, end - width:end].astype(np.float64) @
       kernel[:, end - width:end].astype(np.float64).T).ravel()
      for width, end in zip(widths, ends)])


WIDTHS = [(1, 1, 1), (1, 3, 2), (2, 2)]


@pytest.mark.parametrize('widths', WIDTHS, ids=str)
def test_dense_is_the_matrix_of_the_factors(widths):
  gradients, kernel = _factors(widths)
  factored = layer_jacobian.LayerJacobian(gradients, kernel, widths)
  assert factored.shape.as_list() == [len(widths), ROWS * UNITS]
  np.testing.assert_allclose(factored.dense().numpy(),
                             _numpy_matrix(gradients, kernel, widths),
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('widths', WIDTHS, ids=str)
def test_the_gramian_from_the_factors_is_the_matrixs(widths):
  gradients, kernel = _factors(widths, scales=np.logspace(0, 4, len(widths)))
  matrix = _numpy_matrix(gradients, kernel, widths)
  gramian = layer_jacobian.LayerJacobian(gradients, kernel,
                                         widths).gramian64().numpy()
  assert gramian.dtype == np.float64
  np.testing.assert_allclose(gramian, matrix @ matrix.T, rtol=1e-12,
                             atol=1e-12 * np.abs(matrix @ matrix.T).max())
  np.testing.assert_array_equal(gramian, gramian.T)


@pytest.mark.parametrize('widths', WIDTHS, ids=str)
def test_the_combination_is_the_matrixs(widths):
  gradients, kernel = _factors(widths)
  weights = _RNG.normal(size=len(widths))
  combined = layer_jacobian.LayerJacobian(gradients, kernel, widths).combine(
      tf.constant(weights, tf.float64))
  assert combined.dtype == tf.float32
  np.testing.assert_allclose(
      combined.numpy(), _numpy_matrix(gradients, kernel, widths).T @ weights,
      rtol=1e-6, atol=1e-6)


def _taking_aggregators():
  return {
      'UPGrad': aggregation.UPGrad(), 'DualProj': aggregation.DualProj(),
      'PCGrad': aggregation.PCGrad(shuffle=False),
      'GradVac': aggregation.GradVac(shuffle=False),
      'MGDA': aggregation.MGDA(), 'CAGrad': aggregation.CAGrad(),
      'IMTLG': aggregation.IMTLG(), 'AlignedMTL': aggregation.AlignedMTL(),
      'ConFIG': aggregation.ConFIG(), 'NashMTL': aggregation.NashMTL(),
  }


def test_the_gramian_based_aggregators_take_it_and_the_others_do_not():
  taking = {type(each).__name__ for each in _taking_aggregators().values()}
  for name in aggregation.__all__:
    expected = name in taking
    assert getattr(aggregation, name).takes_layer_jacobian == expected, name


def test_a_subclass_with_its_own_aggregate_is_given_matrices():
  class Halved(aggregation.UPGrad):

    def aggregate(self, jacobian):
      return 0.5 * super().aggregate(tf.convert_to_tensor(jacobian))

  class Renamed(aggregation.UPGrad):
    pass

  assert not Halved.takes_layer_jacobian
  assert Renamed.takes_layer_jacobian


@pytest.mark.parametrize('name', sorted(_taking_aggregators()))
@pytest.mark.parametrize('case', ['conflicting', 'badly_scaled', 'repeated'])
def test_an_aggregator_gives_the_same_direction_factored(name, case):
  widths = (1, 1, 1)
  scales = {'badly_scaled': [1., 1e2, 1e4]}.get(case)
  gradients, kernel = _factors(widths, scales)
  if case == 'repeated':  # Heads 0 and 2 have the same row.
    gradients[:, 2], kernel[:, 2] = gradients[:, 0], kernel[:, 0]
  factored = layer_jacobian.LayerJacobian(gradients, kernel, widths)
  from_factors = _taking_aggregators()[name].aggregate(factored).numpy()
  from_matrix = _taking_aggregators()[name].aggregate(
      factored.dense()).numpy()
  scale = np.abs(from_matrix).max()
  np.testing.assert_allclose(from_factors, from_matrix, rtol=1e-4,
                             atol=1e-5 * scale)


# Where the heads' Jacobian comes factored from.


def _linear_heads_graph(widths):
  """`(losses, logits pieces, h)`: heads reading one layer of `h`."""
  x = tf.constant(_RNG.normal(size=(ROWS, 3)), tf.float32)
  h = tf.compat.v1.layers.dense(x, UNITS, tf.tanh, name='trunk')
  logits = tf.compat.v1.layers.dense(h, sum(widths), name='logits')
  pieces = tf.split(logits, list(widths), axis=-1)
  losses = tf.stack([tf.reduce_mean(tf.square(piece - index))
                     for index, piece in enumerate(pieces)])
  return losses, pieces, h


def test_over_the_layers_input_the_heads_jacobian_comes_factored():
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    losses, pieces, h = _linear_heads_graph((1, 2, 1))
    factored, total = head_jacobian.jacobian_and_sum(losses, pieces, [h],
                                                     factored=True)
    assert isinstance(factored, layer_jacobian.LayerJacobian)
    dense = factored.dense()
    slow = jacobian.jacobian_by_rows(losses, [h])
    session.run(tf.compat.v1.global_variables_initializer())
    dense, total, slow = session.run((dense, total, slow))
  np.testing.assert_allclose(dense, slow, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(total, slow.sum(axis=0), rtol=1e-5, atol=1e-6)


def test_a_wide_head_keeps_the_matrix_where_the_factors_cost_more():
  # 200 classes beside one regression: C^2 (batch + d) = 40,401 * 9 against
  # K^2 batch d = 80 multiply-adds.
  with tf.Graph().as_default():
    losses, pieces, h = _linear_heads_graph((200, 1))
    matrix, _ = head_jacobian.jacobian_and_sum(losses, pieces, [h],
                                               factored=True)
  assert isinstance(matrix, tf.Tensor)
  assert matrix.shape.as_list() == [2, ROWS * UNITS]


def test_over_other_sources_the_heads_jacobian_is_a_matrix():
  with tf.Graph().as_default():
    losses, pieces, _ = _linear_heads_graph((1, 1))
    kernel = tf.compat.v1.trainable_variables()[0]
    matrix, _ = head_jacobian.jacobian_and_sum(losses, pieces, [kernel],
                                               factored=True)
  assert isinstance(matrix, tf.Tensor)


def _train_tensors(aggregator_class, count=6):
  """The TRAIN graph's float tensors with `count * ROWS * UNITS` entries."""
  with tf.Graph().as_default() as graph:
    trunk = tf.compat.v1.layers.dense(tf.ones([ROWS, 3]), UNITS, tf.tanh,
                                      name='trunk')
    logits = tf.compat.v1.layers.dense(trunk, count, name='out')
    head = MultiHead(
        [tf.estimator.RegressionHead(name=f'r{index}')
         for index in range(count)],
        gradient_aggregation=aggregator_class(shared_representation=trunk))
    head.create_estimator_spec(
        features={}, mode=tf.estimator.ModeKeys.TRAIN, logits=logits,
        labels={f'r{index}': tf.zeros([ROWS, 1]) for index in range(count)},
        optimizer=tf.keras.optimizers.legacy.SGD(0.1),
        trainable_variables=tf.compat.v1.trainable_variables())
    return [tensor.name for op in graph.get_operations()
            for tensor in op.outputs
            if tensor.dtype.is_floating and
            tensor.shape.num_elements() == count * ROWS * UNITS]


def test_over_a_representation_upgrad_never_forms_the_matrix():
  # Mean reads the matrix itself, so its graph has one; UPGrad's none.
  assert _train_tensors(aggregation.Mean)
  assert _train_tensors(aggregation.UPGrad) == []
