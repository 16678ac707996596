"""Keeps AutoGraph from rewriting this package's heads.

`MirroredStrategy` (and other strategies) hand the `model_fn` to AutoGraph,
which rewrites it and, recursively, every function it calls outside the
packages AutoGraph leaves alone (TensorFlow's own). A head of this package
builds its graph with TensorFlow ops and explicit `tf.cond`s, so rewriting
it changes nothing, but it costs seconds a `model_fn` call: parsing and
transforming the source of every function the heads reach (measured on the
three-headed model of `tests/support/distributed_job.py` mirrored over two
devices, 4 steps: 34 s a run, 12 s without the rewriting). Marking the methods a
`model_fn` calls as not to be converted makes a mirrored graph build as
fast as a single-device one, and the single-device path (which AutoGraph
never sees) is unchanged.

>>> class Echo:
...   def loss(self, value):
...     return value
>>> Echo = unconverted('loss', 'predictions')(Echo)
>>> Echo().loss(3)
3
>>> hasattr(Echo.loss, 'autograph_info__')  # what AutoGraph looks for
True
"""
import tensorflow as tf

# What an Estimator `model_fn` (ours or a canned one) calls on a head: the
# v2 `Head` interface and the TF 1.x `_Head` one.
HEAD_METHODS = ('loss', 'predictions', 'metrics', 'update_metrics',
                'create_estimator_spec', 'create_tpu_estimator_spec',
                'create_loss')


def unconverted(*names):
  """A class decorator: the methods `names` that the class defines itself
  run as written under AutoGraph. Names the class does not define are
  skipped."""

  def decorate(cls):
    for name in names:
      method = vars(cls).get(name)
      if callable(method):
        setattr(cls, name, tf.autograph.experimental.do_not_convert(method))
    return cls

  return decorate
