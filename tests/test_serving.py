"""Serving a `MultiHead` model end to end, next to `tf.estimator.MultiHead`.

One Estimator with four heads (binary with a label vocabulary, multi-class,
regression, multi-label) trains two steps under our `MultiHead`. Its
checkpoint is exported with a parsing serving input receiver under our
head, under the reference `tf.estimator.MultiHead`, under ours with
`default_head='color'`, and under ours with `export_heads=['color']`,
`export_heads=[]`, `serving_default='all'` and both of the last two. Then:

* the SignatureDefs (keys, method names, input and output keys, dtypes and
  shapes) and every signature's outputs equal the reference's;
* TensorFlow's `saved_model_cli` lists them (`show --all`) and runs a
  classification, a regression and the merged predict signature;
* `tensorflow_serving.apis` Predict, Classify and Regress requests are
  answered from the SavedModel as a model server does;
* `default_head` chooses the head behind `serving_default`;
* `export_heads` keeps `serving_default`, `predict` and the chosen heads'
  signatures, as the full export serves them; `serving_default='all'`
  serves every head's predictions to requests naming no signature;
* TF 2's `tf.saved_model.load` and `saved_model_cli` read the reduced
  exports, whose `predict` answers as `Estimator.predict`.
"""
import ast
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import input_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import regression_pb2

import tensorflow_multihead
from tests import serving_fixtures as fx

pytestmark = pytest.mark.xdist_group('serving')

CLASSIFY = fx.CLASSIFY_METHOD
REGRESS = fx.REGRESS_METHOD
PREDICT = fx.PREDICT_METHOD
# Every signature a model with these four heads serves, and its method.
EXPECTED_METHODS = {
    'serving_default': CLASSIFY,
    'predict': PREDICT,
    'clicks': CLASSIFY,
    'clicks/classification': CLASSIFY,
    'clicks/regression': REGRESS,
    'clicks/predict': PREDICT,
    'color': CLASSIFY,
    'color/classification': CLASSIFY,
    'color/predict': PREDICT,
    'value': REGRESS,
    'value/regression': REGRESS,
    'value/predict': PREDICT,
    'tags': CLASSIFY,
    'tags/classification': CLASSIFY,
    'tags/predict': PREDICT,
}
# Rows to serve; multiples of 1/4, so that the float lists that
# `saved_model_cli --input_examples` builds hold exactly these float32s.
SERVED_X = np.array([[0.5, -1.0, 2.0],
                     [1.5, 0.25, -3.0],
                     [-0.75, 2.0, 0.0]], np.float32)
INPUT_EXAMPLES = 'inputs=' + repr(
    [{'x': [float(value) for value in row]} for row in SERVED_X])
MERGED_PREDICT_KEYS = sorted(
    [f'clicks/{key}' for key in ('all_class_ids', 'all_classes', 'class_ids',
                                 'classes', 'logistic', 'logits',
                                 'probabilities')] +
    [f'color/{key}' for key in ('all_class_ids', 'all_classes', 'class_ids',
                                'classes', 'logits', 'probabilities')] +
    ['tags/classes', 'tags/logits', 'tags/probabilities',
     'value/predictions'])


@pytest.fixture(scope='module')
def model(tmp_path_factory):
  """Trains once; exports the checkpoint under each multi-head."""
  base = tmp_path_factory.mktemp('serving')
  model_dir = base / 'model'
  estimator = fx.make_estimator(fx.our_multi_head, model_dir)
  estimator.train(fx.train_input_fn, steps=fx.TRAIN_STEPS)
  checkpoint = estimator.latest_checkpoint()
  multi_heads = {
      'ours': fx.our_multi_head,
      'reference': fx.reference_multi_head,
      'color_default': lambda: fx.our_multi_head(default_head='color'),
      'color_only': lambda: fx.our_multi_head(export_heads=['color']),
      'reduced': lambda: fx.our_multi_head(export_heads=[]),
      'serve_all': lambda: fx.our_multi_head(serving_default='all'),
      'reduced_all': lambda: fx.our_multi_head(export_heads=[],
                                               serving_default='all'),
  }
  exports = {
      side: fx.export(multi_head_fn, model_dir, checkpoint,
                      base / f'export_{side}')
      for side, multi_head_fn in multi_heads.items()}
  return {'checkpoint': checkpoint, 'exports': exports, 'base': base}


@pytest.fixture(scope='module')
def servers(model):
  """A `SavedModelServer` on each export."""
  loaded = {side: fx.SavedModelServer(path)
            for side, path in model['exports'].items()}
  yield loaded
  for server in loaded.values():
    server.close()


@pytest.fixture(scope='module')
def expected(model):
  return fx.expected_outputs(model['checkpoint'], SERVED_X)


def _examples():
  return fx.serialized_examples(SERVED_X)


def _run_on_examples(server, signature_key):
  signature = server.signature_defs[signature_key]
  (input_key,) = signature.inputs
  return server.run(signature_key, {input_key: _examples()})


def _tensor_spec(info):
  return (info.dtype, tuple(dim.size for dim in info.tensor_shape.dim))


def _io_spec(signature):
  """What a client sees of a signature: method, keys, dtypes and shapes."""
  return {
      'method': signature.method_name,
      'inputs': {key: _tensor_spec(info)
                 for key, info in signature.inputs.items()},
      'outputs': {key: _tensor_spec(info)
                  for key, info in signature.outputs.items()},
  }


def _assert_same_values(actual, expected, what):
  expected = np.asarray(expected)
  actual = np.asarray(actual)
  assert actual.shape == expected.shape, what
  if expected.dtype.kind in 'fc':
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6,
                               err_msg=what)
  else:
    np.testing.assert_array_equal(actual.astype(object),
                                  expected.astype(object), err_msg=what)


# The exported SignatureDefs, side by side with the reference's.


def test_export_serves_every_head_kind_under_its_method(servers):
  methods = {key: signature.method_name
             for key, signature in servers['ours'].signature_defs.items()}
  assert methods == EXPECTED_METHODS


def test_export_signature_keys_and_methods_equal_reference(servers):
  ours, reference = (
      {key: signature.method_name
       for key, signature in servers[side].signature_defs.items()}
      for side in ('ours', 'reference'))
  assert ours == reference


def test_classify_and_regress_take_inputs_and_predict_takes_examples(
    servers):
  input_keys = {key: list(signature.inputs)
                for key, signature in servers['ours'].signature_defs.items()}
  assert input_keys == {
      key: ['examples'] if method == PREDICT else ['inputs']
      for key, method in EXPECTED_METHODS.items()}


@pytest.mark.parametrize('signature_key', sorted(EXPECTED_METHODS))
def test_signature_inputs_and_outputs_equal_reference(servers, signature_key):
  ours, reference = (
      _io_spec(servers[side].signature_defs[signature_key])
      for side in ('ours', 'reference'))
  assert ours == reference


def test_merged_predict_signature_outputs_every_head_prediction(servers):
  outputs = servers['ours'].signature_defs['predict'].outputs
  assert sorted(outputs) == MERGED_PREDICT_KEYS


def test_serving_default_is_the_first_heads_default_signature(servers):
  signatures = servers['ours'].signature_defs
  assert signatures['serving_default'] == signatures['clicks']


@pytest.mark.parametrize('signature_key', sorted(EXPECTED_METHODS))
def test_signature_outputs_equal_reference_on_same_examples(servers,
                                                            signature_key):
  ours, reference = (_run_on_examples(servers[side], signature_key)
                     for side in ('ours', 'reference'))
  assert sorted(ours) == sorted(reference)
  for key in ours:
    _assert_same_values(ours[key], reference[key], f'{signature_key}:{key}')


@pytest.mark.parametrize('signature_key, output_key, expected_key', [
    ('clicks/classification', 'scores', 'clicks/scores'),
    ('clicks/classification', 'classes', 'clicks/classes'),
    ('clicks/regression', 'outputs', 'clicks/logistic'),
    ('color/classification', 'scores', 'color/scores'),
    ('color/classification', 'classes', 'color/classes'),
    ('value/regression', 'outputs', 'value/predictions'),
    ('tags/classification', 'scores', 'tags/scores'),
    ('tags/classification', 'classes', 'tags/classes'),
    ('predict', 'color/logits', 'color/logits'),
    ('predict', 'tags/probabilities', 'tags/scores'),
])
def test_signature_outputs_equal_numpy_from_checkpoint_weights(
    servers, expected, signature_key, output_key, expected_key):
  outputs = _run_on_examples(servers['ours'], signature_key)
  _assert_same_values(outputs[output_key], expected[expected_key],
                      f'{signature_key}:{output_key}')


# TensorFlow's saved_model_cli on our export.


def _saved_model_cli():
  """The console script beside this Python, else its module."""
  script = pathlib.Path(sys.executable).parent / 'saved_model_cli'
  if script.exists():
    return [str(script)]
  return [sys.executable, '-m', 'tensorflow.python.tools.saved_model_cli']


def _run_all(commands, timeout=300):
  """Runs the commands at once; returns each one's stdout, by name."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  processes = {
      name: subprocess.Popen(_saved_model_cli() + args, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
      for name, args in commands.items()}
  outputs, failures = {}, {}
  try:
    for name, process in processes.items():
      stdout, stderr = process.communicate(timeout=timeout)
      outputs[name] = stdout
      if process.returncode != 0:
        failures[name] = stderr[-3000:]
  finally:
    for process in processes.values():
      if process.poll() is None:
        process.kill()
        process.wait()
  assert not failures, failures
  return outputs


@pytest.fixture(scope='module')
def cli(model):
  """`saved_model_cli` show --all and three runs on our export, at once."""
  export_dir = model['exports']['ours']
  examples_file = model['base'] / 'examples.npy'
  # An object array: numpy's bytes dtype would drop trailing zero bytes.
  np.save(examples_file, np.array(_examples(), dtype=object))
  run = ['run', '--dir', export_dir, '--tag_set', 'serve', '--signature_def']
  return _run_all({
      'show': ['show', '--dir', export_dir, '--all'],
      'show_reduced_all': ['show', '--dir',
                           model['exports']['reduced_all'], '--all'],
      'classification': run + ['clicks/classification',
                               '--input_examples', INPUT_EXAMPLES],
      'regression': run + ['value/regression',
                           '--input_examples', INPUT_EXAMPLES],
      'predict': run + ['predict', '--inputs', f'examples={examples_file}'],
  })


def _parse_show_all(text):
  """Reads signatures from `show --all` output as `_io_spec` dicts."""
  signatures, current, tensor = {}, None, None
  for line in text.splitlines():
    if match := re.fullmatch(r"signature_def\['(.+)'\]:", line):
      current = signatures[match[1]] = {'inputs': {}, 'outputs': {}}
    elif match := re.fullmatch(r"\s+(inputs|outputs)\['(.+)'\] tensor_info:",
                               line):
      tensor = current[match[1]][match[2]] = {}
    elif match := re.fullmatch(r'\s+dtype: (\w+)', line):
      tensor['dtype'] = types_pb2.DataType.Value(match[1])
    elif match := re.fullmatch(r'\s+shape: \((.*)\)', line):
      tensor['shape'] = tuple(int(size) for size in match[1].split(','))
    elif match := re.fullmatch(r'\s+Method name is: (\S+)', line):
      current['method'] = match[1]
  for signature in signatures.values():
    for kind in ('inputs', 'outputs'):
      signature[kind] = {key: (info['dtype'], info['shape'])
                         for key, info in signature[kind].items()}
  return signatures


_TOKEN = re.compile(
    r"\[|\]|b'[^']*'|[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|nan|-?inf")


def _parse_printed_array(text):
  """Reads back a numpy array as `print` shows it (numbers or bytes)."""
  nested = [[]]
  for token in _TOKEN.findall(text):
    if token == '[':
      nested.append([])
    elif token == ']':
      done = nested.pop()
      nested[-1].append(done)
    else:
      nested[-1].append(float(token) if token.endswith(('nan', 'inf'))
                        else ast.literal_eval(token))
  (array,) = nested[0]
  return np.array(array, object if isinstance(np.ravel(array)[0], bytes)
                  else None)


def _parse_run(text):
  """Maps each output key that `saved_model_cli run` printed to its array."""
  pieces = re.split(r'^Result for output key (\S+):\n', text, flags=re.M)
  return {key: _parse_printed_array(body)
          for key, body in zip(pieces[1::2], pieces[2::2])}


def test_cli_show_all_lists_every_signature_like_reference(cli, servers):
  shown = _parse_show_all(cli['show'])
  assert sorted(shown) == sorted(EXPECTED_METHODS)
  assert shown == {key: _io_spec(signature) for key, signature
                   in servers['reference'].signature_defs.items()}


def test_cli_show_all_prints_each_method_name(cli):
  shown = _parse_show_all(cli['show'])
  assert {key: signature['method'] for key, signature in shown.items()} == (
      EXPECTED_METHODS)


@pytest.mark.parametrize('run, signature_key', [
    ('classification', 'clicks/classification'),
    ('regression', 'value/regression'),
    ('predict', 'predict'),
])
def test_cli_run_prints_outputs_equal_to_in_process_run(cli, servers, run,
                                                        signature_key):
  printed = _parse_run(cli[run])
  computed = _run_on_examples(servers['ours'], signature_key)
  assert sorted(printed) == sorted(computed)
  for key, value in computed.items():
    _assert_same_values(printed[key], value, f'{signature_key}:{key}')


def test_cli_run_classification_prints_vocabulary_and_probabilities(
    cli, expected):
  printed = _parse_run(cli['classification'])
  _assert_same_values(printed['classes'], expected['clicks/classes'],
                      'classes')
  _assert_same_values(printed['scores'], expected['clicks/scores'], 'scores')


def test_cli_run_regression_prints_predicted_values(cli, expected):
  printed = _parse_run(cli['regression'])
  _assert_same_values(printed['outputs'], expected['value/predictions'],
                      'outputs')


# Requests built with tensorflow-serving-api, answered as a server does.


def _model_spec(message, signature_name):
  message.model_spec.name = 'multihead'
  if signature_name is not None:
    message.model_spec.signature_name = signature_name
  return message


def _example_list():
  return input_pb2.Input(example_list=input_pb2.ExampleList(
      examples=[fx.example(row) for row in SERVED_X]))


def _classification_request(signature_name):
  request = _model_spec(classification_pb2.ClassificationRequest(),
                        signature_name)
  request.input.CopyFrom(_example_list())
  return request


def _regression_request(signature_name):
  request = _model_spec(regression_pb2.RegressionRequest(), signature_name)
  request.input.CopyFrom(_example_list())
  return request


def _predict_request(signature_name, output_filter=()):
  request = _model_spec(predict_pb2.PredictRequest(), signature_name)
  request.inputs['examples'].CopyFrom(tf.make_tensor_proto(_examples()))
  request.output_filter.extend(output_filter)
  return request


def _labels_and_scores(response):
  labels = [[served.label.encode() for served in classification.classes]
            for classification in response.result.classifications]
  scores = [[served.score for served in classification.classes]
            for classification in response.result.classifications]
  return np.array(labels, object), np.array(scores)


def test_predict_request_on_merged_signature_returns_filtered_outputs(
    servers, expected):
  chosen = ['clicks/logistic', 'color/probabilities', 'tags/probabilities',
            'value/predictions']
  response = servers['ours'].predict(_predict_request('predict', chosen))
  assert response.model_spec.signature_name == 'predict'
  assert sorted(response.outputs) == chosen
  outputs = {key: tf.make_ndarray(proto)
             for key, proto in response.outputs.items()}
  for key, expected_key in zip(chosen, ['clicks/logistic', 'color/scores',
                                        'tags/scores', 'value/predictions']):
    _assert_same_values(outputs[key], expected[expected_key], key)


def test_predict_request_on_head_signature_returns_all_its_outputs(
    servers, expected):
  response = servers['ours'].predict(_predict_request('color/predict'))
  outputs = {key: tf.make_ndarray(proto)
             for key, proto in response.outputs.items()}
  assert sorted(outputs) == ['all_class_ids', 'all_classes', 'class_ids',
                             'classes', 'logits', 'probabilities']
  _assert_same_values(outputs['probabilities'], expected['color/scores'],
                      'probabilities')
  _assert_same_values(
      outputs['class_ids'],
      np.argmax(expected['color/logits'], axis=1).reshape(-1, 1),
      'class_ids')


@pytest.mark.parametrize('signature_key, head', [
    ('clicks/classification', 'clicks'),
    ('color/classification', 'color'),
    ('tags/classification', 'tags'),
    ('color', 'color'),
])
def test_classification_request_returns_labels_and_scores_per_example(
    servers, expected, signature_key, head):
  response = servers['ours'].classify(_classification_request(signature_key))
  assert response.model_spec.signature_name == signature_key
  assert len(response.result.classifications) == len(SERVED_X)
  labels, scores = _labels_and_scores(response)
  _assert_same_values(labels, expected[f'{head}/classes'], 'labels')
  _assert_same_values(scores, expected[f'{head}/scores'], 'scores')


def test_classification_request_naming_no_signature_gets_first_head(
    servers, expected):
  response = servers['ours'].classify(_classification_request(None))
  assert response.model_spec.signature_name == 'serving_default'
  labels, scores = _labels_and_scores(response)
  _assert_same_values(labels, expected['clicks/classes'], 'labels')
  _assert_same_values(scores, expected['clicks/scores'], 'scores')


@pytest.mark.parametrize('signature_key, expected_key', [
    ('value/regression', 'value/predictions'),
    ('value', 'value/predictions'),
    ('clicks/regression', 'clicks/logistic'),
])
def test_regression_request_returns_one_value_per_example(
    servers, expected, signature_key, expected_key):
  response = servers['ours'].regress(_regression_request(signature_key))
  assert response.model_spec.signature_name == signature_key
  values = [regression.value for regression in response.result.regressions]
  _assert_same_values(values, expected[expected_key].reshape(-1), 'values')


def test_classification_request_with_context_serves_context_features(
    servers, expected):
  request = _model_spec(classification_pb2.ClassificationRequest(),
                        'color/classification')
  given = request.input.example_list_with_context
  given.context.CopyFrom(fx.example(SERVED_X[1]))
  given.examples.extend([tf.train.Example(), tf.train.Example()])
  _, scores = _labels_and_scores(servers['ours'].classify(request))
  _assert_same_values(scores, expected['color/scores'][[1, 1]], 'scores')


@pytest.mark.parametrize('make_request', [
    lambda: _predict_request('predict', ['value/predictions']),
    lambda: _classification_request('tags/classification'),
    lambda: _regression_request('clicks/regression'),
], ids=['predict', 'classify', 'regress'])
def test_responses_equal_reference_responses(servers, make_request):
  request = make_request()
  answer = {predict_pb2.PredictRequest: 'predict',
            classification_pb2.ClassificationRequest: 'classify',
            regression_pb2.RegressionRequest: 'regress'}[type(request)]
  ours, reference = (getattr(servers[side], answer)(request)
                     for side in ('ours', 'reference'))
  assert ours == reference


@pytest.mark.parametrize('make_request, signature_key, code', [
    (_classification_request, 'value/regression', 'INVALID_ARGUMENT'),
    (_regression_request, 'color/classification', 'INVALID_ARGUMENT'),
    (_classification_request, 'colour/classification', 'NOT_FOUND'),
])
def test_request_for_a_signature_of_another_method_or_none_is_refused(
    servers, make_request, signature_key, code):
  request = make_request(signature_key)
  answer = (servers['ours'].classify
            if isinstance(request, classification_pb2.ClassificationRequest)
            else servers['ours'].regress)
  with pytest.raises(fx.ServingError, match=re.escape(signature_key)) as info:
    answer(request)
  assert info.value.code == code


# default_head: the head served under serving_default.


def test_default_head_serves_named_head_under_serving_default(servers):
  signatures = servers['color_default'].signature_defs
  assert signatures['serving_default'] == signatures['color']
  assert signatures['serving_default'].method_name == CLASSIFY


def test_default_head_serving_default_outputs_equal_heads_own_signature(
    servers, expected):
  server = servers['color_default']
  served = _run_on_examples(server, 'serving_default')
  own = _run_on_examples(server, 'color')
  assert sorted(served) == ['classes', 'scores']
  for key in served:
    _assert_same_values(served[key], own[key], key)
  _assert_same_values(served['scores'], expected['color/scores'], 'scores')


def test_default_head_classification_request_without_name_gets_that_head(
    servers, expected):
  response = servers['color_default'].classify(_classification_request(None))
  labels, scores = _labels_and_scores(response)
  _assert_same_values(labels, expected['color/classes'], 'labels')
  _assert_same_values(scores, expected['color/scores'], 'scores')


def test_default_head_changes_no_other_signature(servers):
  default, chosen = (servers[side].signature_defs
                     for side in ('ours', 'color_default'))
  assert sorted(chosen) == sorted(default)
  for key in default:
    if key != 'serving_default':
      assert chosen[key] == default[key], key


@pytest.mark.parametrize('default_head, served_head', [
    (None, 'clicks'),
    ('clicks', 'clicks'),
    ('color', 'color'),
    ('value', 'value'),
    ('tags', 'tags'),
])
def test_default_head_picks_the_served_export_output(default_head,
                                                     served_head):
  head = fx.our_multi_head(default_head=default_head)
  assert head.default_head == served_head
  with tf.Graph().as_default():
    spec = head.create_estimator_spec(
        features={'x': tf.zeros([2, 3])}, mode=tf.estimator.ModeKeys.PREDICT,
        logits=tf.zeros([2, head.logits_dimension]))
  outputs = spec.export_outputs
  assert outputs['serving_default'] is outputs[served_head]


def test_default_head_regression_head_serves_regress_by_default():
  head = fx.our_multi_head(default_head='value')
  with tf.Graph().as_default():
    spec = head.create_estimator_spec(
        features={'x': tf.zeros([2, 3])}, mode=tf.estimator.ModeKeys.PREDICT,
        logits=tf.zeros([2, head.logits_dimension]))
    signature = spec.export_outputs['serving_default'].as_signature_def(
        {'inputs': tf.compat.v1.placeholder(tf.string, [None])})
  assert signature.method_name == REGRESS


def test_default_head_unknown_name_raises_value_error_naming_it():
  with pytest.raises(ValueError, match=r"'colour'.*\['clicks', 'color', "
                                       r"'value', 'tags'\]"):
    tensorflow_multihead.MultiHead(fx.make_heads(), default_head='colour')


# export_heads: the heads whose own signatures an export holds.

SHARED_KEYS = ('serving_default', 'predict')


def test_export_heads_exports_those_heads_signatures_only(servers):
  assert sorted(servers['color_only'].signature_defs) == [
      'color', 'color/classification', 'color/predict', 'predict',
      'serving_default']


def test_empty_export_heads_exports_serving_default_and_predict_alone(
    servers):
  assert sorted(servers['reduced'].signature_defs) == sorted(SHARED_KEYS)


@pytest.mark.parametrize('side', ['color_only', 'reduced'])
def test_export_heads_keep_each_kept_signature_as_the_full_export(
    servers, side):
  chosen, full = servers[side], servers['ours']
  for key in chosen.signature_defs:
    assert _io_spec(chosen.signature_defs[key]) == _io_spec(
        full.signature_defs[key]), key
    served, expected = (_run_on_examples(server, key)
                        for server in (chosen, full))
    assert sorted(served) == sorted(expected)
    for output in served:
      _assert_same_values(served[output], expected[output], f'{key}:{output}')


def test_reduced_export_serves_the_first_head_by_default(servers, expected):
  response = servers['reduced'].classify(_classification_request(None))
  labels, scores = _labels_and_scores(response)
  _assert_same_values(labels, expected['clicks/classes'], 'labels')
  _assert_same_values(scores, expected['clicks/scores'], 'scores')


def test_reduced_export_refuses_a_heads_signature_as_not_found(servers):
  with pytest.raises(fx.ServingError, match='color/classification') as info:
    servers['reduced'].classify(
        _classification_request('color/classification'))
  assert info.value.code == 'NOT_FOUND'


# serving_default='all': every head's predictions for clients that call
# serving_default only.


@pytest.mark.parametrize('side', ['serve_all', 'reduced_all'])
def test_serving_default_all_is_the_merged_predict_signature(servers, side):
  signatures = servers[side].signature_defs
  assert signatures['serving_default'].method_name == PREDICT
  assert _io_spec(signatures['serving_default']) == _io_spec(
      servers['ours'].signature_defs['predict'])
  assert sorted(signatures['serving_default'].outputs) == MERGED_PREDICT_KEYS


def test_serving_default_all_changes_no_other_signature(servers):
  assert sorted(servers['serve_all'].signature_defs) == sorted(
      EXPECTED_METHODS)
  for key, signature in servers['serve_all'].signature_defs.items():
    if key != 'serving_default':
      assert _io_spec(signature) == _io_spec(
          servers['ours'].signature_defs[key]), key


def test_reduced_all_export_holds_two_signatures(servers):
  assert sorted(servers['reduced_all'].signature_defs) == sorted(SHARED_KEYS)


@pytest.mark.parametrize('side', ['serve_all', 'reduced_all'])
def test_predict_request_naming_no_signature_gets_every_head(servers,
                                                             expected, side):
  response = servers[side].predict(_predict_request(None))
  assert response.model_spec.signature_name == 'serving_default'
  outputs = {key: tf.make_ndarray(proto)
             for key, proto in response.outputs.items()}
  assert sorted(outputs) == MERGED_PREDICT_KEYS
  for key, expected_key in [
      ('clicks/logistic', 'clicks/logistic'), ('clicks/logits', 'clicks/logits'),
      ('color/probabilities', 'color/scores'),
      ('tags/probabilities', 'tags/scores'),
      ('value/predictions', 'value/predictions')]:
    _assert_same_values(outputs[key], expected[expected_key], key)


def test_cli_show_all_lists_the_reduced_exports_two_signatures(cli, servers):
  shown = _parse_show_all(cli['show_reduced_all'])
  assert shown == {key: _io_spec(signature) for key, signature
                   in servers['reduced_all'].signature_defs.items()}
  assert sorted(shown) == sorted(SHARED_KEYS)


# TF 2's loader, as Python users load an export.


@pytest.fixture(scope='module')
def loaded(model):
  """Each of our exports loaded with `tf.saved_model.load`."""
  return {side: tf.saved_model.load(model['exports'][side])
          for side in ('ours', 'reduced', 'reduced_all')}


def test_tf2_loader_finds_every_signature(loaded, servers):
  for side, model in loaded.items():
    assert sorted(model.signatures) == sorted(
        servers[side].signature_defs), side


@pytest.mark.parametrize('side', ['ours', 'reduced', 'reduced_all'])
def test_tf2_loaded_predict_answers_every_heads_predictions(loaded, expected,
                                                            side):
  outputs = loaded[side].signatures['predict'](
      examples=tf.constant(_examples()))
  assert sorted(outputs) == MERGED_PREDICT_KEYS
  _assert_same_values(outputs['color/probabilities'].numpy(),
                      expected['color/scores'], 'color/probabilities')
  _assert_same_values(outputs['clicks/logistic'].numpy(),
                      expected['clicks/logistic'], 'clicks/logistic')


def test_tf2_loaded_head_signature_answers_that_head(loaded, expected):
  outputs = loaded['ours'].signatures['tags/classification'](
      inputs=tf.constant(_examples()))
  _assert_same_values(outputs['scores'].numpy(), expected['tags/scores'],
                      'scores')
  _assert_same_values(outputs['classes'].numpy(), expected['tags/classes'],
                      'classes')


def test_tf2_loaded_serving_default_all_answers_every_head(loaded, expected):
  outputs = loaded['reduced_all'].signatures['serving_default'](
      examples=tf.constant(_examples()))
  assert sorted(outputs) == MERGED_PREDICT_KEYS
  _assert_same_values(outputs['value/predictions'].numpy(),
                      expected['value/predictions'], 'value/predictions')


def test_reduced_export_predicts_what_the_estimator_predicts(model, loaded):
  estimator = fx.make_estimator(fx.our_multi_head, model['base'] / 'model')

  def input_fn():
    return tf.data.Dataset.from_tensor_slices({'x': SERVED_X}).batch(8)

  predicted = list(estimator.predict(input_fn))
  served = loaded['reduced'].signatures['predict'](
      examples=tf.constant(_examples()))
  assert len(predicted) == len(SERVED_X)
  for (head, key), value in predicted[0].items():
    rows = np.stack([row[head, key] for row in predicted])
    _assert_same_values(served[f'{head}/{key}'].numpy(), rows,
                        f'{head}/{key}')
