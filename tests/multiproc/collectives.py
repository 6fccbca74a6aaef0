"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2``: synced batch norm
and synced OHEM on each process's half of a fixed batch, in float64; rank 0 saves what every
process computed (gathered) to the file named by argv[1]."""

import sys

import torch
from torch import nn

from fasterseg import distributed as fd
from fasterseg.losses import ohem_cross_entropy


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (4, 6, 7), generator=g)
    target[0, :2] = 255
    return {
        "x": torch.randn(4, 3, 5, 6, generator=g, dtype=torch.float64) * 3 + 1,
        "c": torch.randn(4, 3, 5, 6, generator=g, dtype=torch.float64),
        "logits": torch.randn(4, 5, 6, 7, generator=g, dtype=torch.float64),
        "target": target,
    }


def gather(t: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(t) for _ in range(fd.world_size())]
    torch.distributed.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def main(out: str) -> None:
    with fd.launch(torch.device("cpu")):
        r = fd.rank()
        b = batch()
        share = slice(2 * r, 2 * r + 2)
        result: dict[str, torch.Tensor] = {}
        bn = fd.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3).double()))
        with torch.no_grad():
            bn[0].weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
            bn[0].bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
        x = b["x"][share].clone().requires_grad_()
        y = bn(x)
        (y * b["c"][share]).sum().backward()
        result["bn_y"] = gather(y.detach())
        result["bn_dx"] = gather(x.grad)
        result["bn_dweight"] = fd.all_reduce_sum(bn[0].weight.grad)
        result["bn_running_mean"] = bn[0].running_mean.clone()
        result["bn_running_var"] = bn[0].running_var.clone()
        for name, min_kept in (("ohem_thresh", 4), ("ohem_kth", 140)):
            logits = b["logits"][share].clone().requires_grad_()
            loss = ohem_cross_entropy(
                logits, b["target"][share], thresh=0.3, min_kept=min_kept, synced=True
            )
            loss.backward()
            result[f"{name}_loss"] = fd.global_mean(loss)
            result[f"{name}_dlogits"] = gather(logits.grad / fd.world_size())
        if r == 0:
            torch.save(result, out)


if __name__ == "__main__":
    main(sys.argv[1])
