"""py_test targets that run pytest, one per test file.

The default `bazel test //...` is meant as a quick check that the project
builds, imports and passes a few tests under Bazel; the full suite runs under
pytest. So a test file runs by default only when it is named in `fast`; every
other file is tagged `slow`, which `.bazelrc` filters out. A new test file is
thus slow until someone promotes it, and never lengthens the default run by
surprise.
"""

_RUNNER = "//bazel:pytest_runner.py"

def pytest_test(name, paths, srcs = [], slow = False, **kwargs):
    """A py_test that runs pytest on `paths` (relative to the checkout).

    Args:
      name: the target's name.
      paths: files or directories handed to pytest.
      srcs: Python files of this target, besides the runner.
      slow: tags the test `slow` (skipped by default) with a long timeout.
      **kwargs: more py_test attributes (deps, data, ...).
    """
    native.py_test(
        name = name,
        srcs = srcs + [_RUNNER],
        main = _RUNNER,
        args = paths,
        legacy_create_init = False,
        python_version = "PY3",
        size = "large" if slow else "medium",
        tags = ["slow"] if slow else [],
        **kwargs
    )

def _stem(path):
    return path.rpartition("/")[2].rpartition(".")[0]

def pytest_per_file(srcs, fast = [], deps = [], data = []):
    """Declares a pytest_test named after each file in `srcs`.

    Args:
      srcs: test files, usually `glob(["test_*.py"])`.
      fast: the files of `srcs` that run by default; the others are slow.
      deps: libraries every test imports.
      data: files every test reads.
    """
    unknown = [name for name in fast if name not in srcs]
    if unknown:
        fail("pytest_per_file: %s named in fast but not in srcs" % unknown)
    for src in srcs:
        pytest_test(
            name = _stem(src),
            paths = ["$(location %s)" % src],
            srcs = [src],
            slow = src not in fast,
            deps = deps,
            data = data,
        )
