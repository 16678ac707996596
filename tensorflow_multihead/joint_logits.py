"""The logit of "A and then B" from the logits of A and of B given A.

A funnel head predicts its event given the event before it: `a` is the
logit of P(click), `b` that of P(conversion | click). The probability that
an impression converts is their product, p = sigmoid(a) * sigmoid(b), and
`joint_logit(a, b)` is its logit, z = log p - log(1 - p), where

    log p      = log_sigmoid(a) + log_sigmoid(b)
    log(1 - p) = log(sigmoid(-a) + sigmoid(a) * sigmoid(-b)).

Their difference simplifies. Dividing both sums by sigmoid(a) * sigmoid(b),
with sigmoid(-x) / sigmoid(x) = exp(-x), the inverse odds are

    (1 - p) / p = exp(-a) + exp(-b) + exp(-a - b)
                = exp(-b) * (1 + exp(softplus(b) - a)),

so z = b - softplus(softplus(b) - a), for either order of `a` and `b`.
It is computed with `b` the smaller of the two: then softplus(b) - a
subtracts the larger logit from a value no larger than it, nothing of
the smaller one's digits is lost against the larger's, and z is within
about an ulp of the larger logit (and of 1). Nothing is subtracted from
1: the route through log p alone, log(1 - p) = log1mexp(log p), loses p's
distance from 1 with log p (in float32 log_sigmoid(a) = -exp(-a) is
subnormal past a = 87 and 0 past 104, where log1mexp(0) = -inf), and near
p = 1/2 it subtracts two values near -0.69.

The gradients are d z / d a = sigmoid(-a) / (1 - p) and d z / d b =
sigmoid(-b) / (1 - p), both in [0, 1] since 1 - p = sigmoid(-a) +
sigmoid(a) * sigmoid(-b) is at least each numerator; autodiff through the
two softplus gives them to float32 precision, finite for any finite logits.

A chain (purchase given conversion given click) folds left:
`joint_logit(joint_logit(click, conversion), purchase)`, since the first
joint logit is the logit of P(click and conversion).

>>> import tensorflow as tf
>>> a, b = tf.constant([0., 80., -80.]), tf.constant([0., 80., -80.])
>>> # p = 1/4: logit -log(3); both near 1: about 80 - log 2; both near 0:
>>> # about -160.
>>> [f'{value:.4f}' for value in joint_logit(a, b).numpy()]
['-1.0986', '79.3069', '-160.0000']
"""
import tensorflow as tf


def joint_logit(given_logits, logits):
  """The logit of sigmoid(given_logits) * sigmoid(logits), elementwise.

  Args:
    given_logits: Logits of the event given, e.g. P(click).
    logits: Logits of the event given the first, e.g. P(conversion | click),
      of the same shape and dtype.

  Returns:
    A `Tensor` `z` of that shape with sigmoid(z) = sigmoid(given_logits) *
    sigmoid(logits).

  >>> import tensorflow as tf
  >>> given, conditional = tf.constant([2.]), tf.constant([-1.])
  >>> p = float(tf.sigmoid(joint_logit(given, conditional))[0])
  >>> expected = float(tf.sigmoid(2.) * tf.sigmoid(-1.))
  >>> abs(p - expected) < 1e-7
  True
  """
  with tf.name_scope('joint_logit'):
    # One `where` for both, so that at a tie each logit gets one role and
    # its gradient (tf.minimum and tf.maximum would both pick the first).
    swap = given_logits < logits
    smaller = tf.where(swap, given_logits, logits)
    larger = tf.where(swap, logits, given_logits)
    return smaller - tf.math.softplus(tf.math.softplus(smaller) - larger)
