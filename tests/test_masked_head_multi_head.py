"""`MaskedHead`s inside `MultiHead` (issue 8, items 2 and 3).

Our `MultiHead` of an unmasked click head, a conversion head masked by
`missing_label` and a value head masked by `mask_key` (with a weight column)
and `head_weights`, given every row, against `tf.estimator.MultiHead` (or
its single heads, where it cannot accumulate metrics) given each head's
labelled rows, cut by hand. Logits come as a dict or as one tensor.
"""
import numpy as np
import pytest
import tensorflow as tf

import tensorflow_multihead as tmh
from tests.differential import assert_same_results

pytestmark = pytest.mark.xdist_group('masked_multi_head')

EVAL = tf.estimator.ModeKeys.EVAL
TRAIN = tf.estimator.ModeKeys.TRAIN
NAMES = ('click', 'conversion', 'value')
WIDTHS = {'click': 1, 'conversion': 1, 'value': 2}
HEAD_WEIGHTS = (1., 2., 0.5)
ROWS = 8
LEARNING_RATE = 0.1


def _single_heads():
  return [tf.estimator.BinaryClassHead(name='click'),
          tf.estimator.BinaryClassHead(name='conversion'),
          tf.estimator.RegressionHead(name='value', label_dimension=2,
                                      weight_column='value_weight')]


def _ours():
  click, conversion, value = _single_heads()
  return tmh.MultiHead(
      [click, tmh.MaskedHead(conversion, missing_label=-1),
       tmh.MaskedHead(value, mask_key='has_value')],
      head_weights=list(HEAD_WEIGHTS))


def _reference():
  return tf.estimator.MultiHead(_single_heads(),
                                head_weights=list(HEAD_WEIGHTS))


def _batch(seed, conversions=True):
  """Every row for ours; each head's labelled rows (`kept`) for the rest."""
  rng = np.random.default_rng(seed)
  click = rng.integers(0, 2, [ROWS, 1])
  conversion = np.where(click == 1, rng.integers(0, 2, [ROWS, 1]), -1)
  if not conversions:
    conversion[:] = -1
  has_value = rng.random(ROWS) < 0.6
  value = np.where(has_value[:, np.newaxis],
                   rng.normal(size=[ROWS, 2]), np.nan).astype(np.float32)
  logits = {name: rng.normal(0., 2., [ROWS, WIDTHS[name]]).astype(np.float32)
            for name in NAMES}
  weight = rng.uniform(0.5, 2., [ROWS]).astype(np.float32)
  keep = {'click': np.ones(ROWS, bool), 'conversion': conversion[:, 0] != -1,
          'value': has_value}
  labels = {'click': click, 'conversion': conversion, 'value': value}
  return {
      'logits': logits, 'labels': labels,
      'features': {'value_weight': weight, 'has_value': has_value},
      'keep': keep,
      'kept_logits': {name: logits[name][keep[name]] for name in NAMES},
      'kept_labels': {name: labels[name][keep[name]] for name in NAMES},
      'kept_features': {'value_weight': weight[has_value]},
  }


def _joined(logits):
  return np.concatenate([logits[name] for name in NAMES], axis=-1)


LOGITS_FORMS = {'dict': lambda logits: logits, 'tensor': _joined}


# Eager: the Head interface.


@pytest.mark.parametrize('form', LOGITS_FORMS)
def test_loss_is_the_weighted_sum_of_losses_on_labelled_rows(form):
  batch = _batch(0)
  ours = _ours().loss(batch['labels'], LOGITS_FORMS[form](batch['logits']),
                      batch['features'])
  reference = _reference().loss(batch['kept_labels'], batch['kept_logits'],
                                batch['kept_features'])
  np.testing.assert_allclose(ours, reference, rtol=1e-6)
  assert float(reference) > 0.


@pytest.mark.parametrize('form', LOGITS_FORMS)
def test_one_batchs_metrics_equal_the_reference_multi_heads(form):
  batch = _batch(1)
  ours = _ours()
  metrics = ours.update_metrics(
      ours.metrics(), batch['features'], LOGITS_FORMS[form](batch['logits']),
      batch['labels'])
  reference = _reference()
  expected = reference.update_metrics(
      reference.metrics(), batch['kept_features'], batch['kept_logits'],
      batch['kept_labels'])
  assert_same_results({key: metric.result() for key, metric in metrics.items()},
                      {key: metric.result()
                       for key, metric in expected.items()})


def _accumulated_reference(batches):
  """Single heads' metrics over the batches, and `loss/<head>` means."""
  heads = _single_heads()
  metrics = {head.name: head.metrics() for head in heads}
  losses = {name: [] for name in NAMES}
  for batch in batches:
    for head in heads:
      name = head.name
      head.update_metrics(metrics[name], batch['kept_features'],
                          batch['kept_logits'][name],
                          batch['kept_labels'][name])
      losses[name].append(float(head.loss(
          batch['kept_labels'][name], batch['kept_logits'][name],
          batch['kept_features'])))
  values = {f'loss/{name}': np.mean(losses[name], dtype=np.float32)
            for name in NAMES}
  for head_metrics in metrics.values():
    values.update({key: metric.result() for key, metric in
                   head_metrics.items()})
  return values


@pytest.mark.parametrize('form', LOGITS_FORMS)
def test_metrics_over_batches_equal_the_heads_on_labelled_rows(form):
  batches = [_batch(seed) for seed in (2, 3, 4)]
  ours = _ours()
  metrics = ours.metrics()
  for batch in batches:
    ours.update_metrics(metrics, batch['features'],
                        LOGITS_FORMS[form](batch['logits']), batch['labels'])
  assert_same_results({key: metric.result() for key, metric in metrics.items()},
                      _accumulated_reference(batches), rtol=1e-5)


def test_a_batch_without_conversions_leaves_loss_conversion_where_it_was():
  """Unlike tf.estimator.MultiHead, which would average in a loss of 0."""
  batches = [_batch(5), _batch(6, conversions=False), _batch(7)]
  ours = _ours()
  metrics = ours.metrics()
  for batch in batches:
    ours.update_metrics(metrics, batch['features'], batch['logits'],
                        batch['labels'])
  expected = _accumulated_reference([batches[0], batches[2]])
  for key in ('loss/conversion', 'auc/conversion', 'average_loss/conversion'):
    np.testing.assert_allclose(metrics[key].result(), expected[key],
                               rtol=1e-6, err_msg=key)
  clicks = _accumulated_reference(batches)['loss/click']
  np.testing.assert_allclose(metrics['loss/click'].result(), clicks,
                             rtol=1e-6)


@pytest.mark.parametrize('form', LOGITS_FORMS)
def test_predictions_cover_every_row_as_without_masks(form):
  batch = _batch(8)
  logits = LOGITS_FORMS[form](batch['logits'])
  ours = _ours().predictions(logits)
  expected = tmh.MultiHead(_single_heads()).predictions(logits)
  assert_same_results(ours, expected)
  assert ours[('conversion', 'probabilities')].shape == (ROWS, 2)


# Graph: the merged specs, as an Estimator builds them.


def _placeholders(batch, kept):
  """Placeholders of unknown batch size for a batch's arrays."""
  def placeholder(value):
    return tf.compat.v1.placeholder(tf.as_dtype(value.dtype),
                                    [None] + list(value.shape[1:]))
  prefix = 'kept_' if kept else ''
  return {part: {key: placeholder(value)
                 for key, value in batch[prefix + part].items()}
          for part in ('logits', 'labels', 'features')}


def _feed(placeholders, batch, kept):
  prefix = 'kept_' if kept else ''
  return {placeholder: batch[prefix + part][key]
          for part, tensors in placeholders.items()
          for key, placeholder in tensors.items()}


def _graph_run(make_head, kept, form, batches):
  """EVAL metrics over `batches`, then one TRAIN step's bias change.

  The logits get a zero bias variable per logit; the TRAIN step minimizes
  the merged loss with gradient descent, so the bias shows its gradient.
  """
  with tf.Graph().as_default():
    inputs = _placeholders(batches[0], kept)
    bias = {name: tf.compat.v1.get_variable(
        f'bias_{name}', initializer=tf.zeros([WIDTHS[name]]))
            for name in NAMES}
    logits = {name: inputs['logits'][name] + bias[name] for name in NAMES}
    if form == 'tensor':
      logits = tf.concat([logits[name] for name in NAMES], axis=-1)
    spec_args = dict(features=inputs['features'], logits=logits,
                     labels=inputs['labels'])
    head = make_head()
    eval_spec = head.create_estimator_spec(mode=EVAL, **spec_args)
    train_spec = head.create_estimator_spec(
        mode=TRAIN, train_op_fn=lambda loss: tf.compat.v1.train
        .GradientDescentOptimizer(LEARNING_RATE).minimize(loss), **spec_args)
    with tf.compat.v1.Session() as session:
      session.run([tf.compat.v1.global_variables_initializer(),
                   tf.compat.v1.local_variables_initializer()])
      for batch in batches:
        session.run([update for _, update in eval_spec.eval_metric_ops.values()],
                    _feed(inputs, batch, kept))
      metrics = session.run({key: value for key, (value, _)
                             in eval_spec.eval_metric_ops.items()})
      loss, _ = session.run([train_spec.loss, train_spec.train_op],
                            _feed(inputs, batches[0], kept))
      return metrics, loss, session.run(bias)


@pytest.mark.parametrize('form', LOGITS_FORMS)
def test_graph_specs_equal_the_reference_multi_heads_on_labelled_rows(form):
  """The reference takes dict logits: it cannot cut a tensor per head."""
  batches = [_batch(9)]
  ours = _graph_run(_ours, kept=False, form=form, batches=batches)
  reference = _graph_run(_reference, kept=True, form='dict', batches=batches)
  assert_same_results(ours, reference)
  assert np.all(reference[2]['conversion'] != 0.)  # The step moved it.


def test_graph_eval_keeps_loss_conversion_over_a_batch_without_conversions():
  batches = [_batch(10), _batch(11, conversions=False), _batch(12)]
  metrics, _, _ = _graph_run(_ours, kept=False, form='tensor',
                             batches=batches)
  expected = _accumulated_reference([batches[0], batches[2]])
  for key in ('loss/conversion', 'auc/conversion', 'average_loss/conversion'):
    np.testing.assert_allclose(metrics[key], expected[key], rtol=1e-5,
                               err_msg=key)
