"""A small model with a shared trunk, built in TF and computed in NumPy.

    h = tanh(x W1 + b1)            the trunk: `trunk/kernel`, `trunk/bias`;
                                   `h` is the tensor `representation:0`
    z = h W2 + b2                  the logits: `out/kernel`, `out/bias`

split among three heads: regressions `a` and `b` (one fused group) and a
binary classifier `c`, with `head_weights` `HEAD_WEIGHTS`, and a
regularization loss `REGULARIZATION * |W1|^2`. `numpy_gradients` gives, in
float64, every head's weighted loss gradient with respect to each variable
and to `h`, from which a test computes what one training step must do.
"""
import numpy as np
import tensorflow as tf

from tensorflow_multihead import MultiHead

HEAD_NAMES = ('a', 'b', 'c')
HEAD_WEIGHTS = (2., 0.5, 1.)
ROWS, FEATURES, UNITS = 6, 3, 4
REGULARIZATION = 0.1
LEARNING_RATE = 0.1
VARIABLE_NAMES = ('trunk/kernel', 'trunk/bias', 'out/kernel', 'out/bias')
SHARED_VARIABLES = ('trunk/kernel', 'trunk/bias')
REPRESENTATION = 'representation'

_RNG = np.random.RandomState(5)
X = _RNG.normal(size=(ROWS, FEATURES)).astype(np.float32)
LABELS = {
    'a': _RNG.normal(size=(ROWS, 1)).astype(np.float32),
    'b': (2. + _RNG.normal(size=(ROWS, 1))).astype(np.float32),
    'c': (_RNG.uniform(size=(ROWS, 1)) > 0.5).astype(np.int64),
}
INITIAL = {
    'trunk/kernel': _RNG.normal(size=(FEATURES, UNITS)),
    'trunk/bias': 0.1 * _RNG.normal(size=UNITS),
    'out/kernel': _RNG.normal(size=(UNITS, len(HEAD_NAMES))),
    'out/bias': 0.1 * _RNG.normal(size=len(HEAD_NAMES)),
}
INITIAL = {name: value.astype(np.float32) for name, value in INITIAL.items()}


def make_heads():
  return [tf.estimator.RegressionHead(name='a'),
          tf.estimator.RegressionHead(name='b'),
          tf.estimator.BinaryClassHead(name='c')]


def make_multi_head(**kwargs):
  return MultiHead(make_heads(), head_weights=list(HEAD_WEIGHTS), **kwargs)


def build_variables():
  """The model's variables in the default graph, keyed by name."""
  variables = {}
  for name in VARIABLE_NAMES:
    scope, short = name.split('/')
    with tf.compat.v1.variable_scope(scope):
      variables[name] = tf.compat.v1.get_variable(
          short, initializer=tf.constant(INITIAL[name]))
  return variables


def build_forward(variables, x=X):
  """`(representation, logits, regularization loss)` in the default graph."""
  representation = tf.tanh(
      tf.matmul(tf.convert_to_tensor(x), variables['trunk/kernel']) +
      variables['trunk/bias'], name=REPRESENTATION)
  logits = tf.matmul(representation, variables['out/kernel']) + variables[
      'out/bias']
  regularization = REGULARIZATION * tf.reduce_sum(
      tf.square(variables['trunk/kernel']))
  return representation, logits, regularization


def _sigmoid(values):
  return 1. / (1. + np.exp(-values))


def numpy_forward(params, x=X, labels=None):
  """Float64 `(h, z, per-head losses)`."""
  labels = LABELS if labels is None else labels
  params = {name: np.asarray(value, np.float64)
            for name, value in params.items()}
  h = np.tanh(x.astype(np.float64) @ params['trunk/kernel'] +
              params['trunk/bias'])
  z = h @ params['out/kernel'] + params['out/bias']
  y = {name: np.asarray(value, np.float64)[:, 0]
       for name, value in labels.items()}
  p = _sigmoid(z[:, 2])
  losses = np.array([
      np.mean((z[:, 0] - y['a'])**2),
      np.mean((z[:, 1] - y['b'])**2),
      np.mean(-y['c'] * np.log(p) - (1. - y['c']) * np.log(1. - p)),
  ])
  return h, z, losses


def numpy_gradients(params, row_weights=HEAD_WEIGHTS, x=X, labels=None):
  """Each head's gradients of `row_weights[i] * loss_i`, in float64.

  Returns:
    A list, one dict a head: `{variable name: gradient, 'h': d/dh}`.
  """
  labels = LABELS if labels is None else labels
  params = {name: np.asarray(value, np.float64)
            for name, value in params.items()}
  x = x.astype(np.float64)
  h, z, _ = numpy_forward(params, x, labels)
  rows = len(x)
  y = {name: np.asarray(value, np.float64)[:, 0]
       for name, value in labels.items()}
  d_logit = [2. * (z[:, 0] - y['a']) / rows, 2. * (z[:, 1] - y['b']) / rows,
             (_sigmoid(z[:, 2]) - y['c']) / rows]
  gradients = []
  for index, weight in enumerate(row_weights):
    dz = np.zeros_like(z)
    dz[:, index] = weight * d_logit[index]
    dh = dz @ params['out/kernel'].T
    d_pre = dh * (1. - h**2)
    gradients.append({
        'out/kernel': h.T @ dz, 'out/bias': dz.sum(axis=0), 'h': dh,
        'trunk/kernel': x.T @ d_pre, 'trunk/bias': d_pre.sum(axis=0)})
  return gradients


def regularization_gradient(params):
  return {'trunk/kernel': 2. * REGULARIZATION * np.asarray(
      params['trunk/kernel'], np.float64)}


def expected_step(params, direction_of, over_representation,
                  row_weights=HEAD_WEIGHTS, x=X, labels=None):
  """The gradient each variable trains on, aggregating with `direction_of`.

  Args:
    params: The variables' values before the step.
    direction_of: A function from a float64 `[K, n]` Jacobian to `[n]`.
    over_representation: Whether `n` runs over the entries of `h` (else
      over the shared variables, flattened and concatenated).

  Returns:
    `{variable name: float64 gradient}`.
  """
  per_head = numpy_gradients(params, row_weights, x, labels)
  total = {name: sum(head[name] for head in per_head)
           for name in VARIABLE_NAMES}
  if over_representation:
    jacobian = np.stack([head['h'].ravel() for head in per_head])
    dh = direction_of(jacobian).reshape(per_head[0]['h'].shape)
    h, _, _ = numpy_forward(params, x, labels)
    d_pre = dh * (1. - h**2)
    total['trunk/kernel'] = x.astype(np.float64).T @ d_pre
    total['trunk/bias'] = d_pre.sum(axis=0)
  else:
    jacobian = np.stack([
        np.concatenate([head[name].ravel() for name in SHARED_VARIABLES])
        for head in per_head])
    direction = direction_of(jacobian)
    sizes = [per_head[0][name].size for name in SHARED_VARIABLES]
    for name, part in zip(SHARED_VARIABLES,
                          np.split(direction, np.cumsum(sizes)[:-1])):
      total[name] = part.reshape(per_head[0][name].shape)
  total['trunk/kernel'] = total['trunk/kernel'] + regularization_gradient(
      params)['trunk/kernel']
  return total
