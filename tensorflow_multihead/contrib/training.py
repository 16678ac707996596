"""How a TF 1.x head turns its loss into a train op and loss summaries.

Every `_Head` in this package trains the same way `tf.contrib.estimator`'s
heads did: with a `tf.compat.v1.train.Optimizer` stepping the global step, or
with a `train_op_fn`, never both, plus any ops in the `UPDATE_OPS` collection
(batch-norm moving averages, for instance).
"""
import tensorflow as tf
from tensorflow_estimator.python.estimator.canned import head as canned_head
from tensorflow_estimator.python.estimator.canned import metric_keys

_TF1_OPTIMIZER = tf.compat.v1.train.Optimizer


def no_op_train_fn(loss):
  """A `train_op_fn` for heads whose loss another head trains."""
  del loss  # A merging head trains the merged loss instead.
  return tf.no_op()


def check_optimizer(optimizer):
  """Raises unless `optimizer` is a TF 1.x optimizer.

  >>> check_optimizer(tf.keras.optimizers.SGD())
  Traceback (most recent call last):
  ...
  ValueError: The given optimizer is not a tf.compat.v1.train.Optimizer \
instance. Received optimizer of type <class '...SGD'>. A Keras optimizer \
belongs with tensorflow_multihead.MultiHead; here, give a TF 1.x optimizer \
or a train_op_fn.
  """
  if not isinstance(optimizer, _TF1_OPTIMIZER):
    raise ValueError(
        'The given optimizer is not a tf.compat.v1.train.Optimizer instance. '
        f'Received optimizer of type {type(optimizer)}. A Keras optimizer '
        'belongs with tensorflow_multihead.MultiHead; here, give a TF 1.x '
        'optimizer or a train_op_fn.')


def check_trainer(optimizer, train_op_fn):
  """Raises unless exactly one of them is given, the optimizer a TF 1.x one.

  >>> check_trainer(None, None)
  Traceback (most recent call last):
  ...
  ValueError: train_op_fn and optimizer cannot both be None.
  """
  if optimizer is not None and train_op_fn is not None:
    raise ValueError('train_op_fn and optimizer cannot both be set.')
  if optimizer is None and train_op_fn is None:
    raise ValueError('train_op_fn and optimizer cannot both be None.')
  if optimizer is not None:
    check_optimizer(optimizer)


def train_op(loss, optimizer=None, train_op_fn=None):
  """Returns the op minimizing `loss`, with the graph's `UPDATE_OPS`.

  Args:
    loss: The scalar loss to minimize.
    optimizer: A `tf.compat.v1.train.Optimizer`; its `minimize` also steps
      the global step.
    train_op_fn: Instead of `optimizer`, a function from `loss` to an op.

  Raises:
    ValueError: Neither or both of `optimizer` and `train_op_fn`; an
      optimizer that is not a TF 1.x one.
  """
  check_trainer(optimizer, train_op_fn)
  if optimizer is not None:
    op = optimizer.minimize(
        loss, global_step=tf.compat.v1.train.get_global_step())
  else:
    op = train_op_fn(loss)
  return canned_head._append_update_ops(op)  # pylint: disable=protected-access


def summarize_loss(loss, regularization_loss=None, head_name=None):
  """Writes the `loss` (and `regularization_loss`) scalar summaries.

  Tags are suffixed with `/<head_name>` when a name is given, and sit at the
  graph's top level whatever the current name scope, as TF 1.x heads did.
  """
  keys = metric_keys.MetricKeys
  with tf.compat.v1.name_scope(''):
    tf.compat.v1.summary.scalar(_tag(keys.LOSS, head_name), loss)
    if regularization_loss is not None:
      tf.compat.v1.summary.scalar(
          _tag(keys.LOSS_REGULARIZATION, head_name), regularization_loss)


def _tag(key, head_name):
  return f'{key}/{head_name}' if head_name else key
