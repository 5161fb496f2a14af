"""Deciding what to ship: per-layer sensitivity of int8 artifacts, search trials, the Ship choice."""
