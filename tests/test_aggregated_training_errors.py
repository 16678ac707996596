"""Bad `gradient_aggregation` input: clear errors, before anything runs.

What a `MultiHead` can tell from the aggregator alone raises when it is
built; what needs the graph (names, tensors, which head reads what) raises
while the TRAIN spec is built. A head whose logits do not depend on the
shared parameters is told from the graph's structure, head by head, so a
fused group's head is named too.
"""
import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import MultiHead
from tensorflow_multihead import aggregation
from tests import aggregation_model as model

TRAIN = tf.estimator.ModeKeys.TRAIN
SHARED = list(model.SHARED_VARIABLES)


def _build_train_spec(aggregator, logits_of=None, heads=None):
  """Builds the model's TRAIN spec in a new graph with `aggregator`.

  `aggregator` is a function of the graph's representation tensor.
  `logits_of(representation, logits)` may replace the logits.
  """
  with tf.Graph().as_default():
    variables = model.build_variables()
    representation, logits, _ = model.build_forward(variables)
    if logits_of is not None:
      logits = logits_of(representation, logits)
    head = MultiHead(heads or model.make_heads(),
                     gradient_aggregation=aggregator(representation))
    head.create_estimator_spec(
        features={}, mode=TRAIN, logits=logits, labels=model.LABELS,
        train_op_fn=lambda loss: tf.no_op())


# Raised when the MultiHead is built.


def test_an_object_that_is_not_an_aggregator_raises_type_error():
  with pytest.raises(TypeError, match=(
      'gradient_aggregation must be a tensorflow_multihead.aggregation '
      r"Aggregator .*given 'mean' of type str")):
    MultiHead(model.make_heads(), gradient_aggregation='mean')


def test_an_aggregator_class_instead_of_an_instance_raises_type_error():
  with pytest.raises(TypeError, match=r'given the class Mean; give an '
                     r'instance, such as Mean\(shared_variables=\[\.\.\.\]\)'):
    MultiHead(model.make_heads(), gradient_aggregation=aggregation.Mean)


def test_neither_shared_variables_nor_a_representation_raises_value_error():
  with pytest.raises(ValueError, match=(
      r'gradient_aggregation Mean\(\) needs shared_variables=\[\.\.\.\] or '
      'shared_representation=')):
    MultiHead(model.make_heads(), gradient_aggregation=aggregation.Mean())


def test_both_shared_variables_and_a_representation_raise_value_error():
  with pytest.raises(ValueError, match='was given both shared_variables and '
                     'shared_representation; give one'):
    MultiHead(model.make_heads(), gradient_aggregation=aggregation.Mean(
        shared_variables=SHARED, shared_representation='representation'))


def test_a_shared_variable_of_a_wrong_type_raises_type_error():
  with pytest.raises(TypeError, match=(
      r'gradient_aggregation Mean\(\) shared_variables must be variables or '
      'variable names; given 3 of type int')):
    MultiHead(model.make_heads(), gradient_aggregation=aggregation.Mean(
        shared_variables=['trunk/kernel', 3]))


@pytest.mark.parametrize('representation, message', [
    (np.ones([6, 4], np.float32),
     'shared_representation must be a tensor of the model'),
    (tf.Variable(np.ones([4], np.float32), name='rep'),
     "shared_representation 'rep:0' is a variable; give it as "
     r'shared_variables=\[\.\.\.\] instead'),
])
def test_a_representation_of_a_wrong_type_raises_type_error(representation,
                                                            message):
  with pytest.raises(TypeError, match=message):
    MultiHead(model.make_heads(), gradient_aggregation=aggregation.Mean(
        shared_representation=representation))


def test_a_merged_head_aggregating_inside_another_raises_value_error():
  inner = MultiHead(model.make_heads(), gradient_aggregation=aggregation.Mean(
      shared_variables=SHARED))
  with pytest.raises(ValueError, match=(
      "Head 'a_b_c' is a merged head with a gradient_aggregation, inside "
      'another merged head')):
    MultiHead([inner, tf.estimator.RegressionHead(name='d')])


# Raised while the TRAIN spec is built.


def test_an_unknown_variable_name_raises_value_error():
  with pytest.raises(ValueError, match=(
      r"gradient_aggregation Mean\(\) shared variable 'trunk/k' is not a "
      'variable of the graph')):
    _build_train_spec(lambda _: aggregation.Mean(
        shared_variables=['trunk/k']))


def test_a_variable_of_another_graph_raises_value_error():
  with tf.Graph().as_default():
    elsewhere = tf.compat.v1.get_variable('trunk/kernel', [3, 4])
  with pytest.raises(ValueError, match='belongs to another graph'):
    _build_train_spec(lambda _: aggregation.Mean(shared_variables=[elsewhere]))


def test_a_representation_of_another_graph_raises_value_error():
  with tf.Graph().as_default():
    elsewhere = tf.ones([6, 4], name='representation')
  with pytest.raises(ValueError, match=(
      'shared_representation .* is not a tensor of the graph being built')):
    _build_train_spec(lambda _: aggregation.Mean(
        shared_representation=elsewhere))


def test_an_eager_tensor_as_representation_raises_value_error():
  eager = tf.ones([6, 4])
  with pytest.raises(ValueError, match='is not a tensor of the graph being '
                     'built'):
    _build_train_spec(lambda _: aggregation.Mean(shared_representation=eager))


def test_a_representation_name_no_tensor_of_the_logits_has_raises():
  with pytest.raises(ValueError, match=(
      "shared_representation 'trunk/Relu' is not the name of a tensor the "
      'logits are computed from')):
    _build_train_spec(lambda _: aggregation.Mean(
        shared_representation='trunk/Relu'))


def test_a_representation_name_several_tensors_end_with_raises():
  def two_scopes(representation, logits):
    del representation
    with tf.name_scope('one'):
      first = tf.identity(logits, name='same')
    with tf.name_scope('two'):
      second = tf.identity(logits, name='same')
    return (first + second) / 2.

  with pytest.raises(ValueError, match=r"'same' names several of them: "
                     r"\['one/same:0', 'two/same:0'\]"):
    _build_train_spec(lambda _: aggregation.Mean(
        shared_representation='same'), logits_of=two_scopes)


def test_an_integer_representation_raises_value_error():
  def through_integers(representation, logits):
    del representation
    rounded = tf.cast(tf.round(logits), tf.int32, name='rounded')
    return tf.cast(rounded, tf.float32)

  with pytest.raises(ValueError, match="'rounded:0' is of type int32; "
                     'gradients need a floating-point tensor'):
    _build_train_spec(lambda _: aggregation.Mean(
        shared_representation='rounded'), logits_of=through_integers)


def _logits_dict(cut_off):
  """Each head's logits apart; `cut_off`'s do not read the trunk."""

  def logits_of(representation, logits):
    del representation
    pieces = dict(zip(model.HEAD_NAMES, tf.split(logits, 3, axis=1)))
    pieces[cut_off] = tf.constant(np.zeros([model.ROWS, 1], np.float32))
    return pieces

  return logits_of


@pytest.mark.parametrize('config, what', [
    ({'shared_variables': SHARED}, 'shared_variables'),
    ({'shared_representation': 'representation'}, 'shared_representation'),
])
def test_a_fused_head_whose_logits_ignore_the_shared_part_is_named(config,
                                                                   what):
  # Heads `a` and `b` are one fused group: their losses are one op.
  with pytest.raises(ValueError, match=(
      rf"the loss of head\(s\) \['b'\] depends on none of the {what}")):
    _build_train_spec(lambda _: aggregation.Mean(**config),
                      logits_of=_logits_dict('b'))


def test_a_shared_variable_no_head_reads_raises_value_error():
  def with_unused(representation):
    del representation
    tf.compat.v1.get_variable('unused', [2])
    return aggregation.Mean(shared_variables=SHARED + ['unused'])

  with pytest.raises(ValueError, match=(
      r"shared_variables \['unused:0'\]: no head's loss depends on them")):
    _build_train_spec(with_unused)


class _WrongShape(aggregation.Aggregator):

  def aggregate(self, jacobian):
    return jacobian[:, :2]


def test_an_aggregator_returning_a_wrong_shape_raises_value_error():
  with pytest.raises(ValueError, match=(
      r'_WrongShape\(\).aggregate returned shape \(3, 2\) for a Jacobian of '
      r'shape \(3, 16\); it must return one entry a column: \(16,\)')):
    _build_train_spec(lambda _: _WrongShape(shared_variables=SHARED))
