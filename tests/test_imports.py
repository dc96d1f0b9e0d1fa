"""Every module imports on its own (a fresh set of `trm` modules each time), and the inference path
(checkpoint, evaluate, solve, viz, tasks, the eval and solve commands) never imports the trainer."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import trm

INFERENCE = ("trm.checkpoint", "trm.evaluate", "trm.solve", "trm.viz", "trm.runtime", "trm.tasks",
             "trm.commands.eval", "trm.commands.solve", "trm.commands.build")
"""Modules (and packages, with everything under them) that must not need `trm.train`."""

_SCRIPT = """
import importlib, json, sys
out = {}
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "trm" or m.startswith("trm.")]:
        del sys.modules[loaded]
    importlib.import_module(name)
    out[name] = sorted(m for m in sys.modules if m == "trm" or m.startswith("trm."))
print(json.dumps(out))
"""


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(trm.__path__, "trm.") if not m.name.endswith("__main__"))


def test_every_module_imports_alone_and_inference_does_not_import_the_trainer() -> None:
    names = _modules()
    assert {"trm.tasks.sudoku", "trm.tasks.maze", "trm.tasks.arc", "trm.runtime", "trm.train"} <= set(names)
    done = subprocess.run([sys.executable, "-c", _SCRIPT, *names], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout)
    inference = [n for n in names if any(n == p or n.startswith(p + ".") for p in INFERENCE)]
    assert len(inference) > 10
    for name in inference:
        assert "trm.train" not in imported[name], f"{name} imports trm.train"
