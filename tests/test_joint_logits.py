"""`joint_logits.joint_logit` against exact float64 formulas (issue 15).

The joint logit of sigmoid(a) * sigmoid(b), and its gradients sigmoid(-a) /
(1 - p) and sigmoid(-b) / (1 - p), computed in float64 NumPy in log space
over a grid of logits from -1e4 to 1e4 (both signs of every scale, ±80
among them), against ours in float32: finite everywhere, within float32's
precision.
"""
import numpy as np
import tensorflow as tf

from tensorflow_multihead.joint_logits import joint_logit

SCALES = [0., 1e-3, 1., 5., 20., 52., 80., 88., 90., 104., 200., 1e4]
VALUES = np.array(sorted({sign * scale for scale in SCALES
                          for sign in (1, -1)}))


def _log_sigmoid(x):
  return -np.logaddexp(0., -x)


def _exact(a, b):
  """Float64: the joint logit and log(1 - p), p = sigmoid(a) sigmoid(b)."""
  log_p = _log_sigmoid(a) + _log_sigmoid(b)
  log_not_p = np.logaddexp(_log_sigmoid(-a), _log_sigmoid(a) + _log_sigmoid(-b))
  return log_p - log_not_p, log_not_p


def _grid():
  a, b = np.meshgrid(VALUES, VALUES)
  return a.ravel(), b.ravel()


def _ours_with_gradients(a, b):
  a, b = tf.constant(a, tf.float32), tf.constant(b, tf.float32)
  with tf.GradientTape() as tape:
    tape.watch([a, b])
    joint = joint_logit(a, b)
  gradient_a, gradient_b = tape.gradient(joint, [a, b])
  return joint.numpy(), gradient_a.numpy(), gradient_b.numpy()


def test_the_joint_logit_is_exact_to_float32_precision_everywhere():
  a, b = _grid()
  ours, _, _ = _ours_with_gradients(a, b)
  exact, _ = _exact(a, b)
  assert ours.dtype == np.float32 and np.isfinite(ours).all()
  np.testing.assert_allclose(ours, exact, rtol=2e-7, atol=2e-7)


def test_the_gradients_are_exact_and_finite_everywhere():
  a, b = _grid()
  _, gradient_a, gradient_b = _ours_with_gradients(a, b)
  _, log_not_p = _exact(a, b)
  assert np.isfinite(gradient_a).all() and np.isfinite(gradient_b).all()
  np.testing.assert_allclose(gradient_a, np.exp(_log_sigmoid(-a) - log_not_p),
                             rtol=3e-7, atol=3e-7)
  np.testing.assert_allclose(gradient_b, np.exp(_log_sigmoid(-b) - log_not_p),
                             rtol=3e-7, atol=3e-7)


def test_at_plus_and_minus_80_the_values_are_the_closed_forms():
  ours, gradient_a, _ = _ours_with_gradients([80., -80., 80., -80.],
                                             [80., -80., -80., 80.])
  # p = 1 - 2e-35: logit 80 - log 2; p = e-160; p = e-80 twice.
  np.testing.assert_allclose(ours, [80. - np.log(2.), -160., -80., -80.],
                             rtol=1e-6)
  # d/da: sigmoid(-a) / (1 - p): 1/2 when both are near 1, 1 when a is small.
  np.testing.assert_allclose(gradient_a, [.5, 1., 0., 1.], atol=1e-6)


def test_a_chain_folds_into_the_product_of_its_sigmoids():
  rng = np.random.default_rng(0)
  a, b, c = rng.normal(scale=3., size=(3, 50))
  ours = joint_logit(joint_logit(a.astype(np.float32), b.astype(np.float32)),
                     c.astype(np.float32)).numpy()
  p = 1. / (1. + np.exp(-a)) / (1. + np.exp(-b)) / (1. + np.exp(-c))
  np.testing.assert_allclose(ours, np.log(p) - np.log1p(-p), rtol=1e-5,
                             atol=1e-5)
