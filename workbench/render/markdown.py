"""Markdown helpers shared by the renderers: tables and the two number formats every table uses."""

from __future__ import annotations


def table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table (reads as plain text in a terminal too)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"
