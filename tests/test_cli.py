"""The ``fasterseg`` command as a thin layer: every subcommand's help, ``profile --measure``
without a table, and ``evaluate``'s prediction folders read by cityscapesscripts' own evaluator."""

import argparse
import json
import logging
import os
from pathlib import Path

import pytest
import torch
from conftest import TINY_ONE_BRANCH, assert_same_scores, cityscapes_args, train_tiny

from fasterseg.cli import build_parser, main
from fasterseg.engine.evaluate import evaluate_checkpoint
from fasterseg.latency import LatencyTable, Measurement, device_fingerprint, genotype_kernels

TINY = TINY_ONE_BRANCH
H, W = 64, 64


def _subparsers(parser: argparse.ArgumentParser, path=()):
    """(command words, parser) of every command that runs something (has a handler)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if "func" in sub._defaults:
                    yield (*path, name), sub
                yield from _subparsers(sub, (*path, name))


def test_every_command_help_names_all_its_options(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # help lines wide enough that no help text is split
    commands = list(_subparsers(build_parser()))
    # data synth, lut build/show/import, convert arch/weights and the ten others
    assert len(commands) == 16
    for words, sub in commands:
        with pytest.raises(SystemExit) as exit_:
            main([*words, "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: fasterseg {' '.join(words)} "), words
        for action in sub._actions:
            for option in action.option_strings:
                assert option in text, (words, option)
            if action.help:
                assert " ".join(action.help.split()) in " ".join(text.split()), (words, action.help)


# ---------------------------------------------------------------- profile
@pytest.fixture()
def tiny_arch(tmp_path):
    path = tmp_path / "tiny.json"
    TINY.save(path)
    return str(path)


def test_profile_measures_without_a_table(tiny_arch, capsys):
    argv = ["profile", tiny_arch, "--height", str(H), "--width", str(W), "--measure", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["latency_ms_measured"] > 0
    assert result["latency_ms_measured_std"] >= 0
    assert result["latency_measured_with"] == {
        "backend": "torch", "threads": torch.get_num_threads(), "statistic": "min",
        "rounds": 3,
    }  # fmt: skip
    assert "latency_ms_predicted" not in result
    # The text output says what was measured and how.
    assert main(argv[:-1]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "latency measured" in x)
    assert f"(torch, {torch.get_num_threads()} threads, min of 3 rounds)" in line


def test_profile_measures_with_the_tables_settings(tiny_arch, tmp_path, capsys):
    specs = genotype_kernels(TINY, H, W)
    table = LatencyTable(device_fingerprint("torch", "cpu", 1, H, W, statistic="median"))
    for spec in specs:
        table.add(spec, Measurement(0.5, 0.01, 5))
    table.save(tmp_path / "lut.json")
    argv = ["profile", tiny_arch, "--height", str(H), "--width", str(W), "--json",
            "--lut", str(tmp_path / "lut.json"), "--measure"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["latency_ms_predicted"] == pytest.approx(0.5 * len(specs))
    assert result["latency_ms_measured"] > 0
    assert result["latency_measured_with"] == {
        "backend": "torch", "threads": 1, "statistic": "median", "rounds": 3,
    }  # fmt: skip
    assert result["latency_predicted_with"].startswith("the sum of the table's kernels (the")


# ---------------------------------------------------------------- evaluate
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny synthetic dataset (3 val images, 1 unlabelled test image) and a checkpoint."""
    data, run = train_tiny(tmp_path_factory.mktemp("cli"), train_images=4, val=3, test=1, iters=3)
    return data, run / "last.pt"


def _cityscapes_args(prediction_path):
    return cityscapes_args(predictionPath=str(prediction_path), predictionWalk=None)


def test_evaluate_predictions_pass_the_official_evaluator(trained, tmp_path, capsys, caplog):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval

    data, ckpt = trained
    preds = tmp_path / "preds"
    caplog.set_level(logging.INFO, logger="fasterseg.progress")
    argv = ["evaluate", str(ckpt), "--data", str(data), "--save-predictions", str(preds),
            "--device", "cpu", "--json"]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    ours = json.loads(out)
    # Off a terminal, progress is a few log lines, not a carriage-return bar.
    assert "\r" not in err
    assert [m for m in caplog.messages if m.startswith("evaluate: ")][-1].startswith(
        "evaluate: 3/3 img (100%"
    )

    gts = sorted((data / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    keys = [gt.name[: -len("_gtFine_labelIds.png")] for gt in gts]
    assert len(keys) == ours["images"] == 3
    assert sorted(p.name for p in preds.iterdir()) == ["color", "labelIds"]
    assert sorted(p.name for p in (preds / "labelIds").iterdir()) == [
        f"{k}_labelIds.png" for k in keys
    ]
    assert sorted(p.name for p in (preds / "color").iterdir()) == [f"{k}_color.png" for k in keys]

    # cityscapesscripts finds the predictions itself, in the folder as evaluate wrote it.
    args = _cityscapes_args(preds / "labelIds")
    pred_list = [cs_eval.getPrediction(args, str(gt)) for gt in gts]
    assert pred_list == [str(preds / "labelIds" / f"{k}_labelIds.png") for k in keys]
    ref = cs_eval.evaluateImgLists(pred_list, [str(gt) for gt in gts], args)
    assert_same_scores(ours, ref)
    assert sum(iou is not None for iou in ours["per_class_iou"].values()) >= 2

    # The whole folder still scores with `fasterseg score` (colour PNGs skipped), and the
    # Python API returns what the command printed.
    assert main(["score", str(preds), "--gt", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["miou"] == pytest.approx(ours["miou"], abs=1e-12)
    assert evaluate_checkpoint(ckpt, data, device="cpu", progress=False) == ours


def test_evaluate_unlabelled_split_says_where_the_predictions_are(trained, tmp_path, capsys):
    data, ckpt = trained
    preds = tmp_path / "preds"
    argv = ["evaluate", str(ckpt), "--data", str(data), "--split", "test", "--device", "cpu"]
    assert main([*argv, "--save-predictions", str(preds)]) == 0
    assert capsys.readouterr().out == (
        f"1 images without labels; predictions in {preds / 'labelIds'}\n"
    )
    assert len(list((preds / "labelIds").glob("*_labelIds.png"))) == 1
    assert main(argv) == 0
    assert "no predictions saved" in capsys.readouterr().out


CLI_MD = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
CLI_MD_HEAD = """# Command-line reference

Generated from `fasterseg ... --help`. Every command prints one line and exits with status 2 on a
user error; `fasterseg --debug COMMAND ...` shows the traceback instead.
"""


def render_cli_md() -> str:
    """docs/cli.md as the parser prints it (help wrapped for a 100-column terminal)."""
    from fasterseg.cli import build_parser

    parser = build_parser()
    commands = [[]]
    for action in parser._subparsers._group_actions:  # the subcommands, in parser order
        for name, sub in action.choices.items():
            nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
            if nested:
                commands += [[name, inner] for inner in nested[0].choices]
            else:
                commands.append([name])
    sections = [CLI_MD_HEAD]
    for words in commands:
        p = parser
        for w in words:
            p = next(a.choices[w] for a in p._actions if isinstance(a, argparse._SubParsersAction))
        sections.append(f"## fasterseg {' '.join(words)}\n\n```\n{p.format_help()}```\n")
    return "\n".join(sections)


def test_docs_cli_md_is_the_help_the_commands_print(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    expected = render_cli_md()
    if os.environ.get("FASTERSEG_WRITE_DOCS") == "1":  # regenerate: the one way to edit it
        CLI_MD.write_text(expected, encoding="utf-8")
    assert CLI_MD.read_text(encoding="utf-8") == expected, (
        "docs/cli.md differs from --help: FASTERSEG_WRITE_DOCS=1 pytest tests/test_cli.py -k docs"
    )
