"""Graph size and build time of `create_estimator_spec`: three sides.

For every number of heads and every mode, builds the spec of a `MultiHead`
of `tf.estimator` heads in a fresh `tf.Graph` with `tf.estimator.MultiHead`
(`reference`), with ours computing every head on its own (`per_head`,
`fuse_heads=False`) and with ours fusing heads of one type (`fused`, the
default), and prints the ops each added, the seconds each took and the
ratios to the reference (below 1 is better).

    python -m benchmarks.graph_build --heads=8,32,128 \
        --modes=train,eval,predict --repeats=1 \
        --markdown=benchmarks/results.md --json=/tmp/graph_build.json

Inputs are placeholders (one logits `Tensor` split among the heads, labels
by head name, a weight feature) and are not counted. TRAIN uses a no-op
`train_op_fn`, so only the heads' own work is measured. EVAL counts what an
Estimator gets from `create_estimator_spec`: every metric created, updated
and read by `EstimatorSpec`. Op counts are deterministic; seconds are the
best of `--repeats`, with the sides' order rotating between repeats and
rows, after an untimed warm-up build of each.

Targets: the per-head path at most 0.55 x the reference's ops and seconds
in every mode (issue 2); the fused path (issue 10) at most 0.10 x the ops
and 0.15 x the seconds in EVAL with binary heads (0.25 x the ops with the
six mixed kinds), 0.30 x the ops in TRAIN, no more ops than the per-head
path in PREDICT, 0.2 x the reference's peak memory in EVAL, and at most 60 s
for an EVAL build.

`--breakdown` adds, per row, where the ops come from (by name scope with head
names folded to `<head>`, and by op type); `--memory` adds the peak memory
each build takes, measured in a fresh child process per build.
"""
import argparse
import collections
import gc
import importlib
import json
import os
import re
import subprocess
import sys
import time

from benchmarks import common

import tensorflow as tf

PER_HEAD_TARGET = 0.55
# Fused path: (mode, measure) -> largest ratio to the reference.
FUSED_TARGETS = {('eval', 'ops'): 0.10, ('eval', 'seconds'): 0.15,
                 ('train', 'ops'): 0.30, ('eval', 'mib'): 0.2}
MIXED_EVAL_OPS_TARGET = 0.25
EVAL_SECONDS_LIMIT = 60.
_SHORT = {common.REFERENCE: 'ref', common.PER_HEAD: 'per-head',
          common.FUSED: 'fused'}


def _measure_columns(measure, header, spec):
  columns = [common.Column(f'{side}_{measure}', f'{_SHORT[side]} {header}',
                           spec) for side in common.IMPLEMENTATIONS]
  columns += [common.Column(f'{side}_{measure}_ratio',
                            f'{_SHORT[side]} {header} ratio', '.3f')
              for side in common.OURS]
  return tuple(columns)


COLUMNS = ((common.Column('heads', 'heads'), common.Column('mode', 'mode')) +
           _measure_columns('ops', 'ops', ',') +
           _measure_columns('seconds', 's', '.2f'))
MEMORY_COLUMNS = _measure_columns('mib', 'peak MiB', '.1f')


def _no_op_train(loss):
  del loss  # Only the heads' work is measured, not an optimizer's.
  return tf.no_op(name='benchmark_train_op')


def build_spec(implementation, heads, mode, keep_graph=False, kinds=None):
  """Builds one `create_estimator_spec` in a fresh graph and measures it.

  Args:
    implementation: One of `common.IMPLEMENTATIONS`.
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


def warm_up(modes, kinds=None, implementations=common.IMPLEMENTATIONS,
            log=print):
  """Builds each side once, untimed, in every mode.

  One-time costs (lazy imports, caches) then fall on no side's timed builds.
  """
  for mode in modes:
    for implementation in implementations:
      build_spec(implementation, 2, mode, kinds=kinds)
  log(f'warmed up {", ".join(implementations)} in modes {", ".join(modes)}')


def sides_for(heads, implementations, max_heads):
  """The sides to build at `heads`: those whose `max_heads` allows it."""
  return [side for side in implementations
          if max_heads.get(side) is None or heads <= max_heads[side]]


def measure_row(heads, mode, repeats, order, kinds=None, log=print):
  """Builds every side in `order` `repeats` times; returns one table row.

  The order rotates by one side on every repeat. A side not built has no
  values in the row (shown as `-`).
  """
  order = list(order)
  best, ops = {}, {}
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
    order = order[1:] + order[:1]
  row = {'heads': heads, 'mode': mode}
  for implementation in order:
    row[f'{implementation}_ops'] = ops[implementation]
    row[f'{implementation}_seconds'] = best[implementation]
  add_ratios(row, ('ops', 'seconds'))
  return row


def add_ratios(row, measures):
  """Adds `<side>_<measure>_ratio` (side / reference) for our two sides."""
  for measure in measures:
    reference = row.get(f'{common.REFERENCE}_{measure}')
    for side in common.OURS:
      value = row.get(f'{side}_{measure}')
      if value is not None and reference is not None:
        row[f'{side}_{measure}_ratio'] = common.ratio(value, reference)


def run(heads_list, modes, repeats=1, memory=False, kinds=None,
        implementations=common.IMPLEMENTATIONS, max_heads=None, log=print):
  """Measures every (heads, mode) pair; returns the table rows.

  Args:
    kinds: Optionally narrows the heads to some of `common.KIND_PREFIXES`.
    implementations: The sides to build.
    max_heads: Optional dict: side -> the most heads to build it with (the
      reference's EVAL graph of 512 heads takes many minutes and GiBs).
  """
  if repeats < 1:
    raise ValueError(f'repeats must be at least 1, got {repeats}.')
  max_heads = max_heads or {}
  warm_up(modes, kinds, implementations, log)
  rows = []
  for row_index, (heads, mode) in enumerate(
      (heads, mode) for heads in heads_list for mode in modes):
    sides = sides_for(heads, implementations, max_heads)
    shift = row_index % len(sides)
    row = measure_row(heads, mode, repeats, sides[shift:] + sides[:shift],
                      kinds, log)
    if memory:
      row.update(measure_memory(heads, mode, kinds, sides, log))
    rows.append(row)
  return rows


# Memory, one child process per build so that builds do not share pages.


def _resident_mib():
  """This process's resident memory now, in MiB (Linux)."""
  with open('/proc/self/statm', encoding='ascii') as stream:
    pages = int(stream.read().split()[1])
  return pages * os.sysconf('SC_PAGE_SIZE') / 2.**20


def _reset_peak():
  """Restarts the kernel's count of this process's peak memory (Linux)."""
  with open('/proc/self/clear_refs', 'w', encoding='ascii') as stream:
    stream.write('5')


def _peak_mib():
  """The most resident memory held since `_reset_peak`, in MiB (Linux)."""
  with open('/proc/self/status', encoding='ascii') as stream:
    for line in stream:
      if line.startswith('VmHWM:'):
        return int(line.split()[1]) / 2.**10
  raise RuntimeError('No VmHWM in /proc/self/status.')


def child_memory(implementation, heads, mode, kinds=None):
  """In a fresh process: the peak MiB that building one spec takes.

  The peak resident memory during the build, above what the process held
  just before it (after a small build that loads what any build needs).
  """
  build_spec(implementation, 2, mode, kinds=kinds)
  gc.collect()
  before = _resident_mib()
  _reset_peak()
  built = build_spec(implementation, heads, mode, keep_graph=True,
                     kinds=kinds)
  peak = _peak_mib()
  del built
  return peak - before


def measure_memory(heads, mode, kinds=None,
                   implementations=common.IMPLEMENTATIONS, log=print):
  row = {}
  for implementation in implementations:
    command = [sys.executable, '-m', 'benchmarks.graph_build',
               f'--child-memory={implementation},{heads},{mode}',
               f'--kinds={",".join(kinds or ())}']
    output = subprocess.run(command, check=True, capture_output=True,
                            text=True).stdout
    row[f'{implementation}_mib'] = json.loads(output.strip().splitlines()[-1])
    log(f'  {heads:>4} heads  {mode:<7}  {implementation:<9} build peaks at '
        f'{row[f"{implementation}_mib"]:.1f} MiB', flush=True)
  add_ratios(row, ('mib',))
  return row


# Where the ops come from.


def scope_of(op_name, multi_head_scope, names, depth=2):
  """The first `depth` name scopes of an op below the multi-head's own.

  `multi_head_scope` is that scope, or a set of them (the reference's, the
  joined names, and ours, which is short beyond 128 characters). Head names
  are folded to `<head>` (and numbered uniquifying suffixes such as `_1`
  dropped) so that all heads add up in one line.
  """
  parts = op_name.split('/')[:-1]
  scopes = (multi_head_scope if isinstance(multi_head_scope, (set, frozenset))
            else {multi_head_scope})
  if parts and parts[0] in scopes:
    parts = parts[1:]
  folded = []
  for part in parts[:depth]:
    bare = re.sub(r'_\d+$', '', part)
    if part in names or bare in names:
      folded.append('<head>')
    else:
      folded.append(bare)
  return '/'.join(folded) or '<top>'


def breakdown(heads, mode, depth=2, kinds=None,
              implementations=common.IMPLEMENTATIONS):
  """Op counts by folded name scope and by op type, for every side."""
  names = set(common.head_names(heads, kinds))
  head_group = importlib.import_module('tensorflow_multihead.head_group')
  multi_head_scope = {'_'.join(common.head_names(heads, kinds)),
                      head_group.default_scope(common.head_names(heads,
                                                                 kinds))}
  by_scope = {}
  by_type = {}
  for implementation in implementations:
    built = build_spec(implementation, heads, mode, keep_graph=True,
                       kinds=kinds)
    ops = built['graph'].get_operations()[built['first_op']:]
    by_scope[implementation] = collections.Counter(
        scope_of(op.name, multi_head_scope, names, depth) for op in ops)
    by_type[implementation] = collections.Counter(op.type for op in ops)
  return by_scope, by_type


def breakdown_text(heads, mode, depth=2, top=25, kinds=None,
                   implementations=common.IMPLEMENTATIONS):
  """A printable comparison of where each side's ops come from."""
  by_scope, by_type = breakdown(heads, mode, depth, kinds, implementations)
  lines = [f'Where the ops come from: {heads} heads, {mode}']
  for title, counts in (('name scope', by_scope), ('op type', by_type)):
    keys = sorted(set().union(*counts.values()),
                  key=lambda key: ([-counts[side][key] for side in counts],
                                   key))
    rows = [dict({'key': key}, **{side: counts[side][key] for side in counts})
            for key in keys[:top]]
    lines.append('')
    lines.append(common.text_table(
        (common.Column('key', title),) + tuple(
            common.Column(side, _SHORT[side], ',') for side in counts),
        rows))
    if len(keys) > top:
      lines.append(f'... and {len(keys) - top} more')
  return '\n'.join(lines)


def report(rows, memory=False):
  columns = COLUMNS + (MEMORY_COLUMNS if memory else ())
  return common.text_table(columns, rows)


def _targets(row, kinds):
  """(key, largest allowed value, what it is) for each target of `row`."""
  mode, binary = row['mode'], all(
      kind.startswith('binary') for kind in (kinds or ['mixed']))
  targets = [(f'{common.PER_HEAD}_{measure}_ratio', PER_HEAD_TARGET,
              'per-head path')
             for measure in ('ops', 'seconds')]
  for (target_mode, measure), limit in FUSED_TARGETS.items():
    if target_mode == mode and (binary or measure == 'mib'):
      targets.append((f'{common.FUSED}_{measure}_ratio', limit, 'fused path'))
  if mode == 'eval' and not binary:
    targets.append((f'{common.FUSED}_ops_ratio', MIXED_EVAL_OPS_TARGET,
                    'fused path, mixed heads'))
  if mode == 'eval':
    targets.append((f'{common.FUSED}_seconds', EVAL_SECONDS_LIMIT,
                    'fused EVAL build, seconds'))
  if mode == 'predict' and row.get(f'{common.PER_HEAD}_ops') is not None:
    targets.append((f'{common.FUSED}_ops', row[f'{common.PER_HEAD}_ops'],
                    'fused PREDICT ops, at most the per-head path\'s'))
  return targets


def over_target(rows, kinds=None):
  """Lines naming every measure above its target."""
  lines = []
  for row in rows:
    for key, limit, what in _targets(row, kinds):
      value = row.get(key)
      if value is not None and value > limit:
        lines.append(f'{row["heads"]} heads, {row["mode"]}: {key} '
                     f'{value:.3f} > {limit:g} ({what})')
  return lines


def markdown_report(rows, args, memory=False, kinds=None):
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
  misses = over_target(rows, kinds)
  lines.append('Measures above their targets: ' +
               ('none.' if not misses else ''))
  lines += [f'- {miss}' for miss in misses]
  return '\n'.join(lines) + '\n'


def _max_heads(args):
  return {common.REFERENCE: args.reference_max_heads,
          common.PER_HEAD: args.per_head_max_heads}


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--heads', default='8,32,128',
                      help='comma-separated numbers of heads')
  parser.add_argument('--modes', default='train,eval,predict',
                      help='comma-separated modes')
  parser.add_argument('--kinds', default='',
                      help='comma-separated head kinds to cycle through '
                      f'instead of the six mixed ones; any of '
                      f'{",".join(common.KIND_PREFIXES)}')
  parser.add_argument('--sides', default='',
                      help='comma-separated sides to build, of '
                      f'{",".join(common.IMPLEMENTATIONS)} (default: all)')
  parser.add_argument('--reference-max-heads', type=int,
                      help='build the reference only up to this many heads')
  parser.add_argument('--per-head-max-heads', type=int,
                      help='build the per-head path only up to this many '
                      'heads')
  parser.add_argument('--repeats', type=int, default=1,
                      help='builds per side; the fastest one is reported')
  parser.add_argument('--markdown', metavar='PATH',
                      help='also write the table as markdown to PATH')
  parser.add_argument('--json', metavar='PATH',
                      help='also write the rows as JSON to PATH')
  parser.add_argument('--memory', action='store_true',
                      help='also measure the peak memory of each build, in '
                      'child processes')
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
  sides = common.parse_implementations(args.sides)
  started = time.perf_counter()
  rows = run(heads_list, modes, args.repeats, args.memory, kinds, sides,
             _max_heads(args))
  print()
  print(report(rows, args.memory))
  misses = over_target(rows, kinds)
  print()
  print('measures above their targets: ' + ('none' if not misses else ''))
  for miss in misses:
    print(f'  {miss}')
  if args.breakdown:
    for row in rows:
      print()
      print(breakdown_text(row['heads'], row['mode'], args.breakdown_depth,
                           kinds=kinds, implementations=sides))
  common.write_results(args, argv, rows,
                       lambda: markdown_report(rows, argv, args.memory, kinds))
  common.print_total(started)
  return 0


if __name__ == '__main__':
  sys.exit(main())
