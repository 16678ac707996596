"""An aggregator's state: variables made once per graph, and once eagerly.

An aggregator object outlives graphs: `Estimator` builds a new graph for
every `train` call, and the state (`GradVac`'s cosine targets, a step
counter) must be that graph's variables, restored from the checkpoint with
the rest of the model. Eagerly (and inside `tf.function`) the object owns
one set of variables, which successive calls continue.

>>> import tensorflow as tf
>>> counters = PerGraph(lambda: state_variable('count', 0))
>>> counters.get() is counters.get()
True
>>> with tf.Graph().as_default():
...   graph_counter = counters.get()
>>> graph_counter is counters.get()
False
"""
import weakref

import tensorflow as tf


def state_variable(name, initial_value):
  """A checkpointed (global), non-trainable variable for aggregator state.

  Under `MirroredStrategy` it is mirrored, and written in replica context:
  every replica computes the same new state (from the all-reduced
  Jacobian), and the first replica's is kept. TF1's class, as a v2
  `tf.Variable` would put each replica's copy in the saved collection.
  """
  return tf.compat.v1.Variable(
      initial_value, name=name, trainable=False, use_resource=True,
      synchronization=tf.VariableSynchronization.ON_WRITE,
      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class PerGraph:
  """What `make(*args)` returns, made once per graph and once eagerly.

  The `args` of the first `get` in a graph (or eagerly) make it; later
  calls there return it, whatever their `args`.

  In a TF1 graph `make` runs in the first call's graph, outside any control
  dependency or control-flow context; under a distribution strategy the
  first replica makes it and the others find it here. Eagerly, or while a
  `tf.function` is traced, it runs in the eager context (`tf.init_scope`),
  so that the function captures variables that live on.
  """

  def __init__(self, make):
    self._make = make
    self._graphs = weakref.WeakKeyDictionary()
    self._eager = None

  def get(self, *args):
    if tf.compat.v1.executing_eagerly_outside_functions():
      if self._eager is None:
        with tf.init_scope():
          self._eager = self._make(*args)
      return self._eager
    graph = tf.compat.v1.get_default_graph()
    if graph not in self._graphs:
      with tf.control_dependencies(None):
        self._graphs[graph] = self._make(*args)
    return self._graphs[graph]

  def forget_eager(self):
    """Drops the eager state: the next eager call makes it afresh."""
    self._eager = None
