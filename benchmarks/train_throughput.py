"""Training images per second of the published student and teacher at the demo size,
with torchvision's LR-ASPP MobileNetV3 trained the same way in the same run as the peer.

One step = forward (with auxiliary heads for ours), OHEM cross-entropy, backward, SGD.
Prints one JSON object.

    python benchmarks/train_throughput.py [--threads 2] [--batch 8] [--crop 128x256]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import lraspp, machine, median_seconds


def step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    """A closure doing one training step of ``model`` on (x, y)."""
    from fasterseg.losses import ohem_cross_entropy

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()

    def step() -> None:
        out = model(x)
        outs = out if isinstance(out, tuple) else (out,)
        loss = ohem_cross_entropy(outs[0], y, min_kept=y.numel() // 16)
        for o in outs[1:]:
            loss = loss + 0.2 * ohem_cross_entropy(o, y, min_kept=y.numel() // 16)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    from fasterseg.models import create_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", default="128x256")
    parser.add_argument("--min-time", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.crop.split("x"))
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, h, w)
    y = torch.randint(0, 19, (args.batch, h, w))
    models = {
        "fasterseg-student": create_model("fasterseg-student", aux=True),
        "fasterseg-teacher": create_model("fasterseg-teacher", aux=True),
        "lraspp_mobilenet_v3_large": lraspp(),
    }
    results = {}
    for name, model in models.items():
        s = median_seconds(step_fn(model, x, y), min_time=args.min_time)
        results[name] = {"seconds_per_step": s, "images_per_second": args.batch / s}
    peer = results["lraspp_mobilenet_v3_large"]["images_per_second"]
    for r in results.values():
        r["ratio_to_lraspp"] = r["images_per_second"] / peer
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "machine": machine(),
                "batch": args.batch,
                "crop": [h, w],
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
