"""`export_heads` and `serving_default`, and exports that stay small per head.

Graph-level checks of what `MultiHead`'s PREDICT spec hands an export
(`tests/test_serving.py` exports, loads and serves them):

* `export_heads=None` (the default) gives every head's outputs, as the
  reference; a list gives `serving_default`, `predict` and those heads'
  own, with the reference's values; `[]` the first two alone;
* `serving_default='all'` serves the merged predictions of every head;
* bad values are refused naming what is wrong;
* a fused group's exported head (and the default head behind
  `serving_default`) depends on the same few narrow ops with 8 heads as
  with 64 (what keeps TF 2's loader linear in the number of signatures, see
  `narrow_outputs`), and a group serving no head by a signature of its own
  keeps the few wide ops.
"""
import functools
import re

import pytest
import tensorflow as tf
from tensorflow.python.ops import op_selector

import tensorflow_multihead
from tests import differential as diff
from tests import fused_cases

PREDICT = tf.estimator.ModeKeys.PREDICT
NAMES = ('clicks', 'color', 'value')


def _heads():
  return [tf.estimator.BinaryClassHead(name='clicks'),
          tf.estimator.MultiClassHead(3, name='color'),
          tf.estimator.RegressionHead(name='value')]


def _export_outputs(head, width=5, graph=None):
  with (graph or tf.Graph()).as_default():
    return head.create_estimator_spec(
        features={}, mode=PREDICT,
        logits=tf.compat.v1.placeholder(tf.float32, [None, width])
    ).export_outputs


# The signatures exported.


def test_default_exports_every_heads_signatures_as_the_reference():
  ours = _export_outputs(tensorflow_multihead.MultiHead(_heads()))
  reference = _export_outputs(tf.estimator.MultiHead(_heads()))
  assert list(ours) == list(reference)
  assert len(ours) == 2 + 4 + 3 + 3


def test_export_heads_keeps_those_heads_signatures_only():
  outputs = _export_outputs(tensorflow_multihead.MultiHead(
      _heads(), export_heads=['value', 'clicks']))
  assert sorted(outputs) == [
      'clicks', 'clicks/classification', 'clicks/predict',
      'clicks/regression', 'predict', 'serving_default', 'value',
      'value/predict', 'value/regression']


def test_empty_export_heads_keeps_serving_default_and_predict():
  outputs = _export_outputs(tensorflow_multihead.MultiHead(
      _heads(), export_heads=[]))
  assert sorted(outputs) == ['predict', 'serving_default']
  assert isinstance(outputs['serving_default'],
                    tf.estimator.export.ClassificationOutput)


def test_export_heads_leave_predict_with_every_heads_predictions():
  full, reduced = (_export_outputs(tensorflow_multihead.MultiHead(
      _heads(), export_heads=export_heads)) for export_heads in (None, []))
  assert sorted(reduced['predict'].outputs) == sorted(
      full['predict'].outputs)
  assert len(full['predict'].outputs) == 7 + 6 + 1


def test_serving_default_all_serves_the_merged_predictions():
  outputs = _export_outputs(tensorflow_multihead.MultiHead(
      _heads(), serving_default='all'))
  assert outputs['serving_default'] is outputs['predict']
  full = _export_outputs(tensorflow_multihead.MultiHead(_heads()))
  assert sorted(outputs) == sorted(full)


def test_serving_default_head_serves_the_default_head():
  outputs = _export_outputs(tensorflow_multihead.MultiHead(
      _heads(), default_head='value', serving_default='head',
      export_heads=[]))
  assert isinstance(outputs['serving_default'],
                    tf.estimator.export.RegressionOutput)


def test_unknown_export_heads_raise_value_error_naming_them_and_the_heads():
  with pytest.raises(ValueError, match=re.escape(
      "export_heads names unknown head(s) ['colour', 'price']. The heads "
      "with signatures of their own (ConditionalHead views among them) are: "
      "['clicks', 'color', 'value'].")):
    tensorflow_multihead.MultiHead(_heads(),
                                   export_heads=['colour', 'value', 'price'])


# Funnels: a ConditionalHead's view is chosen by its own name.


def _funnel_heads():
  return [tf.estimator.BinaryClassHead(name='click'),
          tensorflow_multihead.ConditionalHead(
              tf.estimator.BinaryClassHead(name='conversion'), given='click')]


def _funnel_export_outputs(**options):
  return _export_outputs(
      tensorflow_multihead.MultiHead(_funnel_heads(), **options), width=2)


def test_export_heads_may_name_a_conditional_heads_view():
  outputs = _funnel_export_outputs(export_heads=['conversion_given_click'])
  assert sorted(outputs) == [
      'conversion_given_click', 'conversion_given_click/classification',
      'conversion_given_click/predict', 'conversion_given_click/regression',
      'predict', 'serving_default']


def test_export_heads_naming_a_conditional_head_leaves_out_its_view():
  outputs = _funnel_export_outputs(export_heads=['conversion'])
  assert sorted(outputs) == [
      'conversion', 'conversion/classification', 'conversion/predict',
      'conversion/regression', 'predict', 'serving_default']


def test_unknown_export_heads_list_the_views_among_the_names():
  with pytest.raises(ValueError, match=re.escape(
      "export_heads names unknown head(s) ['conversion_given_clicks']. The "
      "heads with signatures of their own (ConditionalHead views among "
      "them) are: ['click', 'conversion', 'conversion_given_click'].")):
    tensorflow_multihead.MultiHead(
        _funnel_heads(), export_heads=['conversion_given_clicks'])


def test_serving_default_all_serves_the_views_predictions_too():
  outputs = _funnel_export_outputs(export_heads=[], serving_default='all')
  served = outputs['serving_default'].outputs
  assert sorted({key.split('/')[0] for key in served}) == [
      'click', 'conversion', 'conversion_given_click']
  assert sorted(served) == sorted(outputs['predict'].outputs)


@pytest.mark.parametrize('export_heads', ['color', 3])
def test_export_heads_not_a_list_raises_type_error(export_heads):
  with pytest.raises(TypeError, match='export_heads must be None or a list'):
    tensorflow_multihead.MultiHead(_heads(), export_heads=export_heads)


@pytest.mark.parametrize('serving_default', ['first', 'ALL', None, True])
def test_unknown_serving_default_raises_value_error_naming_it(
    serving_default):
  with pytest.raises(ValueError, match=re.escape(
      "serving_default must be 'head'")) as info:
    tensorflow_multihead.MultiHead(_heads(), serving_default=serving_default)
  assert repr(serving_default) in str(info.value)


def test_serving_default_all_with_a_default_head_raises_value_error():
  with pytest.raises(ValueError, match="default_head='color'.*'all'"):
    tensorflow_multihead.MultiHead(_heads(), default_head='color',
                                   serving_default='all')


# Values: a chosen head's outputs are the reference's.


def _kept_by(reference_outputs, export_heads):
  return {key: value for key, value in reference_outputs.items()
          if key in ('serving_default', 'predict') or
          key.split('/')[0] in export_heads}


@pytest.mark.parametrize('case', [
    fused_cases.CASES[-1],  # The six fusable types, interleaved, rank 3.
    fused_cases.CASES[3],   # 64 binary heads with vocabularies, as a dict.
    fused_cases.CASES[1],   # 6 binary heads, one logits tensor, rank 3.
], ids=['six_types', 'binary_64_dict', 'binary_6'])
def test_chosen_heads_export_the_references_values(case):
  names = case.mix.head_names
  chosen = names[1::2]
  reference = fused_cases.reference_results(case, 'predict')
  ours = fused_cases.run(functools.partial(
      diff.our_multi_head, export_heads=chosen), case, 'predict')
  expected = dict(reference, export_outputs=_kept_by(
      reference['export_outputs'], chosen))
  diff.assert_same_results(ours, expected, rtol=diff.RTOL, atol=diff.ATOL)


# Exported heads of a fused group depend on a few narrow ops.


def _binary_head_export(count, **options):
  """A fused group of `count` binary heads and a parsing receiver."""
  graph = tf.Graph()
  with graph.as_default():
    examples = tf.compat.v1.placeholder(tf.string, [None], name='examples')
    features = tf.io.parse_example(
        examples, {'x': tf.io.FixedLenFeature([3], tf.float32)})
    logits = tf.keras.layers.Dense(count)(features['x'])
    head = tensorflow_multihead.MultiHead(
        [tf.estimator.BinaryClassHead(name=f'h{index}')
         for index in range(count)], **options)
    outputs = head.create_estimator_spec(
        features=features, mode=PREDICT, logits=logits).export_outputs
  return graph, examples, outputs


def _ops_behind(output, examples):
  tensors = [tensor for tensor in (
      getattr(output, 'scores', None), getattr(output, 'classes', None),
      getattr(output, 'value', None)) if tensor is not None]
  if isinstance(output, tf.estimator.export.PredictOutput):
    tensors = list(output.outputs.values())
  return op_selector.get_backward_walk_ops(tensors, stop_at_ts=[examples])


@pytest.mark.parametrize('key', ['h3/classification', 'h3/regression',
                                 'h3/predict'])
def test_a_heads_signature_needs_as_many_ops_with_64_heads_as_with_8(key):
  ops = {}
  for count in (8, 64):
    _, examples, outputs = _binary_head_export(count)
    ops[count] = _ops_behind(outputs[key], examples)
  assert len(ops[64]) == len(ops[8])
  # No op as wide as the group: each has a few inputs and outputs.
  assert max(len(op.outputs) for op in ops[64]) == 1
  assert max(len(op.inputs) for op in ops[64]) <= 6  # ParseExample's.


def test_a_heads_signature_needs_few_ops_besides_the_model():
  _, examples, outputs = _binary_head_export(64)
  model_ops = _ops_behind(outputs['h3/classification'], examples)
  ours = [op for op in model_ops if op.name.startswith('multi_head_')]
  assert len(ours) <= 12, sorted(op.name for op in ours)


def _cut_heads(graph):
  """The heads cut from a group by gathers of their own, by index."""
  return sorted({op.inputs[1].op.name.split('/')[-1]
                 for op in graph.get_operations()
                 if op.type == 'GatherV2' and 'head_cuts' in op.inputs[1].name})


def test_groups_serving_no_head_apart_build_no_per_head_cuts():
  graphs = {export_heads: _binary_head_export(
      64, export_heads=export_heads, serving_default='all')[0]
            for export_heads in (None, ())}
  counts = {key: len(graph.get_operations())
            for key, graph in graphs.items()}
  # Every head exported: a gather per head and prediction, and class rows.
  assert counts[None] > counts[()] + 64 * 8
  assert _cut_heads(graphs[()]) == []


def test_empty_export_heads_cut_the_served_default_head_alone():
  graph, _, _ = _binary_head_export(64, export_heads=[], default_head='h5')
  assert _cut_heads(graph) == ['head_5']


def test_served_default_head_needs_as_many_ops_with_64_heads_as_with_8():
  ops = {}
  for count in (8, 64):
    _, examples, outputs = _binary_head_export(count, export_heads=[])
    ops[count] = _ops_behind(outputs['serving_default'], examples)
  assert len(ops[64]) == len(ops[8])
  assert max(len(op.outputs) for op in ops[64]) == 1


def test_the_merged_predict_signature_holds_every_head():
  _, _, outputs = _binary_head_export(8, export_heads=[])
  assert sorted({key.split('/')[0] for key in outputs['predict'].outputs}) == [
      f'h{index}' for index in range(8)]
