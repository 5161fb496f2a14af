"""``workbench schema``: the JSON Schema of metrics.json (the run model), for tools that read reports."""

from __future__ import annotations

import argparse


def main(args: argparse.Namespace) -> int:
    from workbench.results import Run

    print(Run.schema_text(), end="")
    return 0
