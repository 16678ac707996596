"""Multi-objective heads for TensorFlow Estimator.

`MultiHead` merges several `Head` objects into one: a weighted sum of their
losses, their metrics and predictions keyed by head name, and every head's
serving signatures in one SavedModel. `MaskedHead` wraps a head so that
rows without its label count in neither its loss nor its metrics.
"""
from tensorflow_multihead.base_head import CLASSIFY_SERVING_KEY
from tensorflow_multihead.base_head import DEFAULT_SERVING_KEY
from tensorflow_multihead.base_head import Head
from tensorflow_multihead.base_head import PREDICT_SERVING_KEY
from tensorflow_multihead.base_head import REGRESS_SERVING_KEY
from tensorflow_multihead.masked_head import MaskedHead
from tensorflow_multihead.multi_head import MultiHead

__all__ = [
    'CLASSIFY_SERVING_KEY',
    'DEFAULT_SERVING_KEY',
    'Head',
    'MaskedHead',
    'MultiHead',
    'PREDICT_SERVING_KEY',
    'REGRESS_SERVING_KEY',
]

__version__ = '0.1.0'
