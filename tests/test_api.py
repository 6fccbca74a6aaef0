"""The public API at the package root, and the docs/api.md example that uses it."""

import re
import subprocess
import sys
from pathlib import Path

import fasterseg

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_every_public_name_resolves_and_is_listed():
    for name in fasterseg.__all__:
        assert getattr(fasterseg, name) is not None, name
    assert set(fasterseg.__all__) <= set(dir(fasterseg))
    assert fasterseg.list_models() == ["fasterseg-student", "fasterseg-teacher"]
    try:
        fasterseg.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown attribute must raise AttributeError")


def test_importing_the_package_imports_no_torch():
    code = "import sys, fasterseg; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_docs_api_md_lists_the_root_names():
    text = DOCS.read_text(encoding="utf-8")
    listed = set(re.findall(r"`(\w+)`", text.split("## The whole method")[0]))
    assert listed >= set(fasterseg.__all__) - {"__version__"}


def test_docs_api_md_quick_tour_runs(tmp_path, monkeypatch):
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## The whole method in a minute", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOCS), "exec"), {})
    assert (tmp_path / "tour" / "lut.json").exists()
    for run in ("search/arch_student.json", "teacher/best.pt", "student/best.pt"):
        assert (tmp_path / "tour" / run).exists(), run
