"""Timing: the measuring loop, the benchmark suite of a run, session tuning, and the benchmark cache."""
