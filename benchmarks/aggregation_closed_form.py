"""Graph size, build time and step time of the closed-form aggregators.

    python -m benchmarks.aggregation_closed_form
    python -m benchmarks.aggregation_closed_form --heads=2,8,32,128 \\
        --width=65536 --repeats=20 --markdown=table.md

For each aggregator (and `Mean`, the baseline: a plain average of the rows)
and each number of heads K, a fresh TF1 graph gets one `aggregate` of a
`[K, width]` float32 Jacobian held in a variable (so that nothing is
constant-folded), as `MultiHead` gives it once per TRAIN graph. Columns:
the graph's ops (exact: those of the graph itself, then those inside the
functions it calls: loops over blocks of columns, and the XLA-compiled
loops of PCGrad and GradVac), the seconds `aggregate` takes to build, the
first run's seconds (XLA compiles then), the median milliseconds of a later
run, with its ratio to `Mean`'s, and its median CPU milliseconds (all
threads). Times are noisy (they depend on the machine's load); op counts
are not.
"""
import argparse
import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from tensorflow_multihead import aggregation  # pylint: disable=g-import-not-at-top

AGGREGATORS = {
    'Mean': aggregation.Mean,
    'PCGrad': aggregation.PCGrad,
    'GradVac': aggregation.GradVac,
    'IMTLG': aggregation.IMTLG,
    'AlignedMTL': aggregation.AlignedMTL,
    'ConFIG': aggregation.ConFIG,
    'GradDrop': aggregation.GradDrop,
    'Random': aggregation.Random,
}


def _function_ops(graph):
  return sum(len(function.node_def)
             for function in graph.as_graph_def().library.function)


def measure(name, num_heads, width, repeats):
  """One row: `{aggregator, heads, ops, function_ops, build_s, ...}`."""
  rng = np.random.default_rng(num_heads)
  with tf.Graph().as_default() as graph:
    jacobian = tf.compat.v1.Variable(
        rng.normal(size=(num_heads, width)).astype(np.float32),
        trainable=False, name='jacobian')
    before = len(graph.get_operations())
    start = time.perf_counter()
    direction = AGGREGATORS[name]().aggregate(jacobian)
    build = time.perf_counter() - start
    ops = len(graph.get_operations()) - before
    function_ops = _function_ops(graph)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      start = time.perf_counter()
      session.run(direction.op)
      first = time.perf_counter() - start
      times, cpu_times = [], []
      for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        session.run(direction.op)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
  return {'aggregator': name, 'heads': num_heads, 'ops': ops,
          'function_ops': function_ops, 'build_s': build,
          'first_run_s': first, 'step_ms': 1e3 * float(np.median(times)),
          'step_cpu_ms': 1e3 * float(np.median(cpu_times))}


def run(heads, width, repeats, names=None, log=print):
  rows = []
  for num_heads in heads:
    for name in names or AGGREGATORS:
      rows.append(measure(name, num_heads, width, repeats))
      log(_line(rows[-1], rows))
  return rows


def _baseline(row, rows):
  for other in rows:
    if other['aggregator'] == 'Mean' and other['heads'] == row['heads']:
      return other['step_ms']
  return float('nan')


def _line(row, rows):
  ratio = row['step_ms'] / _baseline(row, rows)
  return (f"| {row['aggregator']} | {row['heads']} | {row['ops']} | "
          f"{row['function_ops']} | {row['build_s']:.3f} | "
          f"{row['first_run_s']:.3f} | {row['step_ms']:.2f} | {ratio:.1f} | "
          f"{row['step_cpu_ms']:.2f} |")


HEADER = ('| aggregator | heads | graph ops | ops in functions | build s | '
          'first run s | step ms | step / Mean | step CPU ms |\n'
          '|---|---|---|---|---|---|---|---|---|')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--heads', default='2,8,32,128')
  parser.add_argument('--width', type=int, default=65536,
                      help='The Jacobian\'s columns (shared parameters).')
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--aggregators', default='',
                      help=f'Some of {",".join(AGGREGATORS)}; all by default.')
  parser.add_argument('--markdown', help='Also write the table here.')
  args = parser.parse_args(argv)
  heads = [int(part) for part in args.heads.split(',')]
  names = [part for part in args.aggregators.split(',') if part] or None
  print(f'Jacobian [K, {args.width}] float32; step: median of '
        f'{args.repeats} runs')
  print(HEADER)
  rows = run(heads, args.width, args.repeats, names)
  if args.markdown:
    with open(args.markdown, 'w', encoding='utf-8') as stream:
      stream.write(HEADER + '\n' + '\n'.join(_line(row, rows) for row in rows)
                   + '\n')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
