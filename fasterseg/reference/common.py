"""What the reference's file readers share: their error and a weights-only ``torch.load``.

Every file FasterSeg released is read with ``torch.load(weights_only=True)``: the unpickler then
builds only tensors, plain containers and the globals a caller allowlists for that one call, so
a file that would run code when unpickled is refused before anything runs.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError

__all__ = ["ReferenceFileError", "load_torch_file"]


class ReferenceFileError(UserError, ValueError):
    """A released FasterSeg file that is missing, truncated, unsafe or not of the expected kind."""


def _first_line(text: str, fallback: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else fallback


def load_torch_file(path: str | os.PathLike, what: str, allow: Sequence[Any] = ()) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with ``allow`` (objects or
    ``(object, "legacy.name")`` pairs) allowlisted for this call only.

    Tensors saved on a GPU come back on the CPU, so a machine without CUDA reads them. ``what``
    names the kind of file in errors (``"arch file"``). Raises :class:`ReferenceFileError`,
    naming the file, when it is missing, truncated or corrupt, or would import anything
    outside the allowlist (nothing of it is executed).
    """
    path = Path(path)
    if not path.is_file():
        raise ReferenceFileError(f"{path}: {what} not found")
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        # torch names the refused global as "Unsupported global: GLOBAL x" or, for a module
        # it blocks outright, "unsupported GLOBAL x whose module ... is blocked"
        named = re.search(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)", text)
        if named and re.fullmatch(r"\w+(\.\w+)*", named.group(1)):
            raise ReferenceFileError(
                f"{path}: refused to load the {what}: it would import {named.group(1)}, which "
                f"no {what} needs (nothing in it was executed)"
            ) from None
        if named:  # a name cut short: the file ends inside it
            raise ReferenceFileError(
                f"{path}: corrupt or truncated {what} (a global name cut short: "
                f"{named.group(1)!r}; nothing in it was executed)"
            ) from None
        # torch puts the unpickler's reason after this marker, sometimes on the next line
        _, _, detail = text.partition("WeightsUnpickler error:")
        # without that marker: the first line that is not torch's general advice (which
        # suggests weights_only=False, exactly what must not be done with such a file)
        lines = [x for x in (detail or text).splitlines() if x.strip()]
        lines = [x for x in lines if not x.startswith(("Weights only load failed", "Check the"))]
        reason = _first_line("\n".join(lines), type(exc).__name__)
        raise ReferenceFileError(
            f"{path}: refused to load the {what}: {reason} (not a weights-only file, or "
            "corrupt; nothing in it was executed)"
        ) from None
    except EOFError:
        raise ReferenceFileError(f"{path}: truncated {what} (the file ends early)") from None
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        # torch reports truncated archives and foreign bytes as these (e.g. "unexpected EOF",
        # "failed finding central directory", an unknown pickle opcode as a KeyError)
        raise ReferenceFileError(
            f"{path}: corrupt or truncated {what} ({_first_line(str(exc), type(exc).__name__)})"
        ) from None
