"""Composite blocks around the cells: the input stem, the fusion (refine) block and the heads.

They are built from the primitive layers and, in the stem's case, from an operator, so this
module sits above both :mod:`fasterseg.nn.layers` and :mod:`fasterseg.nn.ops`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import ConvNorm, resize
from .ops import Conv2x


class Head(nn.Module):
    """3x3 ConvNorm in -> mid, then a 1x1 conv (with bias) to the classes.

    mid = in if in <= 256 else in // 2, as in the reference.
    """

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        mid = c_in if c_in <= 256 else c_in // 2
        self.conv = ConvNorm(c_in, mid, 3)
        self.classifier = nn.Conv2d(mid, num_classes, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> logits (N, num_classes, H, W)."""
        return self.classifier(self.conv(x))


class FusionBlock(nn.Module):
    """Refine a coarse feature with a finer one: 1x1 reduce -> upsample -> concat -> 3x3.

    ``forward(coarse, fine)`` gives ``c_out`` channels at ``fine``'s resolution.
    """

    def __init__(
        self, c_coarse: int, c_fine: int, c_out: int, *, resize_mode: str = "bilinear"
    ) -> None:
        super().__init__()
        self.reduce = ConvNorm(c_coarse, c_out, 1)
        self.fuse = ConvNorm(c_out + c_fine, c_out, 3)
        self.resize_mode = resize_mode

    def forward(self, coarse: Tensor, fine: Tensor) -> Tensor:
        """coarse (N, c_coarse, h, w), fine (N, c_fine, H, W) -> (N, c_out, H, W)."""
        up = resize(self.reduce(coarse), fine.shape[-2:], self.resize_mode)
        return self.fuse(torch.cat([up, fine], dim=1))


class Stem(nn.Module):
    """Input stem to /8: 3x3 ConvNorm 3->c1 stride 2, then two stride-2 ``conv_2x`` ops.

    :func:`fasterseg.arch.stem_channels` gives (c1, c2, c3) for a stem width
    (48/96/96 for the teacher, 32/64/64 for the student).
    """

    def __init__(self, c1: int, c2: int, c3: int) -> None:
        super().__init__()
        self.conv = ConvNorm(3, c1, 3, 2)
        self.down1 = Conv2x(c1, c2, 2)
        self.down2 = Conv2x(c2, c3, 2)
        self.out_channels = c3

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, c3, H/8, W/8)."""
        return self.down2(self.down1(self.conv(x)))
