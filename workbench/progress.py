"""What a run tells whoever watches it: stages starting and ending, validation advancing, named checkpoints.

The default says nothing; the command line gives a rich-backed one. ``checkpoint`` marks named points of a
run (``locked``, ``reference``, ``stage:<name>``, ``validate:<stage>``, ``publish``): a no-op here, a place
where a watcher (a test that kills a run at a known phase) can act.
"""

from __future__ import annotations

from collections.abc import Callable


class Progress:
    def stage(self, name: str) -> None:
        """A stage (or ``reference``, ``benchmarks``) starts."""

    def done(self, name: str, outcome: str) -> None:
        """It ended, with a one-word outcome."""

    def validating(self, name: str, total: int) -> Callable[[int], None]:
        """A row's validation over ``total`` samples starts; the callable advances it."""
        return lambda n: None

    def note(self, name: str, text: str) -> None:
        """A short status line for a running step (e.g. which benchmark case)."""

    def checkpoint(self, point: str) -> None:
        """The run reached a named point."""
