"""The Hypothesis profiles of the suite, chosen by `HYPOTHESIS_PROFILE`.

`HYPOTHESIS_PROFILE=ci` (set by .ci/run) runs CI's many examples; without it
the suite runs the 'dev' profile, a tenth of them, to stay quick on a laptop.
A profile's `max_examples` is a scale: each Hypothesis test plans its example
count for 'ci' and runs its share of the loaded profile (`examples_for`).
"""
import math
import os

import hypothesis

VARIABLE = 'HYPOTHESIS_PROFILE'
DEFAULT = 'dev'
CI = 'ci'
# Examples CI must run in all, summed over the tests.
CI_MINIMUM = 1000
# Each Hypothesis test records how many examples it ran under this
# `user_properties` name; with xdist, the reports carry it to the controller.
EXAMPLES_PROPERTY = 'hypothesis_examples'

_SHARED = dict(
    deadline=None,
    # The same examples on every run, so that CI is repeatable.
    derandomize=True,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.register_profile(DEFAULT, max_examples=10, **_SHARED)
hypothesis.settings.register_profile(CI, max_examples=100, **_SHARED)


def load_from_environment():
  """Loads the profile `HYPOTHESIS_PROFILE` names; returns its name."""
  name = os.environ.get(VARIABLE) or DEFAULT
  hypothesis.settings.load_profile(name)
  return name


def examples_for(ci_examples, profile=None):
  """How many examples a test planned at `ci_examples` in CI runs.

  Args:
    ci_examples: the test's example count under the 'ci' profile.
    profile: a profile name; the loaded profile if `None`.
  """
  settings = (hypothesis.settings.default if profile is None
              else hypothesis.settings.get_profile(profile))
  scale = hypothesis.settings.get_profile(CI).max_examples
  return math.ceil(ci_examples * settings.max_examples / scale)
