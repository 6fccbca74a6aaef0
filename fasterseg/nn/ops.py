"""The FasterSeg candidate operators (method section 1.1), registered in :data:`OPS`.

Every operator subclasses :class:`Operator`, which owns the constructor ``(c_in, c_out, stride,
*, out_choices=None, resize_mode="bilinear")``; a subclass only builds its layers in
:meth:`Operator.build` and defines the forward ``(x, c_out=None) -> Tensor``. The supernet and
the derived network build the same classes; a user adds an operator by registering such a
subclass (see docs/extending.md).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..registry import Registry
from .layers import ConvNorm, make_conv, make_norm, resize, run_conv


class Operator(nn.Module, abc.ABC):
    """A candidate operator: the constructor arguments every operator takes, stored once.

    * ``c_in``/``c_out``: the channel counts (the largest ones when slimmable);
    * ``stride``: 1 keeps the resolution, 2 halves it;
    * ``out_choices`` (supernet only): every output channel count the op may be asked for; the
      op is then :attr:`slimmable` and ``forward`` takes the requested ``c_out`` (the input
      width is read from ``x``). Fixed-width ops (``out_choices=None``) ignore ``c_out``;
    * ``resize_mode``: the interpolation (``bilinear`` or ``nearest``) of an operator that
      resizes its input; a network passes its mode to every operator, and operators that do
      not resize never read it.

    The arguments are attributes of the same names; the constructor then calls :meth:`build`.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int,
        *,
        out_choices: Sequence[int] | None = None,
        resize_mode: str = "bilinear",
    ) -> None:
        super().__init__()
        self.c_in = c_in
        self.c_out = c_out
        self.stride = stride
        self.out_choices = None if out_choices is None else tuple(out_choices)
        self.resize_mode = resize_mode
        self.build()

    @property
    def slimmable(self) -> bool:
        """Whether the op was built for several output widths (``out_choices`` given)."""
        return self.out_choices is not None

    @abc.abstractmethod
    def build(self) -> None:
        """Create the op's layers from the stored constructor arguments."""

    @abc.abstractmethod
    def forward(self, x: Tensor, c_out: int | None = None) -> Tensor:
        """(N, C_in, H, W) -> (N, c_out, H/stride, W/stride); ``c_out`` only when slimmable."""


OPS: Registry[type[Operator]] = Registry("OPS")


def _halved(x: Tensor) -> tuple[int, int]:
    return x.shape[-2] // 2, x.shape[-1] // 2


@OPS.register("skip")
class Skip(Operator):
    """Identity at stride 1 and equal widths; a 1x1 ConvNorm at stride 1 when the width changes
    (always so in the supernet); at stride 2 a factorised reduce: two 1x1 stride-2 convs, on x
    and on x shifted by one pixel, giving half the channels each, concatenated -> BN -> ReLU."""

    def build(self) -> None:
        self.identity = self.stride == 1 and not self.slimmable and self.c_in == self.c_out
        if self.stride == 1 and not self.identity:
            self.proj = ConvNorm(self.c_in, self.c_out, 1, out_choices=self.out_choices)
        elif self.stride == 2:
            half, rest = self.c_out // 2, self.c_out - self.c_out // 2
            self.conv_a = make_conv(self.c_in, half, 1, 2, slimmable=self.slimmable)
            self.conv_b = make_conv(self.c_in, rest, 1, 2, slimmable=self.slimmable)
            self.bn = make_norm(self.c_out, self.out_choices)
            self.relu = nn.ReLU()

    def forward(self, x: Tensor, c_out: int | None = None) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H/stride, W/stride)."""
        if self.identity:
            return x
        if self.stride == 1:
            return self.proj(x, c_out)
        half = None if c_out is None else c_out // 2
        rest = None if c_out is None else c_out - c_out // 2
        a = run_conv(self.conv_a, x, half)
        b = run_conv(self.conv_b, x[:, :, 1:, 1:], rest)
        return self.relu(self.bn(torch.cat([a, b], dim=1)))


@OPS.register("conv")
class Conv(Operator):
    """3x3 conv (stride s) -> BN -> ReLU; no residual add."""

    def build(self) -> None:
        self.conv = ConvNorm(self.c_in, self.c_out, 3, self.stride, out_choices=self.out_choices)

    def forward(self, x: Tensor, c_out: int | None = None) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H/stride, W/stride)."""
        return self.conv(x, c_out)


@OPS.register("conv_2x")
class Conv2x(Operator):
    """3x3 conv (stride s) -> BN -> ReLU -> 3x3 conv -> BN -> ReLU."""

    def build(self) -> None:
        c_out, choices = self.c_out, self.out_choices
        self.conv1 = ConvNorm(self.c_in, c_out, 3, self.stride, out_choices=choices)
        self.conv2 = ConvNorm(c_out, c_out, 3, 1, out_choices=choices)

    def forward(self, x: Tensor, c_out: int | None = None) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H/stride, W/stride)."""
        return self.conv2(self.conv1(x, c_out), c_out)


@OPS.register("conv_downup")
class ConvDownUp(Operator):
    """Zoomed conv: resize to half size -> 3x3 conv -> BN -> [stride 1: resize back] -> ReLU."""

    def build(self) -> None:
        self.conv = ConvNorm(self.c_in, self.c_out, 3, 1, relu=False, out_choices=self.out_choices)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor, c_out: int | None = None) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H/stride, W/stride)."""
        out = self.conv(resize(x, _halved(x), self.resize_mode), c_out)
        if self.stride == 1:
            out = resize(out, x.shape[-2:], self.resize_mode)
        return self.relu(out)


@OPS.register("conv_2x_downup")
class Conv2xDownUp(Operator):
    """Zoomed double conv: resize to half -> conv-BN-ReLU -> conv-BN -> [stride 1: resize back]
    -> ReLU; both convs have stride 1 (the resize does the down-sampling)."""

    def build(self) -> None:
        c_out, choices = self.c_out, self.out_choices
        self.conv1 = ConvNorm(self.c_in, c_out, 3, 1, out_choices=choices)
        self.conv2 = ConvNorm(c_out, c_out, 3, 1, relu=False, out_choices=choices)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor, c_out: int | None = None) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H/stride, W/stride)."""
        out = self.conv2(self.conv1(resize(x, _halved(x), self.resize_mode), c_out), c_out)
        if self.stride == 1:
            out = resize(out, x.shape[-2:], self.resize_mode)
        return self.relu(out)


def build_op(
    name: str,
    c_in: int,
    c_out: int,
    stride: int,
    *,
    out_choices: Sequence[int] | None = None,
    resize_mode: str = "bilinear",
) -> Operator:
    """Build the operator registered as ``name`` (a KeyError lists the registered names)."""
    if stride not in (1, 2):
        raise ValueError(f"operator {name!r}: stride must be 1 or 2, got {stride}")
    return OPS.get(name)(c_in, c_out, stride, out_choices=out_choices, resize_mode=resize_mode)
