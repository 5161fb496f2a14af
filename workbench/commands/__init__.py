"""One module per command of ``python -m workbench``: run, bench, compare, train, schema."""
