"""The recipe's YAML reader: plain values only (no tags), no duplicate keys, bounded size, depth and alias expansion.

Nothing in a recipe file can run code or build an object other than text, numbers, booleans, null, lists
and mappings; a file that tries is refused with the line where it does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import RecipeError

MAX_RECIPE_BYTES = 1 << 20
MAX_NODES = 100_000  # after aliases are expanded: a "billion laughs" recipe is refused, not validated
MAX_DEPTH = 64


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses every tag written in the text, reads 1e-5 as a float (YAML 1.1 wants a dot) and
    rejects duplicate keys."""

    def scan_tag(self):
        """Refuse a tag where it is written, standard ones too: a recipe holds only plain values (text, numbers,
        booleans, null, lists, mappings), which need no tag, while ``!!set``, ``!!binary``, ``!!timestamp``,
        ``!!omap``... build objects no key takes (a set would fill a list in hash order) and ``!!python/...``
        would run code. Values without a tag are still resolved as before."""
        token = super().scan_tag()
        start, end = token.start_mark, token.end_mark
        written = start.buffer[start.pointer : end.pointer] if start.buffer is not None else repr(token.value)
        raise yaml.scanner.ScannerError(None, None, f"tags are not allowed in a recipe: {written}", start)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str):
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$|^[-+]?\d[\d_]*\.\d*$|^[-+]?\.\d+$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)


def safe_document(text: str, path: Path) -> Any:
    """Compose the YAML, refuse it if aliases would expand it beyond MAX_NODES or MAX_DEPTH, then construct."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        sizes: dict[int, int] = {}

        def expanded(node: yaml.Node, depth: int) -> int:
            if depth > MAX_DEPTH:
                raise RecipeError(f"{path}: YAML nested deeper than {MAX_DEPTH} levels")
            if id(node) not in sizes:
                children = (
                    node.value
                    if isinstance(node, yaml.SequenceNode)
                    else [part for pair in node.value for part in pair]
                    if isinstance(node, yaml.MappingNode)
                    else []
                )
                sizes[id(node)] = 1 + sum(expanded(child, depth + 1) for child in children)
                if sizes[id(node)] > MAX_NODES:
                    raise RecipeError(f"{path}: YAML expands to more than {MAX_NODES:,} values (an alias bomb?)")
            return sizes[id(node)]

        expanded(root, 0)
        return loader.construct_document(root)
    finally:
        loader.dispose()
