"""One entry point for a fresh machine: `python3.11 run.py demo|test [args]`.

Creates `.venv` beside this file on first use, installs the project into it
(with its `test`, `demo` and `bench` extras), then runs the demo or the test suite in
it; for the tests it first fetches the TF 1.x reference they compare against
(`tests/support/tf1_reference.py`). The install is redone only when
`setup.py` changes.
"""
import hashlib
import os
import pathlib
import subprocess
import sys
import venv

ROOT = pathlib.Path(__file__).resolve().parent
VENV = ROOT / '.venv'
STAMP = VENV / '.install-stamp'


def _venv_python():
  return VENV / 'bin' / 'python'


def _wanted_stamp():
  return hashlib.sha256((ROOT / 'setup.py').read_bytes()).hexdigest()


def ensure_environment():
  """Builds or refreshes the virtual environment; returns its interpreter."""
  if not _venv_python().exists():
    print(f'[run.py] creating virtual environment in {VENV}', flush=True)
    venv.EnvBuilder(with_pip=True).create(VENV)
  if not STAMP.exists() or STAMP.read_text() != _wanted_stamp():
    print('[run.py] installing tensorflow-multihead with its test, demo and '
          'bench extras (first run takes a few minutes)', flush=True)
    pip = [str(_venv_python()), '-m', 'pip', '--disable-pip-version-check']
    subprocess.run(pip + ['install', '-q', '--upgrade', 'pip'], check=True)
    subprocess.run(pip + ['install', '-q', '-e', f'{ROOT}[test,demo,bench]'],
                   check=True)
    STAMP.write_text(_wanted_stamp())
  return str(_venv_python())


def fetch_test_reference(python):
  """Fetches the TF 1.x contrib heads that the tests compare against.

  tests/test_contrib_differential.py runs them side by side with ours; they
  come in a wheel kept in .venv/reference, never installed. The demo does
  not need them.
  """
  subprocess.run([python, str(ROOT / 'tests' / 'support' / 'tf1_reference.py')],
                 check=True, stdout=subprocess.DEVNULL)


COMMANDS = {
    'demo': ['-m', 'examples.demo'],
    'test': ['-m', 'pytest', '-n', '2', '--dist', 'loadgroup'],
}


def main(argv):
  if len(argv) < 2 or argv[1] not in COMMANDS:
    print(f'usage: python3.11 run.py {{{"|".join(COMMANDS)}}} [extra args]')
    return 2
  python = ensure_environment()
  if argv[1] == 'test':
    fetch_test_reference(python)
  command = [python] + COMMANDS[argv[1]] + argv[2:]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == '__main__':
  sys.exit(main(sys.argv))
