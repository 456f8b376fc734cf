"""Errors a user can act on.

Every failure caused by the user's input (a path, a model file, a config value) is raised as an
``EdgevidError`` whose message is one line naming the thing and what was expected; the CLI prints
that line and exits with ``exit_code`` instead of showing a traceback.
"""

from __future__ import annotations


class EdgevidError(Exception):
    """A failure the user can fix; ``str(err)`` is the one-line message shown to them."""

    exit_code = 1


class UsageError(EdgevidError):
    """The command line itself is wrong (missing path, bad option value)."""

    exit_code = 2


class InputError(EdgevidError):
    """A clip or source cannot be read as video."""


class ModelError(EdgevidError):
    """A model file, label list or manifest is missing, corrupt or does not fit."""


class ConfigError(EdgevidError):
    """A config file has an unknown key, a wrong type or a missing value."""

    exit_code = 2
