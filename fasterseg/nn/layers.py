"""Primitive layers, fixed-width or slimmable: the bottom of ``fasterseg.nn``.

The operators (:mod:`fasterseg.nn.ops`) are built from these and the composite blocks
(:mod:`fasterseg.nn.blocks`) from both; this module imports neither.

Slimmable layers hold weights for the largest width; a forward pass uses the input's channel
count and the requested output channel count (weights sliced, one batch norm per output width).
Fixed-width layers are plain ``nn.Conv2d``/``nn.BatchNorm2d`` so that profilers, exporters and
batch-norm folding see standard modules.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def resize(x: Tensor, size: Sequence[int], mode: str = "bilinear") -> Tensor:
    """Resize (N, C, H, W) to ``size`` = (h, w); bilinear uses align_corners=True as published."""
    if not torch.jit.is_tracing():  # traced sizes must stay symbolic for dynamic ONNX axes
        size = (int(size[0]), int(size[1]))
        if tuple(x.shape[-2:]) == size:
            return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode=mode, align_corners=True)


class SlimConv2d(nn.Conv2d):
    """A Conv2d whose forward slices its weight to the input's channels and ``c_out`` outputs.

    A depthwise slimmable conv (``groups == in_channels``) uses as many groups as input channels.
    """

    def forward(self, x: Tensor, c_out: int | None = None) -> Tensor:  # type: ignore[override]
        c_in = x.shape[1]
        depthwise = self.groups == self.in_channels and self.groups > 1
        if depthwise:
            c_out = c_in
        c_out = self.out_channels if c_out is None else c_out
        if c_out > self.out_channels or (not depthwise and c_in > self.in_channels):
            raise ValueError(
                f"SlimConv2d built for {self.in_channels}->{self.out_channels} channels "
                f"was asked for {c_in}->{c_out}"
            )
        weight = self.weight[:c_out] if depthwise else self.weight[:c_out, :c_in]
        bias = self.bias[:c_out] if self.bias is not None else None
        return F.conv2d(
            x, weight, bias, self.stride, self.padding, self.dilation, c_in if depthwise else 1
        )


class SwitchableBatchNorm2d(nn.Module):
    """One BatchNorm2d per possible channel count; the input's channel count picks it."""

    def __init__(self, channel_choices: Sequence[int]) -> None:
        super().__init__()
        self.choices = tuple(sorted(set(int(c) for c in channel_choices)))
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in self.choices)

    def forward(self, x: Tensor) -> Tensor:
        try:
            idx = self.choices.index(x.shape[1])
        except ValueError:
            raise ValueError(
                f"no batch norm for {x.shape[1]} channels; widths built: {self.choices}"
            ) from None
        return self.bns[idx](x)


def make_conv(
    c_in: int, c_out: int, kernel: int, stride: int = 1, *, slimmable: bool, groups: int = 1
) -> nn.Conv2d:
    """A bias-free k x k conv with padding k//2: slimmable or a plain ``nn.Conv2d``."""
    cls = SlimConv2d if slimmable else nn.Conv2d
    return cls(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)


def make_norm(c_out: int, out_choices: Sequence[int] | None) -> nn.Module:
    """BatchNorm2d, or one per channel choice when ``out_choices`` is given (slimmable)."""
    return SwitchableBatchNorm2d(out_choices) if out_choices is not None else nn.BatchNorm2d(c_out)


def run_conv(conv: nn.Conv2d, x: Tensor, c_out: int | None) -> Tensor:
    """Apply a conv built by :func:`make_conv`, passing ``c_out`` only to slimmable ones."""
    return conv(x, c_out) if isinstance(conv, SlimConv2d) else conv(x)


class ConvNorm(nn.Module):
    """Conv(k x k, stride, padding k//2, no bias) -> BatchNorm -> optional ReLU.

    ``out_choices`` makes it slimmable: the output may be any of those channel counts (the
    largest is ``c_out``); ``forward(x, c_out)`` then picks one. ``depthwise`` uses one group
    per input channel (``c_out`` must equal ``c_in``; a slimmable depthwise conv outputs as many
    channels as it receives, so its ``out_choices`` are the possible input widths).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 3,
        stride: int = 1,
        *,
        relu: bool = True,
        depthwise: bool = False,
        out_choices: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if depthwise and c_in != c_out:
            raise ValueError(f"a depthwise ConvNorm needs c_in == c_out, got {c_in}, {c_out}")
        self.conv = make_conv(
            c_in,
            c_out,
            kernel,
            stride,
            slimmable=out_choices is not None,
            groups=c_in if depthwise else 1,
        )
        self.bn = make_norm(c_out, out_choices)
        self.relu = nn.ReLU(inplace=False) if relu else None

    def forward(self, x: Tensor, c_out: int | None = None) -> Tensor:
        """(N, C_in, H, W) -> (N, c_out, H/stride, W/stride)."""
        x = self.bn(run_conv(self.conv, x, c_out))
        return self.relu(x) if self.relu is not None else x
