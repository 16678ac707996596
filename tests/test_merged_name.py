"""The merged head's name, and the name scope of its ops and state.

`MultiHead.name` is the heads' names joined by `_`, as in
`tf.estimator.MultiHead`, unless `name=` gives another. The same join
scopes the ops (and a learned weighting's state) while it is at most
`head_group.MAX_SCOPE_LENGTH` (128) characters, so graphs and checkpoints of
a few heads keep today's names; beyond, the scope is `multi_head_` and 8 hex
digits of the join's SHA-256, so that no op, tensor or variable name grows
with the number of heads. `name=` gives both the name and the scope.
"""
import hashlib
import re

import numpy as np
import pytest
import tensorflow as tf

import tensorflow_multihead
from tensorflow_multihead import head_group
from tensorflow_multihead import weighting

PREDICT = tf.estimator.ModeKeys.PREDICT
TRAIN = tf.estimator.ModeKeys.TRAIN
EVAL = tf.estimator.ModeKeys.EVAL
SHORT_NAMES = ('clicks', 'conversions', 'value')
# 40 names of 24 characters: joined, 999 characters.
LONG_NAMES = tuple(f'head_with_a_long_name_{index:02d}' for index in range(40))


def _binary_heads(names):
  return [tf.estimator.BinaryClassHead(name=name) for name in names]


def _spec_graph(head, names, mode=PREDICT, regularization=None):
  """Builds `head`'s spec in a new graph over constant logits and labels."""
  graph = tf.Graph()
  with graph.as_default():
    labels = {name: tf.constant([[1], [0]]) for name in names}
    spec = head.create_estimator_spec(
        features={}, mode=mode, logits=tf.zeros([2, len(names)]),
        labels=None if mode == PREDICT else labels,
        train_op_fn=lambda loss: tf.no_op(),
        regularization_losses=None if regularization is None else [
            tf.constant(regularization)])
  return graph, spec


def _top_scopes(graph):
  return {op.name.split('/')[0] for op in graph.get_operations()
          if '/' in op.name}


def test_default_name_joins_the_head_names_as_the_reference():
  ours = tensorflow_multihead.MultiHead(_binary_heads(LONG_NAMES))
  reference = tf.estimator.MultiHead(_binary_heads(LONG_NAMES))
  assert ours.name == reference.name == '_'.join(LONG_NAMES)


def test_short_joined_name_scopes_the_ops_as_the_reference():
  graphs = {side: _spec_graph(make(_binary_heads(SHORT_NAMES)),
                              SHORT_NAMES)[0]
            for side, make in (('ours', tensorflow_multihead.MultiHead),
                               ('reference', tf.estimator.MultiHead))}
  assert _top_scopes(graphs['ours']) == {'clicks_conversions_value'}
  assert _top_scopes(graphs['reference']) == {'clicks_conversions_value'}


def test_default_scope_is_the_join_up_to_128_characters():
  names = ['a' * 63, 'b' * 64]  # Joined: 128 characters.
  assert head_group.default_scope(names) == '_'.join(names)
  longer = ['a' * 64, 'b' * 64]
  digest = hashlib.sha256('_'.join(longer).encode()).hexdigest()[:8]
  assert head_group.default_scope(longer) == f'multi_head_{digest}'


def test_long_joined_name_scopes_the_ops_by_a_short_digest():
  head = tensorflow_multihead.MultiHead(_binary_heads(LONG_NAMES))
  graph, _ = _spec_graph(head, LONG_NAMES)
  (scope,) = _top_scopes(graph)
  assert re.fullmatch(r'multi_head_[0-9a-f]{8}', scope)
  assert scope == head_group.default_scope(LONG_NAMES)


@pytest.mark.parametrize('mode', [TRAIN, EVAL, PREDICT])
def test_no_op_name_grows_with_the_number_of_heads(mode):
  lengths = {}
  for count in (20, 40):
    head = tensorflow_multihead.MultiHead(_binary_heads(LONG_NAMES[:count]))
    graph, _ = _spec_graph(head, LONG_NAMES[:count], mode)
    lengths[count] = max(len(op.name) for op in graph.get_operations())
  # The longest: the digest scope, the fused group's (`fused_<first head>`)
  # and a label check's nested scopes, 134 characters in EVAL.
  assert lengths[40] == lengths[20] < 200


def test_the_digest_scope_is_the_same_in_every_graph_and_differs_by_heads():
  first = tensorflow_multihead.MultiHead(_binary_heads(LONG_NAMES))
  again = tensorflow_multihead.MultiHead(_binary_heads(LONG_NAMES))
  other = tensorflow_multihead.MultiHead(_binary_heads(LONG_NAMES[1:]))
  scopes = [_top_scopes(_spec_graph(head, names)[0]) for head, names in (
      (first, LONG_NAMES), (again, LONG_NAMES), (other, LONG_NAMES[1:]))]
  assert scopes[0] == scopes[1] != scopes[2]


def test_given_name_names_the_head_and_scopes_its_ops():
  head = tensorflow_multihead.MultiHead(_binary_heads(LONG_NAMES),
                                        name='ranker')
  graph, _ = _spec_graph(head, LONG_NAMES)
  assert head.name == 'ranker'
  assert _top_scopes(graph) == {'ranker'}


def test_given_name_keys_the_regularization_metric_as_the_reference_does():
  # The reference keys it `regularization_loss/<its name>` too.
  head = tensorflow_multihead.MultiHead(_binary_heads(SHORT_NAMES),
                                        name='ranker')
  _, spec = _spec_graph(head, SHORT_NAMES, EVAL, regularization=0.5)
  assert 'regularization_loss/ranker' in spec.eval_metric_ops
  reference = tf.estimator.MultiHead(_binary_heads(SHORT_NAMES))
  _, reference_spec = _spec_graph(reference, SHORT_NAMES, EVAL,
                                  regularization=0.5)
  assert 'regularization_loss/clicks_conversions_value' in (
      reference_spec.eval_metric_ops)


def test_summary_tags_do_not_depend_on_the_name():
  tags = {}
  for name in (None, 'ranker'):
    head = tensorflow_multihead.MultiHead(_binary_heads(SHORT_NAMES),
                                          name=name)
    graph, _ = _spec_graph(head, SHORT_NAMES, TRAIN)
    with graph.as_default():
      tags[name] = sorted(
          tf.get_static_value(summary.op.inputs[0]).item().decode()
          for summary in
          tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.SUMMARIES))
  assert tags[None] == tags['ranker'] == [
      'loss', 'loss/clicks', 'loss/conversions', 'loss/value']


def _weighting_variables(head, names):
  graph, _ = _spec_graph(head, names, EVAL)
  with graph.as_default():
    return [variable.op.name
            for variable in tf.compat.v1.global_variables()]


def test_learned_weighting_state_of_short_names_keeps_its_name():
  head = tensorflow_multihead.MultiHead(
      _binary_heads(SHORT_NAMES), loss_weighting=weighting.Uncertainty())
  assert _weighting_variables(head, SHORT_NAMES) == [
      'clicks_conversions_value/loss_weighting/log_variances']


def test_learned_weighting_state_of_long_names_is_under_the_digest_scope():
  head = tensorflow_multihead.MultiHead(
      _binary_heads(LONG_NAMES), loss_weighting=weighting.Uncertainty())
  assert _weighting_variables(head, LONG_NAMES) == [
      f'{head_group.default_scope(LONG_NAMES)}/loss_weighting/log_variances']


def test_learned_weighting_state_under_a_given_name():
  head = tensorflow_multihead.MultiHead(
      _binary_heads(LONG_NAMES), loss_weighting=weighting.Uncertainty(),
      name='ranker')
  assert _weighting_variables(head, LONG_NAMES) == [
      'ranker/loss_weighting/log_variances']


def test_given_name_of_the_old_join_restores_a_long_scope():
  # How a checkpoint written before the digest scope keeps loading.
  joined = '_'.join(LONG_NAMES)
  head = tensorflow_multihead.MultiHead(
      _binary_heads(LONG_NAMES), loss_weighting=weighting.Uncertainty(),
      name=joined)
  assert _weighting_variables(head, LONG_NAMES) == [
      f'{joined}/loss_weighting/log_variances']


@pytest.mark.parametrize('name', ['', 'two words', 'a/b', '_leading'])
def test_name_that_cannot_scope_ops_raises_value_error_naming_it(name):
  with pytest.raises(ValueError, match=re.escape(repr(name))):
    tensorflow_multihead.MultiHead(_binary_heads(SHORT_NAMES), name=name)


@pytest.mark.parametrize('name', [3, b'ranker', ['ranker']])
def test_name_that_is_not_a_string_raises_type_error(name):
  with pytest.raises(TypeError, match='name must be a string'):
    tensorflow_multihead.MultiHead(_binary_heads(SHORT_NAMES), name=name)


def test_the_loss_does_not_depend_on_the_name():
  logits = np.array([[0.5, -1., 2.]], np.float32)
  labels = {name: np.array([[1]]) for name in SHORT_NAMES}
  losses = [float(tensorflow_multihead.MultiHead(
      _binary_heads(SHORT_NAMES), name=name).loss(labels, logits))
            for name in (None, 'ranker')]
  assert losses[0] == losses[1]
