"""Aggregated gradients in real Estimators (issue 14, item 2).

* Canned estimators, which create their variables after the head is built,
  take the shared variables (or representation) by name. With `Zero`, whose
  direction is 0, what it names must not move at all while the rest
  trains: the canned estimator's optimizer trained on the aggregate.
* `TPUEstimator(use_tpu=False)` takes one step of `tests/aggregation_model`
  that equals the float64 NumPy step.
* EVAL and PREDICT build the very same graph with aggregation as without,
  and an export of the trained model serves what one without it serves.
"""
import re

import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import MultiHead
from tests import aggregation_cases as cases
from tests import aggregation_model as model
from tests import estimator_fixtures as fx

pytestmark = pytest.mark.xdist_group('aggregation_estimator')

STEPS = 2
HIDDEN = 'dnn/hiddenlayer_0'


def _dnn(head, model_dir):
  return tf.estimator.DNNEstimator(
      head=head, hidden_units=[4], feature_columns=fx.numeric_columns(),
      config=fx.run_config(model_dir))


def _v1_dnn_linear(head, model_dir):
  return tf.compat.v1.estimator.DNNLinearCombinedEstimator(
      head=head, linear_feature_columns=fx.numeric_columns(),
      dnn_feature_columns=fx.numeric_columns(), dnn_hidden_units=[4],
      config=fx.run_config(model_dir))


def _values(checkpoint, names):
  reader = tf.train.load_checkpoint(checkpoint)
  return {name: reader.get_tensor(name) for name in names}


def _train_canned(build, config, model_dir):
  head = MultiHead(fx.make_heads(), head_weights=list(fx.HEAD_WEIGHTS),
                   gradient_aggregation=cases.Zero(**config))
  estimator = build(head, model_dir)
  estimator.train(fx.train_input_fn(), steps=STEPS)
  return estimator


@pytest.fixture(scope='module')
def canned_runs(tmp_path_factory):
  """`{name: (estimator, values at step 0, values at the end)}`."""
  runs = {}
  for name, build, config in (
      ('variables', _dnn, {'shared_variables': [f'{HIDDEN}/kernel']}),
      ('representation', _dnn,
       {'shared_representation': f'{HIDDEN}/Relu'}),
      ('v1_variables', _v1_dnn_linear,
       {'shared_variables': [f'{HIDDEN}/kernel']}),
  ):
    model_dir = tmp_path_factory.mktemp(name)
    estimator = _train_canned(build, config, model_dir)
    names = [variable for variable in estimator.get_variable_names()
             if variable.startswith(('dnn/', 'linear/')) and
             'Adagrad' not in variable and 'Ftrl' not in variable and
             variable.endswith(('kernel', 'bias', 'weights'))]
    runs[name] = (estimator, _values(str(model_dir / 'model.ckpt-0'), names),
                  _values(estimator.latest_checkpoint(), names))
  return runs


def _moved(before, after):
  """The variables that moved by more than the rounding of a direction 0.

  The aggregate replaces the heads' summed gradient as computed by the
  trained loss's backward pass, which rounds apart from the Jacobian's.
  """
  return {name for name in before
          if np.abs(before[name] - after[name]).max() > 1e-6}


def test_a_canned_estimator_trains_shared_variables_named_on_the_aggregate(
    canned_runs):
  estimator, before, after = canned_runs['variables']
  assert estimator.get_variable_value('global_step') == STEPS
  assert _moved(before, after) == set(before) - {f'{HIDDEN}/kernel'}
  assert f'{HIDDEN}/bias' in before


def test_a_canned_estimator_trains_below_a_named_representation_on_it(
    canned_runs):
  _, before, after = canned_runs['representation']
  # The layer computing the representation gets only its aggregate (0).
  assert _moved(before, after) == set(before) - {f'{HIDDEN}/kernel',
                                                 f'{HIDDEN}/bias'}
  assert 'dnn/logits/kernel' in before


def test_a_tf1_canned_estimator_trains_on_the_aggregate_through_train_op_fn(
    canned_runs):
  _, before, after = canned_runs['v1_variables']
  moved = _moved(before, after)
  assert f'{HIDDEN}/kernel' in before and f'{HIDDEN}/kernel' not in moved
  assert {f'{HIDDEN}/bias', 'dnn/logits/kernel'} <= moved
  assert [name for name in moved if name.startswith('linear/')]


def test_the_export_of_an_aggregated_model_serves_as_one_without(
    canned_runs, tmp_path):
  estimator, _, _ = canned_runs['variables']
  plain = _dnn(MultiHead(fx.make_heads(), head_weights=list(
      fx.HEAD_WEIGHTS)), estimator.model_dir)
  examples = tf.constant(fx.serialized_examples(fx.make_data()[0]['x'][:5]))
  served = []
  for exporting in (estimator, plain):
    directory = exporting.export_saved_model(
        str(tmp_path / str(len(served))), fx.serving_input_receiver_fn())
    signatures = tf.saved_model.load(directory.decode()).signatures
    served.append({key: {name: value.numpy() for name, value in
                         _served(signature, examples).items()}
                   for key, signature in signatures.items()})
  assert set(served[0]) == set(served[1]) and len(served[0]) > 5
  for key, outputs in served[1].items():
    for name, value in outputs.items():
      np.testing.assert_array_equal(served[0][key][name], value)


def _served(signature, examples):
  (input_name,) = signature.structured_input_signature[1]
  return signature(**{input_name: examples})


# EVAL and PREDICT graphs.


def _graph(mode, aggregated, **options):
  """The graph of `mode`'s spec, with aggregation or without; `options`
  (such as `export_heads=`) given to the `MultiHead`."""
  with tf.Graph().as_default() as graph:
    variables = model.build_variables()
    _, logits, regularization = model.build_forward(variables)
    if aggregated:
      options['gradient_aggregation'] = cases.UnitRows(
          shared_variables=list(model.SHARED_VARIABLES))
    model.make_multi_head(**options).create_estimator_spec(
        features={}, mode=mode, logits=logits,
        labels=None if mode == tf.estimator.ModeKeys.PREDICT else
        model.LABELS, regularization_losses=[regularization])
  return graph


def _graph_def(mode, aggregated, **options):
  return _structure(_graph(mode, aggregated, **options).as_graph_def())


def _structure(graph_def):
  """Every node's name, op, inputs and attributes, and the functions'.

  Function names end in a counter that grows with every graph built in the
  process: it is left out, here and where nodes name the functions.
  """
  def uncounted(text):
    return re.sub(r'_\d+\b', '', text)

  nodes = [uncounted(str(node)) for node in graph_def.node]
  functions = sorted(uncounted(str(function))
                     for function in graph_def.library.function)
  return nodes, functions


@pytest.mark.parametrize('mode', [tf.estimator.ModeKeys.EVAL,
                                  tf.estimator.ModeKeys.PREDICT])
def test_eval_and_predict_graphs_are_those_without_aggregation(mode):
  aggregated, plain = _graph_def(mode, True), _graph_def(mode, False)
  assert len(aggregated[0]) > 20
  assert aggregated == plain


def _cut_heads(graph):
  """The positions of the heads cut from their fused group by own ops."""
  return sorted(op.name.rsplit('/', 1)[-1] for op in graph.get_operations()
                if op.type == 'Const' and '/head_cuts/head_' in op.name)


@pytest.mark.parametrize('export_heads, cut', [
    (None, ['head_0', 'head_1']), (['b'], ['head_1']), ([], [])])
def test_predict_graphs_cut_the_exported_heads_as_without_aggregation(
    export_heads, cut):
  # Heads a and b (regressions) fuse; an exported one is cut apart
  # (narrow_outputs), aggregation or not.
  options = {'export_heads': export_heads, 'serving_default': 'all'}
  predict = tf.estimator.ModeKeys.PREDICT
  aggregated = _graph(predict, True, **options)
  assert _cut_heads(aggregated) == cut
  assert _structure(aggregated.as_graph_def()) == _graph_def(
      predict, False, **options)


# TPUEstimator(use_tpu=False): one step by hand.


def _tpu_model_fn(features, labels, mode, params):
  del params
  variables = model.build_variables()
  _, logits, regularization = model.build_forward(variables, features['x'])
  head = model.make_multi_head(gradient_aggregation=cases.UnitRows(
      shared_representation=model.REPRESENTATION))

  def train_op_fn(loss):
    return tf.compat.v1.train.GradientDescentOptimizer(
        model.LEARNING_RATE).minimize(
            loss, global_step=tf.compat.v1.train.get_global_step())

  return head.create_tpu_estimator_spec(
      features=features, mode=mode, logits=logits, labels=labels,
      train_op_fn=train_op_fn, regularization_losses=[regularization])


def _tpu_input_fn(params):
  dataset = tf.data.Dataset.from_tensor_slices(({'x': model.X}, model.LABELS))
  return dataset.repeat().batch(params['batch_size'], drop_remainder=True)


def test_tpu_estimator_takes_the_aggregated_step(tmp_path):
  tpu = tf.compat.v1.estimator.tpu
  estimator = tpu.TPUEstimator(
      model_fn=_tpu_model_fn, use_tpu=False, export_to_tpu=False,
      train_batch_size=model.ROWS, eval_batch_size=model.ROWS,
      config=tpu.RunConfig(model_dir=str(tmp_path),
                           tpu_config=tpu.TPUConfig(iterations_per_loop=1)))
  estimator.train(_tpu_input_fn, steps=1)
  expected = model.expected_step(
      model.INITIAL, lambda jacobian: cases.direction('unit_rows', jacobian),
      over_representation=True)
  for name in model.VARIABLE_NAMES:
    np.testing.assert_allclose(
        estimator.get_variable_value(name),
        model.INITIAL[name] - model.LEARNING_RATE * expected[name],
        rtol=1e-5, atol=1e-6, err_msg=name)
  metrics = estimator.evaluate(_tpu_input_fn, steps=1)
  assert {'loss/a', 'loss/b', 'loss/c', 'auc/c'} <= set(metrics)
