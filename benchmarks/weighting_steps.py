"""TRAIN step time with a learned loss weighting against the plain step.

Trains one `tf.estimator.Estimator` per side on synthetic data: a trunk of
two dense layers (`--hidden-units`, ReLU) feeding the logits of `--heads`
fused heads (`BinaryClassHead`s without a weight column by default), Adam,
`--batch-size` rows a step. The sides differ only in the `MultiHead`'s
`loss_weighting`: none (`plain`, the weighted sum), or one of
`weighting`'s methods that stay O(1) in the number of heads (`random`:
`RandomLossWeighting`, `famo`: `FAMO`; `uncertainty` and `dwa` too on
request). Prints, per side:

* `graph ops`: ops in the TRAIN graph when `model_fn` returns (exact);
* `step ms`: the median wall time of a training step after the first ones
  (`--warm-up-steps`), the best of `--repeats` runs, the sides' order
  rotating between repeats;
* `ratio`: that time over the plain step's (issue 14's target at 1,024 fused
  heads: at most 1.5 for `random` and `famo`);
* `fused`: whether the heads stayed in fused groups.

    python -m benchmarks.weighting_steps                    # 1,024 heads
    python -m benchmarks.weighting_steps --heads=1024 --steps=200 \
        --repeats=3 --methods=plain,random,famo,uncertainty,dwa --json=r.json

Step times are noisy on a shared machine: compare sides of one run only.
"""
import argparse
import shutil
import statistics
import sys
import tempfile
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


class StepTimes(tf.compat.v1.train.SessionRunHook):
  """The wall time of every training step."""

  def __init__(self):
    self.seconds = []
    self._started = None

  def before_run(self, run_context):
    del run_context  # Only the time matters.
    self._started = time.perf_counter()

  def after_run(self, run_context, run_values):
    del run_context, run_values
    self.seconds.append(time.perf_counter() - self._started)


class ModelFn:
  """A trunk, then a `MultiHead` of fused heads weighted by `method`."""

  def __init__(self, method, heads, kinds, hidden_units):
    self.method = method
    self.heads = heads
    self.kinds = kinds
    self.hidden_units = hidden_units
    self.graph_ops = None
    self.fused = None

  def __call__(self, features, labels, mode):
    multi_head = MultiHead(common.make_heads(self.heads, self.kinds),
                           loss_weighting=make_weighting(self.method))
    hidden = features[common.FEATURE_COLUMN]
    for index in range(2):
      hidden = tf.compat.v1.layers.dense(
          hidden, self.hidden_units, tf.nn.relu, name=f'trunk_{index}')
    logits = tf.compat.v1.layers.dense(hidden, multi_head.logits_dimension,
                                       name='logits')
    optimizer = tf.keras.optimizers.legacy.Adam(1e-3)
    optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()
    spec = multi_head.create_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels,
        optimizer=optimizer,
        trainable_variables=tf.compat.v1.trainable_variables())
    self.graph_ops = len(tf.compat.v1.get_default_graph().get_operations())
    self.fused = multi_head.fuse_heads
    return spec


def input_fn_for(heads, kinds, batch_size, feature_width, examples=2048):
  features, labels = common.synthetic_data(heads, examples, feature_width,
                                           seed=0, kinds=kinds)

  def input_fn():
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    return dataset.repeat().batch(batch_size, drop_remainder=True).prefetch(2)

  return input_fn


def run_side(method, heads, kinds, steps, warm_up_steps, input_fn,
             hidden_units):
  """Trains `steps` steps; returns the side's measures."""
  model_dir = tempfile.mkdtemp(prefix=f'weighting_{method}_')
  try:
    model_fn = ModelFn(method, heads, kinds, hidden_units)
    estimator = tf.estimator.Estimator(model_fn, config=tf.estimator.RunConfig(
        model_dir=model_dir, tf_random_seed=0, log_step_count_steps=None))
    times = StepTimes()
    estimator.train(input_fn, steps=steps, hooks=[times])
    timed = times.seconds[warm_up_steps:] or times.seconds
    return {'graph_ops': model_fn.graph_ops, 'fused': model_fn.fused,
            'step_ms': 1e3 * statistics.median(timed),
            'mean_step_ms': 1e3 * statistics.fmean(timed),
            'steps': len(times.seconds)}
  finally:
    shutil.rmtree(model_dir, ignore_errors=True)


def run(heads=1024, methods=DEFAULT_METHODS, steps=100, warm_up_steps=10,
        repeats=2, batch_size=512, feature_width=32, hidden_units=256,
        kinds=('binary_unweighted',), log=print):
  """Runs every side `repeats` times; returns one row per side."""
  if 'plain' not in methods:
    raise ValueError(f'methods must include plain, the baseline; given '
                     f'{list(methods)}.')
  input_fn = input_fn_for(heads, list(kinds), batch_size, feature_width)
  runs = {method: [] for method in methods}
  order = list(methods)
  for repeat in range(repeats):
    for method in order:
      log(f'repeat {repeat + 1}/{repeats}: {method}, {heads} heads, {steps} '
          'steps ...', end='', flush=True)
      measures = run_side(method, heads, list(kinds), steps, warm_up_steps,
                          input_fn, hidden_units)
      runs[method].append(measures)
      log(f' {measures["step_ms"]:.2f} ms a step')
    order = order[1:] + order[:1]
  rows = []
  for method in methods:
    best = min(runs[method], key=lambda measures: measures['step_ms'])
    rows.append(dict(best, method=method, heads=heads))
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
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--batch-size', type=int, default=512)
  parser.add_argument('--hidden-units', type=int, default=256)
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
             warm_up_steps=args.warm_up_steps, repeats=args.repeats,
             batch_size=args.batch_size, hidden_units=args.hidden_units,
             kinds=common.parse_kinds(args.kinds))
  print()
  print(report(rows))
  over = [row['method'] for row in rows
          if row['method'] in ('random', 'famo') and row['ratio'] > RATIO_TARGET]
  print(f'\nabove the {RATIO_TARGET}x target: {over or "none"}')
  note = common.machine_note()
  if args.markdown:
    with open(args.markdown, 'w', encoding='utf-8') as stream:
      stream.write('\n'.join([
          '# TRAIN step with a loss weighting / plain step', '',
          f'`python -m benchmarks.weighting_steps {" ".join(argv)}`', '',
          note + '.', '', common.markdown_table(COLUMNS, rows), '']))
  if args.json:
    common.write_json(args.json, {'machine': note, 'argv': argv,
                                  'rows': rows})
  print(f'\ntotal {time.perf_counter() - started:.0f} s; {note}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
