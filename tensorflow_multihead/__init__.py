"""Multi-objective heads for TensorFlow Estimator.

`MultiHead` merges several `Head` objects into one: a weighted sum of their
losses, their metrics and predictions keyed by head name, and every head's
serving signatures in one SavedModel. `MaskedHead` wraps a head so that
rows without its label count in neither its loss nor its metrics;
`ConditionalHead` makes a binary head a funnel step (conversion given
click), trained on every row through the joint probability.

Every module of the package is an attribute of it, imported on first use:

>>> import tensorflow_multihead as tfmh
>>> tfmh.weighting.Uncertainty()  # doctest: +ELLIPSIS
<tensorflow_multihead.weighting.Uncertainty object at ...>
>>> tfmh.aggregation.Mean()
Mean()
"""
import importlib
import pkgutil

from tensorflow_multihead.base_head import CLASSIFY_SERVING_KEY
from tensorflow_multihead.base_head import DEFAULT_SERVING_KEY
from tensorflow_multihead.base_head import Head
from tensorflow_multihead.base_head import PREDICT_SERVING_KEY
from tensorflow_multihead.base_head import REGRESS_SERVING_KEY
from tensorflow_multihead.conditional_head import ConditionalHead
from tensorflow_multihead.masked_head import MaskedHead
from tensorflow_multihead.multi_head import MultiHead

__all__ = [
    'CLASSIFY_SERVING_KEY',
    'ConditionalHead',
    'DEFAULT_SERVING_KEY',
    'Head',
    'MaskedHead',
    'MultiHead',
    'PREDICT_SERVING_KEY',
    'REGRESS_SERVING_KEY',
]

__version__ = '0.1.0'

# The package's modules and subpackages (`weighting`, `aggregation`,
# `contrib`, ...), found on disk so that a new one needs no entry here.
_SUBMODULES = frozenset(
    module.name for module in pkgutil.iter_modules(__path__)
    if not module.name.startswith('_'))


def __getattr__(name):
  """Imports a submodule on first access: `tfmh.contrib`, `tfmh.weighting`.

  Lazily, so that `import tensorflow_multihead` costs no more than the
  modules `MultiHead` needs.
  """
  if name in _SUBMODULES:
    return importlib.import_module(f'{__name__}.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted(set(globals()) | _SUBMODULES)
