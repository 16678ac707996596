"""What gradient aggregation costs: TRAIN graph ops, build time, step time.

One model, `--heads` `RegressionHead`s (one fused group) on a trunk of two
dense ReLU layers of `--units` units over `--features` inputs, batch
`--batch` (default: 256 units, 32 inputs, batch 512), trained by SGD. Each
side builds its TRAIN graph (spec and optimizer) in a fresh graph, then runs
steps in a session on constant data:

* `plain`: `MultiHead`'s weighted sum, the baseline;
* `gradnorm_per_head`: `weighting.GradNorm` as it was before issue 14:
  every head computed apart, one `tf.gradients` a head (up to
  `--per-head-max-heads`, 32: each gradient of a head's piece of the split
  logits builds the whole split's gradient, so its graph grows as the
  square of the heads);
* `gradnorm_fused`: `weighting.GradNorm` today: fused heads, one vectorized
  Jacobian;
* `<aggregator>_variables`: `gradient_aggregation=` over the shared
  variables (`--shared-variables`: the whole `trunk`, or its `last` layer);
* `<aggregator>_representation`: over the trunk's output;
* `each_head`: the first aggregator over the shared variables with a
  Jacobian from one `tf.gradients` a head, through the trunk each time
  (what the issue's 128-head target compares with).

GradNorm's shared variables are the last trunk layer's kernel, as its
paper has it. `--aggregators` names the aggregation methods (default
`UPGrad,PCGrad`); one not importable yet is replaced by `Mean`, with a note.
Op counts are exact; times are wall-clock on whatever else the machine
runs: read them to a few tens of percent.

    python -m benchmarks.aggregation_cost                   # 2, 8, 32, 128
    python -m benchmarks.aggregation_cost --heads=32 --steps=50 --repeats=3
    python -m benchmarks.aggregation_cost --markdown=table.md --json=rows.json
"""
import argparse
import dataclasses
import sys
import time
from typing import Optional

from benchmarks import common

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

import tensorflow_multihead  # pylint: disable=g-import-not-at-top
from tensorflow_multihead import aggregated_training  # pylint: disable=g-import-not-at-top
from tensorflow_multihead import aggregation  # pylint: disable=g-import-not-at-top
from tensorflow_multihead import jacobian  # pylint: disable=g-import-not-at-top
from tensorflow_multihead import shared_parameters  # pylint: disable=g-import-not-at-top
from tensorflow_multihead import weighting  # pylint: disable=g-import-not-at-top

PLAIN = 'plain'
GRADNORM_PER_HEAD = 'gradnorm_per_head'
GRADNORM_FUSED = 'gradnorm_fused'
EACH_HEAD = 'each_head'
DEFAULT_AGGREGATORS = ('UPGrad', 'PCGrad')
LEARNING_RATE = 1e-4
# Targets of issue 14, item 3 (step times as multiples of another side's).
REPRESENTATION_TARGET = (32, 3.)  # heads, times the plain step
VARIABLES_TARGET = (32, 5.)
BUILD_TARGET = (128, 10.)  # heads, seconds
EACH_HEAD_TARGET = (128, 0.2)  # heads, times the each-head step


@dataclasses.dataclass(frozen=True)
class Model:
  """The benchmark model's sizes."""
  heads: int
  batch: int = 512
  units: int = 256
  features: int = 32
  shared_variables: str = 'trunk'  # or 'last'


class PerHeadGradNorm(weighting.GradNorm):
  """GradNorm as before issue 14: one gradient a head (built unfused)."""

  def head_gradients(self, head_losses):
    return jacobian.jacobian_by_rows(
        head_losses, shared_parameters.resolve_variables(
            self.shared_variables, 'GradNorm'))


def aggregator_classes(names, log=print):
  """`{name: class}` for `names`; `Mean` for one not in `aggregation` yet."""
  classes = {}
  for name in names:
    found = getattr(aggregation, name, None)
    if found is None:
      log(f'note: aggregation.{name} is not importable yet; measuring Mean '
          'in its place.')
      name, found = 'Mean', aggregation.Mean
    classes[name] = found
  return classes


def sides_for(aggregators):
  """Every side's name, in table order."""
  sides = [PLAIN, GRADNORM_PER_HEAD, GRADNORM_FUSED]
  for name in aggregators:
    sides += [f'{name}_variables', f'{name}_representation']
  return sides + [EACH_HEAD]


def _shared_variable_names(model):
  layers = ['trunk_1'] if model.shared_variables == 'last' else [
      'trunk_0', 'trunk_1']
  return [f'{layer}/{part}' for layer in layers for part in ('kernel',
                                                              'bias')]


def _multi_head(side, model, aggregators, representation):
  heads = [tf.estimator.RegressionHead(name=f'r{index}')
           for index in range(model.heads)]
  if side == PLAIN:
    return tensorflow_multihead.MultiHead(heads)
  if side in (GRADNORM_PER_HEAD, GRADNORM_FUSED):
    per_head = side == GRADNORM_PER_HEAD
    kind = PerHeadGradNorm if per_head else weighting.GradNorm
    return tensorflow_multihead.MultiHead(
        heads, fuse_heads=not per_head, loss_weighting=kind(
            alpha=1.5, shared_variables=['trunk_1/kernel']))
  if side == EACH_HEAD:
    name, mode = next(iter(aggregators)), 'variables'
  else:
    name, _, mode = side.rpartition('_')
  config = ({'shared_representation': representation}
            if mode == 'representation' else
            {'shared_variables': _shared_variable_names(model)})
  head = tensorflow_multihead.MultiHead(
      heads, gradient_aggregation=aggregators[name](**config))
  if side == EACH_HEAD:
    head._aggregation = aggregated_training.AggregatedTraining(  # pylint: disable=protected-access
        head.gradient_aggregation, jacobian_fn=jacobian.jacobian_by_rows)
  return head


def _data(model, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(model.batch, model.features)).astype(np.float32)
  labels = rng.normal(size=(model.batch, model.heads)).astype(np.float32)
  return x, labels


def build_train_graph(side, model, aggregators):
  """Builds the side's TRAIN graph; returns `(graph, train_op, ops, s)`."""
  graph = tf.Graph()
  with graph.as_default():
    tf.compat.v1.set_random_seed(0)
    x, labels = _data(model)
    hidden = tf.constant(x)
    for index in range(2):
      hidden = tf.compat.v1.layers.dense(hidden, model.units, tf.nn.relu,
                                         name=f'trunk_{index}')
    logits = tf.compat.v1.layers.dense(hidden, model.heads, name='logits')
    label_columns = tf.split(tf.constant(labels), model.heads, axis=1)
    head = _multi_head(side, model, aggregators, hidden)
    optimizer = tf.keras.optimizers.legacy.SGD(LEARNING_RATE)
    start_ops = len(graph.get_operations())
    started = time.perf_counter()
    spec = head.create_estimator_spec(
        features={}, mode=tf.estimator.ModeKeys.TRAIN, logits=logits,
        labels={f'r{index}': column
                for index, column in enumerate(label_columns)},
        optimizer=optimizer,
        trainable_variables=tf.compat.v1.trainable_variables())
    seconds = time.perf_counter() - started
    ops = len(graph.get_operations()) - start_ops
  return graph, spec.train_op, ops, seconds


def step_milliseconds(graph, train_op, steps, repeats, warm_up=3):
  """The best over `repeats` of the mean step time, in milliseconds."""
  with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
    session.run(tf.compat.v1.global_variables_initializer())
    for _ in range(warm_up):
      session.run(train_op)
    best = None
    for _ in range(repeats):
      started = time.perf_counter()
      for _ in range(steps):
        session.run(train_op)
      mean = (time.perf_counter() - started) * 1e3 / steps
      best = mean if best is None else min(best, mean)
  return best


def measure(side, model, aggregators, steps, repeats):
  graph, train_op, ops, seconds = build_train_graph(side, model, aggregators)
  return {'ops': ops, 'build_seconds': seconds,
          'step_ms': step_milliseconds(graph, train_op, steps, repeats)}


def run(heads_list, aggregators, steps=20, repeats=3, sides=None,
        each_head_max_heads=128, per_head_max_heads=32, log=print,
        **model_sizes):
  """One row per (heads, side), with ratios to `plain` and `each_head`."""
  rows = []
  for count in heads_list:
    model = Model(heads=count, **model_sizes)
    by_side = {}
    for side in sides or sides_for(aggregators):
      if ((side == EACH_HEAD and count > each_head_max_heads) or
          (side == GRADNORM_PER_HEAD and count > per_head_max_heads)):
        continue
      result = measure(side, model, aggregators, steps, repeats)
      log(f'{count} heads, {side}: {result["ops"]:,} ops, '
          f'{result["build_seconds"]:.2f} s to build, '
          f'{result["step_ms"]:.2f} ms a step')
      by_side[side] = dict(heads=count, side=side, **result)
    for row in by_side.values():
      if PLAIN in by_side:
        row['plain_step_ratio'] = common.ratio(
            row['step_ms'], by_side[PLAIN]['step_ms'])
      if EACH_HEAD in by_side:
        row['each_head_step_ratio'] = common.ratio(
            row['step_ms'], by_side[EACH_HEAD]['step_ms'])
      rows.append(row)
  return rows


COLUMNS = (
    common.Column('heads', 'heads'),
    common.Column('side', 'side'),
    common.Column('ops', 'TRAIN ops', ','),
    common.Column('build_seconds', 'build s', '.2f'),
    common.Column('step_ms', 'step ms', '.2f'),
    common.Column('plain_step_ratio', 'x plain step', '.2f'),
    common.Column('each_head_step_ratio', 'x each-head step', '.3f'),
)


def _is_aggregator_side(side):
  return side.endswith(('_variables', '_representation'))


def over_target(rows):
  """Each measure of issue 14's targets that misses it, as a line."""
  misses = []
  for row in rows:
    side, heads = row['side'], row['heads']
    checks: list[tuple[str, Optional[float], float]] = []
    if side.endswith('_representation') and heads == REPRESENTATION_TARGET[0]:
      checks.append(('plain_step_ratio', row.get('plain_step_ratio'),
                     REPRESENTATION_TARGET[1]))
    if side.endswith('_variables') and heads == VARIABLES_TARGET[0]:
      checks.append(('plain_step_ratio', row.get('plain_step_ratio'),
                     VARIABLES_TARGET[1]))
    if _is_aggregator_side(side) and heads == BUILD_TARGET[0]:
      checks.append(('build_seconds', row['build_seconds'], BUILD_TARGET[1]))
    if _is_aggregator_side(side) and heads == EACH_HEAD_TARGET[0]:
      checks.append(('each_head_step_ratio', row.get('each_head_step_ratio'),
                     EACH_HEAD_TARGET[1]))
    for key, value, target in checks:
      if value is None:
        misses.append(f'{heads} heads, {side}: {key} not measured')
      elif value > target:
        misses.append(f'{heads} heads, {side}: {key} {value:.3f} > {target}')
  return misses


def _model_note(args):
  shared = ('the whole trunk (both layers)' if args.shared_variables ==
            'trunk' else 'the last trunk layer')
  return (f'{args.units}-unit two-layer ReLU trunk over {args.features} '
          f'inputs, batch {args.batch}, regression heads (one fused group), '
          f'SGD; variables mode over {shared}; GradNorm over the last trunk '
          'layer\'s kernel')


def report(rows):
  return common.text_table(COLUMNS, rows)


def markdown_report(rows, args, argv):
  misses = over_target(rows)
  lines = ['# Gradient aggregation: TRAIN cost', '',
           f'`python -m benchmarks.aggregation_cost {" ".join(argv)}`', '',
           _model_note(args) + '.', '', common.machine_note() + '.', '',
           common.markdown_table(COLUMNS, rows), '',
           'Targets missed: ' + ('none.' if not misses else '')]
  lines += [f'- {miss}' for miss in misses]
  return '\n'.join(lines) + '\n'


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--heads', default='2,8,32,128')
  parser.add_argument('--aggregators', default=','.join(DEFAULT_AGGREGATORS),
                      help='aggregation classes, by name')
  parser.add_argument('--sides', default='',
                      help='some of the sides, by name (default: all)')
  parser.add_argument('--shared-variables', choices=('trunk', 'last'),
                      default='trunk')
  parser.add_argument('--batch', type=int, default=512)
  parser.add_argument('--units', type=int, default=256)
  parser.add_argument('--features', type=int, default=32)
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--each-head-max-heads', type=int, default=128)
  parser.add_argument('--per-head-max-heads', type=int, default=32,
                      help='largest size for gradnorm_per_head (its build '
                      'grows as the square of the heads: 119 s at 32 here)')
  parser.add_argument('--markdown', metavar='PATH')
  parser.add_argument('--json', metavar='PATH')
  return parser.parse_args(argv)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  common.quiet_tensorflow()
  aggregators = aggregator_classes(
      [name.strip() for name in args.aggregators.split(',') if name.strip()])
  sides = [side.strip() for side in args.sides.split(',') if side.strip()]
  unknown = set(sides) - set(sides_for(aggregators))
  if unknown:
    raise ValueError(f'Unknown sides {sorted(unknown)}; choose from '
                     f'{sides_for(aggregators)}.')
  started = time.perf_counter()
  rows = run(common.parse_ints(args.heads), aggregators, args.steps,
             args.repeats, sides or None, args.each_head_max_heads,
             args.per_head_max_heads, batch=args.batch, units=args.units,
             features=args.features, shared_variables=args.shared_variables)
  print()
  print(_model_note(args))
  print(report(rows))
  misses = over_target(rows)
  print('\ntargets missed: ' + ('none' if not misses else ''))
  for miss in misses:
    print(f'  {miss}')
  common.write_results(args, argv, rows,
                       lambda: markdown_report(rows, args, argv))
  common.print_total(started)
  return 0


if __name__ == '__main__':
  sys.exit(main())
