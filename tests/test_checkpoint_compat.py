"""Checkpoints move both ways between the reference multi-heads and ours.

Issue 7, item 6. A model is trained `STEPS` steps under one multi-head class
(its *origin*); training then continues `MORE_STEPS` steps in that
`model_dir` under the other class (the *successor*), and, for a control,
in a copy of it under the origin again. Each way round
(reference to ours, ours to reference) and for four models:

* `custom`: a `model_fn` of one dense layer whose logits
  `tf.estimator.MultiHead` or our `MultiHead` splits, trained by the head
  through a Keras Adam optimizer (slot and hyper-parameter variables);
* `DNNEstimator`: `tf.estimator.DNNEstimator(head=...)`, its Adagrad slots;
* `contrib_custom`: the `model_fn` under TF 1.15's own
  `tf.contrib.estimator.multi_head` (`tests/support/tf1_reference.py`) or
  our `contrib.multi_head`, trained by a `tf.compat.v1` Adam optimizer;
* `contrib_DNNEstimator`: TF 1.x's `tf.compat.v1.estimator.DNNEstimator`
  with either contrib multi-head as `head=`.

Continuing restores every variable of the checkpoint (a missing one would
fail the restore) and saves no other; the global step continues; the
variables equal the control's (1e-5: both continue with op determinism
enabled, see FACTS.md); the successor evaluates that checkpoint as the origin
does, and its export serves what the origin predicts.
"""
import contextlib
import dataclasses
import shutil
from typing import Callable

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

import tensorflow_multihead
from tensorflow_multihead import contrib
from tests import estimator_fixtures as fx
from tests.support import tf1_reference

pytestmark = pytest.mark.xdist_group('checkpoint_compat')

STEPS = 2
MORE_STEPS = 2
LEARNING_RATE = 0.1
SIDES = ('reference', 'ours')
TF1_HEAD, TF1_MULTI_HEAD = tf1_reference.modules()


# The four models, each under the reference's multi-head class and ours.


def _contrib_heads(factories):
  """The heads of `estimator_fixtures.make_heads`, from TF 1.x factories."""
  return [
      factories.binary_classification_head(
          label_vocabulary=list(fx.CLICK_VOCABULARY), name='clicks'),
      factories.multi_class_head(n_classes=fx.N_COLORS, name='color'),
      factories.regression_head(weight_column='w', name='value'),
  ]


V2_MULTI_HEADS = {'reference': fx.reference_multi_head,
                  'ours': fx.our_multi_head}
CONTRIB_MULTI_HEADS = {
    'reference': lambda: TF1_MULTI_HEAD.multi_head(
        _contrib_heads(TF1_HEAD), head_weights=list(fx.HEAD_WEIGHTS)),
    'ours': lambda: contrib.multi_head(
        _contrib_heads(contrib), head_weights=list(fx.HEAD_WEIGHTS)),
}


def _custom_model_fn(make_head, tf1_head):
  """One dense layer's logits, split and trained by the head's optimizer."""

  def model_fn(features, labels, mode):
    head = make_head()
    logits = tf.keras.layers.Dense(head.logits_dimension, name='logits')(
        features['x'])
    train = {}
    if mode == tf.estimator.ModeKeys.TRAIN and tf1_head:
      train = {'optimizer': tf.compat.v1.train.AdamOptimizer(LEARNING_RATE)}
    elif mode == tf.estimator.ModeKeys.TRAIN:
      optimizer = tf.keras.optimizers.legacy.Adam(LEARNING_RATE)
      # It counts the global step, as the canned estimators' optimizers do.
      optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()
      train = {'optimizer': optimizer,
               'trainable_variables': tf.compat.v1.trainable_variables()}
    return head.create_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels, **train)

  return model_fn


def _run_config(model_dir):
  """`estimator_fixtures.run_config`, without Grappler.

  Grappler only slows down these graphs, each run for a few steps.
  """
  session_config = tf.compat.v1.ConfigProto()
  session_config.graph_options.rewrite_options.disable_meta_optimizer = True
  return fx.run_config(model_dir).replace(session_config=session_config)


def _custom(make_head, model_dir):
  return tf.estimator.Estimator(_custom_model_fn(make_head, tf1_head=False),
                                config=_run_config(model_dir))


def _contrib_custom(make_head, model_dir):
  return tf.estimator.Estimator(_custom_model_fn(make_head, tf1_head=True),
                                config=_run_config(model_dir))


def _dnn(make_head, model_dir):
  return tf.estimator.DNNEstimator(
      head=make_head(), hidden_units=[4],
      feature_columns=fx.numeric_columns(), config=_run_config(model_dir))


def _v1_dnn(make_head, model_dir):
  return tf.compat.v1.estimator.DNNEstimator(
      head=make_head(), hidden_units=[4],
      feature_columns=fx.numeric_columns(), config=_run_config(model_dir))


@dataclasses.dataclass
class Model:
  """How to build an Estimator of one model under either side's head."""
  multi_heads: dict
  build: Callable

  def estimator(self, side, model_dir):
    return self.build(self.multi_heads[side], model_dir)


MODELS = {
    'custom': Model(V2_MULTI_HEADS, _custom),
    'DNNEstimator': Model(V2_MULTI_HEADS, _dnn),
    'contrib_custom': Model(CONTRIB_MULTI_HEADS, _contrib_custom),
    'contrib_DNNEstimator': Model(CONTRIB_MULTI_HEADS, _v1_dnn),
}


# Running them.


@contextlib.contextmanager
def _deterministic_ops():
  """Enables op determinism for the block only: it is process-wide."""
  was_enabled = tf_config.is_op_determinism_enabled()
  tf.config.experimental.enable_op_determinism()
  try:
    yield
  finally:
    if not was_enabled:
      tf_config.disable_op_determinism()


def _other(side):
  (other,) = set(SIDES) - {side}
  return other


def _variables(checkpoint):
  return {name: tf.train.load_variable(checkpoint, name)
          for name, _ in tf.train.list_variables(checkpoint)}


def _served(export_dir, signature_key='predict'):
  loaded = tf.saved_model.load(export_dir)
  signature = loaded.signatures[signature_key]
  (input_name,) = signature.structured_input_signature[1]
  examples = fx.serialized_examples(fx.make_data()[0]['x'])
  outputs = signature(**{input_name: tf.constant(examples)})
  return {key: value.numpy() for key, value in outputs.items()}


def _stacked(rows):
  return {key: np.stack([row[key] for row in rows]) for key in rows[0]}


@dataclasses.dataclass
class Handover:
  """What one model did, trained by `origin`, continued by `successor`."""
  origin: str
  successor: str
  start: dict  # The origin's checkpoint after `STEPS` steps.
  continued: dict  # Checkpoint path by the side that continued it.
  metrics: dict  # The successor's checkpoint evaluated under each side.
  served: dict  # Its export under the successor, run on every row.
  predicted: dict  # Its predictions under the origin, by `head/key`.


@pytest.fixture(
    scope='module',
    params=[(model, origin) for model in MODELS for origin in SIDES],
    ids=lambda param: f'{param[0]}-from_{param[1]}')
def handover(request, tmp_path_factory):
  model_name, origin = request.param
  model = MODELS[model_name]
  successor = _other(origin)
  base = tmp_path_factory.mktemp(f'{model_name}_from_{origin}')
  model_dir, control_dir = base / 'model', base / 'control'
  with _deterministic_ops():
    model.estimator(origin, model_dir).train(fx.train_input_fn(), steps=STEPS)
    start = _variables(tf.train.latest_checkpoint(str(model_dir)))
    shutil.copytree(model_dir, control_dir)
    continued = {}
    # The successor carries on in the origin's own model_dir.
    for side, directory in ((successor, model_dir), (origin, control_dir)):
      estimator = model.estimator(side, directory)
      estimator.train(fx.train_input_fn(), steps=MORE_STEPS)
      continued[side] = estimator.latest_checkpoint()
  checkpoint = continued[successor]
  metrics = {
      side: model.estimator(side, model_dir).evaluate(
          fx.eval_input_fn(), checkpoint_path=checkpoint, name=side)
      for side in SIDES}
  export_dir = model.estimator(successor, model_dir).export_saved_model(
      str(base / 'export'), fx.serving_input_receiver_fn(),
      checkpoint_path=checkpoint).decode()
  predicted = _stacked(list(model.estimator(origin, model_dir).predict(
      fx.predict_input_fn(), checkpoint_path=checkpoint)))
  return Handover(
      origin=origin, successor=successor, start=start, continued=continued,
      metrics=metrics, served=_served(export_dir),
      predicted={'/'.join(key): value for key, value in predicted.items()})


# What the successor did with the origin's checkpoint.


def test_continuing_restores_every_variable_and_saves_no_other(handover):
  # A variable missing from the checkpoint fails the restore itself; one
  # the successor does not build would be missing from what it saved.
  start = set(handover.start)
  assert 'global_step' in start
  # The optimizer's slots are in it too.
  assert any('Adam' in name or 'Adagrad' in name for name in start)
  for side in SIDES:
    saved = {name for name, _ in tf.train.list_variables(
        handover.continued[side])}
    assert saved == start, side


def test_global_step_continues_from_the_checkpoint(handover):
  checkpoint = handover.continued[handover.successor]
  assert checkpoint.endswith(f'model.ckpt-{STEPS + MORE_STEPS}')
  assert handover.start['global_step'] == STEPS
  assert tf.train.load_variable(checkpoint, 'global_step') == (
      STEPS + MORE_STEPS)


def test_continued_variables_equal_those_continued_by_the_original_class(
    handover):
  ours = _variables(handover.continued[handover.successor])
  control = _variables(handover.continued[handover.origin])
  for name, value in control.items():
    np.testing.assert_allclose(ours[name], value, rtol=0, atol=1e-5,
                               err_msg=name)
    if 'kernel' in name or 'bias' in name:  # Weights and their slots.
      assert not np.array_equal(value, handover.start[name]), name


def test_successor_evaluates_the_checkpoint_as_the_original_class(handover):
  mine = handover.metrics[handover.successor]
  theirs = handover.metrics[handover.origin]
  assert mine['global_step'] == STEPS + MORE_STEPS
  assert sorted(mine) == sorted(theirs)
  assert {'loss', 'loss/clicks', 'auc/clicks', 'accuracy/color',
          'average_loss/value'} <= set(mine)
  for key, value in theirs.items():
    np.testing.assert_allclose(mine[key], value, rtol=1e-5, err_msg=key)


def test_successor_export_serves_the_original_class_predictions(handover):
  served, predicted = handover.served, handover.predicted
  assert sorted(served) == sorted(predicted)
  assert len(served['value/predictions']) == fx.N_ROWS
  for key, value in predicted.items():
    if value.dtype.kind in 'OSU':
      np.testing.assert_array_equal(served[key], value, err_msg=key)
    else:
      np.testing.assert_allclose(served[key], value, rtol=1e-5, atol=1e-6,
                                 err_msg=key)
