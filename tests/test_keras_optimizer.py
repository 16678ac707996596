"""Keras optimizers under `tf.estimator.Estimator`: training always ends.

A Keras optimizer counts its steps in its own `iterations` variable, while
Estimator stops training by the global step. `tf.estimator.MultiHead` leaves
the two apart unless the `model_fn` joins them itself, so the global step
never moves and `Estimator.train(steps=...)` on endless input never ends.
`MultiHead` joins them (as TensorFlow's canned estimators do), refuses the
optimizers that cannot train in Estimator's graph, and keeps working for any
Keras optimizer that defines `get_updates`.

The runs are real Estimator runs of a few steps. Where the reference would
hang, it is given input that runs out after 4 batches, which shows why it
hangs (its global step is still 0) without waiting for it; and the one run
on endless input happens in a process of its own, under a timeout.
"""
import subprocess
import sys
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tensorflow_multihead import MultiHead
from tests import estimator_fixtures as fx

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRAIN = tf.estimator.ModeKeys.TRAIN
STEPS = 3
# 64 rows in batches of 16: input that runs out after 4 steps.
FINITE_BATCHES = fx.N_ROWS // fx.BATCH_SIZE
# Generous, for a loaded machine: the run itself takes seconds.
ENDLESS_RUN_TIMEOUT_SECONDS = 300


class _GlobalStepRecorder(tf.compat.v1.train.SessionRunHook):
  """Appends the global step after every training step to `steps`."""

  def __init__(self, steps):
    self._steps = steps
    self._global_step = None

  def begin(self):
    self._global_step = tf.compat.v1.train.get_global_step()

  def after_run(self, run_context, run_values):
    self._steps.append(int(run_context.session.run(self._global_step)))


def _model_fn(multi_head_fn, make_optimizer, user_binds_it=False,
              recorded_steps=None):
  """A linear model from zeros, trained with `make_optimizer()`."""

  def model_fn(features, labels, mode):
    head = multi_head_fn()
    logits = tf.keras.layers.Dense(
        head.logits_dimension, kernel_initializer='zeros',
        name='logits')(features['x'])
    optimizer = None
    if mode == TRAIN:
      optimizer = make_optimizer()
      if user_binds_it:  # The line TensorFlow's docs have users add.
        optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()
    spec = head.create_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels,
        optimizer=optimizer,
        trainable_variables=tf.compat.v1.trainable_variables())
    if recorded_steps is None:
      return spec
    return spec._replace(
        training_hooks=[_GlobalStepRecorder(recorded_steps)])

  return model_fn


def _adagrad():
  return tf.keras.optimizers.legacy.Adagrad(fx.LEARNING_RATE)


def _train(tmp_path, multi_head_fn, make_optimizer=_adagrad,
           user_binds_it=False, recorded_steps=None):
  """Trains `STEPS` steps on input of `FINITE_BATCHES` batches."""
  estimator = tf.estimator.Estimator(
      _model_fn(multi_head_fn, make_optimizer, user_binds_it,
                recorded_steps),
      config=fx.run_config(tmp_path))
  estimator.train(fx.eval_input_fn(), steps=STEPS)
  return estimator


def test_unbound_keras_optimizer_trains_the_requested_steps(tmp_path):
  steps = []
  estimator = _train(tmp_path, fx.our_multi_head, recorded_steps=steps)
  assert steps == [1, 2, 3]
  assert estimator.get_variable_value('global_step') == STEPS
  assert np.abs(estimator.get_variable_value('logits/kernel')).sum() > 0.
  # The optimizer's count is the global step; it has none of its own.
  assert not [name for name in estimator.get_variable_names()
              if name.endswith('/iter')]


def test_reference_never_moves_the_global_step_so_endless_input_hangs(
    tmp_path):
  steps = []
  estimator = _train(tmp_path, fx.reference_multi_head, recorded_steps=steps)
  # It trained every batch it was given, until the input ran out, counting
  # none of them; and, the global step still 0, saved none of its training.
  assert steps == [0] * FINITE_BATCHES
  assert estimator.get_variable_value('global_step') == 0
  assert not estimator.get_variable_value('logits/kernel').any()


@pytest.mark.parametrize('multi_head_fn', [fx.our_multi_head,
                                           fx.reference_multi_head],
                         ids=['ours', 'reference'])
def test_optimizer_bound_by_the_user_trains_the_requested_steps(
    tmp_path, multi_head_fn):
  estimator = _train(tmp_path, multi_head_fn, user_binds_it=True)
  assert estimator.get_variable_value('global_step') == STEPS


def test_training_on_endless_input_ends(tmp_path):
  try:
    run = subprocess.run(
        [sys.executable, '-m', 'tests.support.endless_training',
         str(tmp_path), str(STEPS)],
        cwd=ROOT, capture_output=True, text=True,
        timeout=ENDLESS_RUN_TIMEOUT_SECONDS, check=False)
  except subprocess.TimeoutExpired:
    pytest.fail(f'Estimator.train(steps={STEPS}) on endless input did not '
                f'end within {ENDLESS_RUN_TIMEOUT_SECONDS} s: it hangs.')
  assert run.returncode == 0, run.stderr[-3000:]
  assert run.stdout.split()[-1] == str(STEPS)


def test_optimizer_already_counting_elsewhere_is_refused_naming_the_line(
    tmp_path):
  optimizer = _adagrad()  # Made once, outside model_fn, used twice.
  estimator = _train(tmp_path, fx.our_multi_head, lambda: optimizer)
  assert estimator.get_variable_value('global_step') == STEPS
  with pytest.raises(ValueError) as raised:
    estimator.train(fx.eval_input_fn(), steps=1)
  message = str(raised.value)
  assert 'Estimator would train forever' in message
  assert 'Create the optimizer inside model_fn' in message
  assert ('optimizer.iterations = '
          'tf.compat.v1.train.get_or_create_global_step()') in message


def test_keras_optimizer_without_get_updates_is_refused_naming_legacy_class(
    tmp_path):
  with pytest.raises(ValueError, match=(
      r'The given optimizer \(Adam\) has no get_updates: .* Use '
      r'tf.keras.optimizers.legacy.Adam instead\.')):
    _train(tmp_path / 'ours', fx.our_multi_head,
           lambda: tf.keras.optimizers.Adam(0.1))
  with pytest.raises(AttributeError, match='get_updates'):
    _train(tmp_path / 'reference', fx.reference_multi_head,
           lambda: tf.keras.optimizers.Adam(0.1))


def test_why_keras_optimizers_without_get_updates_are_refused():
  """In a graph, their `apply_gradients` counts a step, changes nothing.

  Should a TensorFlow release make it update the variables, this test fails,
  and such optimizers can then be supported.
  """
  with tf.Graph().as_default():
    variable = tf.compat.v1.get_variable('v', initializer=[1., 2.])
    optimizer = tf.keras.optimizers.SGD(0.5)
    step = optimizer.apply_gradients(
        [(tf.gradients(tf.reduce_sum(variable * variable), [variable])[0],
          variable)])
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      session.run(step)
      np.testing.assert_array_equal(session.run(variable), [1., 2.])
      assert session.run(optimizer.iterations) == 1


class _GetUpdatesOnly(tf.keras.optimizers.Optimizer):
  """TF Estimator's own head tests' optimizer: it only defines get_updates.

  Its train op is a string naming the loss it was given.
  """

  def get_updates(self, loss, params):
    del params
    return [tf.strings.join([tf.constant('my_train_op'),
                             tf.strings.as_string(loss, precision=3)])]

  def get_config(self):
    return super().get_config()


@pytest.mark.parametrize('multi_head_class', [MultiHead, tf.estimator.MultiHead],
                         ids=['ours', 'reference'])
def test_optimizer_defining_get_updates_trains_in_a_graph_without_global_step(
    multi_head_class):
  """As in TF Estimator's `test_train_one_head_with_optimizer`."""
  with tf.Graph().as_default():
    multi_head = multi_head_class(
        [tf.estimator.MultiLabelHead(n_classes=2, name='head1')])
    spec = multi_head.create_estimator_spec(
        features={'x': np.array(((42,),), dtype=np.int32)}, mode=TRAIN,
        logits={'head1': np.array([[-10., 10.], [-15., 10.]], np.float32)},
        labels={'head1': np.array([[1, 0], [1, 1]], dtype=np.int64)},
        optimizer=_GetUpdatesOnly('my_optimizer'),
        trainable_variables=[tf.Variable([1.0, 2.0], dtype=tf.float32)])
    assert tf.compat.v1.train.get_global_step() is None
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      loss, train_result = session.run((spec.loss, spec.train_op))
  # ((10 + 10) / 2 + (15 + 0) / 2) / 2
  assert loss == pytest.approx(8.75, rel=1e-3)
  assert train_result == b'my_train_op8.750'


def test_optimizer_defining_get_updates_counts_the_global_step_if_any():
  with tf.Graph().as_default():
    global_step = tf.compat.v1.train.get_or_create_global_step()
    optimizer = _GetUpdatesOnly('my_optimizer')
    MultiHead([tf.estimator.RegressionHead(name='value')]).create_estimator_spec(
        features={}, mode=TRAIN, logits={'value': np.zeros([2, 1], np.float32)},
        labels={'value': np.ones([2, 1], np.float32)}, optimizer=optimizer,
        trainable_variables=[tf.Variable([1.0])])
    assert optimizer.iterations is global_step
