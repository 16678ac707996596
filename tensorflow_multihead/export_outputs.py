"""Which signatures a merged head exports, and what `serving_default` serves.

A merged head's export holds, as `tf.estimator.MultiHead`'s does,
`serving_default`, `predict` (every head's predictions, keyed
`<head>/<prediction key>`) and each head's own signatures, `<head>` and
`<head>/<key>`: four for a `BinaryClassHead`. With a thousand heads that is
thousands of signatures, which TF 2's `tf.saved_model.load` turns into
functions one by one. `ExportChoice` picks the heads whose own signatures
are exported, and whether `serving_default` serves the default head or
every head's predictions (for clients that call `serving_default` only).

A `ConditionalHead`'s view (`conversion_given_click`) has signatures of its
own, as a head does, and is chosen by its own name: `export_heads` names
signatures, so `['conversion']` exports the joint head's and not its view's.

>>> import tensorflow as tf
>>> from tensorflow_multihead import MultiHead
>>> head = MultiHead([tf.estimator.BinaryClassHead(name='click'),
...                   tf.estimator.RegressionHead(name='price')],
...                  export_heads=['price'], serving_default='all')
>>> with tf.Graph().as_default():
...   spec = head.create_estimator_spec(
...       features={}, mode=tf.estimator.ModeKeys.PREDICT,
...       logits=tf.zeros([3, 2]))
>>> sorted(spec.export_outputs)
['predict', 'price', 'price/predict', 'price/regression', 'serving_default']
>>> sorted(spec.export_outputs['serving_default'].outputs)[:3]
['click/all_class_ids', 'click/all_classes', 'click/class_ids']
"""
import collections.abc

import tensorflow as tf

from tensorflow_multihead import base_head

SERVE_HEAD = 'head'
SERVE_ALL = 'all'
SERVING_DEFAULTS = (SERVE_HEAD, SERVE_ALL)


def _check_export_heads(export_heads, names):
  """Raises unless `export_heads` is None or a list of `names`' entries.

  `names`: the heads with signatures of their own, views included.

  Returns them as a frozenset, or None to export every head.
  """
  if export_heads is None:
    return None
  if isinstance(export_heads, (str, bytes)) or not isinstance(
      export_heads, collections.abc.Iterable):
    raise TypeError(
        'export_heads must be None or a list of head names; given '
        f'{export_heads!r}. For one head, give [{export_heads!r}].')
  export_heads = list(export_heads)
  unknown = [name for name in export_heads if name not in names]
  if unknown:
    raise ValueError(
        f'export_heads names unknown head(s) {unknown}. The heads with '
        f'signatures of their own (ConditionalHead views among them) are: '
        f'{list(names)}.')
  return frozenset(export_heads)


def _check_serving_default(serving_default, default_head):
  if serving_default not in SERVING_DEFAULTS:
    raise ValueError(
        f'serving_default must be {SERVE_HEAD!r} (the default head\'s '
        f'signature) or {SERVE_ALL!r} (every head\'s predictions); given '
        f'{serving_default!r}.')
  if serving_default == SERVE_ALL and default_head is not None:
    raise ValueError(
        f'default_head={default_head!r} chooses the head served as '
        f"serving_default, which serving_default='all' serves every head "
        'instead of: give one of them.')


def _default_output(export_outputs, head_name):
  """Picks the output a head serves by default from its `export_outputs`."""
  if len(export_outputs) == 1:
    return next(iter(export_outputs.values()))
  if base_head.DEFAULT_SERVING_KEY in export_outputs:
    return export_outputs[base_head.DEFAULT_SERVING_KEY]
  raise ValueError(
      f'{head_name} did not specify default export_outputs. Given: '
      f'{export_outputs} Suggested fix: Use one of the heads in tf.estimator, '
      f'or include key {base_head.DEFAULT_SERVING_KEY} in export_outputs.')


def _served_name(head_name, output_key):
  if output_key == base_head.DEFAULT_SERVING_KEY:
    return head_name
  return f'{head_name}/{output_key}'


def _merged_predict_output(outputs_by_head):
  """Every head's `PredictOutput` tensors, keyed `<head>/<output key>`."""
  gathered = {}
  for name, outputs in outputs_by_head.items():
    own_predict = outputs.get(base_head.PREDICT_SERVING_KEY)
    if isinstance(own_predict, tf.estimator.export.PredictOutput):
      gathered.update({f'{name}/{key}': tensor
                       for key, tensor in own_predict.outputs.items()})
  return tf.estimator.export.PredictOutput(gathered)


class ExportChoice:
  """The export outputs a merged head gives, from its heads' own.

  Args:
    names: The names of the heads with signatures of their own, in order:
      a `MultiHead`'s heads, each `ConditionalHead` followed by its view.
    default_head: The name of the head served as `serving_default` (with
      `serving_default='head'`).
    export_heads: `None` to export every head's own signatures, as
      `tf.estimator.MultiHead` does; otherwise the names (from `names`) of
      the heads and views whose own signatures are exported (`[]`: none,
      only `serving_default` and `predict`).
    serving_default: `'head'` serves the default head's default output as
      `serving_default`; `'all'` serves the merged predictions of every head
      there, keyed as in `predict`.
    given_default_head: The `default_head` the user gave, or None; refused
      with `serving_default='all'`, which would ignore it.

  Raises:
    TypeError: `export_heads` is a string or not a list.
    ValueError: `export_heads` names an unknown head; `serving_default` is
      neither `'head'` nor `'all'`, or `'all'` with a `default_head`.
  """

  def __init__(self, names, default_head, export_heads=None,
               serving_default=SERVE_HEAD, given_default_head=None):
    self._default_head = default_head
    # The heads whose own signatures are exported; None: every head's.
    self.exported = _check_export_heads(export_heads, tuple(names))
    _check_serving_default(serving_default, given_default_head)
    self.serving_default = serving_default

  @property
  def served_apart(self):
    """The heads a signature of their own serves; None: every head.

    The heads exported, and the default head when it is `serving_default`:
    their outputs are cut from a fused group by ops of their own (see
    `narrow_outputs`), so that each such signature stays small.
    """
    if self.exported is None:
      return None
    if self.serving_default == SERVE_HEAD:
      return self.exported | {self._default_head}
    return self.exported

  def merged(self, outputs_by_head):
    """The merged export outputs from each head's, keyed by head name.

    A head's default output is served as `<head>`, its others as
    `<head>/<key>`, for the heads chosen; `predict` gathers every head's
    `PredictOutput` tensors, keyed `<head>/<output key>`.
    """
    predict = _merged_predict_output(outputs_by_head)
    if self.serving_default == SERVE_ALL:
      served = {base_head.DEFAULT_SERVING_KEY: predict}
    else:
      served = {base_head.DEFAULT_SERVING_KEY: _default_output(
          outputs_by_head[self._default_head], self._default_head)}
    for name, outputs in outputs_by_head.items():
      if self.exported is None or name in self.exported:
        served.update({_served_name(name, key): output
                       for key, output in outputs.items()})
    served[base_head.PREDICT_SERVING_KEY] = predict
    return served
