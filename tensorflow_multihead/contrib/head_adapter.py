"""Presents a v2 `tf.estimator.Head` as a TF 1.x `_Head`.

`contrib.multi_head` speaks the TF 1.x head interface to every head it
merges. A v2 head (`tf.estimator.BinaryClassHead`, this package's heads, ...)
joins in through `TF1HeadAdapter`, which keeps everything the v2 head builds
(predictions, Keras metrics, export outputs, its `loss/<name>` summary) and
only swaps how the loss is trained: TF 1.x style, by a
`tf.compat.v1.train.Optimizer` or a `train_op_fn`.
"""
from tensorflow_estimator.python.estimator import model_fn
from tensorflow_estimator.python.estimator.canned import head as canned_head
from tensorflow_estimator.python.estimator.head import base_head as v2_base_head
from tensorflow_estimator.python.estimator.mode_keys import ModeKeys

from tensorflow_multihead import autograph_off
from tensorflow_multihead.contrib import training

_TF1_HEAD = canned_head._Head  # pylint: disable=protected-access


def as_tf1_head(head):
  """Returns `head` if it is a TF 1.x `_Head`, else it wrapped as one."""
  return head if isinstance(head, _TF1_HEAD) else TF1HeadAdapter(head)


@autograph_off.unconverted(*autograph_off.HEAD_METHODS)
class TF1HeadAdapter(_TF1_HEAD):
  """A `_Head` doing what the v2 `head` it wraps does.

  Args:
    head: A `tf.estimator.Head`.
  """

  def __init__(self, head):
    self._head = head

  @property
  def head(self):
    """The wrapped v2 head."""
    return self._head

  @property
  def name(self):
    return self._head.name

  @property
  def logits_dimension(self):
    return self._head.logits_dimension

  def create_loss(self, features, mode, logits, labels):
    """Returns the v2 head's loss as a `LossSpec`.

    The training loss is the head's `loss`. The unreduced loss, example
    weights and processed labels come from the private steps that the
    `tf.estimator` heads compute their loss with; for a head without them
    (a `MultiHead`, say) they are `None`.
    """
    training_loss = self._head.loss(labels=labels, logits=logits,
                                    features=features, mode=mode)
    unreduced_loss, weights, processed_labels = self._loss_parts(
        features, logits, labels)
    return canned_head.LossSpec(
        training_loss=training_loss, unreduced_loss=unreduced_loss,
        weights=weights, processed_labels=processed_labels)

  def _loss_parts(self, features, logits, labels):
    process = getattr(self._head, '_processed_labels', None)
    unweighted = getattr(self._head, '_unweighted_loss_and_weights', None)
    if process is None or unweighted is None:
      return None, None, None
    logits = v2_base_head.check_logits_final_dim(
        logits, self._head.logits_dimension)
    processed_labels = process(logits, labels)
    unreduced_loss, weights = unweighted(logits, processed_labels, features)
    return unreduced_loss, weights, processed_labels

  def create_estimator_spec(self, features, mode, logits, labels=None,
                            optimizer=None, train_op_fn=None,
                            regularization_losses=None):
    """Returns the v2 head's spec, trained the TF 1.x way in TRAIN.

    Args:
      features: Input `dict` of `Tensor` or `SparseTensor` objects.
      mode: Estimator's `ModeKeys`.
      logits: The logits `Tensor`.
      labels: The labels; required in TRAIN and EVAL.
      optimizer: A `tf.compat.v1.train.Optimizer` minimizing the loss and
        stepping the global step in TRAIN.
      train_op_fn: Instead of `optimizer`, a function from the loss to the
        train op.
      regularization_losses: Scalar losses added to the head's loss.
    """
    if mode == ModeKeys.TRAIN:
      training.check_trainer(optimizer, train_op_fn)
    spec = self._head.create_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels,
        train_op_fn=training.no_op_train_fn,
        regularization_losses=regularization_losses)
    if mode != ModeKeys.TRAIN:
      return spec
    fields = spec._asdict()
    fields['train_op'] = training.train_op(spec.loss, optimizer, train_op_fn)
    return model_fn.EstimatorSpec(**fields)

