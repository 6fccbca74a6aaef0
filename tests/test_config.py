"""Tests for fasterseg.config: defaults, YAML round trip, key/type validation, overrides and the
messages a user sees (each names the file, the dotted key and what was expected)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from fasterseg.config import (
    PAPER_OPS,
    PAPER_WIDTHS,
    Config,
    DataConfig,
    SpaceConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    load_pipeline_config,
    read_yaml,
    save_config,
)
from fasterseg.errors import ConfigError, UserError


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def raises_config(match: str) -> pytest.RaisesContext:
    return pytest.raises(ConfigError, match=re.escape(match))


# ---------------------------------------------------------------- defaults and round trip
def test_defaults_are_the_paper_values() -> None:
    cfg = load_config()
    assert cfg == Config()
    assert cfg.data.crop == (512, 1024)
    assert cfg.data.scales == (0.75, 1.0, 1.25)
    assert cfg.data.batch_size == 12
    assert cfg.space.layers == 16
    assert cfg.space.width_choices == PAPER_WIDTHS
    assert cfg.space.ops == PAPER_OPS
    assert cfg.space.student_stem_width == pytest.approx(8 / 12)


def test_config_is_frozen() -> None:
    cfg = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.data.batch_size = 3  # type: ignore[misc]


def test_empty_file_and_empty_section_give_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "data:\nspace: {}\n", "b.yaml")) == Config()


def test_yaml_file_round_trips(tmp_path: Path) -> None:
    src = write(
        tmp_path,
        "data:\n"
        "  dataset: camvid\n"
        "  crop: [360, 480]\n"
        "  scales: [0.5, 1, '3/2']\n"
        "  flip: false\n"
        "  label_stride: 8\n"
        "space:\n"
        "  width_choices: ['4/12', '8/12', 1]\n"
        "  ops: [skip, conv]\n"
        "  num_classes: 11\n",
    )
    cfg = load_config(src)
    assert cfg.data == DataConfig(
        dataset="camvid", crop=(360, 480), scales=(0.5, 1.0, 1.5), flip=False, label_stride=8
    )
    assert cfg.space == SpaceConfig(
        width_choices=(4 / 12, 8 / 12, 1.0), ops=("skip", "conv"), num_classes=11
    )
    out = save_config(cfg, tmp_path / "out" / "config.yaml")
    assert out == tmp_path / "out" / "config.yaml"
    again = load_config(out)
    assert again == cfg
    assert isinstance(again.data.crop, tuple) and isinstance(again.space.width_choices, tuple)
    # The saved file is plain YAML (lists, no python tags) with every key spelled out.
    saved = yaml.safe_load(out.read_text())
    assert saved == config_to_dict(cfg)
    assert saved["data"]["crop"] == [360, 480]
    assert set(saved["data"]) == {f.name for f in dataclasses.fields(DataConfig)}


def test_default_config_round_trips(tmp_path: Path) -> None:
    path = save_config(Config(), tmp_path / "config.yaml")
    assert load_config(path) == Config()


def test_config_from_dict_and_int_accepted_for_float() -> None:
    cfg = config_from_dict({"space": {"gumbel_temperature": 2}})
    assert cfg.space.gumbel_temperature == 2.0
    assert isinstance(cfg.space.gumbel_temperature, float)
    assert config_from_dict(None) == Config()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("'8/12'", 8 / 12), ("'2 / 3'", 2 / 3), ("'0.5'", 0.5), ("1e-3", 1e-3), ("'1'", 1.0)],
)
def test_float_fields_accept_fractions(tmp_path: Path, text: str, expected: float) -> None:
    cfg = load_config(write(tmp_path, f"space:\n  student_head_width: {text}\n"))
    assert cfg.space.student_head_width == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- unknown keys and sections
def test_misspelled_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  batchsize: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg == f"{path}: unknown key 'data.batchsize'; did you mean 'data.batch_size'?"
    assert isinstance(info.value, UserError)


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "space:\n  zzz: 1\n")
    with raises_config(f"{path}: unknown key 'space.zzz'; valid keys: layers, fch,"):
        load_config(path)


def test_misspelled_section(tmp_path: Path) -> None:
    path = write(tmp_path, "dat:\n  batch_size: 4\n")
    with raises_config(f"{path}: unknown section 'dat'; did you mean 'data'?"):
        load_config(path)


def test_unknown_section_lists_sections(tmp_path: Path) -> None:
    path = write(tmp_path, "optimizer:\n  lr: 0.1\n")
    with raises_config(f"{path}: unknown section 'optimizer'; valid sections: data, space"):
        load_config(path)


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "data: 5\n")
    with raises_config(f"{path}: 'data' must be a mapping, got 5"):
        load_config(path)


# ---------------------------------------------------------------- wrong types
@pytest.mark.parametrize(
    ("yaml_text", "match"),
    [
        ("data:\n  batch_size: '4'\n", "'data.batch_size': expected an integer, got '4'"),
        ("data:\n  batch_size: 4.0\n", "'data.batch_size': expected an integer, got 4.0"),
        ("data:\n  batch_size: true\n", "'data.batch_size': expected an integer, got True"),
        ("data:\n  flip: 1\n", "'data.flip': expected true/false, got 1"),
        ("data:\n  flip: 'yes'\n", "'data.flip': expected true/false, got 'yes'"),
        (
            "data:\n  crop: [1, 2, 3]\n",
            "'data.crop': expected a list of 2 values (an integer, an integer), got [1, 2, 3]",
        ),
        (
            "data:\n  crop: 512\n",
            "'data.crop': expected a list of 2 values (an integer, an integer), got 512",
        ),
        ("data:\n  crop: [512, '1k']\n", "'data.crop[1]': expected an integer, got '1k'"),
        ("data:\n  scales: '0.5'\n", "'data.scales': expected a list of numbers, got '0.5'"),
        ("data:\n  scales: [0.5, abc]\n", "'data.scales[1]': expected a number, got 'abc'"),
        ("data:\n  scales: [0.5, true]\n", "'data.scales[1]': expected a number, got True"),
        ("data:\n  root: 3\n", "'data.root': expected a string, got 3"),
        ("space:\n  ops: conv\n", "'space.ops': expected a list of strings, got 'conv'"),
        ("space:\n  fch: null\n", "'space.fch': expected an integer, got None"),
        (
            "space:\n  student_head_width: '1/0'\n",
            "'space.student_head_width': expected a number, got '1/0'",
        ),
    ],
)
def test_wrong_types_name_file_key_and_expected_type(
    tmp_path: Path, yaml_text: str, match: str
) -> None:
    path = write(tmp_path, yaml_text)
    with raises_config(f"{path}: {match}"):
        load_config(path)


# ---------------------------------------------------------------- overrides
def test_overrides_apply_on_top_of_file(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  batch_size: 4\n  crop: [64, 64]\n")
    cfg = load_config(
        path,
        [
            "data.crop=[256,512]",
            "data.flip=false",
            "space.ops=[conv, conv_2x]",
            "space.student_stem_width=6/12",
            "data.root = /tmp/x",
        ],
    )
    assert cfg.data.crop == (256, 512)
    assert cfg.data.batch_size == 4  # from the file, untouched
    assert cfg.data.flip is False
    assert cfg.data.root == "/tmp/x"
    assert cfg.space.ops == ("conv", "conv_2x")
    assert cfg.space.student_stem_width == pytest.approx(0.5)


def test_overrides_on_defaults_and_last_one_wins() -> None:
    cfg = load_config(None, ["data.batch_size=3", "data.batch_size=5"])
    assert cfg.data.batch_size == 5
    assert cfg == dataclasses.replace(Config(), data=DataConfig(batch_size=5))


def test_override_into_empty_yaml_section(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n")
    assert load_config(path, ["data.batch_size=3"]).data.batch_size == 3


def test_override_value_is_parsed_as_yaml_and_type_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with raises_config(
        f"{path} (with overrides): 'data.batch_size': expected an integer, got 'four'"
    ):
        load_config(path, ["data.batch_size=four"])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("data.batch_size", "override 'data.batch_size': expected section.key=value (no '='"),
        ("batch_size=3", "override 'batch_size=3': expected section.key=value, got key"),
        ("data.=3", "override 'data.=3': expected section.key=value"),
        ("=3", "override '=3': expected section.key=value"),
        ("data.crop=[1, 2", "override 'data.crop=[1, 2': value is not valid YAML"),
        ("data.crop.h=3", "override 'data.crop.h=3': 'crop' is not a section"),
    ],
)
def test_malformed_overrides(tmp_path: Path, override: str, match: str) -> None:
    path = write(tmp_path, "data:\n  crop: [8, 8]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    msg = str(info.value)
    assert msg.startswith(f"{path}: ")
    assert match in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("data.batchsize=3", "unknown key 'data.batchsize'; did you mean 'data.batch_size'?"),
        ("dta.batch_size=3", "unknown section 'dta'; did you mean 'data'?"),
        ("data.nothing_like_it=3", "unknown key 'data.nothing_like_it'; valid keys: dataset,"),
    ],
)
def test_override_unknown_key(override: str, match: str) -> None:
    with raises_config(f"<defaults> (with overrides): {match}"):
        load_config(None, [override])


# ---------------------------------------------------------------- the file itself
@pytest.mark.parametrize(
    ("text", "kind"),
    [("- data\n- space\n", "list"), ("just a string\n", "str"), ("3\n", "int")],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)
    with raises_config(f"{path}: the top level must be a mapping of sections"):
        load_config(path)
    with raises_config(f"got a {kind}"):
        read_yaml(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with raises_config(f"{path}: config file not found"):
        load_config(path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with raises_config(f"{tmp_path}: cannot read config file"):
        load_config(tmp_path)


def test_invalid_yaml_is_one_line_with_path(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  crop: [1, 2\n  flip: true\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: not valid YAML (")
    assert "\n" not in msg
    assert "line" in msg  # PyYAML's position survives the flattening


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"data:\n  root: caf\xe9\n")
    with raises_config(f"{path}: not UTF-8 text"):
        load_config(path)


@pytest.mark.parametrize(
    "recipe",
    ["search/demo.yaml", "search/cityscapes.yaml", "search/camvid.yaml",
     "train/demo.yaml", "train/cityscapes.yaml", "train/camvid.yaml",
     "fasterseg/recipes/search_demo.yaml", "fasterseg/recipes/train_demo.yaml"],
)  # fmt: skip
def test_shipped_recipes_load(recipe):
    from fasterseg.space.supernet import check_space

    cfg = load_config(Path(__file__).resolve().parents[1] / recipe)
    check_space(cfg.space)
    assert all(v % 32 == 0 for v in cfg.data.crop + cfg.search.crop + cfg.search.pretrain_crop)
    assert cfg.latency.height % 32 == 0 and cfg.latency.width % 32 == 0


def test_every_shipped_recipe_is_loaded_by_a_test():
    root = Path(__file__).resolve().parents[1]
    shipped = {
        str(p.relative_to(root))
        for folder in ("search", "train", "fasterseg/recipes")
        for p in (root / folder).glob("*.yaml")
    }
    tested = {
        *test_shipped_recipes_load.pytestmark[0].args[1],
        "fasterseg/recipes/pipeline_demo.yaml",  # loaded just below
        "fasterseg/recipes/study_demo.yaml",  # tests/test_study.py
    }
    assert shipped == tested


def test_demo_pipeline_uses_the_demo_stage_recipes_values():
    root = Path(__file__).resolve().parents[1]
    pipe = load_pipeline_config()
    search, train = load_config(root / "search/demo.yaml"), load_config(root / "train/demo.yaml")
    # the only difference: the pipeline keeps its table inside its output folder
    assert pipe.search == replace(search, latency=replace(search.latency, table="lut.json"))
    assert pipe.train == train


def test_recipe_key_merges_the_named_file_under_the_rest(tmp_path: Path) -> None:
    text = "data:\n  batch_size: 4\n  workers: 3\nsearch:\n  crop: [64, 64]\n"
    write(tmp_path, text, "base.yaml")
    (tmp_path / "sub").mkdir()
    child = write(tmp_path / "sub", "recipe: ../base.yaml\ndata:\n  workers: 0\n", "child.yaml")
    cfg = load_config(child, ["data.batch_size=6"])
    assert (cfg.data.batch_size, cfg.data.workers, cfg.search.crop) == (6, 0, (64, 64))
    loop = write(tmp_path, "recipe: loop.yaml\n", "loop.yaml")
    with raises_config("includes itself"):
        load_config(loop)
    missing = write(tmp_path, "recipe: nowhere.yaml\n", "missing.yaml")
    with raises_config(f"{missing}: 'recipe' nowhere.yaml: no such file"):
        load_config(missing)
    text = "search:\n  recipe: sub/child.yaml\n  data:\n    batch_size: 2\n"
    pipe = write(tmp_path, text, "p.yaml")
    got = load_pipeline_config(pipe)
    assert (got.search.data.batch_size, got.search.data.workers) == (2, 0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("search.arch_lr=0.1", "'search.arch_lr' has moved to 'arch.lr'"),
        ("train.device=cpu", "'train.device' has moved to 'runtime.device'"),
        ("search.seed=1", "'search.seed' has moved to 'runtime.seed'"),
        ("search.latency_min_ms=1", "'search.latency_min_ms' has moved to 'budget.min_ms'"),
        ("latency.reference_quirks=true", "has moved to 'reference.latency_quirks'"),
        ("data.seed=1", "'data.seed' was removed: it was never read"),
        ("search.eval_images=4", "'search.eval_images' was removed: the search scores a held-out"),
    ],
)
def test_an_old_key_names_its_new_place(override: str, message: str) -> None:
    with raises_config(message):
        load_config(None, [override])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("search.select=first", "search.select must be one of last, best, got 'first'"),
        ("search.select_portion=0", "search.select_portion must be between 0 and 1"),
        ("search.select_portion=1.0", "search.select_portion must be between 0 and 1"),
        ("latency.quiet_wait=-1", "latency.quiet_wait must be >= 0 seconds, got -1.0"),
    ],
)
def test_a_bad_selection_key_is_named(override: str, message: str) -> None:
    with raises_config(f"<defaults> (with overrides): {message}"):
        load_config(None, [override])


def test_an_old_key_in_a_pipeline_stage_names_its_new_place(tmp_path: Path) -> None:
    with raises_config("'search.search.target_ms' has moved to 'search.selection.target_ms'"):
        load_pipeline_config(None, ["search.search.target_ms=3"])
    path = write(tmp_path, "train:\n  train:\n    amp: true\n")
    with raises_config(f"{path}: 'train.train.amp' has moved to 'train.runtime.amp'"):
        load_pipeline_config(path)


def _documented_keys(readme: Path) -> set[str]:
    """``section.key`` names in the first column of a README's knob table; a bare name
    belongs to the section of the dotted name before it in the same cell."""
    keys = set()
    for line in readme.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        section = ""
        for name in re.findall(r"`([\w.]+)`", line.split("|")[1]):
            if "." in name:
                section, _ = name.split(".", 1)
                keys.add(name)
            else:
                keys.add(f"{section}.{name}")
    return keys


@pytest.mark.parametrize(
    ("readme", "sections"),
    [
        ("search/README.md", ("search", "arch", "budget", "selection", "reference", "runtime")),
        ("train/README.md", ("train", "distill", "runtime")),
    ],
)
def test_recipe_readme_tables_name_real_keys_and_every_stage_key(readme, sections):
    documented = _documented_keys(Path(__file__).resolve().parents[1] / readme)
    real = {
        f"{f.name}.{g.name}"
        for f in dataclasses.fields(Config)
        for g in dataclasses.fields(f.default_factory())
    }
    assert documented - real == set()  # no stale key
    stage = {k for k in real if k.split(".")[0] in sections}
    assert stage - documented == set()  # every knob of the stage is documented


def test_a_pipeline_file_may_start_from_another_in_another_folder(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    write(base, "search:\n  crop: [64, 64]\n", "search.yaml")
    write(base, "search:\n  recipe: search.yaml\n  data: {batch_size: 3}\n", "pipe.yaml")
    child = write(tmp_path, "recipe: base/pipe.yaml\nstudy: {random_archs: 4}\n", "study.yaml")
    cfg = load_pipeline_config(child)
    # the stage recipe is found beside the file that names it, not beside the child
    assert cfg.search.search.crop == (64, 64) and cfg.search.data.batch_size == 3
    assert cfg.study.random_archs == 4
    write(tmp_path, "recipe: nowhere.yaml\n", "bad.yaml")
    with raises_config(r"'recipe' nowhere.yaml: no such file"):
        load_pipeline_config(tmp_path / "bad.yaml")
    write(tmp_path, "recipe: loop.yaml\n", "loop.yaml")
    with raises_config("includes itself"):
        load_pipeline_config(tmp_path / "loop.yaml")
