"""Benchmarks comparing `MultiHead` with `tf.estimator.MultiHead`.

* `python -m benchmarks.graph_build`: ops and seconds to build
  `create_estimator_spec` for many mixed heads, in every mode.
* `python -m benchmarks.estimator_steps`: train and evaluate steps per second
  of a real `tf.estimator.Estimator`.

They time things, so they are scripts, not tests; `tests/test_benchmarks.py`
only checks that they run and that op counts (which are deterministic) shrink.
"""
