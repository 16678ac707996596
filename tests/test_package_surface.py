"""Every module of the package is reachable as an attribute of it.

`import tensorflow_multihead as tfmh; tfmh.weighting.Uncertainty()` is what
people type first; each check runs in a fresh interpreter, where nothing has
imported the submodule yet.
"""
import pkgutil
import subprocess
import sys

import pytest

import tensorflow_multihead

_MODULES = sorted(module.name for module in
                  pkgutil.iter_modules(tensorflow_multihead.__path__)
                  if not module.name.startswith('_'))


def _run_fresh(code):
  return subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, check=False, timeout=300)


def test_the_public_modules_are_among_them():
  assert {'aggregation', 'base_head', 'contrib', 'masked_head', 'multi_head',
          'weighting'} <= set(_MODULES)


def test_every_module_is_an_attribute_in_a_fresh_interpreter():
  result = _run_fresh(
      'import sys\n'
      'import tensorflow_multihead as tfmh\n'
      f'for name in {_MODULES!r}:\n'
      '  module = getattr(tfmh, name)\n'
      "  assert module is sys.modules['tensorflow_multihead.' + name], name\n"
      "print(type(tfmh.weighting.Uncertainty()).__name__,"
      " type(tfmh.contrib.multi_head).__name__)\n")
  assert result.returncode == 0, result.stderr
  assert result.stdout.split() == ['Uncertainty', 'function']


def test_a_submodule_is_not_imported_before_it_is_asked_for():
  result = _run_fresh(
      'import sys\n'
      'import tensorflow_multihead\n'
      "print('tensorflow_multihead.contrib' in sys.modules)\n")
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == 'False'


def test_an_unknown_attribute_is_an_attribute_error_naming_it():
  with pytest.raises(AttributeError, match="no attribute 'weightings'"):
    tensorflow_multihead.weightings  # pylint: disable=pointless-statement


def test_dir_lists_the_modules():
  assert set(_MODULES) <= set(dir(tensorflow_multihead))
