"""Gradient aggregation: the heads' loss gradients into one update direction.

Give `MultiHead(heads, gradient_aggregation=...)` one of these aggregators,
configured with `shared_variables=` or `shared_representation=`.
"""
from tensorflow_multihead.aggregation.balancing import AlignedMTL
from tensorflow_multihead.aggregation.balancing import ConFIG
from tensorflow_multihead.aggregation.balancing import IMTLG
from tensorflow_multihead.aggregation.base import Aggregator
from tensorflow_multihead.aggregation.base import Mean
from tensorflow_multihead.aggregation.cagrad import CAGrad
from tensorflow_multihead.aggregation.dual_cone import DualProj
from tensorflow_multihead.aggregation.dual_cone import UPGrad
from tensorflow_multihead.aggregation.mgda import MGDA
from tensorflow_multihead.aggregation.nash_mtl import NashMTL
from tensorflow_multihead.aggregation.projection import GradVac
from tensorflow_multihead.aggregation.projection import PCGrad
from tensorflow_multihead.aggregation.stochastic import GradDrop
from tensorflow_multihead.aggregation.stochastic import Random

__all__ = [
    'Aggregator',
    'AlignedMTL',
    'CAGrad',
    'ConFIG',
    'DualProj',
    'GradDrop',
    'GradVac',
    'IMTLG',
    'MGDA',
    'Mean',
    'NashMTL',
    'PCGrad',
    'Random',
    'UPGrad',
]
