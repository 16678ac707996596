"""A multi-head model to export, and a request handler like a model server's.

The model: one dense layer over the feature `x` (3 floats a row) gives the
logits of four heads of different kinds, split in this order:

* `clicks`: `BinaryClassHead` with string labels `'no'`/`'yes'` (1 logit).
* `color`: `MultiClassHead` with 3 classes, served as `'0'`, `'1'`, `'2'`.
* `value`: `RegressionHead` (1 logit).
* `tags`: `MultiLabelHead` with 2 classes.

The heads own no variables, so the checkpoint trained under our `MultiHead`
exports under `tf.estimator.MultiHead` too, and both SavedModels compute the
same numbers.

`SavedModelServer` answers `tensorflow_serving.apis` requests the way TF
Serving does: it loads the SavedModel's `serve` graph into a session, looks up
the signature a request names (`serving_default` when it names none), checks
that its method suits the request, feeds the request's inputs and builds the
response proto from the outputs.
"""
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import regression_pb2

import tensorflow_multihead

tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)

HEAD_NAMES = ('clicks', 'color', 'value', 'tags')
CLICK_VOCABULARY = ('no', 'yes')
N_COLORS = 3
N_TAGS = 2
N_ROWS = 16
BATCH_SIZE = 8
TRAIN_STEPS = 2
LEARNING_RATE = 0.1
# Serving parses `x` from serialized `tf.train.Example`s.
FEATURE_SPEC = {'x': tf.io.FixedLenFeature([3], tf.float32)}
LOGITS_LAYER = 'logits'

CLASSIFY_METHOD = tf.saved_model.CLASSIFY_METHOD_NAME
REGRESS_METHOD = tf.saved_model.REGRESS_METHOD_NAME
PREDICT_METHOD = tf.saved_model.PREDICT_METHOD_NAME


def make_heads():
  """Returns the four `tf.estimator` heads, freshly built."""
  return [
      tf.estimator.BinaryClassHead(
          label_vocabulary=list(CLICK_VOCABULARY), name='clicks'),
      tf.estimator.MultiClassHead(n_classes=N_COLORS, name='color'),
      tf.estimator.RegressionHead(name='value'),
      tf.estimator.MultiLabelHead(n_classes=N_TAGS, name='tags'),
  ]


def our_multi_head(default_head=None, **options):
  """Our `MultiHead` of the four heads; `options` such as `export_heads`."""
  return tensorflow_multihead.MultiHead(make_heads(),
                                        default_head=default_head, **options)


def reference_multi_head():
  return tf.estimator.MultiHead(make_heads())


def make_data(seed=7):
  """Returns `(features, labels)` dicts of numpy arrays, `N_ROWS` rows."""
  rng = np.random.RandomState(seed)
  x = rng.normal(size=(N_ROWS, 3)).astype(np.float32)
  clicks = np.where(x[:, :1] > 0, CLICK_VOCABULARY[1], CLICK_VOCABULARY[0])
  labels = {
      'clicks': clicks.astype(np.bytes_),
      'color': np.argmax(x, axis=1).reshape(-1, 1).astype(np.int64),
      'value': (2. * x[:, 1:2] - x[:, 2:3]).astype(np.float32),
      'tags': (x[:, :N_TAGS] > 0).astype(np.int64),
  }
  return {'x': x}, labels


def train_input_fn():
  features, labels = make_data()
  dataset = tf.data.Dataset.from_tensor_slices((features, labels))
  return dataset.repeat().batch(BATCH_SIZE)


def make_model_fn(multi_head_fn):
  """Returns a model_fn: one dense layer whose logits the head splits."""

  def model_fn(features, labels, mode):
    head = multi_head_fn()
    logits = tf.keras.layers.Dense(head.logits_dimension, name=LOGITS_LAYER)(
        features['x'])

    def train_op_fn(loss):
      optimizer = tf.compat.v1.train.GradientDescentOptimizer(LEARNING_RATE)
      return optimizer.minimize(
          loss, global_step=tf.compat.v1.train.get_global_step())

    return head.create_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels,
        train_op_fn=train_op_fn)

  return model_fn


def make_estimator(multi_head_fn, model_dir):
  return tf.estimator.Estimator(
      make_model_fn(multi_head_fn),
      config=tf.estimator.RunConfig(
          model_dir=str(model_dir), tf_random_seed=1234,
          save_summary_steps=1000, log_step_count_steps=1000))


def serving_input_receiver_fn():
  return tf.estimator.export.build_parsing_serving_input_receiver_fn(
      FEATURE_SPEC)


def export(multi_head_fn, model_dir, checkpoint, export_base):
  """Exports `checkpoint` under `multi_head_fn()`; returns the export dir."""
  estimator = make_estimator(multi_head_fn, model_dir)
  path = estimator.export_saved_model(
      str(export_base), serving_input_receiver_fn(),
      checkpoint_path=checkpoint)
  return path.decode()


def example(row):
  """Returns a `tf.train.Example` holding one row of `x`."""
  return tf.train.Example(features=tf.train.Features(feature={
      'x': tf.train.Feature(float_list=tf.train.FloatList(value=row))}))


def serialized_examples(x):
  return [example(row).SerializeToString() for row in x]


def _sigmoid(logits):
  return 1. / (1. + np.exp(-logits))


def _softmax(logits):
  exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return exp / exp.sum(axis=-1, keepdims=True)


def expected_outputs(checkpoint, x):
  """Computes what the heads serve for rows `x`, with numpy alone.

  Reads the dense layer's weights from `checkpoint`, so that served values
  are checked against arithmetic that shares no code with the heads.

  Returns:
    A dict keyed `<head>/<output>`: each head's `logits`, the classification
    `scores` and `classes` of the classifying heads, `clicks/logistic` and
    `value/predictions`.
  """
  kernel = tf.train.load_variable(checkpoint, f'{LOGITS_LAYER}/kernel')
  bias = tf.train.load_variable(checkpoint, f'{LOGITS_LAYER}/bias')
  logits = np.asarray(x, np.float64) @ kernel + bias
  split_at = np.cumsum([1, N_COLORS, 1])
  clicks, color, value, tags = np.split(logits, split_at, axis=1)
  clicks_probability = _sigmoid(clicks)

  def classes(names):
    return np.array([[name.encode() for name in names]] * len(x), object)

  return {
      'clicks/logits': clicks,
      'clicks/logistic': clicks_probability,
      'clicks/scores': np.hstack([1. - clicks_probability,
                                  clicks_probability]),
      'clicks/classes': classes(CLICK_VOCABULARY),
      'color/logits': color,
      'color/scores': _softmax(color),
      'color/classes': classes([str(c) for c in range(N_COLORS)]),
      'value/logits': value,
      'value/predictions': value,
      'tags/logits': tags,
      'tags/scores': _sigmoid(tags),
      'tags/classes': classes([str(c) for c in range(N_TAGS)]),
  }


class ServingError(Exception):
  """A request that a model server refuses, with its status code name."""

  def __init__(self, code, message):
    super().__init__(f'{code}: {message}')
    self.code = code


def serialized_inputs(input_proto):
  """Returns the serialized `tf.train.Example`s an `input_pb2.Input` holds.

  With `example_list_with_context`, each example is served with the context
  features added to it, as TF Serving does.
  """
  kind = input_proto.WhichOneof('kind')
  if kind == 'example_list':
    return [e.SerializeToString() for e in input_proto.example_list.examples]
  if kind == 'example_list_with_context':
    given = input_proto.example_list_with_context
    merged = []
    for own in given.examples:
      combined = tf.train.Example()
      combined.CopyFrom(given.context)
      combined.MergeFrom(own)
      merged.append(combined.SerializeToString())
    return merged
  raise ServingError('INVALID_ARGUMENT', 'Input is empty.')


class SavedModelServer:
  """Answers Predict, Classify and Regress requests from one SavedModel.

  Args:
    export_dir: The SavedModel's directory.
    model_name: The name a response's `model_spec` carries.
    version: The version a response's `model_spec` carries.
  """

  def __init__(self, export_dir, model_name='multihead', version=1):
    self.model_name = model_name
    self.version = version
    self._graph = tf.Graph()
    self._session = tf.compat.v1.Session(graph=self._graph)
    meta_graph = tf.compat.v1.saved_model.loader.load(
        self._session, [tf.saved_model.SERVING], export_dir)
    self.signature_defs = dict(meta_graph.signature_def)

  def close(self):
    self._session.close()

  def run(self, signature_name, inputs, output_keys=None):
    """Runs a signature: feeds `inputs` by input key, returns outputs by key."""
    signature = self.signature_defs[signature_name]
    output_keys = sorted(output_keys or signature.outputs)
    fetches = [signature.outputs[key].name for key in output_keys]
    feed = {signature.inputs[key].name: value
            for key, value in inputs.items()}
    return dict(zip(output_keys, self._session.run(fetches, feed)))

  def _signature(self, model_spec, method=None):
    """Returns the named signature's key and def, checking its method."""
    name = (model_spec.signature_name or
            tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY)
    if name not in self.signature_defs:
      raise ServingError('NOT_FOUND',
                         f'Serving signature key "{name}" not found.')
    signature = self.signature_defs[name]
    if method is not None and signature.method_name != method:
      raise ServingError(
          'INVALID_ARGUMENT',
          f'Expected signature "{name}" method_name to be {method}. '
          f'Was: {signature.method_name}')
    return name, signature

  def _response_spec(self, response, signature_name):
    response.model_spec.name = self.model_name
    response.model_spec.version.value = self.version
    response.model_spec.signature_name = signature_name

  def predict(self, request):
    """Answers a `PredictRequest` with a `PredictResponse`."""
    name, signature = self._signature(request.model_spec)
    given, expected = set(request.inputs), set(signature.inputs)
    if given != expected:
      raise ServingError(
          'INVALID_ARGUMENT',
          f'Request inputs {sorted(given)} do not match signature "{name}" '
          f'inputs {sorted(expected)}.')
    unknown = set(request.output_filter) - set(signature.outputs)
    if unknown:
      raise ServingError(
          'INVALID_ARGUMENT',
          f'output_filter names unknown outputs {sorted(unknown)} of '
          f'signature "{name}".')
    inputs = {key: tf.make_ndarray(proto)
              for key, proto in request.inputs.items()}
    outputs = self.run(name, inputs, list(request.output_filter))
    response = predict_pb2.PredictResponse()
    self._response_spec(response, name)
    for key, value in outputs.items():
      response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    return response

  def _run_on_examples(self, name, signature, request):
    examples = serialized_inputs(request.input)
    input_keys = list(signature.inputs)
    if input_keys != [tf.saved_model.CLASSIFY_INPUTS]:
      raise ServingError(
          'INVALID_ARGUMENT',
          f'Signature "{name}" takes inputs {input_keys}, not one '
          f'"{tf.saved_model.CLASSIFY_INPUTS}" tensor of examples.')
    return examples, self.run(name, {input_keys[0]: examples})

  def classify(self, request):
    """Answers a `ClassificationRequest` with a `ClassificationResponse`."""
    name, signature = self._signature(request.model_spec, CLASSIFY_METHOD)
    examples, outputs = self._run_on_examples(name, signature, request)
    classes = outputs.get(tf.saved_model.CLASSIFY_OUTPUT_CLASSES)
    scores = outputs.get(tf.saved_model.CLASSIFY_OUTPUT_SCORES)
    some_output = scores if classes is None else classes
    if some_output is None or some_output.shape[0] != len(examples):
      raise ServingError(
          'INVALID_ARGUMENT',
          f'Signature "{name}" gives no classes or scores for each example.')
    response = classification_pb2.ClassificationResponse()
    self._response_spec(response, name)
    for row in range(len(examples)):
      classifications = response.result.classifications.add()
      for column in range(some_output.shape[1]):
        served = classifications.classes.add()
        if classes is not None:
          served.label = classes[row, column].decode()
        if scores is not None:
          served.score = scores[row, column]
    return response

  def regress(self, request):
    """Answers a `RegressionRequest` with a `RegressionResponse`."""
    name, signature = self._signature(request.model_spec, REGRESS_METHOD)
    examples, outputs = self._run_on_examples(name, signature, request)
    values = outputs[tf.saved_model.REGRESS_OUTPUTS]
    if values.shape not in ((len(examples),), (len(examples), 1)):
      raise ServingError(
          'INVALID_ARGUMENT',
          f'Signature "{name}" gives outputs of shape {values.shape}; '
          f'expected one value for each of {len(examples)} examples.')
    response = regression_pb2.RegressionResponse()
    self._response_spec(response, name)
    for value in values.reshape(-1):
      response.result.regressions.add().value = value
    return response
