"""Tests for fasterseg.io: atomic writes keep the old file on failure and leave no temp files."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import IO

import pytest

from fasterseg.io import atomic_write, atomic_write_json, atomic_write_text


class WriterFailed(RuntimeError):
    pass


def test_atomic_write_bytes_and_creates_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "data.bin"
    out = atomic_write(target, lambda f: f.write(b"\x00\x01\xff"))
    assert out == target
    assert target.read_bytes() == b"\x00\x01\xff"
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin"]


def test_accepts_str_paths_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    atomic_write_text(str(target), "first")
    atomic_write_text(target, "second\n")
    assert target.read_text() == "second\n"
    assert os.listdir(tmp_path) == ["x.txt"]


@pytest.mark.parametrize("exc", [WriterFailed("boom"), KeyboardInterrupt()])
def test_failing_writer_keeps_old_file_and_leaves_no_temp(
    tmp_path: Path, exc: BaseException
) -> None:
    target = tmp_path / "state.json"
    atomic_write_json(target, {"epoch": 1})

    def bad(f: IO[bytes]) -> None:
        f.write(b'{"epoch": 2, "half')  # partial content must never reach the target
        raise exc

    with pytest.raises(type(exc)):
        atomic_write(target, bad)
    assert json.loads(target.read_text()) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["state.json"]


def test_failing_writer_on_new_file_creates_nothing(tmp_path: Path) -> None:
    def bad(f: IO[bytes]) -> None:
        f.write(b"partial")
        raise WriterFailed("boom")

    with pytest.raises(WriterFailed, match="boom"):
        atomic_write(tmp_path / "new.bin", bad)
    assert os.listdir(tmp_path) == []


def test_unserialisable_json_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    atomic_write_json(target, [1])
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == [1]
    assert os.listdir(tmp_path) == ["m.json"]


def test_json_round_trip(tmp_path: Path) -> None:
    obj = {
        "name": "fasterseg-student",
        "miou": 0.7134,
        "per_class": [0.98, 0.81, None],
        "nested": {"widths": [4 / 12, 8 / 12], "ok": True},
        "unicode": "Zürich ✓",
        "big": 2**40,
    }
    path = atomic_write_json(tmp_path / "r.json", obj)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert text.startswith('{\n  "name"')  # indented, key order kept
    assert json.loads(text) == obj
    assert list(json.loads(text)) == list(obj)


def test_json_nan_round_trips_as_python_json(tmp_path: Path) -> None:
    # NaN marks an undefined IoU; Python's json writes and reads it back.
    path = atomic_write_json(tmp_path / "nan.json", {"iou": math.nan})
    assert math.isnan(json.loads(path.read_text())["iou"])


def test_text_is_utf8(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "u.txt", "Köln\n")
    assert path.read_bytes() == "Köln\n".encode()


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_new_file_mode_follows_umask_and_old_mode_is_kept(tmp_path: Path) -> None:
    old_umask = os.umask(0o027)
    try:
        new = atomic_write_text(tmp_path / "new.txt", "x")
        assert stat.S_IMODE(new.stat().st_mode) == 0o640
    finally:
        os.umask(old_umask)
    kept = tmp_path / "kept.txt"
    kept.write_text("old")
    kept.chmod(0o604)
    atomic_write_text(kept, "new")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o604
    assert kept.read_text() == "new"
