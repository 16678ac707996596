#!/usr/bin/env bash
# Runs `bazel test //...` offline with Debian's bazel-bootstrap (4.2.3).
# Installs what it needs when missing (as root on Debian), reuses the
# project's .venv (made by `python3.11 run.py`), and exits non-zero when the
# build or a test fails. Extra arguments go to `bazel test`, e.g.
#   bash .ci/bazel_test.sh --test_tag_filters=     # every test file
set -euo pipefail
cd "$(dirname "$0")/.."

readonly RULES_JAVA=/usr/share/bazel/rules/java
# Progress lines of Bazel's output; failures and the test summary stay.
readonly NOISE='^(Loading|Analyzing|INFO: (Analyzed|Found|From|Elapsed))'

if ! command -v bazel >/dev/null || [[ ! -d "${RULES_JAVA}" ]]; then
  echo '[bazel_test] installing bazel-bootstrap and bazel-rules-java'
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq bazel-bootstrap bazel-rules-java >/dev/null
fi

if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import pytest' \
    2>/dev/null; then
  echo '[bazel_test] preparing .venv through run.py'
  python3.11 -c 'import run; run.ensure_environment()'
fi
# The TF 1.x reference wheel that test_contrib_differential reads, fetched
# here because the Bazel sandbox may not write to .venv.
.venv/bin/python tests/support/tf1_reference.py >/dev/null

# The server is stopped on the way out so that it does not hold memory.
trap 'bazel shutdown >/dev/null 2>&1 || true' EXIT

echo '[bazel_test] bazel test //...'
set +o errexit
bazel test --config=ci //... "$@" 2>&1 | grep -v -E "${NOISE}"
status="${PIPESTATUS[0]}"
set -o errexit
exit "${status}"
