"""A repository holding the Python runtime that Bazel's py_tests run on.

`--python_path` wants an absolute path, but the interpreter that has
TensorFlow lives in the checkout (`<repo>/.venv/bin/python`, made by
`python3.11 run.py test`). This rule works that path out at fetch time and
wraps it in a `py_runtime`, which `.bazelrc` selects with `--python_top`.
Setting TF_MULTIHEAD_PYTHON to an interpreter's absolute path overrides it.
"""

_OVERRIDE = "TF_MULTIHEAD_PYTHON"

_BUILD = """\
py_runtime(
    name = "python3",
    interpreter_path = "{interpreter}",
    python_version = "PY3",
    visibility = ["//visibility:public"],
)
"""

def _local_python_impl(repository_ctx):
    interpreter = repository_ctx.os.environ.get(_OVERRIDE, "")
    if not interpreter:
        checkout = repository_ctx.path(Label("//:WORKSPACE")).dirname
        interpreter = "%s/%s" % (checkout, repository_ctx.attr.venv_python)
    if not repository_ctx.path(interpreter).exists:
        fail(("no Python interpreter at %s: run `python3.11 run.py test` " +
              "once to create .venv, or set %s") % (interpreter, _OVERRIDE))
    repository_ctx.file("WORKSPACE", 'workspace(name = "%s")\n' %
                                     repository_ctx.name)
    repository_ctx.file("BUILD", _BUILD.format(interpreter = interpreter))

local_python = repository_rule(
    implementation = _local_python_impl,
    attrs = {
        "venv_python": attr.string(
            default = ".venv/bin/python",
            doc = "The interpreter's path relative to the checkout.",
        ),
    },
    environ = [_OVERRIDE],
    local = True,
)
