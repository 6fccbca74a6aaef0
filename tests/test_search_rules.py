"""The search loop's rules, with expectations worked out by hand (method sections 3-5, 10).

Lambda's update, the isolation of architecture and weight steps, the pretraining sandwich,
the choice of branch pairs, best- versus last-epoch architecture files, and that a short
search on synthetic scenes learns (mIoU up, architecture entropy down).
"""

import copy
import json
import math
import shutil

import pytest
import torch
from test_search import _cfg, fake_table

from fasterseg.config import BudgetConfig, ReferenceConfig, SelectionConfig
from fasterseg.data.synth import generate_dataset
from fasterseg.engine import run
from fasterseg.engine import search as search_mod
from fasterseg.engine.search import (
    choose_pairs,
    evaluate_heads,
    next_lambda,
    search,
    split_indices,
)
from fasterseg.genotype import Genotype
from fasterseg.space import HEAD_NAMES, Role, SuperNet, WidthMode
from fasterseg.space.supernet import WidthSample

H, W = 64, 128


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, train=6, val=4, size=(H, W), seed=2)
    return root


def _snapshot(net):
    return {k: p.detach().clone() for k, p in net.named_parameters()}


def _changed(net, before, prefix=""):
    """Names of the parameters under ``prefix`` that differ from ``before`` (bit for bit)."""
    return {
        k
        for k, p in net.named_parameters()
        if k.startswith(prefix) and not torch.equal(p, before[k])
    }


def _names(net, prefix=""):
    return {k for k, _ in net.named_parameters() if k.startswith(prefix)}


def _tiny_net(cfg):
    rt = run.Runtime.create(torch.device("cpu"), cfg.runtime)
    return run.init_model(lambda: SuperNet(cfg.space), cfg.runtime.seed, rt), rt


def _batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(2, 3, H, W, generator=gen)
    mask = torch.randint(0, 19, (2, H // 8, W // 8), generator=gen)
    return image, mask


# ---------------------------------------------------------------- lambda

WINDOW = (6.0, 8.0)


@pytest.mark.parametrize(
    ("latencies", "expected"),
    [
        ((5.0, 7.0), 0.125),  # one candidate too fast: halve
        ((6.0, 7.0), 0.125),  # at the lower edge counts as too fast
        ((7.0, 9.0), 0.5),  # one candidate too slow: double
        ((8.0, 7.0), 0.5),  # at the upper edge counts as too slow
        ((6.5, 7.5), 0.25),  # both inside: stay
        ((6.000001, 7.999999), 0.25),  # just inside both edges
        ((6.0, 8.0), 0.125),  # on both edges: the too-fast test comes first
        ((9.0, 5.0), 0.125),  # straddling the window: halve
    ],
)
def test_lambda_follows_the_reference_rule(latencies, expected):
    assert next_lambda(latencies, 0.25, WINDOW) == expected


def test_lambda_halves_at_exactly_the_papers_175_fps():
    # FPS >= 175 halves in the reference: 1000/175 ms is on the lower edge of the default window.
    window = BudgetConfig().absolute_window_ms()  # no window given: the paper's
    assert next_lambda([1000 / 175, 7.0], 0.01, window) == 0.005
    assert next_lambda([1000 / 155, 6.0], 0.01, window) == 0.02


@pytest.mark.parametrize(
    ("lam", "cap", "expected"),
    [
        (0.25, 0.4, 0.4),  # doubling would pass the cap: stop at it
        (0.4, 0.4, 0.4),  # at the cap: stay
        (0.1, 0.4, 0.2),  # below the cap: double
    ],
)
def test_lambda_doubles_at_most_to_the_cap(lam, cap, expected):
    assert next_lambda((7.0, 9.0), lam, WINDOW, cap) == expected
    assert next_lambda((5.0, 9.0), lam, WINDOW, cap) == lam / 2  # halving ignores the cap


# ---------------------------------------------------------------- branch pairs

SELECT = SelectionConfig(target_ms=10.0, objective_exponent=-0.07)


def _pairs(miou20, ms20, miou21, ms21):
    return {"20": {"miou": miou20, "latency_ms": ms20}, "21": {"miou": miou21, "latency_ms": ms21}}


# 2 ** -0.07 = 0.95264, 4 ** -0.07 = 0.90752, 0.5 ** -0.07 = 1.04971
TEACHER = _pairs(0.58, 10.0, 0.60, 40.0)


@pytest.mark.parametrize(
    ("student", "pair"),
    [
        # 0.50 * 1 = 0.500 beats 0.52 * 0.95264 = 0.4954: the faster, less accurate pair
        (_pairs(0.50, 10.0, 0.52, 20.0), "20"),
        # 0.40 loses to 0.4954: the slower, more accurate pair
        (_pairs(0.40, 10.0, 0.52, 20.0), "21"),
        # a pair faster than the target gains: 0.48 * 1.04971 = 0.5039 beats 0.50
        (_pairs(0.50, 10.0, 0.48, 5.0), "21"),
        # equal objectives: the reference keeps [2,1] (``[2,0] if obj02 > obj12 else [2,1]``)
        (_pairs(0.50, 10.0, 0.50, 10.0), "21"),
    ],
)
def test_student_pair_maximises_the_objective(student, pair):
    candidates = {Role.STUDENT: student, Role.TEACHER: TEACHER}
    ref = ReferenceConfig(teacher_pair_from_student=True)
    assert choose_pairs(candidates, SELECT, ref) == (pair, pair)


def test_teacher_pair_follows_the_reference_switch():
    # The student's objective picks "20" (0.500 vs 0.4954); the teacher's own best mIoU is
    # "21" (0.60 vs 0.58) although its objective would pick "20" (0.58 vs 0.60 * 0.90752 = 0.5445).
    candidates = {Role.STUDENT: _pairs(0.50, 10.0, 0.52, 20.0), Role.TEACHER: TEACHER}
    reference = ReferenceConfig(teacher_pair_from_student=True)
    assert choose_pairs(candidates, SELECT, reference) == ("20", "20")
    own = ReferenceConfig(teacher_pair_from_student=False)
    assert choose_pairs(candidates, SELECT, own) == ("20", "21")


# ---------------------------------------------------------------- step isolation


def test_arch_and_weight_steps_touch_only_their_own_parameters(data, tmp_path, monkeypatch):
    """Inside a real search (optimisers as ``search`` builds them): an architecture step moves
    both roles' architecture parameters, no weight, and leaves no weight gradient (the
    reference's commit 478b026); a weight step moves weights, no architecture parameter, and
    leaves no architecture gradient."""
    calls = {"arch": 0, "weight": 0}
    arch_step, weight_step = search_mod._arch_step, search_mod._weight_step

    def checked_arch_step(net, *args, **kwargs):
        before = _snapshot(net)
        parts = arch_step(net, *args, **kwargs)
        # every alpha, beta and ratio of both roles moves, and nothing else
        assert _changed(net, before) == _names(net, "arch.")
        assert all(p.grad is None for p in net.weight_parameters()), "weight gradients left"
        calls["arch"] += 1
        return parts

    def checked_weight_step(net, *args, **kwargs):
        before = _snapshot(net)
        loss = weight_step(net, *args, **kwargs)
        changed = _changed(net, before)
        assert changed and not changed & _names(net, "arch."), "an arch parameter moved"
        assert all(p.grad is None for p in net.arch.parameters()), "arch gradients left"
        calls["weight"] += 1
        return loss

    monkeypatch.setattr(search_mod, "_arch_step", checked_arch_step)
    monkeypatch.setattr(search_mod, "_weight_step", checked_weight_step)
    cfg = _cfg(data, pretrain_epochs=1, epochs=1, iters_per_epoch=2)
    search(cfg, tmp_path, fake_table(cfg.space), progress=False)
    assert calls == {"arch": 2, "weight": 4}  # no arch step while pretraining


def test_latency_term_reaches_only_the_students_arch_parameters(data):
    """The same architecture step from the same state, with lambda 0 and 1000: the teacher's
    gradients and update are bit for bit the same; every student alpha, beta and ratio differs."""
    cfg = _cfg(data, {"arch": {"lr": 0.05}})
    table = fake_table(cfg.space)
    net, rt = _tiny_net(cfg)
    image, mask = _batch()
    nets = {}
    for lam in (0.0, 1000.0):
        n = copy.deepcopy(net)
        opts = {r: torch.optim.Adam(n.arch_parameters(r), lr=0.05) for r in Role}
        torch.manual_seed(3)  # the same Gumbel draws
        search_mod._arch_step(n, opts, rt.scaler(), image, mask, table, lam, cfg, rt, "test")
        nets[lam] = n
    free, tight = nets[0.0], nets[1000.0]
    for p, q in zip(free.arch_parameters(Role.TEACHER), tight.arch_parameters(Role.TEACHER)):
        assert torch.equal(p, q) and torch.equal(p.grad, q.grad)
    names = [k for k in tight.arch if k.startswith("student_")]
    assert len(names) == 3 + 2 + 3  # alphas, betas, ratios
    for k in names:
        assert not torch.equal(free.arch[k].grad, tight.arch[k].grad), k
        assert not torch.equal(free.arch[k], tight.arch[k]), k


def test_arch_step_lowers_the_loss_of_its_batch(data):
    """Without the latency term, each role's segmentation loss on the architecture step's own
    batch (at the widths it drew) is lower after the step: the step descends."""
    cfg = _cfg(data)
    net, rt = _tiny_net(cfg)
    image, mask = _batch()
    torch.manual_seed(3)
    drawn = net.sample_widths(Role.STUDENT, WidthMode.SAMPLED)
    widths = {
        Role.TEACHER: WidthMode.MAX,
        Role.STUDENT: WidthSample(drawn.index, (None,) * len(drawn.index)),
    }

    def losses():
        with torch.no_grad():
            return {
                r: float(search_mod._seg_loss(net(image, r, widths[r]), mask, 0.7, False))
                for r in Role
            }

    before = losses()
    opts = {r: torch.optim.Adam(net.arch_parameters(r), lr=0.05) for r in Role}
    table = fake_table(cfg.space)
    torch.manual_seed(3)  # the step draws the student's widths above again
    search_mod._arch_step(net, opts, rt.scaler(), image, mask, table, 0.0, cfg, rt, "test")
    after = losses()
    for r in Role:
        assert after[r] < before[r], (r, before[r], after[r])


# ---------------------------------------------------------------- pretraining sandwich


def _record_widths(monkeypatch):
    seen = []
    original = SuperNet.sample_widths

    def spy(self, role, mode=WidthMode.SAMPLED):
        sample = original(self, role, mode)
        seen.append((Role(role), WidthMode(mode), sample.index))
        return sample

    monkeypatch.setattr(SuperNet, "sample_widths", spy)
    return seen


@pytest.mark.parametrize("teacher_only", [True, False])
def test_pretraining_sandwich_trains_max_min_random_random(data, monkeypatch, teacher_only):
    cfg = _cfg(data, {"reference": {"pretrain_teacher_only": teacher_only}})
    net, rt = _tiny_net(cfg)
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.1)
    before = _snapshot(net)
    seen = _record_widths(monkeypatch)
    torch.manual_seed(0)
    search_mod._weight_step(net, opt, rt.scaler(), *_batch(), True, cfg, rt, "test")

    trained = [Role.TEACHER] if teacher_only else [Role.TEACHER, Role.STUDENT]
    modes = [WidthMode.MAX, WidthMode.MIN, WidthMode.RANDOM, WidthMode.RANDOM]
    assert [(r, m) for r, m, _ in seen] == [(r, m) for r in trained for m in modes]
    # widths 4/12 .. 1: index 4 is the widest, 0 the narrowest, per scale (5, 5, 4 rows at L=6)
    rows = (5, 5, 4)
    for _, mode, index in seen:
        if mode is WidthMode.MAX:
            assert index == tuple((4,) * n for n in rows)
        elif mode is WidthMode.MIN:
            assert index == tuple((0,) * n for n in rows)
    randoms = [index for _, mode, index in seen if mode is WidthMode.RANDOM]
    assert len(set(randoms)) == len(randoms)  # fresh draws, not a fixed pattern
    assert _changed(net, before, "cells.")
    # The teacher's stem and each of its five heads are trained; the student's stem, refine
    # modules and heads only when the sandwich is not the teacher's alone.
    for part in ["stem.", *(f"heads.{h}." for h in HEAD_NAMES)]:
        assert _changed(net, before, f"roles.teacher.{part}"), part
    assert not _changed(net, before, "arch.")
    student = _changed(net, before, "roles.student.")
    assert student == (set() if teacher_only else _names(net, "roles.student.")), student


def test_search_weight_step_trains_teacher_max_and_student_sampled_max_min(data, monkeypatch):
    cfg = _cfg(data)
    net, rt = _tiny_net(cfg)
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.1)
    seen = _record_widths(monkeypatch)
    search_mod._weight_step(net, opt, rt.scaler(), *_batch(), False, cfg, rt, "test")
    assert [(r, m) for r, m, _ in seen] == [
        (Role.TEACHER, WidthMode.MAX),
        (Role.STUDENT, WidthMode.SAMPLED),
        (Role.STUDENT, WidthMode.MAX),
        (Role.STUDENT, WidthMode.MIN),
    ]


# ---------------------------------------------------------------- best and last epoch


@pytest.mark.parametrize("select", ["last", "best"])
def test_best_and_last_architecture_files_hold_their_epochs(data, tmp_path, monkeypatch, select):
    """Every head scores 0.3, 0.5, 0.1 in search epochs 1, 2, 3: the best objective is epoch 2's
    (a 5/3 mIoU ratio that no latency ratio to the power 0.07 in this space makes up), the
    last is epoch 3's; lambda halves every epoch (a window no candidate can be above).
    ``arch_*.json`` hold the epoch ``search.select`` names, ``_best`` and ``_last`` theirs."""
    scores = [0.3, 0.5, 0.1]
    calls = []

    def fake_eval(net, role, dataset, device, indices=None):
        calls.append(role)
        return dict.fromkeys(HEAD_NAMES, scores[(len(calls) - 1) // 2])

    monkeypatch.setattr(search_mod, "evaluate_heads", fake_eval)
    sections = {"budget": {"latency_weight": 0.01, "min_ms": 1e9, "max_ms": 2e9}}
    cfg = _cfg(data, sections, epochs=3, iters_per_epoch=1, select=select)
    search(cfg, tmp_path, fake_table(cfg.space), progress=False)
    history = json.loads((tmp_path / "history.json").read_text())
    rows = history["epochs"]
    assert [r["lambda"] for r in rows] == [0.01, 0.005, 0.0025]
    assert history["best"] == {"epoch": 2, "objective": rows[1]["student"]["objective"]}
    assert history["last"] == {"epoch": 3, "objective": rows[2]["student"]["objective"]}
    assert history["select"] == select
    assert history["selected"] == history[select]
    # 6 training images: 3 train the weights, 3 the architecture, of which ceil(0.2 x 3) = 1
    # is held out to score the epochs
    scored_on = {"split": "train", "part": "held-out 0.2 of the architecture half", "images": 1}
    assert history["scored_on"] == scored_on
    for row, score in zip(rows, scores):
        assert row["scored_on"] == scored_on
        cands = row["student"]["candidates"]
        # equal mIoU: the objective prefers the faster pair; the teacher follows the student
        assert row["student"]["chosen"] == min(cands, key=lambda k: cands[k]["latency_ms"])
        assert row["teacher"]["chosen"] == row["student"]["chosen"]
        assert all(c["miou"] == score for c in cands.values())
    chosen_epoch = {"last": 3, "best": 2}[select]
    for role in ("teacher", "student"):
        for suffix, epoch, rule in (
            ("", chosen_epoch, select),
            ("_best", 2, "best"),
            ("_last", 3, "last"),
        ):
            geno = Genotype.load(tmp_path / f"arch_{role}{suffix}.json")
            info = rows[epoch - 1][role]
            cand = info["candidates"][info["chosen"]]
            assert geno.meta["epoch"] == epoch and geno.meta["miou"] == scores[epoch - 1]
            assert geno.meta["objective"] == cand["objective"]
            assert geno.meta["latency_ms"] == cand["latency_ms"]
            assert geno.meta["select"] == rule and geno.meta["scored_on"] == scored_on
            assert geno.branches == Genotype.from_dict(cand["genotype"]).branches


def test_selection_scores_held_out_training_images_and_never_the_validation_split(
    tmp_path, monkeypatch
):
    """The images that score the epochs are training-split images that no architecture or
    weight step ever draws, ceil(portion x architecture half) of them; the search runs with
    the validation split deleted, so it cannot have read it."""
    root = tmp_path / "data"
    generate_dataset(root, train=16, val=1, size=(H, W), seed=5)
    for folder in root.glob("*/val"):
        shutil.rmtree(folder)
    drawn, scored = set(), []
    cycle, evaluate = search_mod._cycle, search_mod.evaluate_heads

    def spy_cycle(dataset, indices, *args, **kwargs):
        drawn.update(dataset.samples[i].image for i in indices)
        return cycle(dataset, indices, *args, **kwargs)

    def spy_evaluate(net, role, dataset, device, indices=None):
        scored.append({dataset.samples[i].image for i in indices})
        return evaluate(net, role, dataset, device, indices)

    monkeypatch.setattr(search_mod, "_cycle", spy_cycle)
    monkeypatch.setattr(search_mod, "evaluate_heads", spy_evaluate)
    cfg = _cfg(root, pretrain_epochs=1, epochs=2, iters_per_epoch=1, select_portion=0.3)
    search(cfg, tmp_path / "run", fake_table(cfg.space), progress=False)
    train_images = set((root / "leftImg8bit" / "train").rglob("*.png"))
    assert len(train_images) == 16 and drawn <= train_images
    assert len(scored) == 4  # two roles, two search epochs
    assert all(s == scored[0] for s in scored)
    # 16 images: 8 weight, 8 architecture, ceil(0.3 x 8) = 3 of these held out
    assert len(scored[0]) == 3 and scored[0] <= train_images and not scored[0] & drawn
    assert len(drawn) == 16 - 3


# ---------------------------------------------------------------- the search learns


def test_search_learns_on_synthetic_scenes(data, tmp_path):
    """Ten search iterations (no pretraining): the mean mIoU of each role's five heads on the
    held-out image that scores the search rises by at least 0.02 and the mean entropy of its
    op distributions (uniform at the start: ln 5) falls by at least 0.02, that of its path
    distributions (ln 2) by at least 0.01. Seeds 0, 1 and 2 gave mIoU gains of 0.044-0.083
    (from 0.001-0.012) and entropy drops of 0.028-0.072 (ops) and 0.027-0.058 (paths); seed 0,
    kept here, clears each margin by a factor of 3."""
    seed = 0
    sections = {"arch": {"lr": 0.1}, "runtime": {"seed": seed}}
    cfg = _cfg(data, sections, epochs=1, iters_per_epoch=10, lr=0.1)
    net, _ = _tiny_net(cfg)  # what search() starts from: same seed, same initialisation
    # the held-out images that score the search's epochs (6 images: 3, then 3 - 1, then 1)
    images = run.whole_images(cfg, "train")
    _, arch_idx = split_indices(len(images), 0.5, seed)
    held_out = arch_idx[-1:]
    start = {r: evaluate_heads(net, r, images, torch.device("cpu"), held_out) for r in Role}
    row = search(cfg, tmp_path, fake_table(cfg.space), progress=False)["epochs"][-1]
    for role in Role:
        before = sum(start[role].values()) / len(HEAD_NAMES)
        after = sum(row[role.value]["miou"].values()) / len(HEAD_NAMES)
        assert after > before + 0.02, (role, before, after)
        assert row[role.value]["entropy_alpha"] < math.log(5) - 0.02, role
        assert row[role.value]["entropy_beta"] < math.log(2) - 0.01, role


def test_epoch_summary_states_the_rows_figures():
    def role(chosen, miou, ms20, ms21, h_alpha, h_beta):
        cands = {"20": {"latency_ms": ms20, "miou": 0.0}, "21": {"latency_ms": ms21, "miou": 0.0}}
        cands[chosen]["miou"] = miou
        return {"candidates": cands, "chosen": chosen, "entropy_alpha": h_alpha,
                "entropy_beta": h_beta}  # fmt: skip

    row = {
        "epoch": 7, "lambda": 0.04, "window_ms": [7.389, 8.343], "in_window": True,
        "student": role("21", 0.1234, 8.5, 8.004, 1.6, 0.69),
        "teacher": role("21", 0.25, 30.0, 31.0, 1.5, 0.6),
    }  # fmt: skip
    assert search_mod.epoch_summary(row) == (
        "search epoch 7: lambda 0.04; student ms [2,0] 8.50, [2,1] 8.00* (window 7.39-8.34, "
        "inside); teacher mIoU 25.0% H(alpha) 1.5000 H(beta) 0.6000; student mIoU 12.3% "
        "H(alpha) 1.6000 H(beta) 0.6900"
    )


# ------------------------------------------------------------------ one-shot scoring


def _same_state(net, before):
    after = net.state_dict()
    return after.keys() == before.keys() and all(torch.equal(v, after[k]) for k, v in
                                                 before.items())  # fmt: skip


def _single_path(net, seed, lasts=(2, 1)):
    """A random single path of ``net`` (numpy logits) and the genotype it runs."""
    import random

    from fasterseg.decode import random_one_hot, trace

    sp = net.space
    arch = random_one_hot(sp.layers, sp.ops, sp.width_choices, random.Random(seed))
    stem_w, head_w = net.role_widths[Role.STUDENT]
    geno = trace(arch, lasts, name="path", ops=sp.ops, fch=sp.fch, stem_width=stem_w,
                 head_width=head_w, width_choices=sp.width_choices)  # fmt: skip
    return arch, geno


def _set_student(net, arch):
    values = [*arch.alphas, *arch.betas, *arch.ratios]
    with torch.no_grad():
        for p, v in zip(net.arch_parameters(Role.STUDENT), values, strict=True):
            p.copy_(torch.as_tensor(v, dtype=p.dtype))


def test_a_single_path_skips_zero_weights_without_changing_the_output(data):
    """Outside autograd the supernet leaves out every operator and input whose one-hot weight
    is exactly 0; the logits equal bit for bit those of the full mixture, which computes them
    all (with autograd on) and adds their zero terms."""
    cfg = _cfg(data, {}, epochs=1, iters_per_epoch=1)
    net, _ = _tiny_net(cfg)
    arch, _ = _single_path(net, seed=4)
    _set_student(net, arch)
    net.eval()
    x = torch.randn(1, 3, H, W)
    widths = net.sample_widths(Role.STUDENT, WidthMode.ARGMAX)
    calls = []
    hooks = [op.register_forward_hook(lambda *a: calls.append(1))
             for m in net.modules() if hasattr(m, "ops") for op in m.ops]  # fmt: skip
    with torch.enable_grad():
        full = net(x, Role.STUDENT, widths)
    n_full, calls[:] = len(calls), []
    with torch.no_grad():
        pruned = net(x, Role.STUDENT, widths)
    for h in hooks:
        h.remove()
    assert all(torch.equal(a, b) for a, b in zip(full, pruned))
    assert len(calls) < n_full / 3  # one operator of five per cell, one input of two


def test_one_shot_scores_the_genotype_on_the_supernet_it_came_from(data):
    """On a supernet whose student parameters are a single path, the one-shot mIoU of the
    genotype traced from that path equals evaluate_heads' mIoU of its head on a copy with
    the path set by hand; the supernet is left as it was; batch-norm re-estimation uses the
    images it is given and changes the score."""
    from fasterseg.engine.search import GENOTYPE_HEAD, one_shot_miou

    cfg = _cfg(data, {}, epochs=1, iters_per_epoch=1)
    net, _ = _tiny_net(cfg)
    images = run.whole_images(cfg, "val")
    arch, geno = _single_path(net, seed=7)
    _set_student(net, arch)  # the rows the genotype leaves open (e.g. the last /8 cell) too
    before = copy.deepcopy(net.state_dict())
    got = one_shot_miou(net, geno, images, torch.device("cpu"))
    assert _same_state(net, before)
    by_hand = copy.deepcopy(net)
    _set_student(by_hand, arch)
    expected = evaluate_heads(by_hand, Role.STUDENT, images, torch.device("cpu"))
    assert got["miou"] == expected[GENOTYPE_HEAD[(2, 1)]]
    assert got["overruled"] == [] and got["bn_images"] == 0
    train = run.whole_images(cfg, "train")
    recal = one_shot_miou(net, geno, images, torch.device("cpu"), calibration=train,
                          calibration_indices=[0, 1])  # fmt: skip
    assert recal["bn_images"] == 2 and recal["miou"] != got["miou"]
    assert _same_state(net, before)
