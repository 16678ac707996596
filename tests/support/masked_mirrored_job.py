"""A click + conversion model mirrored over two CPUs, in a process of its own.

The `MaskedHead` distribution test starts this module as a program, since a
process's CPU devices are fixed once TensorFlow starts::

  python -m tests.support.masked_mirrored_job RESULT.json --model-dir DIR \\
      --head masked|by_hand

It trains, evaluates and exports under `MirroredStrategy` over two CPU
devices, with `distributed_job`'s linear model from zero weights and data,
and a conversion label only on clicked rows (-1 elsewhere):

* `masked`: our `MultiHead` of a click head and a `MaskedHead` conversion
  head, given every row;
* `by_hand`: `tf.estimator.MultiHead` of the bare heads, whose model_fn cuts
  the conversion logits and labels to the clicked rows itself.

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


def make_data():
  """`distributed_job`'s rows; conversion: kind 0 among clicked rows."""
  features, labels = job.make_data()
  click = labels['click']
  conversion = np.where(click == 1, (labels['kind'] == 0).astype(np.int64), -1)
  return features, {'click': click, 'conversion': conversion}


def _head(kind):
  click = tf.estimator.BinaryClassHead(name='click')
  conversion = tf.estimator.BinaryClassHead(name='conversion')
  if kind == 'masked':
    return tmh.MultiHead(
        [click, tmh.MaskedHead(conversion, missing_label=-1)])
  return tf.estimator.MultiHead([click, conversion])


def _cut_by_hand(logits, labels):
  clicked = labels['click'][:, 0] > 0
  return ({'click': logits[:, :1],
           'conversion': tf.boolean_mask(logits[:, 1:], clicked)},
          {'click': labels['click'],
           'conversion': tf.boolean_mask(labels['conversion'], clicked)})


def model_fn(features, labels, mode, params):
  zeros = tf.compat.v1.zeros_initializer()
  kernel = tf.compat.v1.get_variable('kernel', [job.N_FEATURES, 2],
                                     initializer=zeros)
  bias = tf.compat.v1.get_variable('bias', [2], initializer=zeros)
  logits = tf.matmul(features['x'], kernel) + bias
  if params['head'] == 'by_hand' and labels is not None:
    logits, labels = _cut_by_hand(logits, labels)
  return mirrored_pair.estimator_spec(_head(params['head']), features, mode,
                                      logits, labels)


def main(argv):
  return mirrored_pair.main(argv, model_fn, make_data, ('masked', 'by_hand'),
                            __doc__.split('\n')[0])


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
