"""Exceptions a user can cause and fix. The CLI prints their message on one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (file, configuration, argument), not a library bug."""


class ConfigError(UserError, ValueError):
    """An invalid configuration file, key, value or override."""


class DataError(UserError, ValueError):
    """A dataset folder or file that does not match the expected layout or content."""


class GenotypeError(UserError, ValueError):
    """An architecture (genotype) file or object that fails validation."""


class DivergedError(UserError, RuntimeError):
    """A training or search loss became NaN or infinite; the last good checkpoint is kept."""
