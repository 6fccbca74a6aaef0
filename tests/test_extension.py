"""A user registers an operator in their own module and searches/trains with it, no edits."""

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from fasterseg.config import load_config
from fasterseg.genotype import Genotype
from fasterseg.models import create_model
from fasterseg.nn import OPS, ConvNorm, Operator
from fasterseg.space import SuperNet


class DepthwiseSeparable(Operator):
    """1x1 ConvNorm to c_out, then a depthwise 3x3 ConvNorm with the stride."""

    def build(self) -> None:
        self.pw = ConvNorm(self.c_in, self.c_out, 1, out_choices=self.out_choices)
        self.dw = ConvNorm(
            self.c_out, self.c_out, 3, self.stride, depthwise=True, out_choices=self.out_choices
        )

    def forward(self, x: Tensor, c_out: int | None = None) -> Tensor:
        return self.dw(self.pw(x, c_out))


@pytest.fixture
def dwsep() -> Iterator[type[Operator]]:
    """``dwsep_test`` in the global OPS registry for one test; the registry is left as found."""
    before = OPS.keys()
    with OPS.temporarily("dwsep_test", DepthwiseSeparable) as cls:
        yield cls
    assert OPS.keys() == before


def test_user_operator_through_search_space_decode_and_network(tmp_path, dwsep):
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
    assert any(isinstance(m, dwsep) for m in model.modules())


def test_user_operator_gets_the_constructor_from_the_base(dwsep):
    op = dwsep(8, 16, 2, out_choices=[8, 16])
    assert (op.c_in, op.c_out, op.stride, op.out_choices, op.slimmable) == (8, 16, 2, (8, 16), True)
    assert op(torch.randn(1, 8, 6, 6), 8).shape == (1, 8, 3, 3)
    assert sorted(n for n, _ in op.named_children()) == ["dw", "pw"]
