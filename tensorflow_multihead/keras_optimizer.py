"""Which Keras optimizers train a head's loss under Estimator, and how.

A head trains with `optimizer.get_updates(loss, variables)`, in the graph
that Estimator builds. Two things go wrong there with an optimizer as Keras
hands it out, and this module puts both right before the graph is built:

* Estimator counts steps with the graph's global step, while a Keras
  optimizer counts its own `iterations`. Unless the two are one variable,
  the global step never moves, and `Estimator.train(steps=...)` never ends.
  `count_steps_with_global_step` makes them one, as TensorFlow's canned
  estimators do with `optimizer.iterations = ...get_or_create_global_step()`.
* The optimizers of `tf.keras.optimizers` (not `.legacy`) of TF 2.11 and
  later have no `get_updates`, and their `apply_gradients`, run in a graph
  outside `tf.function`, only counts a step: the variables stay as they were.
  `check` refuses them, naming the `tf.keras.optimizers.legacy` class to use.

>>> check(tf.keras.optimizers.legacy.Adagrad(0.1))
>>> check(tf.keras.optimizers.Adagrad(0.1))
Traceback (most recent call last):
...
ValueError: The given optimizer (Adagrad) has no get_updates: ...\
 Use tf.keras.optimizers.legacy.Adagrad instead.
"""
import tensorflow as tf

_KERAS_OPTIMIZERS = (tf.keras.optimizers.Optimizer,
                     tf.keras.optimizers.legacy.Optimizer)
_ONE_LINE = 'optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()'


def check(optimizer):
  """Raises unless `optimizer` is a Keras optimizer with `get_updates`.

  Any object of a Keras optimizer class that defines `get_updates` passes,
  whichever Keras base class it derives from.

  Raises:
    ValueError: `optimizer` is not a Keras optimizer (the message says what
      to do with a TF 1.x one), or has no `get_updates`.
  """
  if not isinstance(optimizer, _KERAS_OPTIMIZERS):
    raise ValueError(
        'The given optimizer is not a tf.keras.optimizers.Optimizer instance. '
        f'Received optimizer of type {type(optimizer)}'
        f'{_hint_for_tf1_optimizer(optimizer)}')
  if not callable(getattr(optimizer, 'get_updates', None)):
    name = type(optimizer).__name__
    legacy = (f'tf.keras.optimizers.legacy.{name}'
              if hasattr(tf.keras.optimizers.legacy, name) else
              'a tf.keras.optimizers.legacy optimizer (SGD, Adam, Adagrad, '
              'RMSprop, Ftrl, ...)')
    raise ValueError(
        f'The given optimizer ({name}) has no get_updates: it is one of the '
        'tf.keras.optimizers of TF 2.11 and later, whose apply_gradients '
        "leaves the variables unchanged in Estimator's graph mode. Use "
        f'{legacy} instead.')


def _hint_for_tf1_optimizer(optimizer):
  if not isinstance(optimizer, tf.compat.v1.train.Optimizer):
    return ''
  return (
      '. It is a TF 1.x optimizer (tf.compat.v1.train.Optimizer): give a '
      'tf.keras.optimizers.legacy optimizer instead (e.g. '
      'tf.keras.optimizers.legacy.Adagrad), or keep this one and pass '
      'train_op_fn=lambda loss: optimizer.minimize(loss, '
      'global_step=tf.compat.v1.train.get_global_step()).')


def count_steps_with_global_step(optimizer):
  """Makes `optimizer.iterations` the graph's global step, if it has one.

  Then every step the optimizer takes moves the global step, which
  Estimator's hooks stop training by. A graph without a global step (one
  built outside Estimator) is left as it is.

  Raises:
    ValueError: The optimizer already counts its steps in another variable,
      having trained in another graph or been given one; training would then
      never end.
  """
  global_step = tf.compat.v1.train.get_global_step()
  if global_step is None:
    return
  # Read without the `iterations` property, which would create the variable.
  if getattr(optimizer, '_iterations', None) is global_step:
    return
  try:
    optimizer.iterations = global_step
  except RuntimeError as error:  # Keras: its variables exist already.
    raise ValueError(
        "The optimizer counts its steps in a variable of its own, not in the "
        "graph's global step, so Estimator would train forever. Create the "
        'optimizer inside model_fn, where the head can make its iterations '
        f'the global step, or do it yourself before its first use: {_ONE_LINE}'
    ) from error
