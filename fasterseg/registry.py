"""Registries: the only place where strings from configs and files become classes."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping from string keys to objects, filled by a decorator.

    Example::

        OPS = Registry("OPS")

        @OPS.register("conv")
        class Conv(nn.Module): ...

        OPS.get("conv")  # -> Conv

        with OPS.temporarily("mine", Mine):  # registered inside the block only
            ...
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._items: dict[str, T] = {}

    def register(self, key: str) -> Callable[[T], T]:
        """Decorator that registers its target under ``key``; a duplicate key is an error."""

        def deco(obj: T) -> T:
            if key in self._items:
                raise KeyError(
                    f"{self.name}: {key!r} is already registered (to {self._items[key]!r}); "
                    "choose another name"
                )
            self._items[key] = obj
            return obj

        return deco

    @contextlib.contextmanager
    def temporarily(self, key: str, obj: T) -> Iterator[T]:
        """Register ``obj`` under ``key`` for the ``with`` block only, then remove it, also when
        the block raises: for tests and experiments that must leave the registry as they found
        it. A key that is already registered is an error, as with :meth:`register`."""
        self.register(key)(obj)
        try:
            yield obj
        finally:
            del self._items[key]

    def get(self, key: str) -> T:
        """Return the object registered under ``key``; a KeyError lists the valid keys."""
        try:
            return self._items[key]
        except KeyError:
            valid = sorted(self._items)
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise KeyError(
                f"{self.name}: unknown key {key!r}; {hint}"
                f"registered: {', '.join(valid) if valid else '(none)'}"
            ) from None

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:
        """Registered keys in registration order."""
        return list(self._items)
