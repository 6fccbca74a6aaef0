"""Inference preparation of a derived network: batch norm folded into the convolutions,
in-place ReLUs, channels-last memory format, no auxiliary heads.

The prepared network computes the same function as the eval-mode original up to float
rounding; it is a separate copy and cannot be trained (its batch norms are gone).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from ..nn.layers import ConvNorm
from ..nn.ops import Conv2xDownUp, ConvDownUp, Skip
from .network import Network

log = logging.getLogger(__name__)


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d, channels: slice | None = None) -> None:
    """Fold an eval-mode ``bn`` that follows ``conv`` into the conv's weight and bias, in place.

    ``channels`` selects the slice of ``bn``'s channels that ``conv`` produces (a conv whose
    output is concatenated with others before the batch norm); by default all of them.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm2d without running statistics")
    channels = channels if channels is not None else slice(0, bn.num_features)
    mean = bn.running_mean[channels].double()
    std = torch.sqrt(bn.running_var[channels].double() + bn.eps)
    gamma = bn.weight[channels].double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias[channels].double() if bn.bias is not None else torch.zeros_like(mean)
    if mean.numel() != conv.out_channels:
        raise ValueError(
            f"batch norm slice has {mean.numel()} channels, conv has {conv.out_channels}"
        )
    scale = gamma / std
    w = conv.weight.double() * scale.view(-1, 1, 1, 1)
    b = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    b = (b - mean) * scale + beta
    conv.weight.copy_(w.to(conv.weight.dtype))
    conv.bias = nn.Parameter(b.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)


def prepare_for_inference(model: Network, *, channels_last: bool = True) -> nn.Module:
    """An eval-mode copy of ``model`` optimised for inference; ``model`` is left unchanged.

    Every BatchNorm2d is folded into the Conv2d before it (the stride-2 ``skip``'s batch norm,
    which follows the concatenation of two convs, into both convs, one channel slice each),
    every ReLU works in place, and the training-only auxiliary heads are dropped; the modules
    stay plain ``nn.Conv2d``/``nn.ReLU``, so profilers and exporters see standard layers. With
    ``channels_last`` the weights use the channels-last memory format: NCHW and channels-last
    inputs both work (the first convolution gives channels-last features) and the logits come
    out channels-last. The result maps (N, 3, H, W) to logits (N, num_classes, H, W) equal to
    ``model.eval()(x)`` up to float rounding and cannot be trained. A batch norm outside the
    patterns of the built-in operators (a user-registered operator) stays, with a warning.
    """
    if not isinstance(model, Network):
        raise TypeError(f"prepare_for_inference expects a Network, got {type(model).__name__}")
    net = copy.deepcopy(model).eval()
    # The auxiliary heads run only in training mode; the copy never trains.
    net.aux16 = net.aux32 = None
    for module in list(net.modules()):
        if isinstance(module, ConvNorm) and isinstance(module.bn, nn.BatchNorm2d):
            fold_batchnorm(module.conv, module.bn)
            module.bn = nn.Identity()
        elif isinstance(module, Skip) and module.stride == 2 and not module.slimmable:
            half = module.conv_a.out_channels
            fold_batchnorm(module.conv_a, module.bn, slice(0, half))
            fold_batchnorm(module.conv_b, module.bn, slice(half, module.bn.num_features))
            module.bn = nn.Identity()
        relu = getattr(module, "relu", None)
        if isinstance(module, (ConvNorm, Skip, ConvDownUp, Conv2xDownUp)) and relu is not None:
            # Each of these ReLUs reads a tensor just made by a conv, a concatenation or a
            # resize, which nothing else reads: in place saves writing a new feature map.
            relu.inplace = True
    left = [name for name, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if left:
        log.warning("batch norms not folded (no conv -> bn pattern found): %s", ", ".join(left))
    for p in net.parameters():
        p.requires_grad_(False)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net
