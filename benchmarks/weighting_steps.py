"""TRAIN step time with a learned loss weighting against the plain step.

Builds, per side, the TRAIN spec of one model in a fresh graph and runs its
train op in a `tf.compat.v1.Session`: a trunk of two dense layers
(`--hidden-units`, ReLU) feeding the logits of `--heads` fused heads
(`BinaryClassHead`s without a weight column by default), Adam, on one batch
of `--batch-size` synthetic rows held in variables (no input pipeline, no
summaries or checkpoints: the step alone). The sides differ only in the
`MultiHead`'s `loss_weighting`: none (`plain`, the weighted sum), or one of
`weighting`'s methods that stay O(1) in the number of heads (`random`:
`RandomLossWeighting`, `famo`: `FAMO`; `uncertainty` and `dwa` too on
request). Prints, per side:

* `graph ops`: ops in the TRAIN graph (exact), and `build s`, the seconds
  the model and its TRAIN spec took to build;
* `step ms`: the median wall time of `session.run(train_op)` after the
  first `--warm-up-steps`, and `mean step ms`. All sides are built first, in
  one process, then their steps run in turn (the order rotating every
  step), so that the machine's load weighs on every side alike;
* `ratio to plain`: that median over the plain step's (issue 14's target at
  1,024 fused heads: at most 1.5 for `random` and `famo`);
* `fused`: whether the heads stayed in fused groups.

At 1,024 heads the process holds the sides' graphs together: about 6 GiB
of memory with the three default sides (2 GiB a side), so run it alone.

    python -m benchmarks.weighting_steps                    # 1,024 heads
    python -m benchmarks.weighting_steps --heads=1024 --steps=500 \
        --methods=plain,random,famo,uncertainty,dwa --json=r.json

Step times are noisy on a shared machine: compare sides of one run only.
"""
import argparse
import statistics
import sys
import time

from benchmarks import common

import tensorflow as tf

from tensorflow_multihead import MultiHead
from tensorflow_multihead import weighting

METHODS = ('plain', 'random', 'famo', 'uncertainty', 'dwa')
DEFAULT_METHODS = ('plain', 'random', 'famo')
RATIO_TARGET = 1.5
COLUMNS = (
    common.Column('method', 'method'),
    common.Column('heads', 'heads', ','),
    common.Column('graph_ops', 'graph ops', ','),
    common.Column('build_seconds', 'build s', '.2f'),
    common.Column('step_ms', 'step ms', '.2f'),
    common.Column('mean_step_ms', 'mean step ms', '.2f'),
    common.Column('ratio', 'ratio to plain', '.3f'),
    common.Column('fused', 'fused'),
)


def make_weighting(method):
  """The `loss_weighting` of a side; `None` for `plain`."""
  return {
      'plain': lambda: None,
      'random': lambda: weighting.RandomLossWeighting(seed=0),
      'famo': weighting.FAMO,
      'uncertainty': weighting.Uncertainty,
      'dwa': weighting.DynamicWeightAverage,
  }[method]()


def build_train_step(method, heads, kinds, batch_size, feature_width,
                     hidden_units):
  """Builds TRAIN in the current graph; returns `(train_op, fused)`."""
  multi_head = MultiHead(common.make_heads(heads, kinds),
                         loss_weighting=make_weighting(method))
  features, labels = common.synthetic_data(heads, batch_size, feature_width,
                                           seed=0, kinds=kinds)
  # Held in variables, so that the graph holds no large constant and a step
  # reads no input pipeline.
  hidden = tf.compat.v1.Variable(features[common.FEATURE_COLUMN],
                                 trainable=False, name='features')
  labels = {name: tf.compat.v1.Variable(value, trainable=False,
                                        name=f'labels_{name}')
            for name, value in labels.items()}
  for index in range(2):
    hidden = tf.compat.v1.layers.dense(hidden, hidden_units, tf.nn.relu,
                                       name=f'trunk_{index}')
  logits = tf.compat.v1.layers.dense(hidden, multi_head.logits_dimension,
                                     name='logits')
  optimizer = tf.keras.optimizers.legacy.Adam(1e-3)
  optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()
  spec = multi_head.create_estimator_spec(
      features={}, mode=tf.estimator.ModeKeys.TRAIN, logits=logits,
      labels={name: tf.convert_to_tensor(value)
              for name, value in labels.items()},
      optimizer=optimizer,
      trainable_variables=tf.compat.v1.trainable_variables())
  return spec.train_op, multi_head.fuse_heads


class Side:
  """One side's TRAIN graph, built, with its session open."""

  def __init__(self, method, heads, kinds, batch_size, feature_width,
               hidden_units):
    self.method = method
    self.graph = tf.Graph()
    with self.graph.as_default():
      tf.compat.v1.set_random_seed(0)
      started = time.perf_counter()
      self.train_op, self.fused = build_train_step(
          method, heads, kinds, batch_size, feature_width, hidden_units)
      self.build_seconds = time.perf_counter() - started
      self.graph_ops = len(self.graph.get_operations())
      self.session = tf.compat.v1.Session()
      self.session.run(tf.compat.v1.global_variables_initializer())
    self.seconds = []

  def step(self):
    started = time.perf_counter()
    self.session.run(self.train_op)
    self.seconds.append(time.perf_counter() - started)

  def measures(self, warm_up_steps):
    timed = self.seconds[warm_up_steps:] or self.seconds
    return {'graph_ops': self.graph_ops, 'fused': self.fused,
            'build_seconds': self.build_seconds,
            'step_ms': 1e3 * statistics.median(timed),
            'mean_step_ms': 1e3 * statistics.fmean(timed),
            'steps': len(self.seconds)}

  def close(self):
    self.session.close()


def run(heads=1024, methods=DEFAULT_METHODS, steps=100, warm_up_steps=10,
        batch_size=512, feature_width=32, hidden_units=256,
        kinds=('binary_unweighted',), log=print):
  """Builds every side, then runs their steps in turn; a row per side.

  Step `t` runs each side once, the order rotating with `t`, so that a
  change in the machine's load reaches every side alike.
  """
  if 'plain' not in methods:
    raise ValueError(f'methods must include plain, the baseline; given '
                     f'{list(methods)}.')
  sides = []
  try:
    for method in methods:
      log(f'building {method}, {heads} heads ...', end='', flush=True)
      sides.append(Side(method, heads, list(kinds), batch_size,
                        feature_width, hidden_units))
      log(f' {sides[-1].build_seconds:.2f} s, {sides[-1].graph_ops:,} ops')
    log(f'running {steps} steps of each, in turn ...', flush=True)
    for step in range(steps):
      shift = step % len(sides)
      for side in sides[shift:] + sides[:shift]:
        side.step()
    rows = [dict(side.measures(warm_up_steps), method=side.method,
                 heads=heads) for side in sides]
  finally:
    for side in sides:
      side.close()
  plain = next(row for row in rows if row['method'] == 'plain')
  for row in rows:
    row['ratio'] = common.ratio(row['step_ms'], plain['step_ms'])
  return rows


def report(rows):
  return common.text_table(COLUMNS, rows)


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--heads', type=int, default=1024)
  parser.add_argument('--methods', default=','.join(DEFAULT_METHODS),
                      help=f'comma-separated sides, of {",".join(METHODS)}')
  parser.add_argument('--kinds', default='binary_unweighted',
                      help='head kinds to cycle through (benchmarks.common)')
  parser.add_argument('--steps', type=int, default=100)
  parser.add_argument('--warm-up-steps', type=int, default=10,
                      help='first steps of each run left out of the times')
  parser.add_argument('--batch-size', type=int, default=512)
  parser.add_argument('--hidden-units', type=int, default=256)
  parser.add_argument('--feature-width', type=int, default=32)
  parser.add_argument('--markdown', metavar='PATH')
  parser.add_argument('--json', metavar='PATH')
  return parser.parse_args(argv)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  methods = [name.strip() for name in args.methods.split(',') if name.strip()]
  unknown = [name for name in methods if name not in METHODS]
  if unknown:
    raise SystemExit(f'Unknown methods {unknown}; choose from {METHODS}.')
  common.quiet_tensorflow()
  started = time.perf_counter()
  rows = run(heads=args.heads, methods=methods, steps=args.steps,
             warm_up_steps=args.warm_up_steps,
             batch_size=args.batch_size, feature_width=args.feature_width,
             hidden_units=args.hidden_units,
             kinds=common.parse_kinds(args.kinds))
  print()
  print(report(rows))
  over = [row['method'] for row in rows
          if row['method'] in ('random', 'famo') and
          row['ratio'] > RATIO_TARGET]
  print(f'\nabove the {RATIO_TARGET}x target: {over or "none"}')
  common.write_results(args, argv, rows, lambda: '\n'.join([
      '# TRAIN step with a loss weighting / plain step', '',
      f'`python -m benchmarks.weighting_steps {" ".join(argv)}`', '',
      common.machine_note() + '.', '', common.markdown_table(COLUMNS, rows),
      '']))
  common.print_total(started)
  return 0


if __name__ == '__main__':
  sys.exit(main())
