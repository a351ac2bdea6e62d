"""Store failure: the one exception a store raises when it cannot answer."""

from __future__ import annotations

__all__ = ["StoreUnavailable"]


class StoreUnavailable(Exception):
    """The store could not be reached (or did not answer in time). The core fails closed."""

    loop_stalled: bool = False
    """Set when the failure was a timeout observed only after this process's event loop had
    been kept from running well past the deadline (a retry of an idempotent read is safe)."""
