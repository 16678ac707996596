"""A click -> conversion funnel mirrored over two CPUs, in a process of its own.

The `ConditionalHead` distribution test starts this module as a program,
since a process's CPU devices are fixed once TensorFlow starts::

  python -m tests.support.funnel_mirrored_job RESULT.json --model-dir DIR \\
      --head funnel|by_hand

It trains, evaluates and exports under `MirroredStrategy` over two CPU
devices, with `distributed_job`'s linear model from zero weights and data,
a conversion (kind 0) only after a click:

* `funnel`: our `MultiHead` of a click head and a `ConditionalHead`
  conversion head given click;
* `by_hand`: `tf.estimator.MultiHead` of bare heads: click; conversion, fed
  the joint logits that the model_fn computes (float64 textbook formula);
  and `conversion_given_click` with a loss weight of 0, fed the conditional
  logits and labels that the model_fn cuts to the clicked rows (every row
  when there are no labels, to export).

It writes the final weights, the eval metrics and the exported signatures'
outputs as JSON to RESULT (or the error, and exits with 1).
"""
import sys

import numpy as np
import tensorflow as tf

import tensorflow_multihead as tmh
from tests.support import distributed_job as job
from tests.support import mirrored_pair

BATCH = mirrored_pair.BATCH
VIEW = 'conversion_given_click'


def make_data():
  """`distributed_job`'s rows; conversion: kind 0 among the clicked rows."""
  features, labels = job.make_data()
  click = labels['click']
  conversion = (click == 1) & (labels['kind'] == 0)
  return features, {'click': click, 'conversion': conversion.astype(np.int64)}


def _binary(name):
  return tf.estimator.BinaryClassHead(name=name)


def _funnel_head():
  return tmh.MultiHead([_binary('click'), tmh.ConditionalHead(
      _binary('conversion'), given='click')])


def _by_hand(logits, labels):
  """The reference multi-head and its logits and labels, cut by hand."""
  click, conditional = logits[:, :1], logits[:, 1:]
  p = tf.math.sigmoid(tf.cast(click, tf.float64)) * tf.math.sigmoid(
      tf.cast(conditional, tf.float64))
  joint = tf.cast(tf.math.log(p) - tf.math.log1p(-p), tf.float32)
  head = tf.estimator.MultiHead(
      [_binary('click'), _binary('conversion'), _binary(VIEW)],
      head_weights=[1., 1., 0.])
  logits = {'click': click, 'conversion': joint, VIEW: conditional}
  if labels is not None:
    clicked = labels['click'][:, 0] > 0
    logits[VIEW] = tf.boolean_mask(conditional, clicked)
    labels = dict(labels, **{VIEW: tf.boolean_mask(labels['conversion'],
                                                   clicked)})
  return head, logits, labels


def model_fn(features, labels, mode, params):
  zeros = tf.compat.v1.zeros_initializer()
  kernel = tf.compat.v1.get_variable('kernel', [job.N_FEATURES, 2],
                                     initializer=zeros)
  bias = tf.compat.v1.get_variable('bias', [2], initializer=zeros)
  logits = tf.matmul(features['x'], kernel) + bias
  if params['head'] == 'by_hand':
    head, logits, labels = _by_hand(logits, labels)
  else:
    head = _funnel_head()
  return mirrored_pair.estimator_spec(head, features, mode, logits, labels)


def main(argv):
  return mirrored_pair.main(argv, model_fn, make_data, ('funnel', 'by_hand'),
                            __doc__.split('\n')[0])


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
