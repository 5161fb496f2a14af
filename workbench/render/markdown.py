"""Markdown helpers shared by the report renderers."""


def table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table (reads as plain text in a terminal too)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
