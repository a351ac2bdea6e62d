"""The Audit Logs as CSV, safe to open in a spreadsheet.

Request paths and other fields can hold what an attacker sent. A cell that starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be read as a formula by
spreadsheet programs, so it is prefixed with ``'`` (OWASP's CSV injection advice). Whichever
separator the spreadsheet splits on (``,``, ``;`` -- Excel's default in many locales -- or
tab), a field may fall apart into several cells, so every place where a cell could begin
(the start, or after a separator, a double quote, a space or a line break) is neutralised the same
way, and every field is quoted.
"""

from __future__ import annotations

import csv
import io
import re
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
# A formula character at the start of the text or after anything a spreadsheet may split
# on or trim (separators, double quotes, any white space or line break, Unicode's included)
# could begin a cell. The
# inserted ' is none of those, so repeating the substitution reaches a fixed point.
_CELL_START = re.compile(r"""(^|[,;"\s])([=+\-@\t\r|%])""")


def spreadsheet_safe(value: object) -> str:
    """``value`` as text that no spreadsheet evaluates as a formula in any cell, whichever
    of ``,``, ``;`` or tab it is split on."""
    text = "" if value is None else str(value)
    previous = None
    while previous != text:  # a neutralised start may make another (e.g. "==")
        previous, text = text, _CELL_START.sub(r"\1'\2", text)
    return text


def audit_csv_text(events: Iterable[AuditEvent]) -> str:
    """A header row and one row per event (fields of :data:`COLUMNS`)."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    writer.writerow(COLUMNS)
    for event in events:
        row = event.to_dict()
        writer.writerow([spreadsheet_safe(row[column]) for column in COLUMNS])
    return out.getvalue()
