"""A user registers an operator in their own module and searches/trains with it, no edits."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fasterseg.config import load_config
from fasterseg.genotype import Genotype
from fasterseg.models import create_model
from fasterseg.nn import OPS, ConvNorm
from fasterseg.space import SuperNet


@OPS.register("dwsep_test")
class DepthwiseSeparable(nn.Module):
    """1x1 ConvNorm to c_out, then a depthwise 3x3 ConvNorm with the stride."""

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
        self.pw = ConvNorm(c_in, c_out, 1, out_choices=out_choices)
        self.dw = ConvNorm(c_out, c_out, 3, stride, depthwise=True, out_choices=out_choices)

    def forward(self, x: Tensor, c_out: int | None = None) -> Tensor:
        return self.dw(self.pw(x, c_out))


def test_user_operator_through_search_space_decode_and_network(tmp_path):
    cfg_file = tmp_path / "space.yaml"
    cfg_file.write_text(
        "space:\n  layers: 6\n  fch: 4\n  num_classes: 3\n  ops: [conv, dwsep_test, skip]\n"
    )
    cfg = load_config(cfg_file)
    net = SuperNet(cfg.space)
    outs = net(torch.randn(2, 3, 64, 64), "student")
    sum(o.mean() for o in outs).backward()
    dw_weight = net.cells[2][0].keep.ops[1].dw.conv.weight
    assert dw_weight.grad is not None and dw_weight.grad.abs().sum() > 0

    with torch.no_grad():
        for a in net.alphas("student"):
            a[:, 1] = 5.0  # make the user's op the best everywhere
    geno = net.genotype("student", (2, 1))
    assert all(op == "dwsep_test" for b in geno.branches for op in b.ops)
    path = geno.save(tmp_path / "arch.json")
    loaded = Genotype.load(path, op_names=OPS.keys())
    model = create_model(loaded, num_classes=3).eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    assert any(isinstance(m, DepthwiseSeparable) for m in model.modules())
