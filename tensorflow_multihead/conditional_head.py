"""`ConditionalHead`: a funnel step, trained on every row through the chain.

A conversion happens only after a click. `ConditionalHead(conversion,
given='click')` gives the conversion head logits of P(conversion | click),
and the `MultiHead` holding both heads trains them through the product
P(click) * P(conversion | click) against the conversion label of every
impression, as ESMM does (Ma et al., "Entire Space Multi-Task Model",
SIGIR 2018; ESM2, Wen et al., SIGIR 2020). It then reports and serves both:

* `conversion`: the wrapped head on the joint logits, the logit of
  P(click and conversion) (see `joint_logits`), over every row: its loss is
  the head's term in the merged loss, its metrics `<metric>/conversion`,
  its predictions `('conversion', key)`;
* `conversion_given_click`: the wrapped head on the conditional logits,
  as a `MaskedHead` over the rows whose click label is 1: metrics
  `<metric>/conversion_given_click` and `loss/conversion_given_click` in
  EVAL, predictions `('conversion_given_click', key)` and its own export
  signatures. It is no term of the merged loss, and TRAIN does not compute
  it.

`given` may itself be a `ConditionalHead` (purchase given conversion given
click). Labels cover every row: 0 where the given event did not happen; a
1 there fails when the graph runs. `tensorflow_multihead.funnel` does the
work inside `MultiHead`; docs/funnel.md has every rule.

Outside a `MultiHead` a `ConditionalHead` has no given head to multiply
with: its `Head` methods raise a `ValueError` saying so.

>>> import numpy as np
>>> import tensorflow as tf
>>> from tensorflow_multihead import ConditionalHead, MultiHead
>>> head = MultiHead([
...     tf.estimator.BinaryClassHead(name='click'),
...     ConditionalHead(tf.estimator.BinaryClassHead(name='conversion'),
...                     given='click')])
>>> logits = {'click': np.array([[0.], [0.]], np.float32),
...           'conversion': np.array([[0.], [2.]], np.float32)}
>>> predictions = head.predictions(logits)
>>> # P(click and conversion) = 0.5 * sigmoid(conversion logits).
>>> def show(key):
...   return [f'{value:.4f}' for value in predictions[key].numpy().ravel()]
>>> show(('conversion', 'logistic'))
['0.2500', '0.4404']
>>> show(('conversion_given_click', 'logistic'))
['0.5000', '0.8808']
"""
import tensorflow as tf

from tensorflow_multihead import base_head
from tensorflow_multihead import masked_head


def binary_core(head):
  """The `BinaryClassHead` under `head`'s `MaskedHead`s, or None.

  A head has binary semantics when it is a `tf.estimator.BinaryClassHead`
  (or a subclass) or a `MaskedHead` of one; the `MaskedHead`s are returned
  too, outermost first, so that their marks can be read.

  >>> import tensorflow as tf
  >>> inner = tf.estimator.BinaryClassHead(name='click')
  >>> masked = masked_head.MaskedHead(inner, missing_label=-1)
  >>> binary_core(masked) == (inner, (masked,))
  True
  >>> binary_core(tf.estimator.RegressionHead(name='value')) is None
  True
  """
  masks = []
  while isinstance(head, masked_head.MaskedHead):
    masks.append(head)
    head = head.head
  if isinstance(head, tf.estimator.BinaryClassHead):
    return head, tuple(masks)
  return None


def conditional_name(name, given):
  """The name of the conditional view: `<name>_given_<given>`."""
  return f'{name}_given_{given}'


def _check_head(head):
  if isinstance(head, ConditionalHead):
    raise TypeError(
        f'ConditionalHead wraps a binary head, not another ConditionalHead '
        f'({head.name!r}). To chain, condition on its name: '
        f"ConditionalHead(purchase, given={head.name!r}).")
  if binary_core(head) is None:
    raise TypeError(
        'ConditionalHead wraps a tf.estimator.BinaryClassHead or a '
        'MaskedHead of one: its logits are those of an event given another, '
        f'multiplied as probabilities. Given: {head!r}')
  if not head.name:
    raise ValueError(
        f'ConditionalHead needs a named head, to key its metrics and '
        f'predictions. Given: {head!r}')


class ConditionalHead(base_head.Head):
  """A binary head whose logits are those of its event given another's.

  In a `MultiHead`, it is trained on the joint probability along its chain
  of `given` heads, over every row, and reported both jointly (under its
  name) and conditionally (under `<name>_given_<given>`, on the rows whose
  `given` label is 1); see the module docstring and docs/funnel.md.

  Args:
    head: A `tf.estimator.BinaryClassHead` (its weight column, thresholds,
      label vocabulary and loss reduction apply), or a `MaskedHead` of one.
    given: The name of another binary head of the same `MultiHead`: a
      `BinaryClassHead`, a `MaskedHead` of one, or a `ConditionalHead`.

  Raises:
    TypeError: `head` is neither a `BinaryClassHead` nor a `MaskedHead` of
      one (or is a `ConditionalHead`); `given` is not a string.
    ValueError: `head` has no name; `given` is empty or `head`'s own name.
  """

  def __init__(self, head, given):
    _check_head(head)
    if not isinstance(given, str):
      raise TypeError(
          f'ConditionalHead {head.name!r}: given must be the name of a head '
          f'(a string). Given: {given!r}')
    if not given or given == head.name:
      raise ValueError(
          f'ConditionalHead {head.name!r}: given must name another head of '
          f'the MultiHead. Given: {given!r}')
    self._head = head
    self._given = given

  @property
  def head(self):
    """The wrapped binary head, which computes the joint view."""
    return self._head

  @property
  def given(self):
    """The name of the head whose event this one's is conditioned on."""
    return self._given

  @property
  def conditional_name(self):
    """The name of the conditional view: `<name>_given_<given>`."""
    return conditional_name(self.name, self._given)

  @property
  def name(self):
    return self._head.name

  @property
  def logits_dimension(self):
    return 1

  @property
  def loss_reduction(self):
    return self._head.loss_reduction

  def __repr__(self):
    return f'ConditionalHead({self._head!r}, given={self._given!r})'

  # Alone, there is no given head's logits to multiply with.

  def _alone(self):
    return ValueError(
        f'ConditionalHead {self.name!r} is computed by the MultiHead that '
        f'holds it and its given head {self._given!r}: its logits are '
        'conditional, and only with the given head\'s logits do they make '
        f'a probability over every row. Put both in one '
        'tensorflow_multihead.MultiHead.')

  def loss(self, labels, logits, features=None, mode=None,
           regularization_losses=None):
    raise self._alone()

  def predictions(self, logits, keys=None):
    raise self._alone()

  def metrics(self, regularization_losses=None):
    raise self._alone()

  def update_metrics(self, eval_metrics, features, logits, labels,
                     regularization_losses=None, mode=None):
    raise self._alone()

  # `create_estimator_spec` builds through this, and raises alike.
  def _create_tpu_estimator_spec(self, features, mode, logits, labels=None,
                                 optimizer=None, trainable_variables=None,
                                 train_op_fn=None, update_ops=None,
                                 regularization_losses=None):
    raise self._alone()
