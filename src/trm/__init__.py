"""trm: tiny recursive reasoning models (TRM, HRM and a transformer baseline)."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Solver", "__version__"]


def __getattr__(name: str) -> Any:
    # `import trm` stays light; `trm.Solver` imports torch on first use
    if name == "Solver":
        from trm.solve import Solver

        return Solver
    raise AttributeError(f"module 'trm' has no attribute {name!r}")
