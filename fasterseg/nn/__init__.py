"""Building blocks shared by the supernet and the derived network.

Imports point one way: :mod:`.layers` (primitives) <- :mod:`.ops` (the registered operators)
<- :mod:`.blocks` (stem, fusion block, head).
"""

from .blocks import FusionBlock, Head, Stem
from .layers import ConvNorm, SlimConv2d, SwitchableBatchNorm2d, resize
from .ops import OPS, Operator, build_op

__all__ = [
    "OPS",
    "ConvNorm",
    "FusionBlock",
    "Head",
    "Operator",
    "SlimConv2d",
    "Stem",
    "SwitchableBatchNorm2d",
    "build_op",
    "resize",
]
