"""workbench.model: the class a recipe names is imported from the recipe's root, ahead of the rest of sys.path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Run in a fresh interpreter, where what is imported before import_class is up to the test (in this process
# `task` is imported already).
SCRIPT = """
import importlib.util, json, sys
from workbench import recipe
from workbench.model import import_class_from

loaded = recipe.load(sys.argv[1])
elsewhere = importlib.util.find_spec("task").origin  # what `import task` finds without the root
if sys.argv[2] == "imported-first":
    import task  # a long-lived process that already holds the other task module
already = "task" in sys.modules
before = sys.modules.get("task")
path = list(sys.path)
cls, source = import_class_from(loaded.model.class_, search_path=loaded.root)
print(json.dumps({
    "elsewhere": elsewhere,
    "already": already,
    "imported": str(source),
    "process_module_kept": sys.modules.get("task") is before,
    "from_root": getattr(cls, "FROM_ROOT", False),
    "sys_path_restored": sys.path == path,
}))
"""


@pytest.mark.parametrize("before", ["fresh", "imported-first"])
def test_the_recipe_root_comes_first_on_sys_path(tmp_path, before):
    root = tmp_path / "project"
    root.mkdir()
    (root / "task.py").write_text("class TextClassifier:\n    FROM_ROOT = True  # this root's own task.py\n")
    (tmp_path / "recipes").mkdir()
    path = tmp_path / "recipes" / "r.yaml"
    path.write_text(
        "root: ../project\nmodel: {class: task:TextClassifier, weights: model.pt}\nstages: [{export: {}}]\n"
    )
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path), before],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # the repository's task.py is on sys.path too
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["elsewhere"] == str(ROOT / "task.py"), out  # another task.py is on sys.path: the test can tell
    assert out["already"] == (before == "imported-first"), out
    assert out["imported"] == str(root / "task.py") and out["from_root"], out
    assert out["sys_path_restored"], out
    if before == "imported-first":
        assert out["process_module_kept"], out  # what the process imported before is put back afterwards
