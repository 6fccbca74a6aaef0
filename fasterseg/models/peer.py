"""The peer every comparison uses: torchvision's LR-ASPP MobileNetV3-Large (random weights)."""

from __future__ import annotations

from torch import Tensor, nn


class LRASPPLogits(nn.Module):
    """LR-ASPP MobileNetV3-Large with random weights (nothing downloaded), returning the logit
    tensor (N, num_classes, H, W) as fasterseg's networks do, instead of a dict."""

    def __init__(self, num_classes: int = 19) -> None:
        super().__init__()
        from torchvision.models.segmentation import lraspp_mobilenet_v3_large

        self.model = lraspp_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=num_classes
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> logits (N, num_classes, H, W)."""
        return self.model(x)["out"]
