"""Estimator train/evaluate speed with our `MultiHead` vs the reference's.

Runs a real `tf.estimator.Estimator` whose `model_fn` (two dense layers, then
a `MultiHead` of mixed heads) differs between the sides only in the
`MultiHead`: `tf.estimator.MultiHead` (`reference`), ours with every head on
its own (`per_head`) and ours fusing heads of one type (`fused`). Each side
trains `--train-steps` steps and evaluates `--eval-steps` steps on synthetic
numpy data, in one process, the order rotating between repeats. Prints, per
phase and side (ratios: side / reference):

* the seconds `create_estimator_spec` took inside `model_fn` and the ops in
  the whole graph once `model_fn` returned (ratios ours / reference: lower is
  better). In TRAIN both include the gradients and the Adagrad update, which
  are the same on both sides (their seconds are logged apart, and kept in
  the JSON as `*_train_op_seconds`);
* steps per second of the running loop after its first step, which also pays
  for session set-up (ratio ours / reference: HIGHER is better);
* the wall time of the whole `train()` / `evaluate()` call, graph building,
  session set-up and checkpoints included (ratio: lower is better).

    python -m benchmarks.estimator_steps --heads=8 --train-steps=1000 \
        --eval-steps=300 --repeats=2
    # Issue 10: evaluate() of 32 binary heads, 100 batches of 512.
    python -m benchmarks.estimator_steps --heads=32 --kinds=binary \
        --train-steps=10 --eval-steps=100 --batch-size=512 --repeats=2

Two Estimators built alike do not end with equal weights; only speed is
compared here, not results.
"""
import argparse
import shutil
import sys
import tempfile
import time

from benchmarks import common

import tensorflow as tf

PHASES = ('train', 'eval')

_SHORT = {common.REFERENCE: 'ref', common.PER_HEAD: 'per-head',
          common.FUSED: 'fused'}
# (row key, header, format, whether the ratio's higher values are better)
_MEASURES = (('build_seconds', 'build s', '.2f'),
             ('graph_ops', 'graph ops', ','),
             ('steps_per_second', 'steps/s', '.1f'),
             ('wall_seconds', 'wall s', '.2f'))
_RATIO_NAMES = {'build_seconds': 'build_ratio', 'graph_ops': 'graph_ops_ratio',
                'steps_per_second': 'speedup', 'wall_seconds': 'wall_ratio'}


def _columns():
  columns = [common.Column('phase', 'phase')]
  for key, header, spec in _MEASURES:
    columns += [common.Column(f'{side}_{key}', f'{_SHORT[side]} {header}',
                              spec) for side in common.IMPLEMENTATIONS]
    columns += [common.Column(f'{side}_{_RATIO_NAMES[key]}',
                              f'{_SHORT[side]} {header} ratio', '.3f')
                for side in common.OURS]
  return tuple(columns)


COLUMNS = _columns()


class StepClock(tf.compat.v1.train.SessionRunHook):
  """Notes when each step of the running loop ends."""

  def __init__(self):
    self.step_ends = []

  def after_run(self, run_context, run_values):
    del run_context, run_values  # Only the time matters.
    self.step_ends.append(time.perf_counter())

  def steps_per_second(self):
    """Steps per second after the first step; None with fewer than two."""
    if len(self.step_ends) < 2:
      return None
    return (len(self.step_ends) - 1) / (self.step_ends[-1] - self.step_ends[0])


class ModelFn:
  """A `model_fn` whose head is a `MultiHead` from `implementation`.

  Remembers, for the last graph it built, how long `create_estimator_spec`
  took, how much of that `train_op_fn` took, and how many ops the graph held
  once the spec was built.
  """

  def __init__(self, implementation, heads, kinds=None, hidden_units=32,
               learning_rate=0.05):
    self.implementation = implementation
    self.heads = heads
    self.kinds = kinds
    self.hidden_units = hidden_units
    self.learning_rate = learning_rate
    self.build_seconds = None
    self.train_op_seconds = None
    self.graph_ops = None

  def __call__(self, features, labels, mode):
    multi_head = common.make_multi_head(self.implementation, self.heads,
                                        self.kinds)
    hidden_layer = tf.keras.layers.Dense(self.hidden_units, activation='relu')
    logits_layer = tf.keras.layers.Dense(multi_head.logits_dimension)
    logits = logits_layer(hidden_layer(features[common.FEATURE_COLUMN]))
    variables = hidden_layer.trainable_weights + logits_layer.trainable_weights

    def train_op_fn(loss):
      # Gradients and optimizer: the same work on both sides, timed apart.
      start = time.perf_counter()
      optimizer = tf.compat.v1.train.AdagradOptimizer(self.learning_rate)
      train_op = optimizer.minimize(
          loss, var_list=variables,
          global_step=tf.compat.v1.train.get_global_step())
      self.train_op_seconds = time.perf_counter() - start
      return train_op

    self.train_op_seconds = 0.
    start = time.perf_counter()
    spec = multi_head.create_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels,
        train_op_fn=train_op_fn)
    self.build_seconds = time.perf_counter() - start
    self.graph_ops = len(tf.compat.v1.get_default_graph().get_operations())
    return spec


def input_fn_for(heads, examples, feature_width, batch_size, seed,
                 kinds=None):
  features, labels = common.synthetic_data(heads, examples, feature_width,
                                           seed, kinds)

  def input_fn():
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    return dataset.repeat().batch(batch_size)

  return input_fn


def run_side(implementation, heads, train_steps, eval_steps, input_fn,
             kinds=None, log=print):
  """Trains then evaluates one fresh Estimator; returns measures by phase."""
  model_dir = tempfile.mkdtemp(prefix=f'multihead_{implementation}_')
  try:
    model_fn = ModelFn(implementation, heads, kinds)
    config = tf.estimator.RunConfig(
        model_dir=model_dir, tf_random_seed=0, log_step_count_steps=None)
    estimator = tf.estimator.Estimator(model_fn=model_fn, config=config)
    measures = {}
    for phase, steps in (('train', train_steps), ('eval', eval_steps)):
      log(f'  {implementation:<9} {phase:<5} {steps} steps ...', end='',
          flush=True)
      clock = StepClock()
      start = time.perf_counter()
      if phase == 'train':
        estimator.train(input_fn, steps=steps, hooks=[clock])
      else:
        estimator.evaluate(input_fn, steps=steps, hooks=[clock])
      wall_seconds = time.perf_counter() - start
      measures[phase] = {
          'build_seconds': model_fn.build_seconds,
          'train_op_seconds': model_fn.train_op_seconds,
          'graph_ops': model_fn.graph_ops,
          'steps_per_second': clock.steps_per_second(),
          'wall_seconds': wall_seconds,
          'steps': len(clock.step_ends),
      }
      rate = measures[phase]['steps_per_second']
      log(f' build {model_fn.build_seconds:.2f} s (train_op_fn '
          f'{model_fn.train_op_seconds:.2f} s), '
          f'{model_fn.graph_ops:,} ops, '
          f'{"-" if rate is None else f"{rate:.1f}"} steps/s, '
          f'{wall_seconds:.2f} s in all', flush=True)
    return measures
  finally:
    shutil.rmtree(model_dir, ignore_errors=True)


def _best(values, pick):
  values = [value for value in values if value is not None]
  return pick(values) if values else None


def _row(phase, runs):
  """One table row from every repeat's measures of `phase`."""
  row = {'phase': phase}
  for implementation in runs:
    measures = [run[phase] for run in runs[implementation]]
    row[f'{implementation}_build_seconds'] = _best(
        [m['build_seconds'] for m in measures], min)
    row[f'{implementation}_train_op_seconds'] = _best(
        [m['train_op_seconds'] for m in measures], min)
    row[f'{implementation}_graph_ops'] = measures[0]['graph_ops']
    row[f'{implementation}_steps_per_second'] = _best(
        [m['steps_per_second'] for m in measures], max)
    row[f'{implementation}_wall_seconds'] = _best(
        [m['wall_seconds'] for m in measures], min)
    row[f'{implementation}_steps'] = measures[0]['steps']
  for side in common.OURS:
    if side not in runs or common.REFERENCE not in runs:
      continue
    for key, ratio_name in _RATIO_NAMES.items():
      ours, reference = row[f'{side}_{key}'], row[f'reference_{key}']
      if ours is not None and reference is not None:
        row[f'{side}_{ratio_name}'] = common.ratio(ours, reference)
  return row


def run(heads=8, train_steps=1000, eval_steps=300, repeats=2, examples=1024,
        feature_width=16, batch_size=64, warm_up=True, kinds=None,
        implementations=common.IMPLEMENTATIONS, log=print):
  """Runs every side `repeats` times; returns one row per phase.

  `kinds` optionally narrows the heads to some of `common.KIND_PREFIXES`;
  `implementations` names the sides.
  """
  if repeats < 1:
    raise ValueError(f'repeats must be at least 1, got {repeats}.')
  input_fn = input_fn_for(heads, examples, feature_width, batch_size, seed=0,
                          kinds=kinds)
  if warm_up:
    log('warming up (2 heads, 2 steps, both sides; not counted)')
    warm_up_input_fn = input_fn_for(2, examples, feature_width, batch_size,
                                    seed=1, kinds=kinds)
    for implementation in implementations:
      run_side(implementation, 2, 2, 2, warm_up_input_fn, kinds,
               log=lambda *args, **kwargs: None)
  runs = {implementation: [] for implementation in implementations}
  order = list(implementations)
  for repeat in range(repeats):
    log(f'repeat {repeat + 1}/{repeats}: {heads} heads', flush=True)
    for implementation in order:
      runs[implementation].append(run_side(
          implementation, heads, train_steps, eval_steps, input_fn, kinds,
          log))
    order = order[1:] + order[:1]
  return [_row(phase, runs) for phase in PHASES]


def report(rows):
  return common.text_table(COLUMNS, rows)


def markdown_report(rows, args):
  return '\n'.join([
      '# Estimator steps: ours / reference',
      '',
      f'`python -m benchmarks.estimator_steps {" ".join(args)}`',
      '',
      common.machine_note() + '.',
      '',
      common.markdown_table(COLUMNS, rows),
      '',
  ])


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--heads', type=int, default=8,
                      help='mixed heads in the MultiHead')
  parser.add_argument('--kinds', default='',
                      help='comma-separated head kinds to cycle through '
                      f'instead of all of {",".join(common.KIND_PREFIXES)}')
  parser.add_argument('--sides', default='',
                      help='comma-separated sides to run, of '
                      f'{",".join(common.IMPLEMENTATIONS)} (default: all)')
  parser.add_argument('--train-steps', type=int, default=1000)
  parser.add_argument('--eval-steps', type=int, default=300)
  parser.add_argument('--repeats', type=int, default=2,
                      help='runs per side; the best one is reported')
  parser.add_argument('--batch-size', type=int, default=64)
  parser.add_argument('--no-warm-up', dest='warm_up', action='store_false',
                      help='skip the untimed warm-up runs')
  parser.add_argument('--markdown', metavar='PATH',
                      help='also write the table as markdown to PATH')
  parser.add_argument('--json', metavar='PATH',
                      help='also write the rows as JSON to PATH')
  return parser.parse_args(argv)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  common.quiet_tensorflow()
  started = time.perf_counter()
  rows = run(heads=args.heads, train_steps=args.train_steps,
             eval_steps=args.eval_steps, repeats=args.repeats,
             batch_size=args.batch_size, warm_up=args.warm_up,
             kinds=common.parse_kinds(args.kinds),
             implementations=common.parse_implementations(args.sides))
  print()
  print(report(rows))
  common.write_results(args, argv, rows, lambda: markdown_report(rows, argv))
  common.print_total(started)
  return 0


if __name__ == '__main__':
  sys.exit(main())
