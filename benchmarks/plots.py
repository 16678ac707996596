"""Figures: graph ops and build time against the number of heads.

Measures (with `graph_build`) the EVAL spec of 8 to 1,024 binary heads for
the reference, our per-head path and our fused path, and draws two log-log
figures, ops and seconds against heads, one line per side, saved as PNG:

    python -m benchmarks.plots                 # measures, then draws
    python -m benchmarks.plots --from-json=docs/images/graph_build.json

The reference and the per-head path are built only up to
`--reference-max-heads` (128) and `--per-head-max-heads` (256): the
reference's 128-head EVAL graph peaks at 7.4 GiB and its 256-head one did
not fit in 23 GiB; their lines stop there. The rows are
also written as JSON (`--json`), which `--from-json` draws again without
measuring. Needs matplotlib: `pip install -e .[bench]`.
"""
import argparse
import json
import os
import sys

from benchmarks import common
from benchmarks import graph_build

DEFAULT_HEADS = '8,16,32,64,128,256,512,1024'
OUTPUT_DIRECTORY = os.path.join('docs', 'images')
_STYLES = {common.REFERENCE: 'o-', common.PER_HEAD: 's-', common.FUSED: '^-'}


def series(rows, measure):
  """`{side: ([heads...], [values...])}` of `measure` ('ops', 'seconds')."""
  lines = {}
  for row in sorted(rows, key=lambda row: row['heads']):
    for side in common.IMPLEMENTATIONS:
      value = row.get(f'{side}_{measure}')
      if value is not None:
        heads, values = lines.setdefault(side, ([], []))
        heads.append(row['heads'])
        values.append(value)
  return lines


def merged_rows(paths):
  """The EVAL rows of graph_build JSON files, one per number of heads.

  A side measured in several files keeps the value of the last one.
  """
  by_heads = {}
  for path in paths:
    with open(path, encoding='utf-8') as stream:
      for row in json.load(stream)['rows']:
        if row.get('mode', 'eval') == 'eval':
          by_heads.setdefault(row['heads'], {}).update(row)
  return [by_heads[heads] for heads in sorted(by_heads)]


def draw(rows, directory, title_suffix=''):
  """Saves `graph_ops.png` and `build_seconds.png`; returns their paths."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  os.makedirs(directory, exist_ok=True)
  paths = []
  for measure, label, name in (
      ('ops', 'ops added by create_estimator_spec', 'graph_ops.png'),
      ('seconds', 'seconds to build the spec', 'build_seconds.png')):
    figure, axes = pyplot.subplots(figsize=(6.4, 4.2), dpi=100)
    for side, (heads, values) in series(rows, measure).items():
      axes.plot(heads, values, _STYLES[side], label=common.LABELS[side])
    axes.set_xscale('log', base=2)
    axes.set_yscale('log')
    axes.set_xlabel('BinaryClassHeads in the MultiHead (EVAL)')
    axes.set_ylabel(label)
    axes.set_title(f'EVAL graph: {label}{title_suffix}')
    axes.grid(True, which='both', alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = os.path.join(directory, name)
    figure.savefig(path)
    pyplot.close(figure)
    paths.append(path)
  return paths


_EXPORT_STYLES = {'reference': 'o-', 'ours': '^-', 'ours_reduced': 's-'}
_EXPORT_PANELS = (('tf2_seconds', 'seconds', 'tf.saved_model.load'),
                  ('tf2_peak_gib', 'GiB', 'its peak memory'),
                  ('mib', 'MiB', 'SavedModel size'))


def draw_exports(rows, directory):
  """Saves `exports.png` (TF 2 load time, its memory, export size against
  heads, one line per side, from `benchmarks.exports` rows); returns its
  path."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  from benchmarks import exports  # pylint: disable=g-import-not-at-top
  os.makedirs(directory, exist_ok=True)
  figure, panels = pyplot.subplots(1, len(_EXPORT_PANELS),
                                   figsize=(12.8, 4.2), dpi=100)
  for axes, (key, unit, title) in zip(panels, _EXPORT_PANELS):
    for side in exports.SIDES:
      points = [(row['heads'], row[f'{side}_{key}']) for row in rows
                if row.get(f'{side}_{key}') is not None]
      if points:
        axes.plot(*zip(*points), _EXPORT_STYLES[side],
                  label=exports.LABELS[side])
    axes.set_xscale('log', base=2)
    axes.set_yscale('log')
    axes.set_xlabel('BinaryClassHeads')
    axes.set_ylabel(unit)
    axes.set_title(title)
    axes.grid(True, which='both', alpha=0.3)
  panels[0].legend()
  figure.tight_layout()
  path = os.path.join(directory, 'exports.png')
  figure.savefig(path)
  pyplot.close(figure)
  return [path]


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--heads', default=DEFAULT_HEADS,
                      help='comma-separated numbers of heads')
  parser.add_argument('--kinds', default='binary',
                      help='head kinds, as for graph_build')
  parser.add_argument('--reference-max-heads', type=int, default=128)
  parser.add_argument('--per-head-max-heads', type=int, default=256)
  parser.add_argument('--directory', default=OUTPUT_DIRECTORY,
                      help='where the PNGs (and JSON) go')
  parser.add_argument('--json', help='where to write the rows (default: '
                      '<directory>/graph_build.json)')
  parser.add_argument('--from-json',
                      help='comma-separated JSON files of graph_build rows '
                      '(EVAL rows are drawn, later files first); measure '
                      'nothing')
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.from_json:
    rows = merged_rows(args.from_json.split(','))
  else:
    common.quiet_tensorflow()
    rows = graph_build.run(
        common.parse_ints(args.heads), ['eval'],
        kinds=common.parse_kinds(args.kinds),
        max_heads={common.REFERENCE: args.reference_max_heads,
                   common.PER_HEAD: args.per_head_max_heads})
    print(graph_build.report(rows))
    os.makedirs(args.directory, exist_ok=True)
    common.write_json(
        args.json or os.path.join(args.directory, 'graph_build.json'),
        {'machine': common.machine_note(), 'argv': argv or sys.argv[1:],
         'rows': rows})
  for path in draw(rows, args.directory):
    print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
