"""Store failure: the one exception a store raises when it cannot answer."""

from __future__ import annotations

__all__ = ["SchemaMismatch", "StoreUnavailable"]


class StoreUnavailable(Exception):
    """The store could not be reached (or did not answer in time). The core fails closed."""


class SchemaMismatch(RuntimeError):
    """The database's schema is not the one this code was written for (its message names
    the command that fixes it)."""
