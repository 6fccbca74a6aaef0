"""Every bad input of docs/errors.md gets its one-line message and exit status 2.

Each row of CASES builds its bad input under a temporary folder and runs the CLI. The message
must contain the documented text ({tmp} stands for the temporary folder), and the same text
must appear in docs/errors.md, so the documentation cannot drift from the behaviour.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE_DIR, TINY_ONE_BRANCH, WritesMarker, train_tiny
from PIL import Image

from fasterseg.cli import main
from fasterseg.models import load_genotype

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
TINY = TINY_ONE_BRANCH


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A dataset, a trained checkpoint and a few files the cases start from."""
    t = tmp_path_factory.mktemp("errors")
    train_tiny(t, train_images=2, val=1, iters=1)
    (t / "good.yaml").write_text("data:\n  batch_size: 2\n")
    load_genotype("fasterseg-student").save(t / "student.json")
    return t


def _cfg(env, name, text):
    path = env / name
    path.write_text(text)
    return str(path)


def _genotype(env, name, edit):
    data = json.loads((env / "student.json").read_text())
    edit(data)
    (env / name).write_text(json.dumps(data))
    return str(env / name)


def _dataset(env, name, edit):
    """A copy of the tiny dataset's val split with one file edited."""
    root = env / name
    if not root.exists():
        for src in (env / "data").rglob("*.png"):
            rel = src.relative_to(env / "data")
            if rel.parts[1] != "val":
                continue
            (root / rel.parent).mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(src.read_bytes())
        edit(root)
    return str(root)


def _first(root, pattern):
    return sorted(Path(root).rglob(pattern))[0]


def _label_40(root):
    p = _first(root, "*_gtFine_labelIds.png")
    a = np.array(Image.open(p))
    a[0, 0] = 40
    Image.fromarray(a).save(p)


def _other_device(env):
    from fasterseg.latency import LatencyTable, device_fingerprint

    fingerprint = device_fingerprint("torch", "cpu", None, 64, 128)
    fingerprint["cpu"] = "Imaginary CPU 9000"
    LatencyTable(fingerprint).save(env / "other.json")
    return str(env / "other.json")


REFERENCE = REFERENCE_DIR


def _evil(env, name):
    import torch

    torch.save({"alphas_0_0": WritesMarker(env / "ran")}, env / name)
    return str(env / name)


def _truncated_arch(env):
    (env / "trunc.pt").write_bytes((REFERENCE / "arch_1.pt").read_bytes()[:200])
    return str(env / "trunc.pt")


def _wrong_shape_arch(env):
    import torch

    from fasterseg.reference import load_arch_file

    data = load_arch_file(REFERENCE / "arch_1.pt")
    data["alpha_1_1"] = torch.zeros(14, 5)
    torch.save(data, env / "shape.pt")
    return str(env / "shape.pt")


def _student_weights(env):
    import torch
    from test_reference_weights import rebuild_state_dict

    if not (env / "weights1.pt").exists():
        torch.save(rebuild_state_dict("student"), env / "weights1.pt")
    return str(env / "weights1.pt")


def _npy(env, name, payload):
    path = env / name
    if payload == "array":
        np.save(path, np.arange(3.0))
    else:
        import pickle

        # the .npy header of a 0-d object array, then the pickle
        header = "{'descr': '|O', 'fortran_order': False, 'shape': (), }"
        header += " " * (63 - len(header) - 10 - 1) + "\n"
        payload = pickle.dumps(WritesMarker(env / "ran"), protocol=2)
        path.write_bytes(
            b"\x93NUMPY\x01\x00"
            + len(header).to_bytes(2, "little")
            + header.encode("latin1")
            + payload
        )
    return str(path)


CASES = [
    ("misspelled config key",
     lambda e: ["train", "--config", _cfg(e, "k.yaml", "data:\n  batchsize: 2\n"),
                "--arch", "fasterseg-student", "--out", str(e / "o")],
     "{tmp}/k.yaml: unknown key 'data.batchsize'; did you mean 'data.batch_size'?"),
    ("unknown config section",
     lambda e: ["train", "--config", _cfg(e, "s.yaml", "trian:\n  epochs: 2\n"),
                "--arch", "fasterseg-student", "--out", str(e / "o")],
     "{tmp}/s.yaml: unknown section 'trian'; did you mean 'train'?"),
    ("wrong type in config",
     lambda e: ["train", "--config", _cfg(e, "t.yaml", "data:\n  batch_size: eight\n"),
                "--arch", "fasterseg-student", "--out", str(e / "o")],
     "{tmp}/t.yaml: 'data.batch_size': expected an integer, got 'eight'"),
    ("invalid YAML",
     lambda e: ["train", "--config", _cfg(e, "y.yaml", "data: [unclosed\n"),
                "--arch", "fasterseg-student", "--out", str(e / "o")],
     "{tmp}/y.yaml: not valid YAML"),
    ("missing config file",
     lambda e: ["train", "--config", str(e / "nope.yaml"), "--arch", "fasterseg-student",
                "--out", str(e / "o")],
     "{tmp}/nope.yaml: config file not found"),
    ("override without '='",
     lambda e: ["train", "--config", str(e / "good.yaml"), "--arch", "fasterseg-student",
                "--out", str(e / "o"), "train.epochs"],
     "override 'train.epochs': expected section.key=value"),
    ("override of an unknown key",
     lambda e: ["train", "--config", str(e / "good.yaml"), "--arch", "fasterseg-student",
                "--out", str(e / "o"), "train.epoch=3"],
     "unknown key 'train.epoch'; did you mean 'train.epochs'?"),
    ("negative size",
     lambda e: ["data", "synth", "--out", str(e / "d"), "--size=-64x128"],
     "argument --size: height and width must be positive, got '-64x128'"),
    ("synthetic images too small",
     lambda e: ["data", "synth", "--out", str(e / "d"), "--size", "16x128"],
     "size height=16; expected an integer >= 32"),
    ("training crop not divisible by 32",
     lambda e: ["train", "--config", str(e / "good.yaml"), "--arch", "fasterseg-student",
                "--out", str(e / "o"), "--data", str(e / "data"), "data.crop=[100,128]"],
     "data.crop [100, 128]: each side must be a multiple of 32 (the network's output stride), "
     "got 100 (nearest: 96)"),
    ("table resolution not divisible by 32",
     lambda e: ["lut", "build", "--out", str(e / "l.json"), "--height", "100", "--width", "128"],
     "latency height must be a multiple of 32 (the network's output stride), got 100 "
     "(nearest: 96)"),
    ("profile size not divisible by 32",
     lambda e: ["profile", "fasterseg-student", "--height", "500"],
     "--height must be a multiple of 32 (the network's output stride), got 500 (nearest: 512)"),
    ("profile size too small for the down-up operators",
     lambda e: ["profile", "fasterseg-student", "--height", "32"],
     "--height must be at least 64 (the down-up operators halve the /32 feature), got 32"),
    ("unknown operator in the config",
     lambda e: ["search", "--config", _cfg(e, "ops.yaml", "space:\n  ops: [conv, cnv]\n"),
                "--out", str(e / "o"), "--data", str(e / "data")],
     "space.ops[1]: unknown operator 'cnv'"),
    ("unknown operator in a genotype",
     lambda e: ["profile", _genotype(e, "op.json", lambda d: d["branches"][0]["ops"]
                                     .__setitem__(0, "conv9"))],
     "branches[0].ops[0]: unknown operator 'conv9'"),
    ("width outside the choices",
     lambda e: ["profile", _genotype(e, "w.json", lambda d: d["branches"][0]["widths"]
                                     .__setitem__(0, 0.7))],
     "branches[0].widths[0]: 0.7 is not one of width_choices"),
    ("inconsistent genotype path",
     lambda e: ["profile", _genotype(e, "p.json", lambda d: d["branches"][0]["path"]
                                     .__setitem__(4, 2))],
     "branches[0].path[4]: the scale may stay or go down by one per layer, got 0 -> 2"),
    ("corrupt genotype file",
     lambda e: ["profile", _cfg(e, "bad.json", "{not json")],
     "{tmp}/bad.json: not valid JSON"),
    ("missing genotype file",
     lambda e: ["profile", str(e / "none.json")],
     "{tmp}/none.json: no such genotype file, and not a published architecture"),
    ("class count of model and data differ",
     lambda e: ["train", "--config", str(e / "good.yaml"), "--arch", "fasterseg-student",
                "--out", str(e / "o"), "--data", str(e / "data"), "data.crop=[64,128]",
                "space.num_classes=11"],
     "space.num_classes is 11 but dataset 'cityscapes' has 19 classes"),
    ("distillation teacher of another class count",
     lambda e: ["distill", "--config", str(e / "good.yaml"), "--arch", "fasterseg-student",
                "--teacher", str(e / "run" / "last.pt"), "--out", str(e / "o"),
                "space.num_classes=11"],
     "{tmp}/run/last.pt: the teacher predicts 19 classes but the student is configured for 11"),
    ("missing dataset root",
     lambda e: ["evaluate", str(e / "run" / "last.pt"), "--data", str(e / "nowhere")],
     "{tmp}/nowhere: dataset root not found; expected layout"),
    ("empty dataset split",
     lambda e: ["evaluate", str(e / "run" / "last.pt"), "--data",
                _dataset(e, "empty", lambda r: [p.unlink() for p in r.rglob("*.png")])],
     "no *_leftImg8bit.png images"),
    ("image without its label",
     lambda e: ["evaluate", str(e / "run" / "last.pt"), "--data",
                _dataset(e, "nolabel", lambda r: _first(r, "*_labelIds.png").unlink())],
     "no label file; expected"),
    ("label values outside the label table",
     lambda e: ["evaluate", str(e / "run" / "last.pt"), "--data",
                _dataset(e, "label40", _label_40)],
     "label values [40] are not in the cityscapes label table"),
    ("unreadable image",
     lambda e: ["evaluate", str(e / "run" / "last.pt"), "--data",
                _dataset(e, "garbage", lambda r: _first(r, "*_leftImg8bit.png")
                         .write_bytes(b"not a png"))],
     "cannot read image"),
    ("image and label sizes differ",
     lambda e: ["evaluate", str(e / "run" / "last.pt"), "--data",
                _dataset(e, "sizes", lambda r: Image.new("L", (10, 10)).save(
                    _first(r, "*_labelIds.png")))],
     "is 64x128 but its label"),
    ("sliding window not divisible by 32",
     lambda e: ["evaluate", str(e / "run" / "last.pt"), "--data", str(e / "data"),
                "--window", "500", "1000"],
     "--window/--overlap: window [500, 1000]: give height and width, positive multiples of 32"),
    ("missing checkpoint",
     lambda e: ["evaluate", str(e / "none.pt"), "--data", str(e / "data")],
     "{tmp}/none.pt: checkpoint not found"),
    ("corrupt checkpoint",
     lambda e: ["evaluate", _cfg(e, "corrupt.pt", "garbage"), "--data", str(e / "data")],
     "{tmp}/corrupt.pt: corrupt or unreadable checkpoint"),
    ("a table from another device",
     lambda e: ["lut", "build", "--out", _other_device(e), "--height", "64", "--width", "128"],
     "measured on a different device or setting (table vs current: cpu: "
     "'Imaginary CPU 9000' vs"),
    ("a table of another resolution",
     lambda e: ["profile", "fasterseg-student", "--lut", _other_device(e), "--height", "64",
                "--width", "64"],
     "{tmp}/other.json was built at 64x128, not 64x64; profile at the table's size"),
    ("unknown dataset name",
     lambda e: ["train", "--config", str(e / "good.yaml"), "--arch", "fasterseg-student",
                "--out", str(e / "o"), "--data", str(e / "data"), "data.dataset=kitti",
                "data.crop=[64,128]"],
     "unknown dataset 'kitti'; known: cityscapes, camvid"),
    ("missing predictions to score",
     lambda e: ["score", str(e / "nopreds"), "--gt", str(e / "data")],
     "{tmp}/nopreds"),
    ("a config key of an earlier release",
     lambda e: ["train", "--config", _cfg(e, "old.yaml", "train:\n  device: cpu\n"),
                "--arch", "fasterseg-student", "--out", str(e / "o")],
     "{tmp}/old.yaml: 'train.device' has moved to 'runtime.device'"),
    ("an arch file that would run code",
     lambda e: ["convert", "arch", _evil(e, "evil_arch.pt"), "--out", str(e / "g.json")],
     "{tmp}/evil_arch.pt: refused to load the arch file: it would import "),
    ("a truncated arch file",
     lambda e: ["convert", "arch", _truncated_arch(e), "--out", str(e / "g.json")],
     "{tmp}/trunc.pt: corrupt or truncated arch file"),
    ("an arch file with a wrong shape",
     lambda e: ["convert", "arch", _wrong_shape_arch(e), "--out", str(e / "g.json")],
     "{tmp}/shape.pt: alpha_1_1 has shape [14, 5], expected [15, 5]"),
    ("weights of the other architecture",
     lambda e: ["convert", "weights", _student_weights(e), "--arch", "fasterseg-teacher",
                "--out", str(e / "w.pt")],
     "{tmp}/weights1.pt: stem.0.conv.0.weight has shape [32, 3, 3, 3], the network of genotype "
     "'fasterseg-teacher' (19 classes) needs [48, 3, 3, 3]"),
    ("weights that would run code",
     lambda e: ["convert", "weights", _evil(e, "evil_weights.pt"), "--arch",
                "fasterseg-student", "--out", str(e / "w.pt")],
     "{tmp}/evil_weights.pt: refused to load the weights file: it would import "),
    ("a latency .npy that is not a mapping",
     lambda e: ["lut", "import", _npy(e, "array.npy", "array"), "--out", str(e / "t.json")],
     "{tmp}/array.npy: holds a '<f8' array of shape (3,), not a pickled mapping (a 0-d object "
     "array)"),
    ("a latency .npy that would run code",
     lambda e: ["lut", "import", _npy(e, "evil.npy", "evil"), "--out", str(e / "t.json")],
     "{tmp}/evil.npy: refused to unpickle global "),
]  # fmt: skip


@pytest.mark.parametrize("case, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_answered(env, case, argv, expected, capsys):
    with pytest.raises(SystemExit) if _is_usage(expected) else _noop():
        code = main(argv(env))
        assert code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert err.startswith("fasterseg"), err
    assert expected.replace("{tmp}", str(env)) in err, err


def test_every_case_is_documented():
    doc = DOC.read_text()
    missing = [c[0] for c in CASES if c[2] not in doc or f"| {c[0]} |" not in doc]
    assert not missing, missing
    assert len(CASES) >= 25


def _is_usage(expected: str) -> bool:
    return expected.startswith("argument ")


class _noop:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
