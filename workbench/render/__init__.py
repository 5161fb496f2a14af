"""Rendering: typed results -> metrics.json -> report.md, charts and terminal tables. Measures nothing."""
