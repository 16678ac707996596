"""The serving input the tests' exports share: serialized tf.Examples.

Each export under test reads one float feature `x` of a known width from a
batch of serialized `tf.Example`s fed as `examples`, as TF Serving's
Classify and Regress APIs and `saved_model_cli --input_examples` do.
"""
import tensorflow as tf


def examples_receiver_fn(width):
  """A `serving_input_receiver_fn` parsing `x`, `width` floats, from examples.

  >>> import tensorflow as tf
  >>> with tf.Graph().as_default():
  ...   receiver = examples_receiver_fn(4)()
  >>> receiver.features['x'].shape.as_list()
  [None, 4]
  >>> list(receiver.receiver_tensors)
  ['examples']
  """
  def receiver_fn():
    serialized = tf.compat.v1.placeholder(tf.string, [None], name='examples')
    features = tf.io.parse_example(
        serialized, {'x': tf.io.FixedLenFeature([width], tf.float32)})
    return tf.estimator.export.ServingInputReceiver(
        features, {'examples': serialized})
  return receiver_fn
