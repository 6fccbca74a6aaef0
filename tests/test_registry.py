"""Tests for fasterseg.registry.Registry: registration by decorator, lookups and their errors."""

from __future__ import annotations

import pytest

from fasterseg.registry import Registry


def make() -> Registry[type]:
    reg: Registry[type] = Registry("OPS")

    @reg.register("conv")
    class Conv:
        pass

    @reg.register("skip")
    class Skip:
        pass

    @reg.register("conv_2x")
    class Conv2x:
        pass

    return reg


def test_register_returns_the_object_and_get_finds_it() -> None:
    reg: Registry[object] = Registry("THINGS")

    def build() -> int:
        return 3

    assert reg.register("build")(build) is build
    assert reg.get("build") is build
    assert reg.get("build")() == 3


def test_container_protocol_keeps_registration_order() -> None:
    reg = make()
    assert reg.name == "OPS"
    assert reg.keys() == ["conv", "skip", "conv_2x"]
    assert list(reg) == ["conv", "skip", "conv_2x"]
    assert len(reg) == 3
    assert "skip" in reg and "nope" not in reg
    assert reg.get("conv").__name__ == "Conv"
    assert reg.get("conv_2x").__name__ == "Conv2x"


def test_duplicate_key_is_an_error_and_keeps_the_first() -> None:
    reg = make()
    first = reg.get("conv")

    class Other:
        pass

    with pytest.raises(KeyError) as info:
        reg.register("conv")(Other)
    msg = info.value.args[0]
    assert msg.startswith("OPS: 'conv' is already registered (to ")
    assert "Conv" in msg and msg.endswith("choose another name")
    assert reg.get("conv") is first
    assert len(reg) == 3


def test_unknown_key_names_registry_and_lists_valid_keys() -> None:
    reg = make()
    with pytest.raises(KeyError) as info:
        reg.get("pool")
    assert info.value.args[0] == "OPS: unknown key 'pool'; registered: conv, conv_2x, skip"


def test_unknown_key_suggests_the_closest() -> None:
    reg = make()
    with pytest.raises(KeyError) as info:
        reg.get("conv2x")
    assert info.value.args[0] == (
        "OPS: unknown key 'conv2x'; did you mean 'conv_2x'? registered: conv, conv_2x, skip"
    )


def test_empty_registry() -> None:
    reg: Registry[int] = Registry("EMPTY")
    assert len(reg) == 0 and reg.keys() == [] and "a" not in reg
    with pytest.raises(KeyError) as info:
        reg.get("a")
    assert info.value.args[0] == "EMPTY: unknown key 'a'; registered: (none)"


def test_registries_are_independent() -> None:
    a, b = make(), Registry[type]("OTHER")
    b.register("conv")(int)
    assert a.get("conv") is not int and b.get("conv") is int
    assert b.keys() == ["conv"]


def test_temporarily_registers_for_the_block_only() -> None:
    reg = make()

    class Mine:
        pass

    with reg.temporarily("mine", Mine) as obj:
        assert obj is Mine and reg.get("mine") is Mine
        assert reg.keys() == ["conv", "skip", "conv_2x", "mine"]
    assert "mine" not in reg and reg.keys() == ["conv", "skip", "conv_2x"]


def test_temporarily_removes_the_key_when_the_block_raises() -> None:
    reg = make()
    with pytest.raises(RuntimeError, match="boom"), reg.temporarily("mine", int):
        raise RuntimeError("boom")
    assert "mine" not in reg and len(reg) == 3


def test_temporarily_refuses_a_taken_key_and_keeps_the_first() -> None:
    reg = make()
    first = reg.get("skip")
    with pytest.raises(KeyError, match="already registered"), reg.temporarily("skip", int):
        pass
    assert reg.get("skip") is first and len(reg) == 3
