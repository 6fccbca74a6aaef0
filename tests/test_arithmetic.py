"""fasterseg.arch against the numbers of the method (docs: fasterseg-method.md, sections 1.2-1.5
and the published student/teacher tables), worked out by hand."""

import subprocess
import sys

import pytest

from fasterseg import arch, genotype
from fasterseg.arch import (
    NUM_SCALES,
    cell_inputs,
    cell_scales,
    channels,
    has_down,
    layer_channels,
    nf,
    ratio_row,
    ratio_rows,
    role_widths,
    scale_rate,
    stem_channels,
)
from fasterseg.config import SpaceConfig

FCH = 12  # the paper's base channels


def test_three_scales():
    assert NUM_SCALES == 3
    assert [scale_rate(s) for s in range(NUM_SCALES)] == [8, 16, 32]


def test_nf_rounds_rate_times_fch_times_width():
    assert [nf(r, 1.0, FCH) for r in (2, 4, 8, 16, 32)] == [24, 48, 96, 192, 384]
    assert nf(8, 10 / 12, 4) == 27  # 26.67 rounds up
    assert nf(2, 8 / 12, FCH) == 16


def test_genotype_reexports_the_arch_definitions():
    assert (genotype.NUM_SCALES, genotype.nf, genotype.scale_rate) == (
        arch.NUM_SCALES,
        arch.nf,
        arch.scale_rate,
    )


def test_arch_imports_neither_torch_nor_the_rest_of_the_package():
    # arch sits below genotype (which imports it), so it must not import genotype back
    code = (
        "import sys, fasterseg.arch\n"
        "print('torch' in sys.modules, sorted(m for m in sys.modules if m.startswith('fasterseg')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False ['fasterseg', 'fasterseg.arch']"


def test_channels_at_full_and_reduced_width():
    # nf(rate, w) = round(rate * 12 * w): 96/192/384 at width 1; 32/64/128 at 4/12.
    assert [channels(s, 1.0, FCH) for s in range(3)] == [96, 192, 384]
    assert [channels(s, 4 / 12, FCH) for s in range(3)] == [32, 64, 128]
    assert channels(2, 8 / 12, FCH) == 256  # the student's /32 output at head width 8/12
    assert channels(0, 10 / 12, 4) == round(8 * 4 * 10 / 12) == 27


def test_stem_channels_of_teacher_and_student():
    # 2*nf(2, w), 2*nf(4, w), nf(8, w): 2*24, 2*48, 96 at w=1 and 2*16, 2*32, 64 at w=8/12.
    assert stem_channels(1.0, FCH) == (48, 96, 96)
    assert stem_channels(8 / 12, FCH) == (32, 64, 64)


@pytest.mark.parametrize(
    ("scale", "stride", "w_in", "w_out", "expected"),
    [
        (0, 1, 8 / 12, 4 / 12, (64, 32)),  # student layer 0: conv_2x /8 reads the stem, 64->32
        (0, 2, 4 / 12, 8 / 12, (32, 128)),  # branch A layer 3: /8 -> /16, 32->128
        (1, 2, 4 / 12, 4 / 12, (64, 128)),  # branch A layer 7: /16 -> /32, 64->128
        (1, 1, 4 / 12, 1.0, (64, 192)),  # branch B layer 7: /16, 64->192
        (2, 1, 4 / 12, 8 / 12, (128, 256)),  # branch A layer 9 (last): head width at /32
        (0, 1, 1.0, 1.0, (96, 96)),  # teacher layer 0 after its 96-channel stem
    ],
)
def test_layer_channels_of_the_published_student(scale, stride, w_in, w_out, expected):
    assert layer_channels(scale, stride, w_in, w_out, FCH) == expected


def test_cells_per_layer_and_down_ops():
    # L = 16: /8 cells at layers 0..15, /16 at 1..15, /32 at 2..15.
    assert [list(cell_scales(i)) for i in range(4)] == [[0], [0, 1], [0, 1, 2], [0, 1, 2]]
    assert list(cell_scales(15)) == [0, 1, 2]
    # No down op at /32 or in the last layer: 15 at /8 (layers 0..14) + 14 at /16 (1..14).
    downs = [(i, s) for i in range(16) for s in cell_scales(i) if has_down(s, i, 16)]
    assert len(downs) == 29
    assert not has_down(2, 5, 16) and not has_down(0, 15, 16) and has_down(1, 14, 16)


def test_cell_inputs_follow_the_paper():
    keep = {0: "keep0", 1: "keep1", 2: "keep2"}
    down = {1: "down1", 2: "down2"}
    # betas[s - 1][row] = (from-down weight, from-keep weight), labelled by scale and row
    betas = [[(f"d{s}.{r}", f"k{s}.{r}") for r in range(16)] for s in (1, 2)]
    assert cell_inputs(0, 0, keep, down, betas) == [("keep0", 1.0)]
    assert cell_inputs(9, 0, keep, down, betas) == [("keep0", 1.0)]
    assert cell_inputs(1, 1, keep, down, betas) == [("down1", 1.0)]
    assert cell_inputs(2, 2, keep, down, betas) == [("down2", 1.0)]
    assert cell_inputs(2, 1, keep, down, betas) == [("down1", "d1.0"), ("keep1", "k1.0")]
    assert cell_inputs(3, 2, keep, down, betas) == [("down2", "d2.0"), ("keep2", "k2.0")]
    assert cell_inputs(15, 1, keep, down, betas) == [("down1", "d1.13"), ("keep1", "k1.13")]
    assert cell_inputs(15, 2, keep, down, betas) == [("down2", "d2.12"), ("keep2", "k2.12")]


def test_beta_rows_used_match_the_beta_shapes():
    # beta_1 is (14, 2) for the /16 cells at layers 2..15, beta_2 (13, 2) for /32 at 3..15.
    betas = [[(("d", s, r), ("k", s, r)) for r in range(16)] for s in (1, 2)]
    rows: dict[int, set[int]] = {1: set(), 2: set()}
    for i in range(16):
        for s in cell_scales(i):
            inputs = cell_inputs(i, s, {0: 0, 1: 1, 2: 2}, {1: 1, 2: 2}, betas)
            if len(inputs) == 2:
                rows[s].add(inputs[0][1][2])
    assert rows == {1: set(range(14)), 2: set(range(13))}


def test_ratio_rows_and_rows_of_each_output():
    # ratio_s is (15, K), (15, K), (14, K); ratio_s[k] is the width made at scale s by layer k
    # (s = 0, 1) or by layer k + 1 (s = 2).
    assert [ratio_rows(s, 16) for s in range(3)] == [15, 15, 14]
    assert (ratio_row(0, 7), ratio_row(1, 7), ratio_row(2, 7)) == (7, 7, 6)
    assert ratio_row(2, 1) == 0 and ratio_row(2, 14) == ratio_rows(2, 16) - 1
    assert ratio_row(0, 14) == ratio_rows(0, 16) - 1


def test_role_widths():
    space = SpaceConfig()
    assert role_widths(space, "teacher") == (1.0, 1.0)
    assert role_widths(space, "student") == (8 / 12, 8 / 12)
    custom = SpaceConfig(student_stem_width=0.5, student_head_width=10 / 12)
    assert role_widths(custom, "student") == (0.5, 10 / 12)
    with pytest.raises(ValueError, match="'pupil'"):
        role_widths(space, "pupil")
