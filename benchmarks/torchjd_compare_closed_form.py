"""Our closed-form aggregators against TorchJD 0.18's, on the same Jacobians.

    python -m benchmarks.torchjd_compare_closed_form \\
        --torchjd-python /work/torchjd-venv/bin/python

A one-off check, outside CI (the project does not depend on PyTorch): this
process (the project's interpreter) builds random Jacobians of several
kinds (float64, or float32 with `--dtype`; TorchJD computes in
`--torchjd-dtype`, by default the same), computes our directions, and runs
itself again under `--torchjd-python` (a venv with torch and torchjd 0.18,
and no TensorFlow) to compute TorchJD's on the same matrices. It prints, for
each aggregator and kind of Jacobian, the largest relative difference
`max |ours - theirs| / max |theirs|`, the denominator at least
`ZERO * max |J|` (where the heads cancel out, both directions are rounding
noise).

The random methods draw from different generators, so TorchJD's draws are
replaced by ours: its `torch.randperm` (PCGrad's and GradVac's visiting
orders), `torch.rand` (GradDrop's thresholds) and `torch.randn` (Random's
normal draws) return, call by call, what our `aggregate` drew at that step
(`projection.visiting_order`, `stochastic` with the same `[seed, step]`).
PCGrad and GradVac are compared both with `shuffle=False` (TorchJD's orders
made the head order) and with `shuffle=True` (TorchJD given our orders).
GradVac runs `STEPS` successive steps on one object, its state carried.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

SEED = 11
STEPS = 3
# A direction below this times the Jacobian's largest entry is 0 up to
# rounding: see `relative_difference`.
ZERO = 1e-6
SIZES = ((2, 7), (3, 20), (5, 40), (8, 100), (8, 5))


def jacobians(rng):
  """`{kind: [STEPS float64 [K, n] matrices] for each size}`."""
  kinds = {}
  for num_heads, width in SIZES:
    def draw(num_heads=num_heads, width=width):
      return rng.normal(size=(num_heads, width))
    cases = {
        'random': [draw() for _ in range(STEPS)],
        # One head pulling against the mean of the others.
        'conflicting': [_conflicting(draw()) for _ in range(STEPS)],
        'aligned': [_aligned(draw(), rng) for _ in range(STEPS)],
        'duplicated': [_duplicated(draw()) for _ in range(STEPS)],
        # The last row a positive combination of the first two.
        'dependent': [_dependent(draw()) for _ in range(STEPS)],
        # Row 1 pulls exactly against row 0: some methods cancel out.
        'opposite': [_opposite(draw()) for _ in range(STEPS)],
        # Rank K // 2, rows mixed at random: heads may cancel out.
        'rank_deficient': [_rank_deficient(draw(), rng)
                           for _ in range(STEPS)],
        'zero_row': [_zero_row(draw()) for _ in range(STEPS)],
        'badly_scaled': [_badly_scaled(draw()) for _ in range(STEPS)],
    }
    for kind, matrices in cases.items():
      kinds.setdefault(kind, []).append(matrices)
  return kinds


def _conflicting(matrix):
  matrix[0] = -matrix[1:].mean(0) * 3. + 0.1 * matrix[0]
  return matrix


def _aligned(matrix, rng):
  common = rng.normal(size=matrix.shape[1])
  return common * rng.uniform(0.5, 2., size=(len(matrix), 1)) + 0.1 * matrix


def _duplicated(matrix):
  matrix[-1] = matrix[0]
  return matrix


def _dependent(matrix):
  matrix[-1] = 0.5 * matrix[0] + 2. * matrix[min(1, len(matrix) - 2)]
  return matrix


def _opposite(matrix):
  matrix[1] = -2. * matrix[0]
  return matrix


def _rank_deficient(matrix, rng):
  rank = max(1, len(matrix) // 2)
  return rng.normal(size=(len(matrix), rank)) @ matrix[:rank]


def _zero_row(matrix):
  matrix[len(matrix) // 2] = 0.
  return matrix


def _badly_scaled(matrix):
  return matrix * np.logspace(-2., 2., len(matrix))[:, np.newaxis]


def ours_configurations():
  """`{label: (make our aggregator, TorchJD constructor as text)}`."""
  from tensorflow_multihead import aggregation  # pylint: disable=g-import-not-at-top
  return {
      'PCGrad(shuffle=False)': (
          lambda: aggregation.PCGrad(shuffle=False), 'PCGrad()'),
      'PCGrad(shuffle=True)': (
          lambda: aggregation.PCGrad(seed=SEED), 'PCGrad()'),
      'GradVac(shuffle=False)': (
          lambda: aggregation.GradVac(shuffle=False), 'GradVac()'),
      'GradVac(beta=0.3, shuffle=True)': (
          lambda: aggregation.GradVac(0.3, seed=SEED), 'GradVac(beta=0.3)'),
      'IMTLG()': (aggregation.IMTLG, 'IMTLG()'),
      'AlignedMTL()': (aggregation.AlignedMTL, 'AlignedMTL()'),
      "AlignedMTL(scale_mode='median')": (
          lambda: aggregation.AlignedMTL(scale_mode='median'),
          "AlignedMTL(scale_mode='median')"),
      "AlignedMTL(scale_mode='rmse')": (
          lambda: aggregation.AlignedMTL(scale_mode='rmse'),
          "AlignedMTL(scale_mode='rmse')"),
      'AlignedMTL(pref_vector=p)': (
          'pref', lambda p: aggregation.AlignedMTL(pref_vector=p),
          'AlignedMTL(pref_vector=p)'),
      'ConFIG()': (aggregation.ConFIG, 'ConFIG()'),
      'ConFIG(pref_vector=p)': (
          'pref', lambda p: aggregation.ConFIG(pref_vector=p),
          'ConFIG(pref_vector=p)'),
      'GradDrop()': (lambda: aggregation.GradDrop(seed=SEED), 'GradDrop()'),
      'GradDrop(f=p*p, leak=l)': (
          'pref', lambda p: aggregation.GradDrop(
              f=lambda purity: purity * purity, leak=p / p.max(),
              seed=SEED),
          'GradDrop(f=lambda x: x * x, leak=p / p.max())'),
      'Random()': (lambda: aggregation.Random(seed=SEED), 'Random()'),
  }


def run_ours(kinds, dtype, torchjd_dtype):
  """Our directions and the draws TorchJD must reproduce, per case."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_multihead.aggregation import projection  # pylint: disable=g-import-not-at-top
  cases = []
  for label, configuration in ours_configurations().items():
    for kind, sizes in kinds.items():
      for size_index, matrices in enumerate(sizes):
        num_heads, width = matrices[0].shape
        preferences = np.linspace(0.5, 1.5, num_heads)
        if configuration[0] == 'pref':
          _, make, torchjd = configuration
          aggregator = make(preferences)
        else:
          make, torchjd = configuration
          aggregator = make()
        directions, draws = [], []
        matrices = [matrix.astype(dtype) for matrix in matrices]
        for step, matrix in enumerate(matrices):
          directions.append(aggregator.aggregate(matrix).numpy())
          seed = tf.constant([SEED, step], tf.int64)
          shuffle = getattr(aggregator, 'shuffle', False)
          draws.append({
              'order': projection.visiting_order(
                  num_heads, seed if shuffle else None).numpy(),
              'uniform': tf.random.stateless_uniform(
                  [width], seed, dtype=dtype).numpy(),
              'normal': tf.random.stateless_normal(
                  [num_heads], seed, dtype=tf.float64).numpy(),
          })
        cases.append({'label': label, 'kind': kind, 'size': size_index,
                      'dtype': torchjd_dtype,
                      'torchjd': torchjd, 'preferences': preferences,
                      'matrices': matrices, 'draws': draws,
                      'ours': directions})
  return cases


def run_torchjd(cases):
  """TorchJD's directions for `cases` (run under the TorchJD venv)."""
  import torch  # pylint: disable=g-import-not-at-top,import-error
  from torchjd import aggregation  # pylint: disable=g-import-not-at-top,import-error
  queue = []
  real = {name: getattr(torch, name) for name in ('randperm', 'rand',
                                                   'randn')}
  for name in real:
    def replaced(*args, name=name, **kwargs):
      del args, kwargs
      expected, value = queue.pop(0)
      assert expected == name, (expected, name)
      return value
    setattr(torch, name, replaced)
  namespace = {name: getattr(aggregation, name) for name in aggregation.__all__}
  results = []
  for case in cases:
    dtype = getattr(torch, case['dtype'])
    preferences = torch.tensor(case['preferences'], dtype=dtype)
    aggregator = eval(case['torchjd'], dict(namespace, p=preferences))  # pylint: disable=eval-used
    directions = []
    for matrix, draws in zip(case['matrices'], case['draws']):
      queue[:] = _torch_draws(case['label'], draws, torch, dtype)
      matrix = torch.tensor(matrix, dtype=dtype)
      directions.append(aggregator(matrix).numpy())
      assert not queue, f'{case["label"]}: draws left unused: {queue}'
    results.append(directions)
  for name, function in real.items():
    setattr(torch, name, function)
  return results


def _torch_draws(label, draws, torch, dtype):
  """What TorchJD's `torch.rand*` calls must return for one step, in order."""
  order = draws['order']
  if label.startswith('PCGrad'):
    # TorchJD permutes all K heads for row i and skips i: put i last.
    return [('randperm', torch.tensor(list(row) + [i]))
            for i, row in enumerate(order)]
  if label.startswith('GradVac'):
    # TorchJD permutes the positions in [0..K-1] without i.
    return [('randperm', torch.tensor([j - (j > i) for j in row]))
            for i, row in enumerate(order)]
  if label.startswith('GradDrop'):
    return [('rand', torch.tensor(draws['uniform'], dtype=dtype))]
  if label.startswith('Random'):
    # Our normals are float64 whatever the Jacobian's dtype.
    return [('randn', torch.tensor(draws['normal'], dtype=dtype))]
  return []


def relative_difference(ours, theirs, matrix):
  """`max |ours - theirs| / max |theirs|`, or `/ (ZERO * max |J|)`.

  The second where TorchJD's direction is below `ZERO * max |J|`: a zero
  direction up to rounding (heads that cancel out), where both sides give
  rounding noise of the Jacobian's scale.
  """
  scale = max(np.abs(theirs).max(), ZERO * np.abs(matrix).max())
  difference = np.abs(ours - theirs).max()
  return float(difference / scale) if scale else float(difference)


def compare(cases, results):
  """`{label: {kind: max relative difference}}`."""
  table = {}
  for case, theirs in zip(cases, results):
    row = table.setdefault(case['label'], {})
    worst = max(relative_difference(ours, their, matrix)
                for ours, their, matrix in zip(case['ours'], theirs,
                                               case['matrices']))
    row[case['kind']] = max(row.get(case['kind'], 0.), worst)
  return table


def print_table(table):
  kinds = list(next(iter(table.values())))
  print('| aggregator | ' + ' | '.join(kinds) + ' | max |')
  print('|---' * (len(kinds) + 2) + '|')
  for label, row in table.items():
    print(f'| {label} | ' + ' | '.join(f'{row[kind]:.1e}' for kind in kinds)
          + f' | {max(row.values()):.1e} |')


def _pack(cases):
  return [{key: (value.tolist() if isinstance(value, np.ndarray) else
                 [m.tolist() for m in value] if key == 'matrices' else
                 [{k: v.tolist() for k, v in d.items()} for d in value]
                 if key == 'draws' else value)
           for key, value in case.items() if key != 'ours'}
          for case in cases]


def _unpack(cases):
  for case in cases:
    case['preferences'] = np.asarray(case['preferences'])
    case['matrices'] = [np.asarray(m) for m in case['matrices']]
    case['draws'] = [{k: np.asarray(v) for k, v in d.items()}
                     for d in case['draws']]
  return cases


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--torchjd-python', default='/work/torchjd-venv/bin/'
                      'python', help='An interpreter with torch and torchjd.')
  parser.add_argument('--dtype', default='float64',
                      choices=['float64', 'float32'],
                      help='The Jacobians\' dtype.')
  parser.add_argument('--torchjd-dtype', choices=['float64', 'float32'],
                      help='The dtype TorchJD computes in (its inputs the '
                      'same values); by default --dtype.')
  parser.add_argument('--torchjd-side', nargs=2, metavar=('CASES', 'OUT'),
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.torchjd_side:
    with open(args.torchjd_side[0], encoding='utf-8') as stream:
      cases = _unpack(json.load(stream))
    results = run_torchjd(cases)
    with open(args.torchjd_side[1], 'w', encoding='utf-8') as stream:
      json.dump([[d.tolist() for d in each] for each in results], stream)
    return 0
  torchjd_dtype = args.torchjd_dtype or args.dtype
  cases = run_ours(jacobians(np.random.default_rng(SEED)), args.dtype,
                   torchjd_dtype)
  with tempfile.TemporaryDirectory() as directory:
    cases_path = os.path.join(directory, 'cases.json')
    out_path = os.path.join(directory, 'torchjd.json')
    with open(cases_path, 'w', encoding='utf-8') as stream:
      json.dump(_pack(cases), stream)
    subprocess.run([args.torchjd_python, os.path.abspath(__file__),
                    '--torchjd-side', cases_path, out_path], check=True)
    with open(out_path, encoding='utf-8') as stream:
      results = [[np.asarray(d) for d in each] for each in json.load(stream)]
  table = compare(cases, results)
  print(f'TorchJD 0.18 ({torchjd_dtype}) vs ours ({args.dtype}), sizes '
        f'(K, n) {list(SIZES)}, {STEPS} steps each: max |ours - theirs| '
        f'/ max(max |theirs|, {ZERO:g} max |J|)')
  print_table(table)
  return 0


if __name__ == '__main__':
  sys.exit(main())
