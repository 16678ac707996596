"""Our quadratic-program aggregators against TorchJD 0.18's, same Jacobians.

A one-off check, outside CI (the project needs no PyTorch): TorchJD runs in a
separate interpreter of its own venv, given the Jacobians in a `.npz` file;
this process runs ours on the same ones and prints, per aggregator and kind
of Jacobian, the largest relative difference `||ours - theirs|| / ||theirs||`
of the directions (float64 on both sides, so only the solvers differ).

    python -m benchmarks.torchjd_compare_quadratic \\
        --torchjd-python=/work/torchjd-venv/bin/python

The TorchJD venv needs `torch`, `torchjd==0.18.*`, `qpsolvers`, `quadprog`
(UPGrad, DualProj), `cvxpy` with `clarabel` (CAGrad) and `ecos` (NashMTL).

What to expect: UPGrad, DualProj (quadprog), CAGrad (Clarabel) solve the
same problems as ours to their solvers' tolerances. MGDA: TorchJD's
Frank-Wolfe (`epsilon=0.001, max_iters=100`) only approaches the exact
minimum-norm point ours returns; the table shows the gap, and how much
larger TorchJD's norm is. NashMTL: TorchJD's sequence of convex programs
(20 at most, from `alpha = 1`) only approaches the bargaining solution ours
solves for; both cap the norm at `max_norm=1`. For NashMTL and CAGrad the
last lines referee the Jacobians where the two differ by more than 1e-3:
each method's own objective, ours minus TorchJD's.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

KINDS = ('conflicting', 'aligned', 'duplicated', 'rank_deficient',
         'scaled_1e4')
AGGREGATORS = ('UPGrad', 'DualProj', 'MGDA', 'CAGrad', 'NashMTL')


def jacobians(kind, heads, columns, count, seed):
  """`count` `[heads, columns]` Jacobians of one kind, seeded."""
  rng = np.random.default_rng(seed)
  result = []
  for _ in range(count):
    common = rng.normal(size=columns)
    noise = rng.normal(size=(heads, columns))
    if kind == 'conflicting':
      signs = rng.choice([-1., 1.], size=(heads, 1))
      jacobian = noise + 2. * signs * common
    elif kind == 'aligned':
      jacobian = 0.3 * noise + common
    elif kind == 'duplicated':
      half = noise[:(heads + 1) // 2] - common
      jacobian = np.concatenate([half, half])[:heads]
    elif kind == 'rank_deficient':
      jacobian = (rng.normal(size=(heads, 2)) @
                  rng.normal(size=(2, columns))) + 0.5 * common
    else:
      jacobian = (noise - common) * np.logspace(0, 4, heads)[:, None]
    result.append(jacobian)
  return np.stack(result)


def torchjd_side(inputs, outputs):
  """Runs in TorchJD's venv: every aggregator on every Jacobian."""
  import torch  # pylint: disable=g-import-not-at-top
  from torchjd import aggregation  # pylint: disable=g-import-not-at-top
  data = np.load(inputs)
  results = {}
  for key in data.files:
    stack = data[key]
    heads = stack.shape[1]
    makers = {
        'UPGrad': aggregation.UPGrad,
        'DualProj': aggregation.DualProj,
        'MGDA': aggregation.MGDA,
        'CAGrad': lambda: aggregation.CAGrad(c=0.5),
        # Fresh for every Jacobian: TorchJD's NashMTL carries state.
        'NashMTL': lambda: aggregation.NashMTL(n_tasks=heads),
    }
    for name, make in makers.items():
      directions = []
      for jacobian in stack:
        directions.append(make()(torch.tensor(jacobian)).numpy())
      results[f'{key}/{name}'] = np.stack(directions)
  np.savez(outputs, **results)


def our_directions(stack):
  """Ours on each Jacobian of `stack`, eagerly, float64."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_multihead import aggregation  # pylint: disable=g-import-not-at-top
  makers = {
      'UPGrad': aggregation.UPGrad,
      'DualProj': aggregation.DualProj,
      'MGDA': aggregation.MGDA,
      'CAGrad': lambda: aggregation.CAGrad(c=0.5),
      'NashMTL': aggregation.NashMTL,
  }
  results = {}
  for name, make in makers.items():
    aggregator = make()
    aggregate = tf.function(aggregator.aggregate)
    results[name] = np.stack([aggregate(tf.constant(jacobian)).numpy()
                              for jacobian in stack])
  return results


def log_product(jacobians_, directions):
  """NashMTL's objective: sum_i log(g_i . d / ||d||), -inf if any <= 0."""
  unit = directions / np.maximum(
      np.linalg.norm(directions, axis=-1, keepdims=True), 1e-300)
  improvements = np.einsum('bkn,bn->bk', jacobians_, unit)
  with np.errstate(divide='ignore', invalid='ignore'):
    return np.where(np.all(improvements > 0., axis=-1),
                    np.sum(np.log(np.abs(improvements)), axis=-1), -np.inf)


def worst_improvement(jacobians_, directions):
  """CAGrad's objective: min_i g_i . d."""
  return np.min(np.einsum('bkn,bn->bk', jacobians_, directions), axis=-1)


def relative_differences(ours, theirs):
  scale = np.maximum(np.linalg.norm(theirs, axis=-1), 1e-300)
  return np.linalg.norm(ours - theirs, axis=-1) / scale


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--torchjd-python',
                      default='/work/torchjd-venv/bin/python')
  parser.add_argument('--heads', default='2,5,16,32')
  parser.add_argument('--columns', type=int, default=50)
  parser.add_argument('--count', type=int, default=10)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--torchjd-side', nargs=2, metavar=('IN', 'OUT'),
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.torchjd_side:
    torchjd_side(*args.torchjd_side)
    return
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  heads_list = [int(heads) for heads in args.heads.split(',')]
  stacks = {}
  for index, kind in enumerate(KINDS):
    for heads in heads_list:
      stacks[f'{kind}/{heads}'] = jacobians(
          kind, heads, args.columns, args.count,
          args.seed + 100 * index + heads)
  with tempfile.TemporaryDirectory() as directory:
    inputs = os.path.join(directory, 'jacobians.npz')
    outputs = os.path.join(directory, 'torchjd.npz')
    np.savez(inputs, **stacks)
    subprocess.run([args.torchjd_python, os.path.abspath(__file__),
                    '--torchjd-side', inputs, outputs], check=True)
    theirs = dict(np.load(outputs))
  print(f'max ||ours - TorchJD|| / ||TorchJD|| over {args.count} Jacobians '
        f'of {args.columns} columns (float64), by kind and heads')
  header = f'{"kind":16s} {"K":>3s} ' + ' '.join(
      f'{name:>9s}' for name in AGGREGATORS)
  print(header)
  overall = {name: 0. for name in AGGREGATORS}
  mgda_norm_ratio = []
  # Where the two differ by more than 1e-3: each method's own objective,
  # ours minus TorchJD's (higher is better for both).
  referee = {'NashMTL': [], 'CAGrad': []}
  for key, stack in stacks.items():
    ours = our_directions(stack)
    kind, heads = key.split('/')
    cells = []
    for name in AGGREGATORS:
      difference = relative_differences(ours[name], theirs[f'{key}/{name}'])
      overall[name] = max(overall[name], float(difference.max()))
      cells.append(f'{difference.max():9.1e}')
      if name in referee:
        objective = log_product if name == 'NashMTL' else worst_improvement
        gain = (objective(stack, ours[name]) -
                objective(stack, theirs[f'{key}/{name}']))
        referee[name].extend(gain[difference > 1e-3])
    mgda_norm_ratio.append(
        np.linalg.norm(theirs[f'{key}/MGDA'], axis=-1) /
        np.maximum(np.linalg.norm(ours['MGDA'], axis=-1), 1e-300))
    print(f'{kind:16s} {heads:>3s} ' + ' '.join(cells))
  print('overall          ' + '    ' + ' '.join(
      f'{overall[name]:9.1e}' for name in AGGREGATORS))
  ratios = np.concatenate(mgda_norm_ratio)
  print(f'MGDA: ||TorchJD|| / ||ours|| (ours is the exact minimum): median '
        f'{np.median(ratios):.4f}, max {ratios.max():.4f}')
  total = len(stacks) * args.count
  for name, what in [('NashMTL', 'sum_i log(g_i . d / ||d||)'),
                     ('CAGrad', 'min_i g_i . d')]:
    gains = np.array(referee[name])
    if not gains.size:
      print(f'{name}: no Jacobian of {total} differs by more than 1e-3')
      continue
    print(f'{name}: {gains.size} of {total} Jacobians differ by more than '
          f'1e-3; ours minus TorchJD\'s {what}: min {gains.min():.3g}, '
          f'median {np.median(gains):.3g}, max {gains.max():.3g} '
          f'(ours higher in {np.sum(gains > 0)})')


if __name__ == '__main__':
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
  main()
