"""`Aggregator`: the heads' loss gradients, one row a head, into one update.

An aggregator sees the Jacobian of the heads' losses with respect to the
parameters they share: a `[K, n]` matrix whose row `i` is the gradient of
head `i`'s (weighted) loss. `aggregate` turns it into the `[n]` direction the
shared parameters move along. Where the Jacobian is taken is configuration
of the aggregator too: `shared_variables` (variables, or their names, as
`weighting.GradNorm` takes them) or `shared_representation` (a tensor that
every head reads: gradients with respect to it are aggregated, then sent
back through the layers below once).

>>> import tensorflow as tf
>>> Mean().aggregate(tf.constant([[1., 2.], [3., -2.]])).numpy()
array([2., 0.], dtype=float32)
"""
import abc

import tensorflow as tf

from tensorflow_multihead.aggregation import small_linalg


def _as_tuple(shared_variables):
  if shared_variables is None:
    return ()
  if isinstance(shared_variables, (str, tf.Variable)):
    return (shared_variables,)
  return tuple(shared_variables)


class Aggregator(abc.ABC):
  """Turns a `[K, n]` Jacobian into an `[n]` update direction.

  Subclasses implement `aggregate`, in graph and eager mode alike, with
  TensorFlow ops only (so that they run under `TPUEstimator` and
  distribution strategies). Small `K x K` problems are solved in float64;
  the direction has the Jacobian's dtype.

  Args:
    shared_variables: The variables (or their names, resolved in the graph
      being built) whose gradients are aggregated. Every other variable
      receives its plain gradient.
    shared_representation: Instead, a tensor of the model's graph that every
      head's logits depend on (or its name): the gradients with respect to
      its entries are aggregated, then back-propagated through the layers
      below it once.
  """

  # Whether `aggregate` reads the Jacobian only through `small_linalg`'s
  # `gramian`, `combine` and shape checks, and so takes a factored
  # `layer_jacobian.LayerJacobian` as it takes a matrix. A subclass that
  # writes its own `aggregate` says so again, or is given matrices.
  takes_layer_jacobian = False

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    if ('aggregate' in vars(cls) and
        'takes_layer_jacobian' not in vars(cls)):
      cls.takes_layer_jacobian = False

  def __init__(self, shared_variables=None, shared_representation=None):
    self.shared_variables = _as_tuple(shared_variables)
    self.shared_representation = shared_representation

  @abc.abstractmethod
  def aggregate(self, jacobian):
    """Returns the `[n]` update direction of a `[K, n]` Jacobian."""

  def __repr__(self):
    return f'{type(self).__name__}()'


class Mean(Aggregator):
  """The mean of the rows: `d = (1 / K) * sum_i g_i`.

  With it, the shared parameters move as with a plain sum of the losses,
  scaled by `1 / K`: the baseline every other aggregator is compared with.
  """

  def aggregate(self, jacobian):
    jacobian = tf.convert_to_tensor(jacobian)
    return tf.reduce_mean(jacobian, axis=0)


class GramianWeighted(Aggregator):
  """An aggregator `d = J^T w` whose weights `w` depend on `J` through `G`.

  A subclass implements `weights(G)`; `aggregate(J)` checks `J`, computes
  its float64 Gramian `G = J J^T`, the weights from it, and their
  combination of the rows, in the Jacobian's dtype (see `small_linalg`).
  A Jacobian with a NaN or an infinity gives NaN everywhere.
  """

  takes_layer_jacobian = True

  @abc.abstractmethod
  def weights(self, gramian64):
    """The `[K]` float64 weights of the rows, from the `[K, K]` Gramian."""

  def aggregate(self, jacobian):
    name = type(self).__name__
    jacobian = small_linalg.checked_jacobian(jacobian, name)
    with tf.name_scope(name.lower()):
      gramian64 = small_linalg.gramian(jacobian)
      finite = small_linalg.all_finite(gramian64)
      # A scalar 0, broadcast: the same ops whatever K.
      safe = tf.where(finite, gramian64, tf.constant(0., tf.float64))
      return small_linalg.combine(
          small_linalg.nan_unless(finite, self.weights(safe)), jacobian)
