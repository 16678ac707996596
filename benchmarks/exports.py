"""Exports of many heads: export time, size, signatures, loading, serving.

For each number of `BinaryClassHead`s (8 to 1,024), one checkpoint of one
dense layer (3 features -> one logit a head; `--hidden-layers` puts layers
of 16 ReLU units before it) is exported with
`Estimator.export_saved_model` and a `tf.train.Example` parsing receiver,
as a user would, by three sides:

* `reference`: `tf.estimator.MultiHead` (every head's signatures);
* `ours`: our `MultiHead` by default (the same signature keys);
* `ours_reduced`: ours with `export_heads=[]` (`serving_default` and
  `predict` only).

Each step runs in a fresh child process under a memory cap
(`--memory-cap-gib`, on the address space) and a time limit
(`--timeout`): the export; TF 2's `tf.saved_model.load`; TF 1's
`tf.compat.v1.saved_model.loader.load` into a session (as TF Serving
loads). A side whose step fails (out of memory, over time) is not run
again at more heads; the table says where it stopped. Columns:

* `export s`: `export_saved_model` (graph, restore, signatures, writing);
* `MiB`: the SavedModel on disk (`saved_model.pb` and variables);
* `signatures`: how many the SavedModel holds;
* `ops a signature`: the graph nodes behind `serving_default` (the first
  head's classification signature), which TF 2's loader copies for it, as
  for each head's own signature;
* `TF2 load s`, `TF2 peak GiB`: `tf.saved_model.load`, and the child's peak
  resident memory (TensorFlow itself included, about 0.45 GiB);
* `predict ms`: the median of 20 calls of the loaded `predict` signature
  on a batch of `--batch` examples, after 3 warm-up calls;
* `checked`: whether the loaded `predict` and `serving_default` give what
  `Estimator.predict` gives on the same rows (1e-6 relative), checked after
  the timings;
* `TF1 load s`, `TF1 peak GiB`, `TF1 predict ms`: the same through a
  session.

    python -m benchmarks.exports                    # 8 to 1,024, every side
    python -m benchmarks.exports --heads=8,64 --sides=ours,ours_reduced
    python -m benchmarks.exports --heads=128 --sides=ours --hidden-layers=8
    python -m benchmarks.exports --markdown=table.md --json=rows.json \\
        --plot=docs/images
    python -m benchmarks.exports --from-json=docs/images/exports.json \\
        --plot=docs/images                          # redraw only

Targets (issue 13): the default export of 1,024 heads in at most 30 s and
10 MB, loaded by TF 1's loader and `saved_model_cli`; with
`export_heads=[]`, loaded by TF 2's in at most 10 s and 2 GiB.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import common

import numpy as np
import tensorflow as tf

REFERENCE = 'reference'
OURS = 'ours'
OURS_REDUCED = 'ours_reduced'
SIDES = (REFERENCE, OURS, OURS_REDUCED)
LABELS = {REFERENCE: 'tf.estimator.MultiHead', OURS: 'ours, every signature',
          OURS_REDUCED: 'ours, export_heads=[]'}
DEFAULT_HEADS = '8,16,32,64,128,256,512,1024'
FEATURES = 3
FEATURE_SPEC = {'x': tf.io.FixedLenFeature([FEATURES], tf.float32)}
LOGITS_LAYER = 'logits'
HIDDEN_UNITS = 16
PREDICT_CALLS = 20
WARM_UP_CALLS = 3
# How close the loaded model must come to `Estimator.predict`.
RTOL = 1e-6
ATOL = 1e-7
# Issue 13's targets at 1,024 heads.
TARGETS = {(OURS, 'export_seconds'): 30., (OURS, 'mib'): 10. * 1e6 / 2**20,
           (OURS_REDUCED, 'tf2_seconds'): 10.,
           (OURS_REDUCED, 'tf2_peak_gib'): 2.}
TARGET_HEADS = 1024

# (row key suffix, header, format) of each measure, in table order.
MEASURES = (('export_seconds', 'export s', '.1f'),
            ('mib', 'MiB', '.2f'),
            ('signatures', 'signatures', ','),
            ('signature_ops', 'ops a signature', ','),
            ('tf2_seconds', 'TF2 load s', '.1f'),
            ('tf2_peak_gib', 'TF2 peak GiB', '.2f'),
            ('tf2_predict_ms', 'predict ms', '.1f'),
            ('checked', 'checked', ''),
            ('tf1_seconds', 'TF1 load s', '.1f'),
            ('tf1_peak_gib', 'TF1 peak GiB', '.2f'),
            ('tf1_predict_ms', 'TF1 predict ms', '.1f'))
_SHORT = {REFERENCE: 'ref', OURS: 'ours', OURS_REDUCED: 'reduced'}


def head_names(heads):
  return [f'h{index}' for index in range(heads)]


def make_multi_head(side, heads):
  """The merged head of `heads` fresh `BinaryClassHead`s for `side`."""
  binary_heads = [tf.estimator.BinaryClassHead(name=name)
                  for name in head_names(heads)]
  if side == REFERENCE:
    return tf.estimator.MultiHead(binary_heads)
  import tensorflow_multihead  # pylint: disable=g-import-not-at-top
  options = {'export_heads': []} if side == OURS_REDUCED else {}
  return tensorflow_multihead.MultiHead(binary_heads, **options)


def _body(inputs, hidden, initializer=None):
  """`hidden` ReLU layers of `HIDDEN_UNITS` (the model's own ops)."""
  for index in range(hidden):
    inputs = tf.keras.layers.Dense(
        HIDDEN_UNITS, activation='relu', name=f'hidden_{index}',
        kernel_initializer=initializer or 'glorot_uniform')(inputs)
  return inputs


def _model_fn(side, heads, hidden=0):
  def model_fn(features, labels, mode):
    head = make_multi_head(side, heads)
    logits = tf.keras.layers.Dense(head.logits_dimension, name=LOGITS_LAYER)(
        _body(features['x'], hidden))
    return head.create_estimator_spec(
        features=features, mode=mode, logits=logits, labels=labels,
        train_op_fn=lambda loss: tf.no_op())
  return model_fn


def rows_to_serve(batch, seed=0):
  return np.random.default_rng(seed).normal(
      size=(batch, FEATURES)).astype(np.float32)


def serialized(rows):
  return [tf.train.Example(features=tf.train.Features(feature={
      'x': tf.train.Feature(float_list=tf.train.FloatList(value=row))}))
          .SerializeToString() for row in rows]


def write_checkpoint(heads, model_dir, seed=0, hidden=0):
  """A checkpoint of the layers (and global step) every side exports."""
  if tf.train.latest_checkpoint(model_dir):
    return
  with tf.Graph().as_default():
    tf.compat.v1.train.get_or_create_global_step()
    initializer = tf.keras.initializers.RandomNormal(seed=seed)
    tf.keras.layers.Dense(heads, name=LOGITS_LAYER,
                          kernel_initializer=initializer,
                          bias_initializer=initializer)(
                              _body(tf.zeros([1, FEATURES]), hidden,
                                    initializer))
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      tf.compat.v1.train.Saver().save(
          session, os.path.join(model_dir, 'model.ckpt'), global_step=0)


def _estimator(side, heads, model_dir, hidden=0):
  return tf.estimator.Estimator(
      _model_fn(side, heads, hidden), model_dir=model_dir,
      config=tf.estimator.RunConfig(log_step_count_steps=None))


def export(side, heads, work_dir, batch=16, hidden=0):
  """Exports the checkpoint of `heads` under `side`; returns measures.

  `hidden`: the number of hidden layers before the logits layer.

  Also writes `Estimator.predict` on the served rows beside the export
  (`expected.npz`, keyed `<head>/<key>`), for the loads to check against.
  """
  model_dir = os.path.join(work_dir, f'model_{heads}_{hidden}')
  write_checkpoint(heads, model_dir, hidden=hidden)
  estimator = _estimator(side, heads, model_dir, hidden)
  receiver = tf.estimator.export.build_parsing_serving_input_receiver_fn(
      FEATURE_SPEC)
  base = os.path.join(work_dir, f'export_{side}_{heads}')
  shutil.rmtree(base, ignore_errors=True)
  start = time.perf_counter()
  path = estimator.export_saved_model(base, receiver).decode()
  seconds = time.perf_counter() - start
  rows = rows_to_serve(batch)
  predicted = list(estimator.predict(
      lambda: tf.data.Dataset.from_tensor_slices({'x': rows}).batch(batch),
      yield_single_examples=False))[0]
  np.savez(os.path.join(path, os.pardir, 'expected.npz'),
           **{f'{head}/{key}': value
              for (head, key), value in predicted.items()})
  meta_graph = _meta_graph(path)
  return {'export_seconds': seconds, 'path': path,
          'mib': _directory_bytes(path) / 2.**20,
          'signatures': len(meta_graph.signature_def),
          'signature_ops': signature_ops(meta_graph, 'serving_default')}


def _directory_bytes(path):
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)


def _meta_graph(path):
  """The SavedModel's (only) `MetaGraphDef`, read from disk."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  saved_model = saved_model_pb2.SavedModel()
  with open(os.path.join(path, 'saved_model.pb'), 'rb') as stream:
    saved_model.ParseFromString(stream.read())
  return saved_model.meta_graphs[0]


def signature_ops(meta_graph, key):
  """How many graph nodes the signature `key`'s outputs depend on.

  What TF 2's loader copies into that signature's function: with
  `serving_default` (the first head's classification signature on every
  side), what each head's own signature costs it.
  """
  nodes = {node.name: node for node in meta_graph.graph_def.node}
  pending = [info.name.split(':')[0]
             for info in meta_graph.signature_def[key].outputs.values()]
  seen = set()
  while pending:
    name = pending.pop()
    if name not in seen:
      seen.add(name)
      pending.extend(source.lstrip('^').split(':')[0]
                     for source in nodes[name].input)
  return len(seen)


def _peak_gib():
  """This process's peak resident memory so far, in GiB (Linux)."""
  with open('/proc/self/status', encoding='ascii') as stream:
    for line in stream:
      if line.startswith('VmHWM:'):
        return int(line.split()[1]) / 2.**20
  return None


def _median_ms(call):
  for _ in range(WARM_UP_CALLS):
    call()
  times = []
  for _ in range(PREDICT_CALLS):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def _expected(path):
  with np.load(os.path.join(path, os.pardir, 'expected.npz'),
               allow_pickle=True) as stored:
    return dict(stored)


def _same(actual, expected):
  actual, expected = np.asarray(actual), np.asarray(expected)
  if actual.shape != expected.shape:
    return False
  if expected.dtype.kind in 'fc':
    return bool(np.allclose(actual, expected, rtol=RTOL, atol=ATOL))
  return bool((actual.astype(object) == expected.astype(object)).all())


def mismatches(outputs_by_signature, expected):
  """What the loaded signatures give otherwise than `Estimator.predict`.

  `predict` is keyed `<head>/<key>` as `expected`; a classification
  `serving_default` gives the first head's probabilities as `scores`.
  Returns a list of `<signature>:<key>` that differ, empty when all agree.
  """
  predict = outputs_by_signature['predict']
  wrong = [f'predict:{key}' for key in sorted(set(predict) ^ set(expected))]
  wrong += [f'predict:{key}' for key in sorted(expected)
            if key in predict and not _same(predict[key], expected[key])]
  served = outputs_by_signature['serving_default']
  pairs = ([('scores', 'h0/probabilities')] if 'scores' in served
           else [(key, key) for key in sorted(expected)])
  wrong += [f'serving_default:{key}' for key, expected_key in pairs
            if key not in served or not _same(served[key],
                                              expected[expected_key])]
  return wrong


def load_tf2(path, batch=16, peak=True):
  """`tf.saved_model.load(path)`: seconds, peak GiB, predict ms, checked."""
  start = time.perf_counter()
  loaded = tf.saved_model.load(path)
  seconds = time.perf_counter() - start
  result = {'tf2_seconds': seconds,
            'tf2_peak_gib': _peak_gib() if peak else None}
  examples = tf.constant(serialized(rows_to_serve(batch)))
  predict = loaded.signatures['predict']
  result['tf2_predict_ms'] = _median_ms(lambda: predict(examples=examples))
  serving_default = loaded.signatures['serving_default']
  (input_key,) = serving_default.structured_input_signature[1]
  outputs = {
      'predict': {key: value.numpy()
                  for key, value in predict(examples=examples).items()},
      'serving_default': {key: value.numpy() for key, value in
                          serving_default(**{input_key: examples}).items()}}
  wrong = mismatches(outputs, _expected(path))
  result['checked'] = not wrong
  if wrong:
    result['mismatches'] = wrong[:5] + ([f'... {len(wrong)} in all']
                                        if len(wrong) > 5 else [])
  return result


def load_tf1(path, batch=16, peak=True):
  """TF 1's loader into a session, as TF Serving loads: seconds, peak, ms."""
  graph = tf.Graph()
  with tf.compat.v1.Session(graph=graph) as session:
    start = time.perf_counter()
    meta_graph = tf.compat.v1.saved_model.loader.load(
        session, [tf.saved_model.SERVING], path)
    seconds = time.perf_counter() - start
    signature = meta_graph.signature_def['predict']
    fetches = {key: info.name for key, info in signature.outputs.items()}
    feed = {signature.inputs['examples'].name: serialized(
        rows_to_serve(batch))}
    predict_ms = _median_ms(lambda: session.run(fetches, feed))
  return {'tf1_seconds': seconds,
          'tf1_peak_gib': _peak_gib() if peak else None,
          'tf1_predict_ms': predict_ms}


# Each step in a child process, capped.


def _capped(cap_gib):
  def limit():
    size = int(cap_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (size, size))
  return limit


# What a child's error says when it ran out of (capped) memory. A child
# killed by a signal (the kernel's OOM killer, an abort) counts as well.
_OUT_OF_MEMORY = ('MemoryError', 'bad_alloc', 'Resource exhausted',
                  'Cannot allocate memory', 'failed to map segment')


def in_child(step, arguments, cap_gib, timeout):
  """Runs `step` ('export', 'tf2' or 'tf1') in a capped child.

  Returns its result dict, or `{'failed': reason}`.
  """
  command = [sys.executable, '-m', 'benchmarks.exports',
             f'--child={json.dumps([step] + list(arguments))}']
  try:
    finished = subprocess.run(command, capture_output=True, text=True,
                              timeout=timeout, preexec_fn=_capped(cap_gib),
                              check=False)
  except subprocess.TimeoutExpired:
    return {'failed': f'over {timeout:.0f} s'}
  if finished.returncode != 0:
    memory = finished.returncode < 0 or any(
        sign in finished.stderr for sign in _OUT_OF_MEMORY)
    return {'failed': (f'out of memory ({cap_gib:g} GiB cap)' if memory
                       else f'exit {finished.returncode}: '
                       f'{finished.stderr.strip().splitlines()[-1:]}')}
  return json.loads(finished.stdout.strip().splitlines()[-1])


def _run_child(spec):
  step, *arguments = json.loads(spec)
  if step == 'export':
    side, heads, work_dir, batch, hidden = arguments
    return export(side, int(heads), work_dir, int(batch), int(hidden))
  path, batch = arguments
  if step == 'tf2':
    return load_tf2(path, int(batch))
  return load_tf1(path, int(batch))


def measure(side, heads, work_dir, batch, cap_gib, timeout, isolate=True,
            skip=(), log=print, hidden=0):
  """Every step for one side and number of heads; returns the row's part.

  `skip` holds the steps not to run (a smaller size failed them). Failed
  steps come back as `<side>_failed`: `{step: reason}`.
  """
  def step(name, arguments, run_here):
    if name in skip:
      return {'failed': 'stopped at fewer heads'}
    started = time.perf_counter()
    result = (in_child(name, arguments, cap_gib, timeout) if isolate
              else run_here())
    log(f'  {heads:>5} heads  {side:<13} {name:<6} '
        f'{result.get("failed", "done")} in '
        f'{time.perf_counter() - started:.0f} s', flush=True)
    return result

  values, failed = {}, {}
  exported = step('export', [side, heads, work_dir, batch, hidden],
                  lambda: export(side, heads, work_dir, batch, hidden))
  if 'failed' in exported:
    failed = {name: exported['failed'] for name in ('export', 'tf2', 'tf1')}
  else:
    values.update(exported)
    for name, load in (('tf2', load_tf2), ('tf1', load_tf1)):
      loaded = step(name, [exported['path'], batch],
                    lambda load=load: load(exported['path'], batch,
                                           peak=False))
      if 'failed' in loaded:
        failed[name] = loaded['failed']
      else:
        values.update(loaded)
    shutil.rmtree(os.path.dirname(exported['path']), ignore_errors=True)
  row = {f'{side}_{key}': value for key, value in values.items()
         if key != 'path'}
  if failed:
    row[f'{side}_failed'] = failed
  return row


def run(heads_list, sides=SIDES, batch=16, cap_gib=10., timeout=900.,
        work_dir=None, isolate=True, log=print, hidden=0):
  """Measures every side at every number of heads; returns the rows.

  `hidden`: hidden layers before the logits layer (see `export`).

  With `isolate=False` (for tests) the steps run in this process and no
  peak memory is measured.
  """
  work_dir = work_dir or tempfile.mkdtemp(prefix='export_benchmark_')
  stopped = {side: set() for side in sides}
  rows = []
  for heads in heads_list:
    row = {'heads': heads}
    for side in sides:
      part = measure(side, heads, work_dir, batch, cap_gib, timeout, isolate,
                     stopped[side], log, hidden)
      stopped[side].update(part.get(f'{side}_failed', {}))
      row.update(part)
    rows.append(row)
  return rows


# Tables and figures.


# One table row per side and number of heads, with ratios to the reference.
COLUMNS = ((common.Column('heads', 'heads', ','), common.Column('side', 'side'))
           + tuple(common.Column(key, header, spec)
                   for key, header, spec in MEASURES[:5])
           + (common.Column('tf2_ratio', 'TF2 load / ref', '.3f'),)
           + tuple(common.Column(key, header, spec)
                   for key, header, spec in MEASURES[5:]))


def side_rows(rows, sides=SIDES):
  """The measured rows, one per side: `heads`, `side` and the measures.

  A step that failed shows its reason in the first column it would fill.
  """
  table = []
  for row in rows:
    reference = row.get(f'{REFERENCE}_tf2_seconds')
    for side in sides:
      entry = {'heads': row['heads'], 'side': _SHORT[side]}
      entry.update({key: row.get(f'{side}_{key}')
                    for key, _, _ in MEASURES})
      if entry['tf2_seconds'] is not None and reference:
        entry['tf2_ratio'] = entry['tf2_seconds'] / reference
      for step, first in (('export', 'export_seconds'),
                          ('tf2', 'tf2_seconds'), ('tf1', 'tf1_seconds')):
        reason = row.get(f'{side}_failed', {}).get(step)
        if reason is not None:
          entry[first] = _Failed(reason)
      table.append(entry)
  return table


class _Failed(str):
  """A failed step's reason, shown as itself whatever the column format."""

  def __format__(self, spec):
    return 'stopped' if self == 'stopped at fewer heads' else str(self)


def stops(rows, sides=SIDES):
  """Lines saying where and why each side's steps stopped or differed."""
  lines, seen = [], set()
  for row in rows:
    for side in sides:
      if row.get(f'{side}_mismatches'):
        lines.append(f'{LABELS[side]} at {row["heads"]:,} heads: the loaded '
                     'export differs from Estimator.predict in '
                     f'{", ".join(row[f"{side}_mismatches"])}.')
      for step, reason in sorted(row.get(f'{side}_failed', {}).items()):
        if (side, step) not in seen and reason != 'stopped at fewer heads':
          seen.add((side, step))
          lines.append(f'{LABELS[side]}: {step} stopped at {row["heads"]:,} '
                       f'heads ({reason}); not run at more heads.')
  return lines


def over_target(rows):
  """Lines naming each issue-13 target missed at `TARGET_HEADS` heads."""
  lines = []
  for row in rows:
    if row['heads'] != TARGET_HEADS:
      continue
    for (side, key), limit in TARGETS.items():
      value = row.get(f'{side}_{key}')
      if value is None or value > limit:
        lines.append(f'{LABELS[side]} {key}: {value} > {limit:g}')
    if row.get(f'{OURS}_tf1_seconds') is None:
      lines.append(f'{LABELS[OURS]}: TF 1 loader failed')
  return lines


def report(rows, sides=SIDES):
  return common.text_table(COLUMNS, side_rows(rows, sides))


def markdown_report(rows, args, sides=SIDES):
  lines = ['# Exports: many heads', '',
           f'`python -m benchmarks.exports {" ".join(args)}`', '',
           common.machine_note() + '.', '',
           common.markdown_table(COLUMNS, side_rows(rows, sides)), '']
  lines += [f'- {line}' for line in stops(rows, sides)]
  misses = over_target(rows)
  lines.append('Targets missed at 1,024 heads: ' + ('none.' if not misses
                                                     else ''))
  lines += [f'- {miss}' for miss in misses]
  return '\n'.join(lines) + '\n'


def parse_sides(text):
  names = [part.strip() for part in (text or '').split(',') if part.strip()]
  unknown = [name for name in names if name not in SIDES]
  if unknown:
    raise ValueError(f'Unknown sides {unknown}; choose from {list(SIDES)}.')
  return [side for side in SIDES if side in names] or list(SIDES)


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--heads', default=DEFAULT_HEADS,
                      help='comma-separated numbers of heads')
  parser.add_argument('--sides', default='',
                      help=f'comma-separated sides of {",".join(SIDES)} '
                      '(default: all)')
  parser.add_argument('--batch', type=int, default=16,
                      help='examples per predict call')
  parser.add_argument('--hidden-layers', type=int, default=0,
                      help=f'layers of {HIDDEN_UNITS} ReLU units before the '
                      'logits layer')
  parser.add_argument('--memory-cap-gib', type=float, default=10.,
                      help='address-space cap of each child process')
  parser.add_argument('--timeout', type=float, default=900.,
                      help='seconds each child process may take')
  parser.add_argument('--work-dir', help='where exports are written '
                      '(default: a new temporary directory)')
  parser.add_argument('--markdown', metavar='PATH')
  parser.add_argument('--json', metavar='PATH')
  parser.add_argument('--plot', metavar='DIRECTORY',
                      help='also draw the figures into DIRECTORY')
  parser.add_argument('--from-json', help='draw the rows of this JSON file '
                      '(with --plot); measure nothing')
  parser.add_argument('--child', help=argparse.SUPPRESS)
  return parser.parse_args(argv)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  if args.child:
    common.quiet_tensorflow()
    print(json.dumps(_run_child(args.child)))
    return 0
  sides = parse_sides(args.sides)
  if args.from_json:
    with open(args.from_json, encoding='utf-8') as stream:
      rows = json.load(stream)['rows']
  else:
    common.quiet_tensorflow()
    started = time.perf_counter()
    rows = run(common.parse_ints(args.heads), sides, args.batch,
               args.memory_cap_gib, args.timeout, args.work_dir,
               hidden=args.hidden_layers)
    common.print_total(started)
  print()
  print(report(rows, sides))
  for line in stops(rows, sides) + over_target(rows):
    print(line)
  common.write_results(args, argv, rows,
                       lambda: markdown_report(rows, argv, sides),
                       json_too=not args.from_json)
  if args.plot:
    from benchmarks import plots  # pylint: disable=g-import-not-at-top
    for path in plots.draw_exports(rows, args.plot):
      print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
