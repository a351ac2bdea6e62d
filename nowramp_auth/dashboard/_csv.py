"""The Audit Logs as CSV, safe to open in a spreadsheet.

Request paths and other fields can hold what an attacker sent. A cell that starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be read as a formula by
spreadsheet programs, so it is prefixed with ``'`` (OWASP's CSV injection advice).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from .._models import AuditEvent

__all__ = ["COLUMNS", "audit_csv_text", "spreadsheet_safe"]

COLUMNS = (
    "at",
    "type",
    "key_id",
    "project_id",
    "code",
    "client_ip",
    "method",
    "path",
    "session_id",
    "actor",
    "detail",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> str:
    """``value`` as a cell that no spreadsheet evaluates."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def audit_csv_text(events: Iterable[AuditEvent]) -> str:
    """A header row and one row per event (fields of :data:`COLUMNS`)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for event in events:
        row = event.to_dict()
        writer.writerow([spreadsheet_safe(row[column]) for column in COLUMNS])
    return out.getvalue()
