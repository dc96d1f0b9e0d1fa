"""Atomic writes of whole folders: build beside the target, then swap it into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def umask() -> int:
    """The process's file-creation mask (read without changing it where /proc tells it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def shared_mode(folder: bool = True) -> int:
    """The mode a plain `mkdir` (or `open`) would give: 0o777 (0o666) less the umask."""
    return (0o777 if folder else 0o666) & ~umask()


_rename_hook = None
"""Called as `_rename_hook(stage)` inside the windows between renames ("replace": the old folder moved
aside, the new one not yet in place; "latest": a checkpoint in place, `latest` not yet pointing at it),
so that tests can widen a window and kill a process in it."""


def rename_window(stage: str) -> None:
    if _rename_hook is not None:
        _rename_hook(stage)


@contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `target`; when the block succeeds it replaces `target`
    (an existing one is moved aside first and removed after), when it fails it is deleted. Readers
    therefore see the old folder or the complete new one, never a half-written one."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, shared_mode())  # mkdtemp makes it owner-only; the result is meant to be shared like any folder
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            rename_window("replace")
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temporary file beside it, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # a plain open: the mode the umask gives
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
