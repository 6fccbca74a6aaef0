"""Multi-process runs under torchrun (gloo, CPU): N processes compute what one process does."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from fasterseg import distributed as fd
from fasterseg.cli import main
from fasterseg.config import load_config
from fasterseg.data.synth import generate_dataset
from fasterseg.engine.checkpoint import load_checkpoint
from fasterseg.engine.common import kaiming_init, seed_everything
from fasterseg.engine.search import search
from fasterseg.genotype import Branch, Genotype
from fasterseg.losses import ohem_cross_entropy
from fasterseg.models import Network
from fasterseg.space import SuperNet

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "multiproc"))
from collectives import batch  # noqa: E402

sys.path.insert(0, str(HERE))
from test_search import fake_table  # noqa: E402

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)


def torchrun(*args: str, nproc: int = 2, timeout: int = 300) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


#: Both sides compute in float64. A sum of n terms computed in another order differs by at most
#: about n * 2^-53 times the sum of the terms' magnitudes: here n is at most ~1e6 (pixels times
#: channels) with terms of order 1, so 1e-9 relative bounds reordering with a 1e3 margin, while a
#: discrete flip (a ReLU input or an OHEM probability on the other side of its threshold),
#: which float32 rounding makes likely, would need two values within ~1e-15 of each other.
FLOAT64_SUMS = {"rtol": 1e-9, "atol": 1e-12}


def test_one_process_helpers_are_no_ops() -> None:
    t = torch.tensor([1.0, 2.0])
    assert not fd.is_distributed() and fd.rank() == 0 and fd.world_size() == 1 and fd.is_main()
    assert fd.all_reduce_sum(t) is t and torch.equal(fd.all_gather_cat(t), t)
    assert list(fd.shard(5)) == [0, 1, 2, 3, 4]
    bn = nn.BatchNorm2d(3)
    sync = fd.convert_sync_batchnorm(nn.Sequential(bn))[0]
    assert type(sync) is fd.SyncBatchNorm2d and sync.state_dict().keys() == bn.state_dict().keys()
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(sync(x), nn.BatchNorm2d(3)(x))
    # the same tensors: dtype, requires_grad and a module used twice survive the conversion
    shared = nn.BatchNorm2d(3).double().requires_grad_(False)
    net = fd.convert_sync_batchnorm(nn.Sequential(shared, nn.ReLU(), shared))
    assert type(net[2]) is fd.SyncBatchNorm2d and net[0] is net[2]
    assert net[0].weight is shared.weight and net[0].running_var is shared.running_var
    assert net[0].weight.dtype == torch.float64 and not net[0].weight.requires_grad


def test_synced_batch_norm_and_ohem_over_two_processes_match_one(tmp_path: Path) -> None:
    out = tmp_path / "result.pt"
    torchrun(str(HERE / "multiproc" / "collectives.py"), str(out))
    got = torch.load(out, weights_only=True)
    b = batch()

    bn = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    x = b["x"].clone().requires_grad_()
    y = bn(x)
    (y * b["c"]).sum().backward()
    close = FLOAT64_SUMS
    torch.testing.assert_close(got["bn_y"], y.detach(), **close)
    torch.testing.assert_close(got["bn_dx"], x.grad, **close)
    torch.testing.assert_close(got["bn_dweight"], bn.weight.grad, **close)
    torch.testing.assert_close(got["bn_running_mean"], bn.running_mean, **close)
    torch.testing.assert_close(got["bn_running_var"], bn.running_var, **close)

    p_true = F.softmax(b["logits"], 1).gather(1, b["target"].clamp(max=4).unsqueeze(1))
    below = int(((p_true.squeeze(1) <= 0.3) & (b["target"] != 255)).sum())
    assert 4 <= below < 140  # the first case keeps `thresh`, the second needs the k-th value
    for name, min_kept in (("ohem_thresh", 4), ("ohem_kth", 140)):
        logits = b["logits"].clone().requires_grad_()
        loss = ohem_cross_entropy(logits, b["target"], thresh=0.3, min_kept=min_kept)
        loss.backward()
        torch.testing.assert_close(got[f"{name}_loss"], loss.detach(), **close)
        torch.testing.assert_close(got[f"{name}_dlogits"], logits.grad, **close)


TINY = Genotype(
    "tiny", 4, 1.0, 1.0, (0.5, 1.0),
    (
        Branch(("conv", "conv_2x", "conv", "conv"), (0, 0, 1, 2), (1.0, 1.0, 1.0, 1.0)),
        Branch(("conv", "conv_2x", "conv_2x"), (0, 0, 0), (1.0, 0.5, 1.0)),
    ),
)  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, train=8, val=3, size=(64, 128), seed=1)
    return root


def _update_mismatch(one: dict, other: dict, init: dict) -> tuple[float, float]:
    """|w_other - w_one| / |w_one - w_init| (L2) over all weights, and the worst tensor's."""
    keys = [k for k, w in one.items() if w.is_floating_point() and "running" not in k]
    diff = torch.cat([(other[k] - one[k]).flatten() for k in keys]).norm()
    update = torch.cat([(one[k] - init[k]).flatten() for k in keys]).norm()
    worst = max(float((other[k] - one[k]).norm() / (one[k] - init[k]).norm()) for k in keys)
    return float(diff / update), worst


def test_training_on_two_processes_matches_one_process(data: Path, tmp_path: Path) -> None:
    cfg = {
        "data": {"root": str(data), "crop": [64, 128], "scales": [0.75, 1.0], "batch_size": 4,
                 "workers": 0},
        "train": {"epochs": 2, "iters_per_epoch": 2, "lr": 0.01, "ohem_min_kept": 4000,
                  "eval_every": 1},
        "runtime": {"device": "cpu", "seed": 12345, "dtype": "float64"},
    }  # fmt: skip
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    TINY.save(tmp_path / "tiny.json")
    args = ["train", "--config", str(tmp_path / "cfg.yaml"), "--arch", str(tmp_path / "tiny.json")]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    torchrun("-m", "fasterseg", *args, "--out", str(tmp_path / "two"))
    torchrun("-m", "fasterseg", *args, "--out", str(tmp_path / "unsynced"), "runtime.sync_bn=false")

    seed_everything(12345)
    model = Network(TINY, 19, aux=True)
    kaiming_init(model)  # drawn in float32, then widened, as the run does
    init = model.double().state_dict()
    one, two, unsynced = (
        load_checkpoint(tmp_path / name / "last.pt") for name in ("one", "two", "unsynced")
    )
    assert one["model"].keys() == two["model"].keys()
    assert {w.dtype for w in one["model"].values() if w.is_floating_point()} == {torch.float64}
    losses = [[e["loss"] for e in run["history"]] for run in (one, two, unsynced)]
    # In float64 the two runs differ only by summation order (FLOAT64_SUMS); batch
    # statistics per process instead of over the global batch move the losses by 0.4-1 %
    # and the weights as much as training itself does.
    assert losses[1] == pytest.approx(losses[0], rel=FLOAT64_SUMS["rtol"])
    overall, worst = _update_mismatch(one["model"], two["model"], init)
    assert overall < FLOAT64_SUMS["rtol"] and worst < FLOAT64_SUMS["rtol"]
    overall, worst = _update_mismatch(one["model"], unsynced["model"], init)
    assert overall > 0.5 and worst > 1.0
    assert losses[2][-1] != pytest.approx(losses[0][-1], rel=1e-3)
    vals = [run["history"][-1]["val"] for run in (one, two)]
    assert vals[0]["images"] == vals[1]["images"] == 3
    # the same argmax at every pixel: the confusion matrices, hence the scores, are equal
    assert vals[1]["miou"] == vals[0]["miou"]
    # only rank 0 wrote: the same files as one process
    names = [sorted(p.name for p in (tmp_path / n).iterdir()) for n in ("one", "two")]
    assert names[0] == names[1]


def test_search_on_two_processes_matches_one_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_dataset(data, train=10, val=2, size=(64, 128), seed=2)
    raw = {
        "data": {"root": str(data), "label_stride": 8, "workers": 0, "scales": [0.75, 1.0]},
        "space": {"layers": 6, "fch": 4},
        "latency": {"height": 64, "width": 128},
        "search": {"pretrain_epochs": 0, "epochs": 1, "iters_per_epoch": 1, "crop": [64, 128],
                   "batch_size": 4},
        "budget": {"latency_weight": 0.1},
        "runtime": {"device": "cpu", "dtype": "float64"},
    }  # fmt: skip
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "cfg.yaml")
    search(cfg, tmp_path / "one", fake_table(cfg.space), progress=False)
    torchrun(
        str(HERE / "multiproc" / "search_run.py"), str(tmp_path / "cfg.yaml"), str(tmp_path / "two")
    )

    one, two = (load_checkpoint(tmp_path / n / "checkpoint.pt") for n in ("one", "two"))
    arch = [k for k in one["model"] if k.startswith("arch.")]
    assert {k.split("_")[0] for k in arch} == {"arch.teacher", "arch.student"}
    seed_everything(cfg.runtime.seed)
    net = SuperNet(cfg.space)
    kaiming_init(net)
    init = net.double().state_dict()
    for key in arch:
        assert one["model"][key].dtype == torch.float64
        # After one Adam step from zero each entry is about +-arch_lr: compare to that scale.
        torch.testing.assert_close(
            two["model"][key], one["model"][key], rtol=0, atol=cfg.arch.lr * 1e-6
        )
        assert float((one["model"][key] - init[key]).abs().max()) > 1e-4  # it did move

    def close_to_rounding(a: torch.Tensor, b: torch.Tensor, scale: float, what: str) -> None:
        # Relative L2 error of float64 sums taken in another order (FLOAT64_SUMS). A tensor
        # whose terms nearly cancel has a smaller norm than its terms: bound by the terms'
        # scale, the larger of its norm and 1e-6 of the optimiser state's overall norm.
        assert float((b - a).norm()) <= FLOAT64_SUMS["rtol"] * max(float(a.norm()), scale), what

    # The gradients themselves (Adam's first moment, SGD's momentum after one step are
    # proportional to them): architecture and weight gradients averaged over processes.
    for role in ("teacher", "student"):
        states = [run["arch_optimizers"][role]["state"] for run in (one, two)]
        assert states[0].keys() == states[1].keys() and states[0]
        scale = 1e-6 * math.sqrt(sum(float(v["exp_avg"].norm()) ** 2 for v in states[0].values()))
        for k in states[0]:
            close_to_rounding(
                states[0][k]["exp_avg"], states[1][k]["exp_avg"], scale, f"{role} {k}"
            )
    momenta = [run["weight_optimizer"]["state"] for run in (one, two)]
    assert len(momenta[0]) > 50 and momenta[0].keys() == momenta[1].keys()
    bufs = [v["momentum_buffer"] for v in momenta[0].values()]
    scale = 1e-6 * math.sqrt(sum(float(b.norm()) ** 2 for b in bufs))
    for k in momenta[0]:
        close_to_rounding(momenta[0][k]["momentum_buffer"], momenta[1][k]["momentum_buffer"],
                          scale, f"weight {k}")  # fmt: skip
    rows = [run["history"][-1] for run in (one, two)]
    for key in ("loss_weight", "loss_arch_teacher", "loss_arch_student", "latency_term_ms"):
        assert rows[1][key] == pytest.approx(rows[0][key], rel=FLOAT64_SUMS["rtol"]), key
    for role in ("teacher", "student"):
        assert rows[1][role]["miou"] == rows[0][role]["miou"]
    # (Decoded genotypes are not compared: after one Adam step from zero every alpha is
    # +-lr, so argmax decides between exact ties that rounding breaks either way.)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )
