"""The Markdown tables every benchmark tool prints."""

from __future__ import annotations


def markdown_table(title: str, headers: list[str], rows: list[list[str]]) -> str:
    """``### title`` and a Markdown table of ``rows`` under ``headers``."""
    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
