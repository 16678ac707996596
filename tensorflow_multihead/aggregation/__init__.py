"""Gradient aggregation: the heads' loss gradients into one update direction.

Give `MultiHead(heads, gradient_aggregation=...)` one of these aggregators,
configured with `shared_variables=` or `shared_representation=`.
"""
from tensorflow_multihead.aggregation.base import Aggregator
from tensorflow_multihead.aggregation.base import Mean

__all__ = [
    'Aggregator',
    'Mean',
]
