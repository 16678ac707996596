"""What both benchmarks share: the mixed heads, their inputs, the tables.

Both implementations get the very same `tf.estimator` heads (made fresh for
every build), so only the `MultiHead` class differs between them.
"""
import dataclasses
import functools
import importlib
import json
import os
import time
from typing import Callable

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

REFERENCE = 'reference'
PER_HEAD = 'per_head'
FUSED = 'fused'
# tf.estimator.MultiHead; ours with every head on its own path
# (`fuse_heads=False`); ours fusing heads of one type (the default).
IMPLEMENTATIONS = (REFERENCE, PER_HEAD, FUSED)
OURS = (PER_HEAD, FUSED)
LABELS = {REFERENCE: 'tf.estimator.MultiHead', PER_HEAD: 'ours, per head',
          FUSED: 'ours, fused'}

MODES = {
    'train': tf.estimator.ModeKeys.TRAIN,
    'eval': tf.estimator.ModeKeys.EVAL,
    'predict': tf.estimator.ModeKeys.PREDICT,
}

WEIGHT_COLUMN = 'example_weight'
FEATURE_COLUMN = 'x'
CLASS_NAMES = ('red', 'green', 'blue')


def multi_head_class(implementation):
  """Returns a `MultiHead` class (or factory) for `implementation`."""
  if implementation == REFERENCE:
    return tf.estimator.MultiHead
  if implementation in OURS:
    # Imported late so that a broken package still lets the reference run.
    ours = importlib.import_module('tensorflow_multihead').MultiHead
    return functools.partial(ours, fuse_heads=implementation == FUSED)
  raise ValueError(f'Unknown implementation {implementation!r}; expected one '
                   f'of {IMPLEMENTATIONS}.')


def parse_implementations(text):
  """`'reference,fused'` -> `['reference', 'fused']`; `''` -> all three."""
  names = [part.strip() for part in (text or '').split(',') if part.strip()]
  unknown = [name for name in names if name not in IMPLEMENTATIONS]
  if unknown:
    raise ValueError(f'Unknown implementations {unknown}; choose from '
                     f'{list(IMPLEMENTATIONS)}.')
  return [name for name in IMPLEMENTATIONS if name in names] or list(
      IMPLEMENTATIONS)


@dataclasses.dataclass(frozen=True)
class HeadKind:
  """One kind of head in the mix, with the labels it takes."""
  prefix: str
  make: Callable[[str], tf.estimator.Head]
  label_dtype: tf.dtypes.DType
  label_width: int
  sample_labels: Callable[[np.random.Generator, int], np.ndarray]


def _binary_labels(rng, count):
  return rng.integers(0, 2, size=(count, 1)).astype(np.int64)


def _class_name_labels(rng, count):
  return rng.choice(np.array(CLASS_NAMES), size=(count, 1))


def _multi_label_labels(rng, count):
  return rng.integers(0, 2, size=(count, 2)).astype(np.int64)


def _masked(head, **marks):
  """`tensorflow_multihead.MaskedHead(head)`, imported as late as `MultiHead`."""
  return importlib.import_module('tensorflow_multihead').MaskedHead(head,
                                                                    **marks)


def _masked_binary_labels(rng, count):
  """Binary labels, -1 (no label) on about 40 % of the rows."""
  labels = _binary_labels(rng, count)
  labels[rng.uniform(size=count) < 0.4] = -1
  return labels


def _real_labels(rng, count):
  return rng.normal(size=(count, 1)).astype(np.float32)


def _count_labels(rng, count):
  return rng.poisson(2., size=(count, 1)).astype(np.float32)


def _probability_labels(rng, count):
  return rng.uniform(0., 1., size=(count, 1)).astype(np.float32)


# The mixed heads cycle through these in this order; a weight column on two
# kinds and a label vocabulary on one, so that those code paths are in the
# graphs too. `binary_unweighted` (a `BinaryClassHead` without a weight
# column) and `binary_masked` (a weighted one in a `MaskedHead`) are only
# used when asked for by name.
HEAD_KINDS = (
    HeadKind('binary',
             lambda name: tf.estimator.BinaryClassHead(
                 weight_column=WEIGHT_COLUMN, name=name),
             tf.int64, 1, _binary_labels),
    HeadKind('binary_unweighted',
             lambda name: tf.estimator.BinaryClassHead(name=name),
             tf.int64, 1, _binary_labels),
    HeadKind('binary_masked',
             lambda name: _masked(tf.estimator.BinaryClassHead(
                 weight_column=WEIGHT_COLUMN, name=name), missing_label=-1),
             tf.int64, 1, _masked_binary_labels),
    HeadKind('multi_class',
             lambda name: tf.estimator.MultiClassHead(
                 n_classes=3, label_vocabulary=list(CLASS_NAMES), name=name),
             tf.string, 1, _class_name_labels),
    HeadKind('multi_label',
             lambda name: tf.estimator.MultiLabelHead(n_classes=2, name=name),
             tf.int64, 2, _multi_label_labels),
    HeadKind('regression',
             lambda name: tf.estimator.RegressionHead(
                 weight_column=WEIGHT_COLUMN, name=name),
             tf.float32, 1, _real_labels),
    HeadKind('poisson',
             lambda name: tf.estimator.PoissonRegressionHead(name=name),
             tf.float32, 1, _count_labels),
    HeadKind('logistic',
             lambda name: tf.estimator.LogisticRegressionHead(name=name),
             tf.float32, 1, _probability_labels),
)


KIND_PREFIXES = tuple(kind.prefix for kind in HEAD_KINDS)
MIXED_KINDS = ('binary', 'multi_class', 'multi_label', 'regression',
               'poisson', 'logistic')


def select_kinds(prefixes=None):
  """The `HeadKind`s named by `prefixes` (the six mixed ones when None)."""
  if prefixes is None:
    return tuple(kind for kind in HEAD_KINDS if kind.prefix in MIXED_KINDS)
  by_prefix = {kind.prefix: kind for kind in HEAD_KINDS}
  unknown = [prefix for prefix in prefixes if prefix not in by_prefix]
  if unknown or not prefixes:
    raise ValueError(f'Unknown head kinds {unknown or prefixes}; choose from '
                     f'{list(KIND_PREFIXES)}.')
  return tuple(by_prefix[prefix] for prefix in prefixes)


# Every function below takes `kinds`, a list of `KIND_PREFIXES` to cycle
# through instead of all of them (e.g. `['binary']` for binary heads only).


def head_kinds(count, kinds=None):
  """The kinds of the `count` mixed heads, cycling through `kinds`."""
  cycle = select_kinds(kinds)
  return [cycle[index % len(cycle)] for index in range(count)]


def head_names(count, kinds=None):
  """Unique names such as `binary_0`, `multi_class_1`, ... for the heads."""
  return [f'{kind.prefix}_{index}'
          for index, kind in enumerate(head_kinds(count, kinds))]


def make_heads(count, kinds=None):
  """Returns `count` fresh `tf.estimator` heads of mixed kinds."""
  return [kind.make(name) for kind, name in zip(head_kinds(count, kinds),
                                                head_names(count, kinds))]


def make_multi_head(implementation, count, kinds=None):
  """A `MultiHead` of `count` fresh mixed heads, from `implementation`."""
  return multi_head_class(implementation)(make_heads(count, kinds))


def logits_dimension(count, kinds=None):
  return sum(head.logits_dimension for head in make_heads(count, kinds))


def graph_inputs(count, kinds=None):
  """Placeholders for features, one logits `Tensor` and labels by head.

  Must be called inside a graph; the batch size is left unknown, as an
  Estimator's input pipeline usually leaves it.
  """
  placeholder = tf.compat.v1.placeholder
  features = {WEIGHT_COLUMN: placeholder(tf.float32, [None, 1],
                                         name=WEIGHT_COLUMN)}
  logits = placeholder(tf.float32, [None, logits_dimension(count, kinds)],
                       name='logits')
  labels = {
      name: placeholder(kind.label_dtype, [None, kind.label_width],
                        name=f'labels_{name}')
      for kind, name in zip(head_kinds(count, kinds),
                            head_names(count, kinds))}
  return features, logits, labels


def synthetic_data(count, examples, feature_width, seed=0, kinds=None):
  """Random numpy features and labels for `count` mixed heads."""
  rng = np.random.default_rng(seed)
  features = {
      FEATURE_COLUMN: rng.normal(size=(examples, feature_width)).astype(
          np.float32),
      WEIGHT_COLUMN: rng.uniform(0.5, 1.5, size=(examples, 1)).astype(
          np.float32),
  }
  labels = {name: kind.sample_labels(rng, examples)
            for kind, name in zip(head_kinds(count, kinds),
                                  head_names(count, kinds))}
  return features, labels


def parse_kinds(text):
  """`'binary,poisson'` -> `['binary', 'poisson']`; `''` -> None (all)."""
  prefixes = [part.strip() for part in (text or '').split(',')
              if part.strip()]
  if not prefixes:
    return None
  select_kinds(prefixes)
  return prefixes


def parse_ints(text):
  """`'8,32,128'` -> `[8, 32, 128]`."""
  return [int(part) for part in text.split(',') if part.strip()]


def parse_modes(text):
  """`'train,eval'` -> `['train', 'eval']`, refusing unknown modes."""
  modes = [part.strip().lower() for part in text.split(',') if part.strip()]
  unknown = [mode for mode in modes if mode not in MODES]
  if unknown:
    raise ValueError(f'Unknown modes {unknown}; choose from {list(MODES)}.')
  return modes


def ratio(ours, reference):
  """ours / reference, or None when the reference is zero."""
  return ours / reference if reference else None


@dataclasses.dataclass(frozen=True)
class Column:
  key: str
  header: str
  spec: str = ''  # A format spec such as ',' or '.3f'.

  def format(self, row):
    value = row.get(self.key)
    if value is None:
      return '-'
    return format(value, self.spec)


def text_table(columns, rows):
  """Rows of dicts as a plain table with right-aligned columns."""
  cells = [[column.header for column in columns]]
  cells += [[column.format(row) for column in columns] for row in rows]
  widths = [max(len(line[index]) for line in cells)
            for index in range(len(columns))]
  lines = ['  '.join(cell.rjust(width) for cell, width in zip(line, widths))
           for line in cells]
  lines.insert(1, '  '.join('-' * width for width in widths))
  return '\n'.join(lines)


def markdown_table(columns, rows):
  """Rows of dicts as a GitHub-flavoured markdown table."""
  lines = ['| ' + ' | '.join(column.header for column in columns) + ' |',
           '|' + '|'.join('---:' for _ in columns) + '|']
  for row in rows:
    lines.append(
        '| ' + ' | '.join(column.format(row) for column in columns) + ' |')
  return '\n'.join(lines)


def write_json(path, payload):
  with open(path, 'w', encoding='utf-8') as stream:
    json.dump(payload, stream, indent=2, sort_keys=True)
    stream.write('\n')


def write_results(args, argv, rows, markdown, json_too=True):
  """Writes what a script's `--markdown` and `--json` flags ask for.

  Args:
    args: the parsed flags, with `markdown` and `json` paths (or `None`).
    argv: the command line, recorded in the JSON beside the rows.
    rows: the measured rows.
    markdown: a callable returning the Markdown report, called only when
      `--markdown` is given.
    json_too: whether `--json` applies (not when the rows were read from it).
  """
  if args.markdown:
    with open(args.markdown, 'w', encoding='utf-8') as stream:
      stream.write(markdown())
  if args.json and json_too:
    write_json(args.json, {'machine': machine_note(), 'argv': argv,
                           'rows': rows})


def print_total(started):
  """Prints the time since `started` (`time.perf_counter()`), and where."""
  print(f'\ntotal {time.perf_counter() - started:.0f} s; {machine_note()}')


def quiet_tensorflow():
  """Hides TensorFlow's deprecation warnings, which drown the progress lines.

  Only the scripts' `main` calls this: a test importing this module must not
  change the logging that other tests may look at.
  """
  tf.get_logger().setLevel('ERROR')


def machine_note():
  """A line saying where the numbers come from."""
  return (f'TensorFlow {tf.__version__}, '
          f'{os.cpu_count()} CPU core(s) (load average '
          f'{", ".join(f"{load:.2f}" for load in os.getloadavg())} at the '
          'end of the run)')
