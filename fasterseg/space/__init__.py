"""The search space: roles, MixedOp, Cell, SuperNet."""

from .roles import Role, WidthMode
from .supernet import HEAD_NAMES, Cell, MixedOp, SuperNet, WidthSample

__all__ = ["HEAD_NAMES", "Cell", "MixedOp", "Role", "SuperNet", "WidthMode", "WidthSample"]
