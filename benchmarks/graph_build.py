"""Graph size and build time of `create_estimator_spec`, ours vs reference.

For every number of heads and every mode, builds the spec of a `MultiHead`
of mixed `tf.estimator` heads in a fresh `tf.Graph`, once with
`tf.estimator.MultiHead` and once with `tensorflow_multihead.MultiHead`, and
prints a table of the ops each added, the seconds each took and the ratios
ours / reference (below 1 is better; the target is at most 0.55).

    python -m benchmarks.graph_build --heads=8,32,128 \
        --modes=train,eval,predict --repeats=1 \
        --markdown=benchmarks/results.md --json=/tmp/graph_build.json

Inputs are placeholders (one logits `Tensor` split among the heads, labels
by head name, a weight feature) and are not counted. TRAIN uses a no-op
`train_op_fn`, so only the heads' own work is measured. EVAL counts what an
Estimator gets from `create_estimator_spec`: every metric created, updated
and read by `EstimatorSpec`. Op counts are deterministic; seconds are the
best of `--repeats`, with the implementations' order alternating between
repeats and heads, after an untimed warm-up build of each.

`--breakdown` adds, per row, where the ops come from (by name scope with head
names folded to `<head>`, and by op type); `--memory` adds the resident memory
each built graph holds, measured in a fresh child process per build.
"""
import argparse
import collections
import gc
import json
import os
import re
import subprocess
import sys
import time

from benchmarks import common

import tensorflow as tf

TARGET_RATIO = 0.55

COLUMNS = (
    common.Column('heads', 'heads'),
    common.Column('mode', 'mode'),
    common.Column('reference_ops', 'ref ops', ','),
    common.Column('ours_ops', 'ours ops', ','),
    common.Column('ops_ratio', 'ops ratio', '.3f'),
    common.Column('reference_seconds', 'ref s', '.2f'),
    common.Column('ours_seconds', 'ours s', '.2f'),
    common.Column('time_ratio', 'time ratio', '.3f'),
)
MEMORY_COLUMNS = (
    common.Column('reference_mib', 'ref MiB', '.1f'),
    common.Column('ours_mib', 'ours MiB', '.1f'),
    common.Column('memory_ratio', 'mem ratio', '.3f'),
)


def _no_op_train(loss):
  del loss  # Only the heads' work is measured, not an optimizer's.
  return tf.no_op(name='benchmark_train_op')


def build_spec(implementation, heads, mode, keep_graph=False, kinds=None):
  """Builds one `create_estimator_spec` in a fresh graph and measures it.

  Args:
    implementation: `common.REFERENCE` or `common.OURS`.
    heads: How many mixed heads the `MultiHead` holds.
    mode: `'train'`, `'eval'` or `'predict'`.
    keep_graph: Whether to return the graph too, for a breakdown.
    kinds: Optional list of `common.KIND_PREFIXES` to cycle through.

  Returns:
    A dict with `ops` (operations the call added to the graph), `seconds`
    (wall time of the call) and, if asked, `graph` and `first_op`, the
    index in `graph.get_operations()` of the first op the call added (the
    inputs and the heads' constructors add ops before it).
  """
  graph = tf.Graph()
  with graph.as_default():
    multi_head = common.make_multi_head(implementation, heads, kinds)
    features, logits, labels = common.graph_inputs(heads, kinds)
    mode_key = common.MODES[mode]
    kwargs = dict(
        features=features, mode=mode_key, logits=logits,
        labels=None if mode == 'predict' else labels)
    if mode == 'train':
      kwargs['train_op_fn'] = _no_op_train
    inputs = len(graph.get_operations())
    gc.collect()
    start = time.perf_counter()
    multi_head.create_estimator_spec(**kwargs)
    seconds = time.perf_counter() - start
    ops = len(graph.get_operations()) - inputs
  result = {'ops': ops, 'seconds': seconds}
  if keep_graph:
    result['graph'] = graph
    result['first_op'] = inputs
  return result


def warm_up(modes, kinds=None, log=print):
  """Builds each implementation once, untimed, in every mode.

  One-time costs (lazy imports, caches) then fall on neither side's timed
  builds.
  """
  for mode in modes:
    for implementation in common.IMPLEMENTATIONS:
      build_spec(implementation, 2, mode, kinds=kinds)
  log(f'warmed up both implementations in modes {", ".join(modes)}')


def measure_row(heads, mode, repeats, first, kinds=None, log=print):
  """Builds both implementations `repeats` times; returns one table row.

  `first` is the implementation built first in the first repeat; the order
  flips on every repeat after it.
  """
  order = list(common.IMPLEMENTATIONS)
  if order[0] != first:
    order.reverse()
  best = {}
  ops = {}
  for repeat in range(repeats):
    for implementation in order:
      log(f'  {heads:>4} heads  {mode:<7}  {implementation:<9} '
          f'repeat {repeat + 1}/{repeats} ...', end='', flush=True)
      built = build_spec(implementation, heads, mode, kinds=kinds)
      log(f' {built["ops"]:,} ops in {built["seconds"]:.2f} s', flush=True)
      if ops.setdefault(implementation, built['ops']) != built['ops']:
        raise RuntimeError(
            f'{implementation} built {built["ops"]} ops after building '
            f'{ops[implementation]}: op counts should not vary.')
      best[implementation] = min(best.get(implementation, float('inf')),
                                 built['seconds'])
    order.reverse()
  return {
      'heads': heads,
      'mode': mode,
      'reference_ops': ops[common.REFERENCE],
      'ours_ops': ops[common.OURS],
      'ops_ratio': common.ratio(ops[common.OURS], ops[common.REFERENCE]),
      'reference_seconds': best[common.REFERENCE],
      'ours_seconds': best[common.OURS],
      'time_ratio': common.ratio(best[common.OURS], best[common.REFERENCE]),
  }


def run(heads_list, modes, repeats=1, memory=False, kinds=None, log=print):
  """Measures every (heads, mode) pair; returns the table rows.

  `kinds` optionally narrows the heads to some of `common.KIND_PREFIXES`.
  """
  if repeats < 1:
    raise ValueError(f'repeats must be at least 1, got {repeats}.')
  warm_up(modes, kinds, log)
  rows = []
  for row_index, (heads, mode) in enumerate(
      (heads, mode) for heads in heads_list for mode in modes):
    first = common.IMPLEMENTATIONS[row_index % 2]
    row = measure_row(heads, mode, repeats, first, kinds, log)
    if memory:
      row.update(measure_memory(heads, mode, kinds, log))
    rows.append(row)
  return rows


# Memory, one child process per build so that builds do not share pages.


def _resident_mib():
  """This process's resident memory now, in MiB (Linux)."""
  with open('/proc/self/statm', encoding='ascii') as stream:
    pages = int(stream.read().split()[1])
  return pages * os.sysconf('SC_PAGE_SIZE') / 2.**20


def child_memory(implementation, heads, mode, kinds=None):
  """In a fresh process: the resident MiB that one built graph holds.

  The graph is kept alive while measuring, so this is what a process that
  built the spec goes on paying for it (Python objects and TF's own graph).
  """
  # Load what any build needs first.
  build_spec(implementation, 2, mode, kinds=kinds)
  gc.collect()
  before = _resident_mib()
  built = build_spec(implementation, heads, mode, keep_graph=True,
                     kinds=kinds)
  gc.collect()
  after = _resident_mib()
  del built
  return after - before


def measure_memory(heads, mode, kinds=None, log=print):
  held = {}
  for implementation in common.IMPLEMENTATIONS:
    command = [sys.executable, '-m', 'benchmarks.graph_build',
               f'--child-memory={implementation},{heads},{mode}',
               f'--kinds={",".join(kinds or ())}']
    output = subprocess.run(command, check=True, capture_output=True,
                            text=True).stdout
    held[implementation] = json.loads(output.strip().splitlines()[-1])
    log(f'  {heads:>4} heads  {mode:<7}  {implementation:<9} graph holds '
        f'{held[implementation]:.1f} MiB', flush=True)
  return {
      'reference_mib': held[common.REFERENCE],
      'ours_mib': held[common.OURS],
      'memory_ratio': common.ratio(held[common.OURS],
                                   held[common.REFERENCE]),
  }


# Where the ops come from.


def scope_of(op_name, multi_head_scope, names, depth=2):
  """The first `depth` name scopes of an op below the multi-head's own.

  Head names are folded to `<head>` (and numbered uniquifying suffixes such
  as `_1` dropped) so that all heads add up in one line.
  """
  parts = op_name.split('/')[:-1]
  if parts and parts[0] == multi_head_scope:
    parts = parts[1:]
  folded = []
  for part in parts[:depth]:
    bare = re.sub(r'_\d+$', '', part)
    if part in names or bare in names:
      folded.append('<head>')
    else:
      folded.append(bare)
  return '/'.join(folded) or '<top>'


def breakdown(heads, mode, depth=2, kinds=None):
  """Op counts by folded name scope and by op type, for both sides."""
  names = set(common.head_names(heads, kinds))
  multi_head_scope = '_'.join(common.head_names(heads, kinds))
  by_scope = {}
  by_type = {}
  for implementation in common.IMPLEMENTATIONS:
    built = build_spec(implementation, heads, mode, keep_graph=True,
                       kinds=kinds)
    ops = built['graph'].get_operations()[built['first_op']:]
    by_scope[implementation] = collections.Counter(
        scope_of(op.name, multi_head_scope, names, depth) for op in ops)
    by_type[implementation] = collections.Counter(op.type for op in ops)
  return by_scope, by_type


def breakdown_text(heads, mode, depth=2, top=25, kinds=None):
  """A printable comparison of where each side's ops come from."""
  by_scope, by_type = breakdown(heads, mode, depth, kinds)
  lines = [f'Where the ops come from: {heads} heads, {mode}']
  for title, counts in (('name scope', by_scope), ('op type', by_type)):
    reference, ours = counts[common.REFERENCE], counts[common.OURS]
    keys = sorted(set(reference) | set(ours),
                  key=lambda key: (-reference[key], -ours[key], key))
    rows = [{'key': key, 'reference': reference[key], 'ours': ours[key],
             'saved': reference[key] - ours[key]} for key in keys[:top]]
    lines.append('')
    lines.append(common.text_table((
        common.Column('key', title), common.Column('reference', 'ref', ','),
        common.Column('ours', 'ours', ','),
        common.Column('saved', 'ref - ours', ',')), rows))
    if len(keys) > top:
      lines.append(f'... and {len(keys) - top} more')
  return '\n'.join(lines)


def report(rows, memory=False):
  columns = COLUMNS + (MEMORY_COLUMNS if memory else ())
  return common.text_table(columns, rows)


def over_target(rows):
  """Lines naming every ratio above `TARGET_RATIO`."""
  lines = []
  for row in rows:
    for key in ('ops_ratio', 'time_ratio'):
      if row[key] is not None and row[key] > TARGET_RATIO:
        lines.append(f'{row["heads"]} heads, {row["mode"]}: {key} '
                     f'{row[key]:.3f} > {TARGET_RATIO} (by '
                     f'{row[key] - TARGET_RATIO:.3f})')
  return lines


def markdown_report(rows, args, memory=False):
  columns = COLUMNS + (MEMORY_COLUMNS if memory else ())
  lines = [
      '# Graph build: ours / reference',
      '',
      f'`python -m benchmarks.graph_build {" ".join(args)}`',
      '',
      common.machine_note() + '.',
      '',
      common.markdown_table(columns, rows),
      '',
  ]
  misses = over_target(rows)
  lines.append(f'Ratios above the {TARGET_RATIO} target: ' +
               ('none.' if not misses else ''))
  lines += [f'- {miss}' for miss in misses]
  return '\n'.join(lines) + '\n'


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--heads', default='8,32,128',
                      help='comma-separated numbers of heads')
  parser.add_argument('--modes', default='train,eval,predict',
                      help='comma-separated modes')
  parser.add_argument('--kinds', default='',
                      help='comma-separated head kinds to cycle through '
                      f'instead of all of {",".join(common.KIND_PREFIXES)}')
  parser.add_argument('--repeats', type=int, default=1,
                      help='builds per side; the fastest one is reported')
  parser.add_argument('--markdown', metavar='PATH',
                      help='also write the table as markdown to PATH')
  parser.add_argument('--json', metavar='PATH',
                      help='also write the rows as JSON to PATH')
  parser.add_argument('--memory', action='store_true',
                      help='also measure the memory each graph holds, in child '
                      'processes')
  parser.add_argument('--breakdown', action='store_true',
                      help='also print where each row\'s ops come from')
  parser.add_argument('--breakdown-depth', type=int, default=2,
                      help='name-scope levels the breakdown keeps')
  parser.add_argument('--child-memory', help=argparse.SUPPRESS)
  return parser.parse_args(argv)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  if args.child_memory:
    implementation, heads, mode = args.child_memory.split(',')
    print(json.dumps(child_memory(implementation, int(heads), mode,
                                  common.parse_kinds(args.kinds))))
    return 0
  common.quiet_tensorflow()
  heads_list = common.parse_ints(args.heads)
  modes = common.parse_modes(args.modes)
  kinds = common.parse_kinds(args.kinds)
  started = time.perf_counter()
  rows = run(heads_list, modes, args.repeats, args.memory, kinds)
  print()
  print(report(rows, args.memory))
  misses = over_target(rows)
  print()
  print(f'ratios above {TARGET_RATIO}: ' + ('none' if not misses else ''))
  for miss in misses:
    print(f'  {miss}')
  if args.breakdown:
    for row in rows:
      print()
      print(breakdown_text(row['heads'], row['mode'], args.breakdown_depth,
                           kinds=kinds))
  if args.markdown:
    with open(args.markdown, 'w', encoding='utf-8') as stream:
      stream.write(markdown_report(rows, argv, args.memory))
  if args.json:
    common.write_json(args.json, {'machine': common.machine_note(),
                                  'argv': argv, 'rows': rows})
  print(f'\ntotal {time.perf_counter() - started:.0f} s; '
        f'{common.machine_note()}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
