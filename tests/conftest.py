"""Shared fixtures. Tests that need the shared data folder (`../shared`: golden tensors, puzzle files,
ARC files) take `shared_dir`: without the folder they skip on a developer's machine, but FAIL under
`CI=true`, so that a CI without the data cannot pass with those checks unrun."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def require_shared(path: Path = SHARED) -> Path:
    """`path` (inside the shared data folder) if it exists; else skip, or fail when CI=true."""
    if not path.exists():
        message = f"shared data not found at {path}"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{message}; CI=true needs it (the golden-tensor and data tests must run)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return require_shared()


@pytest.fixture(autouse=True)
def _private_numeric_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The numeric-mode probe's decisions go to a per-session folder, never the user's cache."""
    monkeypatch.setenv("TRM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "numeric-cache"))
