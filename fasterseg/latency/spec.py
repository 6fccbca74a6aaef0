"""Kernel keys of the latency table and the modules they stand for.

An :class:`OpSpec` names one kernel a network runs: an operator of :data:`fasterseg.nn.OPS`
(``kind`` is its registry name) or one of the network's fixed blocks:

* ``stem``: :class:`~fasterseg.nn.blocks.Stem` 3 -> ``c_mid[0]`` -> ``c_mid[1]`` -> ``c_out``,
  on the full image (``h``, ``w`` = image size);
* ``fusion``: :class:`~fasterseg.nn.blocks.FusionBlock` refining a coarse feature
  (``c_in`` channels at ``h`` x ``w``) with a finer one (``c_fine`` channels at 2h x 2w);
* ``concat``: concatenation of ``c_out // c_in`` branch outputs of ``c_in`` channels each;
* ``ffm``: the 1x1 ConvNorm after the concatenation;
* ``head``: :class:`~fasterseg.nn.blocks.Head` to ``c_out`` classes followed by the resize of
  the logits to the image size (8h x 8w), as the network's forward does.

``h`` and ``w`` are always the kernel's *input* size. The modules are built from the same classes
the networks use, at fixed widths, so a table entry times exactly what a network runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from ..nn.blocks import FusionBlock, Head, Stem
from ..nn.layers import ConvNorm, resize
from ..nn.ops import OPS, build_op

STEM, FUSION, CONCAT, FFM, HEAD = "stem", "fusion", "concat", "ffm", "head"
BLOCK_KINDS = (STEM, FUSION, CONCAT, FFM, HEAD)
#: Output stride of the network: the head's logits are resized by this factor.
OUTPUT_STRIDE = 8
_DTYPES = ("float32", "float16", "bfloat16")
_RESIZE_MODES = ("bilinear", "nearest")


@dataclass(frozen=True)
class OpSpec:
    """The key of one kernel: what it is, its channels, input size, stride and numeric format.

    ``c_fine`` is used by ``fusion`` only and ``c_mid`` (the two intermediate channel counts)
    by ``stem`` only; both stay at their defaults for every other kind.
    """

    kind: str
    c_in: int
    c_out: int
    h: int
    w: int
    stride: int = 1
    dtype: str = "float32"
    resize_mode: str = "bilinear"
    c_fine: int = 0
    c_mid: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.kind or "|" in self.kind or "=" in self.kind:
            raise ValueError(f"OpSpec.kind must be a plain name, got {self.kind!r}")
        for name in ("c_in", "c_out", "h", "w"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"OpSpec.{name} must be a positive integer, got {value!r}")
        if self.stride not in (1, 2):
            raise ValueError(f"OpSpec.stride must be 1 or 2, got {self.stride!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"OpSpec.dtype must be one of {_DTYPES}, got {self.dtype!r}")
        if self.resize_mode not in _RESIZE_MODES:
            raise ValueError(
                f"OpSpec.resize_mode must be one of {_RESIZE_MODES}, got {self.resize_mode!r}"
            )
        object.__setattr__(self, "c_mid", tuple(int(c) for c in self.c_mid))
        if self.kind == STEM and len(self.c_mid) != 2:
            raise ValueError(f"a stem OpSpec needs c_mid=(c1, c2), got {self.c_mid!r}")
        if self.kind == FUSION and self.c_fine <= 0:
            raise ValueError(f"a fusion OpSpec needs c_fine > 0, got {self.c_fine!r}")
        if self.kind == CONCAT and self.c_out % self.c_in:
            raise ValueError(
                f"a concat OpSpec needs c_out a multiple of c_in, got {self.c_in}, {self.c_out}"
            )

    def key(self) -> str:
        """A stable string such as ``conv|c_in=32|c_out=64|h=64|w=128|stride=2|dtype=float32|
        resize=bilinear`` (without the line break); ``c_fine``/``c_mid`` appear when set."""
        parts = [
            self.kind,
            f"c_in={self.c_in}",
            f"c_out={self.c_out}",
            f"h={self.h}",
            f"w={self.w}",
            f"stride={self.stride}",
            f"dtype={self.dtype}",
            f"resize={self.resize_mode}",
        ]
        if self.c_fine:
            parts.append(f"c_fine={self.c_fine}")
        if self.c_mid:
            parts.append("c_mid=" + "x".join(str(c) for c in self.c_mid))
        return "|".join(parts)

    @classmethod
    def from_key(cls, key: str) -> OpSpec:
        """Parse a string made by :meth:`key`; a malformed key raises ValueError naming it."""
        kind, *items = key.split("|")
        values: dict[str, Any] = {"kind": kind}
        names = {"resize": "resize_mode"}
        ints = {"c_in", "c_out", "h", "w", "stride", "c_fine"}
        try:
            for item in items:
                name, value = item.split("=", 1)
                name = names.get(name, name)
                if name in values or name not in {f.name for f in fields(cls)}:
                    raise ValueError(f"unexpected field {name!r}")
                if name in ints:
                    values[name] = int(value)
                elif name == "c_mid":
                    values[name] = tuple(int(c) for c in value.split("x"))
                else:
                    values[name] = value
            spec = cls(**values)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"malformed latency key {key!r}: {exc}") from None
        if spec.key() != key:
            raise ValueError(f"malformed latency key {key!r}: expected {spec.key()!r}")
        return spec

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of the fields."""
        out = asdict(self)
        out["c_mid"] = list(self.c_mid)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "c_mid": tuple(data.get("c_mid", ()))})


class Concat(nn.Module):
    """Concatenate feature maps along channels: k x (N, C, H, W) -> (N, k*C, H, W)."""

    def forward(self, *features: Tensor) -> Tensor:
        """k tensors (N, C_i, H, W) -> (N, sum C_i, H, W)."""
        return torch.cat(features, dim=1)


class HeadOutput(nn.Module):
    """The network's output step: :class:`Head` logits resized to ``OUTPUT_STRIDE`` x the input.

    (N, C, h, w) -> (N, num_classes, 8h, 8w).
    """

    def __init__(self, c_in: int, num_classes: int, resize_mode: str = "bilinear") -> None:
        super().__init__()
        self.head = Head(c_in, num_classes)
        self.resize_mode = resize_mode

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, h, w) -> logits (N, num_classes, 8h, 8w)."""
        size = (x.shape[-2] * OUTPUT_STRIDE, x.shape[-1] * OUTPUT_STRIDE)
        return resize(self.head(x), size, self.resize_mode)


def build_module(spec: OpSpec) -> nn.Module:
    """The module that ``spec`` times, in eval mode and ``spec.dtype``, on the CPU.

    Operators come from :func:`fasterseg.nn.build_op` at fixed width (as in a derived network);
    blocks from the classes :class:`~fasterseg.models.Network` uses. An unknown kind raises
    KeyError listing the registered operators and block kinds.
    """
    if spec.kind == STEM:
        module: nn.Module = Stem(spec.c_mid[0], spec.c_mid[1], spec.c_out)
    elif spec.kind == FUSION:
        module = FusionBlock(spec.c_in, spec.c_fine, spec.c_out, resize_mode=spec.resize_mode)
    elif spec.kind == CONCAT:
        module = Concat()
    elif spec.kind == FFM:
        module = ConvNorm(spec.c_in, spec.c_out, 1)
    elif spec.kind == HEAD:
        module = HeadOutput(spec.c_in, spec.c_out, spec.resize_mode)
    elif spec.kind in OPS:
        module = build_op(
            spec.kind, spec.c_in, spec.c_out, spec.stride, resize_mode=spec.resize_mode
        )
    else:
        raise KeyError(
            f"latency kernel kind {spec.kind!r} is neither a block ({', '.join(BLOCK_KINDS)}) "
            f"nor a registered operator ({', '.join(OPS)})"
        )
    return module.to(getattr(torch, spec.dtype)).eval()


def example_input(
    spec: OpSpec, *, device: torch.device | str = "cpu", seed: int = 0
) -> tuple[Tensor, ...]:
    """Random batch-1 inputs for :func:`build_module` ``(spec)``, on ``device``.

    Shapes: (1, c_in, h, w) for operators, ``ffm``, ``head``; (1, 3, h, w) for ``stem``;
    coarse (1, c_in, h, w) and fine (1, c_fine, 2h, 2w) for ``fusion``; ``c_out // c_in``
    tensors (1, c_in, h, w) for ``concat``.
    """
    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, spec.dtype)

    def rand(c: int, h: int, w: int) -> Tensor:
        return torch.randn(1, c, h, w, generator=gen).to(device=device, dtype=dtype)

    if spec.kind == STEM:
        return (rand(3, spec.h, spec.w),)
    if spec.kind == FUSION:
        return rand(spec.c_in, spec.h, spec.w), rand(spec.c_fine, 2 * spec.h, 2 * spec.w)
    if spec.kind == CONCAT:
        return tuple(rand(spec.c_in, spec.h, spec.w) for _ in range(spec.c_out // spec.c_in))
    return (rand(spec.c_in, spec.h, spec.w),)
