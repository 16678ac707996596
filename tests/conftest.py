"""Shared test set-up: quiet TensorFlow before anything imports it, load the
Hypothesis profile and report how many Hypothesis examples really ran."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from tests import hypothesis_profiles  # pylint: disable=g-import-not-at-top

_PROFILE = hypothesis_profiles.load_from_environment()
_examples_run = []


def pytest_runtest_logreport(report):
  if report.when == 'call':
    _examples_run.extend(
        value for name, value in report.user_properties
        if name == hypothesis_profiles.EXAMPLES_PROPERTY)


def pytest_terminal_summary(terminalreporter):
  if _examples_run:
    terminalreporter.write_sep(
        '=', f'Hypothesis ran {sum(_examples_run)} examples in '
        f'{len(_examples_run)} tests (profile {_PROFILE!r})')
