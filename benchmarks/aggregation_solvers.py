"""Build and run cost of the quadratic-program aggregators, by heads.

For each aggregator and number of heads `K`: the ops its `aggregate` adds
to a TF 1 graph (outside the loops, and inside their bodies), the seconds
to build them (wall clock, and this process's CPU time, which a busy
machine inflates less), and the median milliseconds to run them on a seeded
conflicting Jacobian of `--columns` columns (every head conflicting with
about half the others: about the most steps the solvers take), after one
warm-up run. Op counts are exact; times are noisy and machine-dependent.

    python -m benchmarks.aggregation_solvers
    python -m benchmarks.aggregation_solvers --heads=2,8,32,128 \\
        --columns=66048 --repeats=5
"""
import argparse
import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from tensorflow_multihead import aggregation  # pylint: disable=g-import-not-at-top

AGGREGATORS = ('Mean', 'UPGrad', 'DualProj', 'MGDA', 'CAGrad', 'NashMTL')


def conflicting_jacobian(heads, columns, seed=0):
  rng = np.random.default_rng(seed)
  common = rng.normal(size=columns).astype(np.float32)
  signs = rng.choice([-1., 1.], size=(heads, 1)).astype(np.float32)
  return rng.normal(size=(heads, columns)).astype(np.float32) + signs * common


def measure(name, heads, columns, repeats):
  """`(outer ops, loop-body ops, build s, build CPU s, run ms)`."""
  jacobian = conflicting_jacobian(heads, columns)
  with tf.Graph().as_default() as graph:
    placeholder = tf.compat.v1.placeholder(tf.float32, [heads, columns])
    start, start_cpu = time.perf_counter(), time.process_time()
    direction = getattr(aggregation, name)().aggregate(placeholder)
    build = time.perf_counter() - start
    build_cpu = time.process_time() - start_cpu
    outer = len(graph.get_operations())
    inner = sum(len(function.node_def)
                for function in graph.as_graph_def().library.function)
    with tf.compat.v1.Session() as session:
      session.run(direction, {placeholder: jacobian})
      times = []
      for _ in range(repeats):
        start = time.perf_counter()
        session.run(direction, {placeholder: jacobian})
        times.append(time.perf_counter() - start)
  return outer, inner, build, build_cpu, 1e3 * float(np.median(times))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--heads', default='2,8,32,128')
  parser.add_argument('--columns', type=int, default=1000)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--aggregators', default=','.join(AGGREGATORS))
  args = parser.parse_args(argv)
  print(f'Jacobian: conflicting, {args.columns} columns, float32; '
        f'median of {args.repeats} runs')
  print(f'{"aggregator":10s} {"K":>4s} {"ops":>5s} {"in loops":>8s} '
        f'{"build s":>8s} {"cpu s":>6s} {"run ms":>9s}')
  for name in args.aggregators.split(','):
    for heads in [int(heads) for heads in args.heads.split(',')]:
      outer, inner, build, build_cpu, run = measure(
          name, heads, args.columns, args.repeats)
      print(f'{name:10s} {heads:4d} {outer:5d} {inner:8d} {build:8.3f} '
            f'{build_cpu:6.3f} {run:9.2f}', flush=True)


if __name__ == '__main__':
  main()
