"""The parts a `MultiHead` is computed from: single heads and fused groups.

A part covers one head (`HeadPart`, which asks the head itself) or a fused
group of heads (`FusedPart`, see `fused_heads`). Both answer the same
questions for the heads they cover, keyed by head name, so that `MultiHead`
merges their answers without knowing which kind it has:

* `spec(...)` builds what a mode needs once: a `PartSpec` with predictions,
  export outputs, losses, and eval metrics as named tensors and a function
  of them (what `TPUEstimator` takes);
* `losses`, `predictions`, `metrics` and `update_metrics` answer the `Head`
  API's calls one at a time.
"""
import contextlib
import inspect
import re

import tensorflow as tf
from tensorflow_estimator.python.estimator.canned import metric_keys
from tensorflow_estimator.python.estimator.head import (
    base_head as estimator_base_head)
from tensorflow_estimator.python.estimator.mode_keys import ModeKeys

from tensorflow_multihead import base_head
from tensorflow_multihead import fused_heads
from tensorflow_multihead import fused_metrics
from tensorflow_multihead import fusion
from tensorflow_multihead import head_group
from tensorflow_multihead import label_dtypes

_LOSS_KEY = metric_keys.MetricKeys.LOSS


def _no_train_op(head_loss):
  del head_loss  # Only the merged loss is trained, by the merged train op.
  return tf.no_op()


def loss_key(name):
  """The EVAL metric key of a head's loss: `loss/<head>`."""
  return f'{_LOSS_KEY}/{name}'


def _builds_through_tpu_spec(head):
  """Whether the head's `create_estimator_spec` is the base class's own.

  Such a head builds its spec through `_create_tpu_estimator_spec`, whose
  metrics come as a function of tensors that the merged spec can hand on to
  `TPUEstimator`. A head overriding `create_estimator_spec` is asked for that
  spec instead, so that its override is honoured.
  """
  return type(head).create_estimator_spec in (
      base_head.Head.create_estimator_spec,
      estimator_base_head.Head.create_estimator_spec)


def _takes_keys(head):
  """Whether `head.predictions` accepts `keys` (the regression heads don't)."""
  try:
    return 'keys' in inspect.signature(head.predictions).parameters
  except (TypeError, ValueError):  # No signature to read: assume it does.
    return True


def _mean_of(name, values, weights=None):
  mean = tf.keras.metrics.Mean(name=name)
  mean.update_state(values=values, sample_weight=weights)
  return mean


def _loss_metric_weight(head, labels, logits, features):
  """How much this batch counts in `loss/<head>`: None (once) for most heads.

  A head that tells its `labelled_row_count` (`MaskedHead`) counts 0 in a
  batch where it has no labelled row, which leaves its mean loss as it was.
  """
  count = getattr(head, 'labelled_row_count', None)
  if count is None or labels is None:
    return None
  return tf.cast(count(labels, logits, features) > 0, tf.float32)


def _weight_key(loss_metric_key):
  return f'{loss_metric_key}:weight'


class Selection:
  """Which predictions `MultiHead.predictions(keys=...)` asks for.

  A plain key asks every head that has it; a `(head name, key)` pair asks one
  head, which must have it.
  """

  def __init__(self, keys, head_names):
    if keys is not None and not isinstance(keys, (list, tuple)):
      # A ValueError, as the tf.estimator heads raise for a string.
      raise ValueError(
          'keys must be a list or tuple of prediction keys (plain keys or '
          f'(head name, key) pairs), or None. Given: {keys!r}. For one key, '
          f'write keys=[{keys!r}].')
    self.everything = keys is None
    keys = keys or []
    self._offered = {}  # The keys each head has, when all were asked for.
    self.plain = [key for key in keys if not isinstance(key, tuple)]
    self.pairs = [key for key in keys if isinstance(key, tuple)]
    for name, key in self.pairs:
      if name not in head_names:
        raise ValueError(
            f'Prediction key {(name, key)!r} names unknown head {name!r}. The '
            f'heads are: {list(head_names)}.')

  def _required(self, name):
    return [key for head_name, key in self.pairs if head_name == name]

  def of_head(self, head, logits):
    """The head's chosen predictions, asking the head for them."""
    if self.everything:
      return head.predictions(logits)
    required = self._required(head.name)
    if not (required or self.plain):
      return {}
    if required and not self.plain and _takes_keys(head):
      return head.predictions(logits, required)
    return self.pick(head.name, head.predictions(logits))

  def pick(self, name, offered):
    """The chosen ones among a head's predictions `offered`."""
    if self.everything:
      return offered
    self._offered[name] = sorted(offered)
    required = self._required(name)
    missing = [key for key in required if key not in offered]
    if missing:
      raise ValueError(f'Head {name!r}: it has no predictions {missing}, '
                       f'only {sorted(offered)}.')
    return {key: value for key, value in offered.items()
            if key in required or key in self.plain}

  def check_found(self, merged):
    found = {key for _, key in merged}
    absent = [key for key in self.plain if key not in found]
    if absent:
      raise ValueError(f'No head has the predictions {absent}. The heads '
                       f'have: {self._offered}.')


class PartSpec:
  """What one part built for one mode.

  Attributes:
    predictions, export_outputs, losses: Dicts keyed by head name (export
      outputs in PREDICT only, losses not in PREDICT).
    metric_tensors: Named tensors the part's metrics are computed from.
  """

  def __init__(self, predictions, export_outputs=None, losses=None,
               metric_tensors=None, metric_fn=None):
    self.names = tuple(predictions)
    self.predictions = predictions
    self.export_outputs = export_outputs
    self.losses = losses
    self.metric_tensors = metric_tensors or {}
    self._metric_fn = metric_fn

  @property
  def has_metrics(self):
    return self._metric_fn is not None

  def metrics(self, all_tensors):
    """The part's metrics, computed from its share of `all_tensors`."""
    if self._metric_fn is None:
      return {}
    return self._metric_fn(
        **{key: all_tensors[key] for key in self.metric_tensors})


# Head names that can name a name scope as they are (no '/', which would
# open nested or absolute scopes).
_SCOPE_NAME = re.compile(r'[A-Za-z0-9.][A-Za-z0-9_.-]*\Z')


@contextlib.contextmanager
def _calling(head):
  """The context of a call into `head` that builds ops.

  An error raised while building names the head (`ErrorsNamingHead`), and
  in a graph the ops are built in the head's name scope, which names it in
  the messages of run-time errors (assertions show their tensors' names).
  """
  with head_group.ErrorsNamingHead(head.name):
    if tf.executing_eagerly() or not _SCOPE_NAME.match(head.name):
      yield
    else:
      with tf.name_scope(head.name):
        yield


class HeadPart:
  """One head computed on its own, by its own methods.

  An error the head raises, in any of them, names it: while building, in
  its message; when the graph runs, by the name scope of the op that
  failed. Labels of a dtype the head cannot take are refused before it is
  called (`label_dtypes`).
  """

  def __init__(self, head, position):
    self.head = head
    self.names = (head.name,)
    # Heads name their metric tensors alike: prefix them by position.
    self._prefix = f'{position}:'
    # The metric keys the head gave in `metrics()`, so that
    # `update_metrics()` updates those same objects and they accumulate.
    self._metric_keys = None

  def spec(self, features, mode, logits, labels):
    # No name scope of ours: the heads open their own, named after them.
    with head_group.ErrorsNamingHead(self.head.name):
      if mode != ModeKeys.PREDICT:  # PREDICT ignores labels, as the head.
        label_dtypes.check(self.head, labels[self.head.name])
      return self._spec(features, mode, logits, labels)

  def _spec(self, features, mode, logits, labels):
    head, name = self.head, self.head.name
    spec_args = dict(features=features, mode=mode, logits=logits[name],
                     labels=labels[name], train_op_fn=_no_train_op)
    if _builds_through_tpu_spec(head):
      spec = head._create_tpu_estimator_spec(**spec_args)  # pylint: disable=protected-access
      head_metric_fn, tensors = spec.eval_metrics or (None, {})
    else:
      spec = head.create_estimator_spec(**spec_args)
      built = spec.eval_metric_ops
      head_metric_fn, tensors = (lambda: built), {}
    losses = None if mode == ModeKeys.PREDICT else {name: spec.loss}
    metric_tensors = {self._prefix + key: value
                      for key, value in tensors.items()}
    if mode == ModeKeys.EVAL:
      # Rank 1, since TPUEstimator moves metric tensors batch by batch.
      metric_tensors[loss_key(name)] = tf.reshape(spec.loss, [1])
      weight = _loss_metric_weight(head, labels[name], logits[name], features)
      if weight is not None:
        metric_tensors[_weight_key(loss_key(name))] = tf.reshape(weight, [1])
    metric_fn = None
    if head_metric_fn is not None or mode == ModeKeys.EVAL:
      metric_fn = self._metric_fn(head_metric_fn, mode)
    return PartSpec(
        predictions={name: spec.predictions},
        export_outputs={name: spec.export_outputs}, losses=losses,
        metric_tensors=metric_tensors, metric_fn=metric_fn)

  def _metric_fn(self, head_metric_fn, mode):
    start = len(self._prefix)

    def metric_fn(**tensors):
      metrics = {}
      if mode == ModeKeys.EVAL:
        key = loss_key(self.head.name)
        metrics[key] = _mean_of(key, tensors.pop(key),
                                tensors.pop(_weight_key(key), None))
      tensors = {key[start:]: value for key, value in tensors.items()}
      if head_metric_fn is not None:
        # Called outside the merged spec's scopes (by `EstimatorSpec`, or
        # on TPUEstimator's host): the head's scope names it in run-time
        # errors' messages, as in its loss's.
        with _calling(self.head):
          head_metrics = head_metric_fn(**tensors)
        head_group.merge_unique(metrics, head_metrics, self.head.name,
                                'metric')
      return metrics

    return metric_fn

  def losses(self, features, logits, labels, mode):
    name = self.head.name
    with _calling(self.head):
      label_dtypes.check(self.head, labels[name])
      return {name: self.head.loss(labels=labels[name], logits=logits[name],
                                   features=features, mode=mode)}

  def predictions(self, logits, selection):
    name = self.head.name
    with _calling(self.head):
      return {name: selection.of_head(self.head, logits[name])}

  def metrics(self):
    with head_group.ErrorsNamingHead(self.head.name):
      head_metrics = self.head.metrics()
    self._metric_keys = tuple(head_metrics)
    key = loss_key(self.head.name)
    return head_group.merge_unique({key: tf.keras.metrics.Mean(name=key)},
                                   head_metrics, self.head.name, 'metric')

  def update_metrics(self, eval_metrics, features, logits, labels):
    head, name = self.head, self.head.name
    key = loss_key(name)
    if key not in eval_metrics:
      eval_metrics[key] = tf.keras.metrics.Mean(name=key)
    with _calling(head):
      label_dtypes.check(head, labels[name])
      eval_metrics[key].update_state(
          values=head.loss(labels=labels[name], logits=logits[name],
                           features=features),
          sample_weight=_loss_metric_weight(head, labels[name], logits[name],
                                            features))
      eval_metrics.update(head.update_metrics(
          self._head_metrics(eval_metrics), features, logits[name],
          labels[name]) or {})

  def _head_metrics(self, eval_metrics):
    """The head's metric objects in `eval_metrics`, or new ones.

    New ones when `eval_metrics` did not come from this head's `metrics()`:
    they then hold this batch only, as the reference's always do.
    """
    keys = self._metric_keys
    if keys is not None and all(key in eval_metrics for key in keys):
      return {key: eval_metrics[key] for key in keys}
    return self.head.metrics()  # Inside the caller's ErrorsNamingHead.


class FusedPart:
  """A fused group of heads, computed by batched ops."""

  def __init__(self, group, position, exported=None):
    self.group = group
    self.names = group.names
    self._prefix = f'{position}:fused:'
    # The heads an export serves by a signature of their own (None: all).
    self.exported = group.names if exported is None else exported

  def spec(self, features, mode, logits, labels):
    group = self.group
    with tf.name_scope(f'fused_{self.names[0]}'):
      # Heads with signatures of their own are cut apart, so that each
      # signature stays small (see narrow_outputs).
      predictions = group.predictions(
          logits, apart=self.exported if mode == ModeKeys.PREDICT else ())
      if mode == ModeKeys.PREDICT:
        return PartSpec(predictions=predictions,
                        export_outputs=group.export_outputs(predictions))
      batch = group.batch(features, logits, labels)
    losses = dict(zip(self.names, tf.unstack(batch.losses[0])))
    if mode == ModeKeys.TRAIN:
      for name, loss in losses.items():
        base_head.create_estimator_spec_summary(
            loss, summary_key_fn=lambda key, name=name: f'{key}/{name}')
      return PartSpec(predictions=predictions, losses=losses)
    tensors = {self._prefix + key: value
               for key, value in batch.as_tensors().items()}
    return PartSpec(predictions=predictions, losses=losses,
                    metric_tensors=tensors, metric_fn=self._metric_fn)

  def _metric_fn(self, **tensors):
    start = len(self._prefix)
    batch = fused_heads.Batch(**{key[start:]: value
                                 for key, value in tensors.items()})
    states = self.group.states()
    update = self.group.update_states(states, batch)
    _add_to_metric_collections(states)
    values = {}
    for name, state in states.items():
      for part, columns in state.result().items():
        values[name, part] = columns
    return {reading.key: (values[reading.state, reading.part][reading.column],
                          update)
            for reading in self.group.readings()}

  def losses(self, features, logits, labels, mode):
    del mode  # The fused heads' losses do not depend on it.
    self._check_inputs(logits, labels)
    batch = self.group.batch(features, logits, labels)
    return dict(zip(self.names, tf.unstack(batch.losses[0])))

  def predictions(self, logits, selection):
    self._check_inputs(logits)
    offered = self.group.predictions(logits)
    return {name: selection.pick(name, offered[name]) for name in self.names}

  def metrics(self):
    return self._views(self.group.states())

  def _views(self, states):
    return {reading.key: fused_metrics.MetricView(
        reading.key, states[reading.state], reading.part, reading.column)
            for reading in self.group.readings()}

  def update_metrics(self, eval_metrics, features, logits, labels):
    self._check_inputs(logits, labels)
    states = self._states_in(eval_metrics)
    if states is None:  # Not from metrics(): new ones, for this batch only.
      states = self.group.states()
      eval_metrics.update(self._views(states))
    self.group.update_states(states,
                             self.group.batch(features, logits, labels))

  def _states_in(self, eval_metrics):
    states = {}
    for reading in self.group.readings():
      view = eval_metrics.get(reading.key)
      if not isinstance(view, fused_metrics.MetricView):
        return None
      states[reading.state] = view.state
    return states

  def _check_inputs(self, logits, labels=None):
    for name in self.names:
      if not fusion.fusable_inputs(
          logits[name], None if labels is None else labels[name]):
        raise ValueError(
            f'The logits or labels of head {name!r} have an unknown rank, '
            f'which its fused group {list(self.names)} cannot stack; build '
            'the MultiHead with fuse_heads=False to compute every head on '
            'its own.')
    if not fusion.fusable_group([logits[name] for name in self.names]):
      raise ValueError(
          f'The logits of the heads {list(self.names)}, computed together in '
          'one fused group, have different ranks, so cannot be stacked; '
          'build the MultiHead with fuse_heads=False to compute every head '
          'on its own.')


def _add_to_metric_collections(states):
  """Makes the states' variables local metric variables, as Estimator does.

  `EstimatorSpec` does it for Keras metric objects it gets; the fused
  metrics reach it as (value, update op) pairs instead.
  """
  if tf.executing_eagerly():
    return
  for collection in (tf.compat.v1.GraphKeys.LOCAL_VARIABLES,
                     tf.compat.v1.GraphKeys.METRIC_VARIABLES):
    present = set(tf.compat.v1.get_collection(collection))
    for state in states.values():
      for variable in state.variables:
        if variable not in present:
          tf.compat.v1.add_to_collection(collection, variable)


def parts_for(heads, plan, fused_groups, logits=None, labels=None,
              exported=None):
  """The parts computing one call, in the order of their first head.

  A planned group is fused if every head's `logits` (and `labels`, when
  given) can be stacked, else each of its heads is computed on its own.
  `fused_groups` maps a plan's group (tuple of positions) to its
  `fused_heads.FusedGroup`; `exported` names the heads an export serves by
  a signature of their own, `serving_default` included (None: every head).
  """
  parts = []
  for positions in plan:
    group = fused_groups.get(positions)
    names = [heads[position].name for position in positions]
    if group is not None and (logits is None or fusion.fusable_group(
        [logits[name] for name in names],
        None if labels is None else [labels[name] for name in names])):
      parts.append(FusedPart(group, positions[0], exported))
    else:
      parts.extend(HeadPart(heads[position], position)
                   for position in positions)
  return parts

def by_head(specs, what, names):
  """Merges the parts' dicts `what` (keyed by head name) in head order."""
  merged = {}
  for spec in specs:
    merged.update(getattr(spec, what))
  return {name: merged[name] for name in names}


def merged_metrics(specs):
  """`(metric_fn, tensors)` merging every part's metrics; None if none."""
  if not any(spec.has_metrics for spec in specs):
    return None
  tensors = {key: value for spec in specs
             for key, value in spec.metric_tensors.items()}

  def metric_fn(**metric_tensors):
    merged = {}
    for spec in specs:
      for key, metric in spec.metrics(metric_tensors).items():
        head_group.merge_unique(merged, {key: metric}, spec.names[0],
                                'metric')
    return merged

  return metric_fn, tensors
