"""Benchmarks comparing `MultiHead` with `tf.estimator.MultiHead`.

* `python -m benchmarks.graph_build`: ops and seconds to build
  `create_estimator_spec` for many mixed heads, in every mode.
* `python -m benchmarks.estimator_steps`: train and evaluate steps per second
  of a real `tf.estimator.Estimator`.
* `python -m benchmarks.weighting_steps`: a TRAIN step with a learned loss
  weighting (RLW, FAMO, ...) against the plain step, at 1,024 fused heads.
* `python -m benchmarks.plots`: figures of EVAL ops and build time against
  the number of heads (needs the `bench` extra).

The first two compare the reference, our per-head path and our fused path.

They time things, so they are scripts, not tests; `tests/test_benchmarks.py`
only checks that they run and that op counts (which are deterministic) shrink.
"""
