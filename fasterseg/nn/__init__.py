"""Building blocks shared by the supernet and the derived network."""

from .layers import ConvNorm, FusionBlock, Head, SlimConv2d, SwitchableBatchNorm2d, resize
from .ops import OPS, build_op

__all__ = [
    "OPS",
    "ConvNorm",
    "FusionBlock",
    "Head",
    "SlimConv2d",
    "SwitchableBatchNorm2d",
    "build_op",
    "resize",
]
