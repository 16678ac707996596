"""Entry point of every Bazel py_test: runs pytest on the given paths.

A test starts in its runfiles tree, whose top holds `pytest.ini`, so pytest
reads the project's own settings (`pythonpath = .`, `--import-mode=importlib`,
doctests) exactly as it does in a checkout.
"""
import os
import sys

import pytest


def bazel_pytest_options(environ):
  """Returns the pytest options that fit a run under `bazel test`."""
  # Bazel keeps its own cache of results; pytest's would land in runfiles.
  options = ['-p', 'no:cacheprovider']
  report_path = environ.get('XML_OUTPUT_FILE')
  if report_path:
    # Bazel reads per-case results from this JUnit file.
    options += ['--junitxml', report_path]
  return options


def main(argv):
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  scratch_dir = os.environ.get('TEST_TMPDIR')
  if scratch_dir:
    # Keeps Hypothesis' example database out of the runfiles tree.
    os.environ.setdefault('HYPOTHESIS_STORAGE_DIRECTORY',
                          os.path.join(scratch_dir, '.hypothesis'))
  return int(pytest.main(bazel_pytest_options(os.environ) + argv[1:]))


if __name__ == '__main__':
  sys.exit(main(sys.argv))
