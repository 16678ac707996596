"""`ConditionalHead`: what it accepts, how a `MultiHead` computes it (issue 15).

The values are proven against reference heads in
`tests/test_funnel_differential.py`; here, each rule once: the heads it
wraps and refuses, the chains a `MultiHead` refuses while it is built, the
labels it refuses when the graph runs, what each mode computes (TRAIN
leaves the conditional views out), the export's signatures, fusion, and
learned loss weights.
"""
import numpy as np
import pytest
import tensorflow as tf

import tensorflow_multihead as tmh
from tensorflow_multihead import conditional_head
from tensorflow_multihead import funnel
from tensorflow_multihead import head_parts
from tensorflow_multihead import weighting

TRAIN = tf.estimator.ModeKeys.TRAIN
EVAL = tf.estimator.ModeKeys.EVAL
PREDICT = tf.estimator.ModeKeys.PREDICT


def _binary(name, **options):
  return tf.estimator.BinaryClassHead(name=name, **options)


def _funnel_heads(chain=2):
  heads = [_binary('click'),
           tmh.ConditionalHead(_binary('conversion'), given='click')]
  if chain == 3:
    heads.append(tmh.ConditionalHead(_binary('purchase'), given='conversion'))
  return heads


def _inputs(click, conversion, purchase=None):
  """Logits (zeros) and labels `[rows, 1]` from per-row label lists."""
  labels = {'click': np.array(click)[:, None],
            'conversion': np.array(conversion)[:, None]}
  if purchase is not None:
    labels['purchase'] = np.array(purchase)[:, None]
  logits = {name: np.zeros([len(click), 1], np.float32) for name in labels}
  return logits, labels


# The heads it wraps.


def test_is_exported_at_the_top_level():
  assert tmh.ConditionalHead is conditional_head.ConditionalHead
  assert 'ConditionalHead' in tmh.__all__


@pytest.mark.parametrize('head', [
    tf.estimator.RegressionHead(name='conversion'),
    tf.estimator.MultiClassHead(3, name='conversion'),
    tf.estimator.MultiLabelHead(2, name='conversion'),
    tf.estimator.LogisticRegressionHead(name='conversion'),
    tmh.MaskedHead(tf.estimator.RegressionHead(name='conversion'),
                   missing_label=-1.),
], ids=['regression', 'multi_class', 'multi_label', 'logistic_regression',
        'masked_regression'])
def test_a_head_without_binary_semantics_is_a_type_error(head):
  with pytest.raises(TypeError, match='BinaryClassHead'):
    tmh.ConditionalHead(head, given='click')


def test_a_conditional_head_inside_another_is_a_type_error_saying_to_chain():
  inner = tmh.ConditionalHead(_binary('conversion'), given='click')
  with pytest.raises(TypeError, match="given='conversion'"):
    tmh.ConditionalHead(inner, given='click')


def test_a_binary_head_subclass_and_a_masked_binary_head_are_accepted():

  class Subclass(tf.estimator.BinaryClassHead):
    pass

  for head in (Subclass(name='conversion'),
               tmh.MaskedHead(_binary('conversion'), missing_label=-1)):
    wrapped = tmh.ConditionalHead(head, given='click')
    assert (wrapped.name, wrapped.given, wrapped.head) == (
        'conversion', 'click', head)
    assert wrapped.conditional_name == 'conversion_given_click'
    assert wrapped.logits_dimension == 1


def test_given_must_be_another_heads_name():
  with pytest.raises(TypeError, match="'conversion'.*given must be the name"):
    tmh.ConditionalHead(_binary('conversion'), given=0)
  with pytest.raises(ValueError, match='another head'):
    tmh.ConditionalHead(_binary('conversion'), given='conversion')
  with pytest.raises(ValueError, match='named head'):
    tmh.ConditionalHead(_binary(None), given='click')


def test_alone_it_says_to_put_it_in_a_multi_head_with_its_given_head():
  head = tmh.ConditionalHead(_binary('conversion'), given='click')
  logits = np.zeros([2, 1], np.float32)
  with pytest.raises(ValueError, match="'conversion'.*'click'.*MultiHead"):
    head.predictions(logits)
  with pytest.raises(ValueError, match="'conversion'.*'click'.*MultiHead"):
    head.create_estimator_spec(features={}, mode=PREDICT, logits=logits)


# Chains a MultiHead refuses while it is built.


def test_a_given_that_names_no_head_is_a_value_error_listing_the_heads():
  with pytest.raises(ValueError,
                     match=r"'conversion' is given 'clicks'.*\['click', "):
    tmh.MultiHead([_binary('click'),
                   tmh.ConditionalHead(_binary('conversion'), 'clicks')])


@pytest.mark.parametrize('given', [
    tf.estimator.RegressionHead(name='click'),
    tmh.MaskedHead(tf.estimator.MultiClassHead(3, name='click'),
                   missing_label=-1),
], ids=['regression', 'masked_multi_class'])
def test_a_given_head_that_is_not_binary_is_a_type_error_naming_both(given):
  with pytest.raises(TypeError, match="'conversion'.*'click'.*not binary"):
    tmh.MultiHead([given, tmh.ConditionalHead(_binary('conversion'),
                                              given='click')])


def test_heads_given_each_other_in_a_loop_are_a_value_error_naming_them():
  heads = [tmh.ConditionalHead(_binary('a'), given='b'),
           tmh.ConditionalHead(_binary('b'), given='a')]
  with pytest.raises(ValueError, match=r"\['a', 'b'\].*loop \(a -> b -> a\)"):
    tmh.MultiHead(heads)


def test_a_loop_further_up_a_chain_names_the_heads_in_it():
  heads = [tmh.ConditionalHead(_binary('a'), given='b'),
           tmh.ConditionalHead(_binary('b'), given='c'),
           tmh.ConditionalHead(_binary('c'), given='b'),
           _binary('d')]
  with pytest.raises(ValueError, match=r"\['b', 'c'\].*\(b -> c -> b\)"):
    tmh.MultiHead(heads)


def test_a_masked_head_over_a_conditional_head_is_a_type_error():
  hidden = tmh.MaskedHead(
      tmh.ConditionalHead(_binary('conversion'), given='click'),
      missing_label=-1)
  with pytest.raises(TypeError, match='ConditionalHead\\(MaskedHead'):
    tmh.MultiHead([_binary('click'), hidden])


def test_a_head_named_like_a_view_is_a_value_error():
  heads = _funnel_heads() + [_binary('conversion_given_click')]
  with pytest.raises(ValueError, match="'conversion_given_click'"):
    tmh.MultiHead(heads)


def test_logits_of_other_shapes_are_a_value_error_naming_both_heads():
  head = tmh.MultiHead(_funnel_heads())
  with pytest.raises(ValueError, match='click and conversion'):
    head.predictions({'click': np.zeros([3, 1], np.float32),
                      'conversion': np.zeros([4, 1], np.float32)})


# Labels over the entire space.


def test_a_label_of_1_where_the_given_event_is_0_fails_naming_both_heads():
  head = tmh.MultiHead(_funnel_heads())
  logits, labels = _inputs(click=[1, 0, 0], conversion=[1, 0, 1])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='Head conversion .* given head click.*'):
    head.loss(labels, logits)


def test_the_label_check_runs_with_the_graph_not_before():
  logits, labels = _inputs(click=[0, 0], conversion=[1, 0])
  with tf.Graph().as_default():
    spec = tmh.MultiHead(_funnel_heads()).create_estimator_spec(
        features={}, mode=EVAL, logits=logits,
        labels={name: tf.constant(value) for name, value in labels.items()})
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.local_variables_initializer())
      with pytest.raises(tf.errors.InvalidArgumentError,
                         match='Head conversion'):
        session.run(spec.loss)


def test_a_chain_checks_each_head_against_its_given_head():
  head = tmh.MultiHead(_funnel_heads(chain=3))
  logits, labels = _inputs(click=[1, 1], conversion=[1, 0], purchase=[0, 1])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='Head purchase .* given head conversion'):
    head.loss(labels, logits)


def test_a_1_where_a_masked_given_head_has_no_label_is_accepted():
  heads = [tmh.MaskedHead(_binary('click'), missing_label=-1),
           tmh.ConditionalHead(_binary('conversion'), given='click')]
  logits, labels = _inputs(click=[-1, 0, 1], conversion=[1, 0, 1])
  head = tmh.MultiHead(heads)
  metrics = head.update_metrics(head.metrics(), {}, logits, labels)
  # The view's rows: the click label known and 1, the last row alone.
  assert metrics['label/mean/conversion_given_click'].result().numpy() == 1.
  assert metrics['label/mean/conversion'].result().numpy() == pytest.approx(
      2 / 3)


def test_labels_with_a_vocabulary_are_read_through_it():
  vocabulary = ['no', 'yes']
  heads = [_binary('click', label_vocabulary=vocabulary),
           tmh.ConditionalHead(_binary('conversion',
                                       label_vocabulary=vocabulary), 'click')]
  logits, labels = _inputs(click=['yes', 'no', 'yes'],
                           conversion=['no', 'no', 'yes'])
  head = tmh.MultiHead(heads)
  metrics = head.update_metrics(head.metrics(), {}, logits, labels)
  assert metrics['label/mean/conversion_given_click'].result().numpy() == .5
  _, wrong = _inputs(click=['no', 'no', 'yes'], conversion=['yes', 'no', 'no'])
  with pytest.raises(tf.errors.InvalidArgumentError, match='Head conversion'):
    head.loss(wrong, logits)


def test_the_feature_marking_a_views_rows_must_be_free():
  head = tmh.MultiHead(_funnel_heads())
  logits, labels = _inputs(click=[1, 0], conversion=[1, 0])
  features = {funnel.view_mask_key('conversion_given_click'): np.ones(2)}
  with pytest.raises(ValueError, match='is taken'):
    head.update_metrics(head.metrics(), features, logits, labels)


# What each mode computes.


def _no_training(loss):
  del loss
  return tf.no_op()


def _gradient_descent(loss):
  return tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(loss)


def _specs(heads, train_op_fn=_no_training, **options):
  logits, labels = _inputs(click=[1, 0, 1, 0], conversion=[1, 0, 0, 0],
                           purchase=[1, 0, 0, 0] if len(heads) > 2 else None)
  specs = {}
  with tf.Graph().as_default():
    head = tmh.MultiHead(heads, **options)
    for mode in (TRAIN, EVAL, PREDICT):
      specs[mode] = head.create_estimator_spec(
          features={}, mode=mode, logits=logits,
          labels=None if mode == PREDICT else labels,
          train_op_fn=train_op_fn)
    summaries = [summary.name for summary in
                 tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.SUMMARIES)]
  return specs, summaries


def test_train_leaves_the_views_out():
  specs, summaries = _specs(_funnel_heads())
  assert sorted({name for name, _ in specs[TRAIN].predictions}) == [
      'click', 'conversion']
  assert not [name for name in summaries if 'given' in name]


def test_eval_reports_every_head_and_view():
  specs, _ = _specs(_funnel_heads(chain=3))
  metrics = specs[EVAL].eval_metric_ops
  for name in ('click', 'conversion', 'conversion_given_click', 'purchase',
               'purchase_given_conversion'):
    assert {f'auc/{name}', f'loss/{name}', f'label/mean/{name}'} <= set(
        metrics), name


def test_the_export_serves_the_joint_and_the_conditional_heads():
  specs, _ = _specs(_funnel_heads())
  outputs = specs[PREDICT].export_outputs
  for name in ('conversion', 'conversion_given_click'):
    assert {name, f'{name}/classification', f'{name}/regression',
            f'{name}/predict'} <= set(outputs), name
  assert {'conversion/logistic', 'conversion_given_click/logistic'} <= set(
      outputs['predict'].outputs)


def test_predictions_can_ask_for_a_views_key():
  head = tmh.MultiHead(_funnel_heads())
  logits, _ = _inputs(click=[1], conversion=[1])
  asked = head.predictions(logits, keys=[('conversion_given_click',
                                          'logistic')])
  assert list(asked) == [('conversion_given_click', 'logistic')]
  np.testing.assert_allclose(asked['conversion_given_click', 'logistic'],
                             [[.5]])


def test_the_joint_heads_and_the_views_join_the_binary_fused_group():
  heads = _funnel_heads(chain=3) + [tf.estimator.RegressionHead(name='v')]
  head = tmh.MultiHead(heads)
  by_mode = {mode: [(type(part), part.names) for part in head._parts(mode=mode)]  # pylint: disable=protected-access
             for mode in (TRAIN, EVAL)}
  fused = head_parts.FusedPart
  assert by_mode[TRAIN] == [(fused, ('click', 'conversion', 'purchase')),
                            (head_parts.HeadPart, ('v',))]
  assert by_mode[EVAL] == [
      (fused, ('click', 'conversion', 'conversion_given_click', 'purchase',
               'purchase_given_conversion')), (head_parts.HeadPart, ('v',))]


def test_learned_loss_weights_weigh_the_heads_not_the_views():
  specs, _ = _specs(_funnel_heads(), train_op_fn=_gradient_descent,
                    loss_weighting=weighting.Uncertainty())
  keys = set(specs[EVAL].eval_metric_ops)
  assert {'loss_weight/click', 'loss_weight/conversion'} <= keys
  assert not [key for key in keys if key.startswith('loss_weight/conversion_')]


def test_with_learned_weights_the_loss_is_the_methods_formula():
  """Uncertainty at s = 0: 0.5 * (loss(click) + loss(conversion))."""
  logits, labels = _inputs(click=[1, 0], conversion=[1, 0])
  head = tmh.MultiHead(_funnel_heads(),
                       loss_weighting=weighting.Uncertainty())
  plain = tmh.MultiHead(_funnel_heads())
  np.testing.assert_allclose(head.loss(labels, logits),
                             0.5 * plain.loss(labels, logits), rtol=1e-6)
