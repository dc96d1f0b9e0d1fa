"""trm: tiny recursive reasoning models (TRM, HRM and a transformer baseline)."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Solver", "load", "__version__"]


def __getattr__(name: str) -> Any:
    # `import trm` stays light; `trm.Solver` and `trm.load` import torch on first use
    if name == "Solver":
        from trm.solve import Solver

        return Solver
    if name == "load":
        from trm.loader import load

        return load
    raise AttributeError(f"module 'trm' has no attribute {name!r}")
