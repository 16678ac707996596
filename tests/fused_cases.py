"""Configurations on which fused heads must match `tf.estimator.MultiHead`.

Each `Case` is a `differential.Mix` whose heads are mostly of one fusable
type (2 to 24 of them, with their options varied from head to head), or a
mix of fusable groups and heads that must not fuse, plus how many EVAL
batches to feed and which modes to run. Its `id` is derived from the mix,
so it states what the case holds, e.g.
`binary8(thresholds,vocab,weights,flat)-rank3-tensor-head_weights-3batches`.

`reference_results(case, mode)` runs `tf.estimator.MultiHead` once per case
and mode (cached for the test session); `our_results` runs ours with a
given `fuse_heads`. The eager reference keeps each head's metric objects
across `update_metrics` calls (`accumulating_reference_multi_head`), so that
its metrics accumulate over batches as its graph EVAL's do.

>>> BINARY_SMALL.id
'binary2(thresholds,weights)-rank2-dict-3batches'
>>> [head.thresholds for head in BINARY_SMALL.mix.heads]
[(0.3, 0.7), ()]
"""
import dataclasses
import functools

from tests import differential as diff

MODES = ('train', 'eval', 'predict', 'eager')
GRAPH_MODES = {'train': diff.TRAIN, 'eval': diff.EVAL,
               'predict': diff.PREDICT}

_BINARY_VOCABULARIES = (None, ('ant', 'bee'), ('no', 'yes'))
_THRESHOLD_SETS = ((), (0.3,), (0.5, 0.7), (0.3, 0.5, 0.7))
_WEIGHT_COLUMNS = (None, 'w_a', 'w_b')


@dataclasses.dataclass(frozen=True)
class Case:
  """A mix, its EVAL batch count and the modes it runs in.

  `options` feeds TRAIN and PREDICT (`logits_shape`, `train_with`) and
  tells EVAL whether its batches have a static size (`static_batches`).
  """
  mix: diff.Mix
  batch_count: int = 3
  modes: tuple = MODES
  options: diff.GraphOptions = diff.GraphOptions()

  @property
  def id(self):
    mix, parts = self.mix, []
    parts.append('+'.join(_group_label(mix, kind) for kind in _kinds(mix)))
    parts.append(f'rank{len(mix.batch_shape) + 1}')
    parts.append('dict' if mix.dict_logits else 'tensor')
    if mix.head_weights:
      parts.append('head_weights')
    if mix.regularization:
      parts.append('regularization')
    if mix.loss_reduction == diff.SUM:
      parts.append('sum')
    if self.options.logits_shape:
      parts.append('placeholder_logits')
    if not self.options.static_batches:
      parts.append('unknown_batch')
    if self.options.train_with == 'optimizer':
      parts.append('keras_optimizer')
    parts.append(f'{self.batch_count}batches')
    return '-'.join(parts)


def _kinds(mix):
  return list(dict.fromkeys(head.kind for head in mix.heads))


def _group_label(mix, kind):
  """E.g. `multi_class12(n3,n5,vocab,weights)`: count, widths, options."""
  heads = [head for head in mix.heads if head.kind == kind]
  labels = []
  if kind in (diff.MULTI_CLASS, diff.MULTI_LABEL, diff.REGRESSION,
              diff.POISSON):
    letter = 'n' if kind in (diff.MULTI_CLASS, diff.MULTI_LABEL) else 'd'
    labels += [f'{letter}{width}'
               for width in sorted({head.width for head in heads})]
  for option, label in (('thresholds', 'thresholds'), ('vocabulary', 'vocab'),
                        ('weight_column', 'weights'),
                        ('class_metrics', 'class_metrics'),
                        ('sparse_labels', 'sparse'), ('flat_labels', 'flat'),
                        ('loss_fn', 'loss_fn')):
    if any(getattr(head, option) for head in heads):
      labels.append(label)
  return f'{kind}{len(heads)}' + (f'({",".join(labels)})' if labels else '')


def _cycled(values, index):
  return values[index % len(values)]


def heads(kind, count, prefix=None, start=0, **cycled):
  """`count` `HeadSpec`s of `kind`; head `i` takes option lists' `i`th value.

  Every keyword is a tuple of values for one `HeadSpec` field, cycled
  through head by head, so that neighbouring heads differ.
  """
  prefix = prefix or kind
  return tuple(
      diff.HeadSpec(kind=kind, name=f'{prefix}_{index}',
                    **{field: _cycled(values, index)
                       for field, values in cycled.items()})
      for index in range(start, start + count))


def _weights(count, seed=0):
  return tuple(round(0.25 + 0.5 * ((index * 7 + seed) % 6), 2)
               for index in range(count))


def _interleaved(*groups):
  """Heads of several groups, taken one from each group in turn."""
  longest = max(len(group) for group in groups)
  return tuple(group[index] for index in range(longest) for group in groups
               if index < len(group))


def _multi_class(count, start, width):
  vocabularies = (None, tuple(f'c{index}' for index in range(width)))
  return heads(diff.MULTI_CLASS, count, prefix=f'multi_class_n{width}',
               start=start, width=(width,), vocabulary=vocabularies,
               weight_column=_WEIGHT_COLUMNS)


def _sparse_multi_label(index):
  """Multi-label heads of 4 classes, labels as dense, id or name sets."""
  form = index % 3
  return diff.HeadSpec(
      diff.MULTI_LABEL, f'multi_label_{index}', width=4,
      sparse_labels=form > 0,
      vocabulary=diff.VOCABULARY[:4] if form == 2 else None,
      thresholds=_cycled(((), (0.5,), (0.3, 0.7), (0.5,)), index),
      class_metrics=_cycled(((), (0, 3), (1,), ()), index),
      weight_column=_cycled(_WEIGHT_COLUMNS, index))


_REGRESSION_24 = diff.Mix(
    heads=heads(diff.REGRESSION, 24, width=(1, 2, 3),
                weight_column=(None, 'w_a', 'w_b', None)),
    head_weights=_weights(24, seed=2), dict_logits=False, batch_shape=(5,),
    regularization=(0.1, 0.2), data_seed=12)

BINARY_SMALL = Case(diff.Mix(
    heads=heads(diff.BINARY, 2, thresholds=((0.3, 0.7), ()),
                weight_column=('w_a', None)),
    batch_shape=(5,), data_seed=1))

CASES = (
    # BinaryClassHead.
    BINARY_SMALL,
    Case(diff.Mix(
        heads=heads(diff.BINARY, 6, thresholds=_THRESHOLD_SETS,
                    vocabulary=_BINARY_VOCABULARIES,
                    weight_column=_WEIGHT_COLUMNS,
                    flat_labels=(False, False, False, False, True)),
        head_weights=_weights(6), dict_logits=False, batch_shape=(2, 3),
        regularization=(0.25, 0.5), data_seed=2),
         options=diff.GraphOptions(static_batches=False)),
    # Groups of 12 and more skip graph EVAL, whose graph alone would take the
    # reference up to a minute to build; their eager metrics accumulate over
    # the batches all the same.
    Case(diff.Mix(
        heads=heads(diff.BINARY, 16, thresholds=_THRESHOLD_SETS[::-1],
                    vocabulary=_BINARY_VOCABULARIES,
                    weight_column=_WEIGHT_COLUMNS[::-1]),
        dict_logits=False, batch_shape=(6,), loss_reduction=diff.SUM,
        data_seed=3),
         modes=('train', 'predict', 'eager'), options=diff.GraphOptions(
             logits_shape=(None, None), train_with='optimizer')),
    Case(diff.Mix(
        heads=heads(diff.BINARY, 24, thresholds=_THRESHOLD_SETS,
                    vocabulary=_BINARY_VOCABULARIES,
                    weight_column=(None, 'w_a', None, 'w_b')),
        head_weights=_weights(24, seed=1), batch_shape=(4,),
        regularization=(0.5,), data_seed=4),
         modes=('predict', 'eager'), batch_count=2),
    # MultiClassHead.
    Case(diff.Mix(
        heads=heads(diff.MULTI_CLASS, 2, width=(3,),
                    vocabulary=(None, ('ant', 'bee', 'cat')),
                    weight_column=(None, 'w_a')),
        batch_shape=(6,), data_seed=5)),
    Case(diff.Mix(
        heads=_interleaved(_multi_class(4, 0, 3), _multi_class(4, 0, 5)),
        head_weights=_weights(8), dict_logits=False, batch_shape=(2, 3),
        loss_reduction=diff.SUM, data_seed=6),
         options=diff.GraphOptions(static_batches=False)),
    Case(diff.Mix(
        heads=heads(diff.MULTI_CLASS, 16, width=(4,),
                    vocabulary=(None, None, ('ant', 'bee', 'cat', 'dog')),
                    weight_column=_WEIGHT_COLUMNS, flat_labels=(False, True)),
        batch_shape=(5,), regularization=(0.5,), data_seed=20),
         modes=('predict', 'eager'), batch_count=2),
    # MultiLabelHead.
    Case(diff.Mix(
        heads=heads(diff.MULTI_LABEL, 2, width=(2,), thresholds=((0.5,), ()),
                    class_metrics=((0, 1), ())),
        batch_shape=(5,), data_seed=7)),
    Case(diff.Mix(
        heads=tuple(_sparse_multi_label(index) for index in range(6)),
        dict_logits=False, batch_shape=(6,), regularization=(1.5,),
        data_seed=8),
         options=diff.GraphOptions(static_batches=False,
                                   logits_shape=(None, 24))),
    Case(diff.Mix(
        heads=_interleaved(
            heads(diff.MULTI_LABEL, 3, prefix='multi_label_n2', width=(2,),
                  thresholds=_THRESHOLD_SETS, weight_column=('w_a', None)),
            heads(diff.MULTI_LABEL, 3, prefix='multi_label_n3', width=(3,),
                  class_metrics=((2,), ()), weight_column=(None, 'w_b'))),
        head_weights=_weights(6), batch_shape=(2, 2), data_seed=9)),
    Case(diff.Mix(
        heads=heads(diff.MULTI_LABEL, 12, width=(3,),
                    thresholds=_THRESHOLD_SETS,
                    class_metrics=((), (0, 2)),
                    weight_column=_WEIGHT_COLUMNS),
        dict_logits=False, batch_shape=(4,), data_seed=10),
         modes=('predict', 'eager'), batch_count=2),
    # RegressionHead.
    Case(diff.Mix(
        heads=heads(diff.REGRESSION, 3, width=(1, 3, 2),
                    weight_column=('w_a', None),
                    flat_labels=(True, False, False)),
        batch_shape=(4,), data_seed=11)),
    Case(_REGRESSION_24, modes=('train', 'predict', 'eager'), batch_count=2,
         options=diff.GraphOptions(
             logits_shape=(None, _REGRESSION_24.logits_dimension))),
    Case(diff.Mix(
        heads=heads(diff.REGRESSION, 6, width=(2,),
                    loss_fn=(None, None, 'absolute_error'),
                    weight_column=(None, 'w_a')),
        batch_shape=(2, 3), loss_reduction=diff.SUM, data_seed=13)),
    # PoissonRegressionHead.
    Case(diff.Mix(
        heads=heads(diff.POISSON, 4, width=(1, 2), weight_column=('w_a', None)),
        batch_shape=(5,), data_seed=14)),
    Case(diff.Mix(
        heads=heads(diff.POISSON, 8, flat_labels=(False, True),
                    weight_column=(None, None, 'w_b')),
        head_weights=_weights(8), dict_logits=False, batch_shape=(2, 3),
        loss_reduction=diff.SUM, data_seed=15),
         options=diff.GraphOptions(logits_shape=(None, 3, 8),
                                   train_with='optimizer')),
    # LogisticRegressionHead.
    Case(diff.Mix(
        heads=heads(diff.LOGISTIC, 8, flat_labels=(True, False, False),
                    weight_column=_WEIGHT_COLUMNS),
        dict_logits=False, batch_shape=(6,), regularization=(0.3,),
        data_seed=16)),
    Case(diff.Mix(
        heads=heads(diff.LOGISTIC, 6, weight_column=('w_b', None)),
        head_weights=_weights(6), batch_shape=(2, 2), data_seed=17),
         options=diff.GraphOptions(static_batches=False)),
    # Fusable groups beside heads that must not fuse: a head alone of its
    # kind, `BinaryClassHead` subclasses, heads with a `loss_fn`.
    Case(diff.Mix(
        heads=(heads(diff.BINARY, 4, weight_column=('w_a', None),
                     thresholds=((0.5,), ()))
               + heads(diff.DOUBLED_BINARY, 2, thresholds=((0.5,), ()))
               + heads(diff.MULTI_CLASS, 1, width=(3,))
               + heads(diff.BINARY, 2, prefix='binary_hinge',
                       loss_fn=('hinge',))
               + heads(diff.REGRESSION, 3, width=(2,))
               + heads(diff.POISSON, 1)
               + heads(diff.REGRESSION, 2, prefix='regression_absolute',
                       width=(2,), loss_fn=('absolute_error',))),
        head_weights=_weights(15), batch_shape=(5,), regularization=(0.2,),
        data_seed=18)),
    # The six fusable types, interleaved, two of each.
    Case(diff.Mix(
        heads=_interleaved(
            heads(diff.BINARY, 2, vocabulary=_BINARY_VOCABULARIES[1:],
                  weight_column=_WEIGHT_COLUMNS),
            heads(diff.MULTI_CLASS, 2, width=(3,),
                  weight_column=_WEIGHT_COLUMNS[::-1]),
            heads(diff.MULTI_LABEL, 2, width=(2,),
                  thresholds=_THRESHOLD_SETS[1:]),
            heads(diff.REGRESSION, 2, width=(1, 2)),
            heads(diff.POISSON, 2, weight_column=('w_a', None)),
            heads(diff.LOGISTIC, 2)),
        dict_logits=False, batch_shape=(2, 3), loss_reduction=diff.SUM,
        regularization=(0.4,), data_seed=19),
         options=diff.GraphOptions(static_batches=False,
                                   train_with='optimizer')),
)


def mode_params(cases=CASES):
  """`(case, mode)` pairs of every case in each of its modes."""
  return [(case, mode) for case in cases for mode in case.modes]


@functools.lru_cache(maxsize=None)
def batches(case):
  return diff.make_batches(case.mix, case.batch_count)


def run(make_multi_head, case, mode):
  """Runs `case` in `mode` ('train', 'eval', 'predict' or 'eager').

  TRAIN and PREDICT run the first batch in a graph; EVAL runs every batch
  through an iterator, reading the metrics after each; eager runs `loss`,
  `predictions`, `metrics` and `update_metrics` on every batch in turn.
  """
  if mode == 'eager':
    return diff.run_eager(make_multi_head, case.mix, batches(case))
  inputs = batches(case)
  if mode == 'eval':
    options = diff.GraphOptions(static_batches=case.options.static_batches)
  else:
    inputs, options = inputs[0], case.options
  return diff.run_graph(make_multi_head, case.mix, inputs, GRAPH_MODES[mode],
                        options)


def _keep_metric_objects(head):
  """Makes `head.metrics()` hand out the same metric objects every time."""
  make_metrics = head.metrics
  kept = {}

  def metrics(regularization_losses=None):
    if not kept:
      kept.update(make_metrics(regularization_losses))
    return dict(kept)

  head.metrics = metrics
  return head


def accumulating_reference_multi_head(heads, head_weights=None):
  """`tf.estimator.MultiHead` whose heads' metrics outlive one update.

  Its `update_metrics` asks each head for new metric objects every time
  (README: its head metrics hold the last batch only); here each head hands
  out the objects it made first, so they accumulate, as the reference's own
  metrics do in graph EVAL.
  """
  return diff.reference_multi_head(
      [_keep_metric_objects(head) for head in heads], head_weights)


@functools.lru_cache(maxsize=None)
def reference_results(case, mode):
  """The reference's results for `case` in `mode`, computed once."""
  make = (accumulating_reference_multi_head if mode == 'eager'
          else diff.reference_multi_head)
  return run(make, case, mode)


def our_results(case, mode, fuse_heads):
  return run(diff.fusing(fuse_heads), case, mode)
