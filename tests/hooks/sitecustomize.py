"""Loaded at start-up by a ``python -m workbench`` subprocess whose PYTHONPATH names this folder (tests only).

When ``WORKBENCH_TEST_PAUSE_AT`` is ``point=dir``, the run's ``Progress.checkpoint(point)`` writes
``<dir>/<point>.reached`` and waits (up to 60 s) for ``<dir>/<point>.go``: a test can kill or race a run at a
known phase instead of polling for it. Production code only announces its checkpoints; the waiting lives here.
"""

import os
import time
from pathlib import Path

PAUSE_ENV = "WORKBENCH_TEST_PAUSE_AT"
_setting = os.environ.get(PAUSE_ENV, "")
_name, _, _folder = _setting.partition("=")

if _name and _folder:
    from workbench.progress import Progress

    def _checkpoint(self, point: str) -> None:
        if point != _name:
            return
        (Path(_folder) / f"{point}.reached").write_text(str(os.getpid()))
        deadline = time.monotonic() + 60
        while not (Path(_folder) / f"{point}.go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    Progress.checkpoint = _checkpoint
