"""Importing FasterSeg's released latency table (fasterseg.reference.lut), checked against the
figures the reference itself stored in arch_1.pt."""

from __future__ import annotations

import hashlib
import io
import pickle

import numpy as np
import pytest
import torch
from conftest import REFERENCE_DIR, WritesMarker

from fasterseg.config import SpaceConfig
from fasterseg.decode import ArchParams, decode
from fasterseg.genotype import Genotype
from fasterseg.latency import (
    LatencyTable,
    LatencyTableError,
    OpSpec,
    device_fingerprint,
    genotype_latency,
    space_kernels,
)
from fasterseg.latency.measure import Measurement
from fasterseg.latency.table import COMPARED_FIELDS, fingerprint_diff
from fasterseg.models import load_genotype
from fasterseg.profile import profile_genotype
from fasterseg.reference.common import ReferenceFileError
from fasterseg.reference.lut import (
    REFERENCE_HEIGHT,
    REFERENCE_WIDTH,
    import_reference_table,
    read_reference_npy,
)

DATA = REFERENCE_DIR
NPY = DATA / "latency_lookup_table.npy"
ARCH_1 = DATA / "arch_1.pt"
H, W = REFERENCE_HEIGHT, REFERENCE_WIDTH
PRIMITIVES = ("skip", "conv", "conv_downup", "conv_2x", "conv_2x_downup")
WIDTHS = (4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.0)
#: The paper's student FPS (TensorRT, GTX 1080Ti, end to end; Table 4).
PAPER_FPS = 163.9


@pytest.fixture(scope="module")
def table() -> LatencyTable:
    return import_reference_table(NPY)


@pytest.fixture(scope="module")
def raw() -> dict[str, float]:
    return read_reference_npy(NPY)


@pytest.fixture(scope="module")
def arch_1() -> dict:
    """arch_1.pt through weights_only=True, with only its numpy globals allowlisted."""
    allow = [
        (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
        np.dtypes.Float64DType,
    ]
    with torch.serialization.safe_globals(allow):
        return torch.load(ARCH_1, map_location="cpu", weights_only=True)


def student_pair(arch: dict, lasts: tuple[int, int]) -> Genotype:
    """The student of arch_1.pt with branch pair ``lasts``, decoded as the reference does."""
    params = ArchParams(
        alphas=tuple(arch[f"alpha_1_{s}"] for s in range(3)),
        betas=(arch["beta_1_1"], arch["beta_1_2"]),
        ratios=tuple(arch[f"ratio_1_{s}"] for s in range(3)),
    )
    return decode(
        params, lasts, name=f"arch_1-{lasts}", ops=PRIMITIVES, fch=12, stem_width=8 / 12,
        head_width=8 / 12, width_choices=WIDTHS, forbid_skip=False,
    )  # fmt: skip


def npy_bytes(obj: object) -> bytes:
    """``obj`` as np.save writes it (a pickled object array unless it is numeric)."""
    buf = io.BytesIO()
    np.save(buf, obj, allow_pickle=True)
    return buf.getvalue()


def object_npy(mapping: object) -> bytes:
    arr = np.empty((), dtype=object)
    arr[()] = mapping
    return npy_bytes(arr)


# ---------------------------------------------------------------- reading
def test_reader_reads_the_released_table(raw):
    assert hashlib.md5(NPY.read_bytes()).hexdigest() == "83dfacca93c7ae8d2e80312529366ff8"
    assert len(raw) == 667
    assert raw["ConvNorm_H64_W128_Cin192_Cout96_kernel1_stride1"] == 0.0691542635609141
    assert raw["BasicResidual2x_H128_W256_Cin32_Cout48_stride1_dilation1"] == 0.24572222464335722
    assert min(raw.values()) == pytest.approx(0.0206, abs=1e-4)
    assert max(raw.values()) == pytest.approx(2.832, abs=1e-3)
    prefixes = [k.rsplit("_H", 1)[0] for k in raw]
    assert {p: prefixes.count(p) for p in set(prefixes)} == {
        "ConvNorm": 28, "BasicResidual1x": 125, "BasicResidual_downup_1x": 125,
        "BasicResidual2x": 129, "BasicResidual_downup_2x": 125, "FactorizedReduce": 125,
        "ff": 5, "head": 5,
    }  # fmt: skip


def test_reader_reads_what_numpy_2_writes(tmp_path):
    mapping = {"ff_H128_W256_C64": 0.25, "head_H128_W256_Cin64_Cout19": 1.5}
    path = tmp_path / "t.npy"
    path.write_bytes(object_npy(mapping))
    assert read_reference_npy(path) == mapping


@pytest.mark.parametrize("where", ["top level", "inside the object array"])
def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path, where):
    marker = tmp_path / "ran"
    payload = WritesMarker(marker)
    if where == "top level":
        header = NPY.read_bytes()[:128]
        data = header + pickle.dumps({"ff_H128_W256_C64": payload}, protocol=2)
    else:
        data = object_npy({"ff_H128_W256_C64": payload})
    # the payload is live: unpickling it the ordinary way runs it
    stream = io.BytesIO(data)
    np.lib.format.read_magic(stream)
    np.lib.format.read_array_header_1_0(stream)
    pickle.loads(stream.read())
    assert marker.exists()
    marker.unlink()

    path = tmp_path / "evil.npy"
    path.write_bytes(data)
    refused = r"refused to unpickle global '(__builtin__|builtins)\.exec'"
    for load in (read_reference_npy, import_reference_table):
        with pytest.raises(ReferenceFileError, match=refused):
            load(path)
    assert not marker.exists()
    with pytest.raises(ReferenceFileError) as err:
        read_reference_npy(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("cut", [9, 100, 300, -1])
def test_a_truncated_file_is_an_error_naming_it(tmp_path, cut):
    path = tmp_path / "cut.npy"
    path.write_bytes(NPY.read_bytes()[:cut])
    with pytest.raises(ReferenceFileError, match="truncated") as err:
        read_reference_npy(path)
    assert str(err.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    "data, message",
    [
        (npy_bytes(np.arange(3.0)), "holds a '<f8' array of shape (3,), not a pickled mapping"),
        (npy_bytes(np.array([{}, {}], dtype=object)), "of shape (2,), not a pickled mapping"),
        (object_npy([0.1, 0.2]), "holds a list, not a str -> float mapping"),
        (object_npy({"k": "fast"}), "entry 'k': expected a finite float >= 0 (ms), got 'fast'"),
        (object_npy({"k": 1}), "entry 'k': expected a finite float >= 0 (ms), got 1"),
        (object_npy({"k": float("nan")}), "entry 'k': expected a finite float >= 0"),
        (object_npy({"k": -0.5}), "entry 'k': expected a finite float >= 0 (ms), got -0.5"),
        (object_npy({3: 0.5}), "key 3 is not a string"),
        (b'{"ff_H128_W256_C64": 0.1}', "not a .npy file"),
    ],
)
def test_a_npy_holding_anything_but_a_str_float_mapping_is_refused(tmp_path, data, message):
    path = tmp_path / "bad.npy"
    path.write_bytes(data)
    with pytest.raises(ReferenceFileError) as err:
        read_reference_npy(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ReferenceFileError, match="not found"):
        import_reference_table(tmp_path / "none.npy")


# ---------------------------------------------------------------- mapping
def test_keys_the_rule_cannot_place_are_all_listed(tmp_path, raw):
    bad = [
        "Mystery_H128_W256_C64",
        "BasicResidual1x_H100_W200_Cin32_Cout32_stride1_dilation1",
        "BasicResidual1x_H128_W256_Cin32_Cout32_stride1_dilation2",
        "ConvNorm_H128_W256_Cin64_Cout64_kernel1_stride1",
        "ff_H64_W128_C64",
    ]
    path = tmp_path / "extra.npy"
    path.write_bytes(object_npy({**raw, **dict.fromkeys(bad, 0.1)}))
    with pytest.raises(ReferenceFileError) as err:
        import_reference_table(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: 5 reference entries fit no kernel")
    assert all(key in msg for key in bad)

    # a refine with no arm to pair with cannot be placed either
    orphan = {k: v for k, v in raw.items() if not k.startswith("ConvNorm_H32_W64_Cin256")}
    path.write_bytes(object_npy(orphan))
    with pytest.raises(ReferenceFileError, match="5 reference entries fit no kernel") as err:
        import_reference_table(path)
    assert "ConvNorm_H64_W128_Cin192_Cout128_kernel3_stride1" in str(err.value)


def test_entries_follow_the_reference_accounting(table, raw):
    assert len(table) == 670
    stem = OpSpec("stem", 3, 64, H, W, c_mid=(32, 64))
    assert table.lookup(stem) == (
        raw["ConvNorm_H1024_W2048_Cin3_Cout32_kernel3_stride2"]
        + raw["BasicResidual2x_H512_W1024_Cin32_Cout64_stride2_dilation1"]
        + raw["BasicResidual2x_H256_W512_Cin64_Cout64_stride2_dilation1"]
    )
    fusion = OpSpec("fusion", 256, 128, 32, 64, c_fine=64)
    assert table.lookup(fusion) == (
        raw["ConvNorm_H32_W64_Cin256_Cout128_kernel1_stride1"]
        + raw["ConvNorm_H64_W128_Cin192_Cout128_kernel3_stride1"]
    )
    assert table.lookup(OpSpec("ffm", 128, 128, 128, 256)) == raw["ff_H128_W256_C128"]
    assert table.lookup(OpSpec("head", 128, 19, 128, 256)) == raw["head_H128_W256_Cin128_Cout19"]
    downup = raw["BasicResidual_downup_1x_H128_W256_Cin32_Cout128_stride2_dilation1"]
    assert table.lookup(OpSpec("conv_downup", 32, 128, 128, 256, 2)) == downup
    skip = raw["FactorizedReduce_H64_W128_Cin64_Cout64_stride1"]
    assert table.lookup(OpSpec("skip", 64, 64, 64, 128)) == skip
    concat = [k for k in table.entries if k.startswith("concat|")]
    assert len(concat) == 13 and all(table.entries[k].ms == 0 for k in concat)
    assert table.lookup(OpSpec("concat", 64, 128, 128, 256)) == 0.0
    assert {m.std for m in table.entries.values()} == {0.0}
    assert {m.n for m in table.entries.values()} == {1}
    assert all(OpSpec.from_key(k).resize_mode == "bilinear" for k in table.entries)


def test_conv_2x_downup_switch(table, raw):
    spec = OpSpec("conv_2x_downup", 64, 64, 64, 128)
    conv_2x = raw["BasicResidual2x_H64_W128_Cin64_Cout64_stride1_dilation1"]
    own = raw["BasicResidual_downup_2x_H64_W128_Cin64_Cout64_stride1_dilation1"]
    assert conv_2x != own
    assert table.lookup(spec) == conv_2x
    assert table.fingerprint["conv_2x_downup_as_conv_2x"] is True
    assert sum(table.fingerprint["source_entries_unused"].values()) == 125 + 2

    corrected = import_reference_table(NPY, reference_quirks=False)
    assert corrected.lookup(spec) == own
    assert corrected.fingerprint["conv_2x_downup_as_conv_2x"] is False
    assert list(corrected.fingerprint["source_entries_unused"].values()) == [2]
    student = load_genotype("fasterseg-student")
    fixed = genotype_latency(student, corrected, height=H, width=W)
    assert fixed == pytest.approx(5.701836, abs=1e-6)


def test_fingerprint_says_what_the_table_is(table):
    fp = table.fingerprint
    assert all(field in fp for field in COMPARED_FIELDS)
    assert fp["imported"] is True
    assert (fp["device"], fp["backend"], fp["backend_version"]) == (
        "GeForce GTX 1080 Ti", "tensorrt", "5.1.5",
    )  # fmt: skip
    assert (fp["dtype"], fp["height"], fp["width"], fp["statistic"]) == ("float32", H, W, "mean")
    assert "FasterSeg reference" in fp["source"]
    assert fp["source_sha256"] == hashlib.sha256(NPY.read_bytes()).hexdigest()
    assert fp["source_entries"] == 667
    assert fp["zero_ms_by_rule"] == ["concat"]
    here = device_fingerprint("torch", "cpu", 1, H, W)
    diff = " ".join(fingerprint_diff(fp, here))
    assert "device: 'GeForce GTX 1080 Ti' vs 'cpu'" in diff and "backend: 'tensorrt'" in diff


def test_the_table_covers_the_cityscapes_search_space(table):
    assert table.missing(space_kernels(SpaceConfig(), H, W)) == []


# ---------------------------------------------------------------- acceptance
def test_reproduces_the_latencies_stored_in_arch_1(table, arch_1):
    pair_20 = student_pair(arch_1, (2, 0))
    pair_21 = student_pair(arch_1, (2, 1))
    assert [b.last_scale for b in pair_20.branches] == [2, 0]
    # the shipped student is arch_1.pt's [2, 1] pair
    assert pair_21.branches == load_genotype("fasterseg-student").branches
    lat02 = genotype_latency(pair_20, table, height=H, width=W)
    lat12 = genotype_latency(pair_21, table, height=H, width=W)
    assert arch_1["latency02"] == pytest.approx(6.260467, abs=1e-6)
    assert arch_1["latency12"] == pytest.approx(6.413977, abs=1e-6)
    assert lat02 == pytest.approx(arch_1["latency02"], abs=1e-4)
    assert lat12 == pytest.approx(arch_1["latency12"], abs=1e-4)


def test_published_networks_on_the_1080ti_table(table):
    student = genotype_latency(load_genotype("fasterseg-student"), table, height=H, width=W)
    teacher = genotype_latency(load_genotype("fasterseg-teacher"), table, height=H, width=W)
    assert 1000 / student == pytest.approx(155.91, abs=0.01)  # the paper measured 163.9 FPS
    assert 1000 / student < PAPER_FPS
    assert teacher == pytest.approx(25.23, abs=0.005)  # method doc section 7
    assert 1000 / teacher == pytest.approx(39.64, abs=0.01)


# ---------------------------------------------------------------- where tables are taken
def test_save_load_round_trip(table, tmp_path):
    path = table.save(tmp_path / "lut_1080ti.json")
    loaded = LatencyTable.load(path)
    assert loaded.entries == table.entries
    assert loaded.fingerprint == table.fingerprint
    student = load_genotype("fasterseg-student")
    assert genotype_latency(student, loaded, height=H, width=W) == genotype_latency(
        student, table, height=H, width=W
    )
    here = device_fingerprint("torch", "cpu", 1, H, W)
    with pytest.raises(LatencyTableError, match="measured on a different device"):
        LatencyTable.load(path, expect_fingerprint=here)
    with pytest.warns(UserWarning, match="GeForce GTX 1080 Ti"):
        LatencyTable.load(path, expect_fingerprint=here, allow_mismatch=True)


@pytest.mark.slow  # thop counts the network at 1024x2048
def test_profile_predicts_the_1080ti_latency(table):
    student = load_genotype("fasterseg-student")
    result = profile_genotype(student, height=H, width=W, table=table)
    assert result["latency_ms_predicted"] == pytest.approx(6.413977, abs=1e-4)
    assert "latency_ms_predicted_calibrated" not in result
    with pytest.raises(LatencyTableError, match="was built at 1024x2048, not 512x1024"):
        profile_genotype(student, height=512, width=1024, table=table)


def test_a_kernel_nothing_covers_is_an_error_listing_them(table):
    student = load_genotype("fasterseg-student")
    with pytest.raises(KeyError) as err:
        genotype_latency(student, table, height=H, width=W, num_classes=11)
    msg = str(err.value)
    assert "head|c_in=128|c_out=11|h=128|w=256" in msg
    assert "imported from FasterSeg reference" in msg and "cannot be measured here" in msg
    # every kernel the network runs (18 distinct ones) with another resize mode
    with pytest.raises(KeyError, match=r"entries \(18\) stem\|") as err:
        genotype_latency(student, table, height=H, width=W, resize_mode="nearest")
    assert str(err.value).count("resize=nearest") == 18


def test_require_lists_every_missing_kernel_of_a_built_table(tmp_path):
    fp = device_fingerprint("torch", "cpu", 1, 64, 64)
    table = LatencyTable(fp, {OpSpec("conv", 4, 4, 8, 8).key(): Measurement(1.0, 0.0, 1)})
    table.save(tmp_path / "lut.json")
    wanted = [OpSpec("conv", 4, 4, 8, 8), OpSpec("conv", 4, 8, 8, 8), OpSpec("skip", 4, 4, 8, 8)]
    with pytest.raises(KeyError) as err:
        table.require(wanted + wanted)
    msg = str(err.value)
    assert f"no latency entries (2) {wanted[1].key()}, {wanted[2].key()} in " in msg
    assert f"fasterseg lut build --out {tmp_path / 'lut.json'} --height 64 --width 64" in msg
    table.require(wanted[:1])
