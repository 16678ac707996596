"""The TF 1.x `tf.contrib.estimator` heads, loaded to test against.

TF 1.15's `tf.contrib.estimator.multi_head` and head factories were last
published in the pure-Python wheel of tensorflow-estimator 1.15.2, as
`tensorflow_estimator/contrib/estimator/python/estimator/{head,multi_head}.py`.
Both modules import only TensorFlow internals and tensorflow-estimator's
canned heads, which 2.15 still has, so they run on TF 2.15 unchanged. The
differential tests load them straight from the wheel (never installing it:
its package name is tensorflow-estimator's) and compare them with
`tensorflow_multihead.contrib`.

`python3.11 run.py` downloads the wheel into `.venv/reference/`; a run
without it downloads it there (or into `$TF_MULTIHEAD_REFERENCE_DIR`) on
first use. The wheel's SHA-256 is checked either way.
"""
import functools
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import types
import zipfile

WHEEL = 'tensorflow_estimator-1.15.2-py2.py3-none-any.whl'
WHEEL_SHA256 = (
    '9aacfb60d1ae87fad506c54c338b4123416ca693d1fdbaa2107c2a64c07da05f')
_MEMBERS = {
    'head': 'tensorflow_estimator/contrib/estimator/python/estimator/head.py',
    'multi_head':
        'tensorflow_estimator/contrib/estimator/python/estimator/'
        'multi_head.py',
}


def reference_dir():
  """Where the wheel is kept: `$TF_MULTIHEAD_REFERENCE_DIR` or the venv's."""
  given = os.environ.get('TF_MULTIHEAD_REFERENCE_DIR')
  if given:
    return pathlib.Path(given)
  return pathlib.Path(sys.prefix) / 'reference'


def fetch_wheel(directory=None):
  """Returns the wheel's path, downloading it with pip when missing."""
  directory = pathlib.Path(directory or reference_dir())
  wheel = directory / WHEEL
  if not wheel.exists():
    try:
      _download(directory)
    except (OSError, subprocess.CalledProcessError) as error:
      raise RuntimeError(
          f'The TF 1.15 reference wheel {WHEEL} is not in {directory} and '
          f'could not be downloaded there ({error}). `python3.11 run.py test` '
          'fetches it into .venv/reference; or download it with '
          '`pip download --no-deps tensorflow-estimator==1.15.2` into a '
          'directory named by $TF_MULTIHEAD_REFERENCE_DIR.') from error
  digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
  if digest != WHEEL_SHA256:
    raise RuntimeError(
        f'{wheel} has SHA-256 {digest}, expected {WHEEL_SHA256}; delete it '
        'to download it again.')
  return wheel


def _download(directory):
  # Into a directory of its own, then moved: test workers starting together
  # must never hash a half-written wheel.
  directory.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=directory) as staging:
    subprocess.run(
        [sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps',
         '--only-binary=:all:', '--disable-pip-version-check',
         '--dest', staging, 'tensorflow-estimator==1.15.2'],
        check=True)
    os.replace(pathlib.Path(staging) / WHEEL, directory / WHEEL)


@functools.lru_cache(maxsize=None)
def modules():
  """Returns TF 1.15's contrib `(head, multi_head)` modules, loaded once."""
  wheel = fetch_wheel()
  with zipfile.ZipFile(wheel) as archive:
    return tuple(_load(f'tf1_reference_{name}', archive, member, wheel)
                 for name, member in _MEMBERS.items())


def _load(module_name, archive, member, wheel):
  # Run from the archive itself: nothing is unpacked to disk.
  module = types.ModuleType(module_name)
  module.__file__ = f'{wheel}/{member}'
  sys.modules[module_name] = module
  code = compile(archive.read(member), module.__file__, 'exec')
  exec(code, module.__dict__)  # pylint: disable=exec-used
  return module


if __name__ == '__main__':
  print(fetch_wheel(sys.argv[1] if len(sys.argv) > 1 else None))
