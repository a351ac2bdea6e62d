"""Store failure: the one exception a store raises when it cannot answer."""

from __future__ import annotations

__all__ = ["StoreUnavailable"]


class StoreUnavailable(Exception):
    """The store could not be reached (or did not answer in time). The core fails closed."""
