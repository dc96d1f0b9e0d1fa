"""Where result files go: names that say what produced them, never over a different result.

    tag = result_tag({"policy": "fixed", "steps": 16, "augment": 8})      # "fixed-16-aug8"
    folder, note = writable_folder(checkpoint_folder, fallback)           # a read-only run: elsewhere
    path = claim(folder, "eval", tag, options)                             # eval-fixed-16-aug8.json (or -2, -3 ...)

A result file records the `options` that produced it; `claim` reuses a name only for the same options
(re-running the same evaluation refreshes its file) and otherwise picks the next free `-<k>` name.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_SAFE = re.compile(r"[^A-Za-z0-9_.+=-]+")


def result_tag(parts: Mapping[str, Any]) -> str:
    """A file-name tag from (name, value) pairs, in order: True flags by name, other values as `<name><value>`
    (policy and steps as they are); None and False are left out."""
    out = []
    for name, value in parts.items():
        if value is None or value is False:
            continue
        if value is True:
            out.append(name)
        elif name in ("policy", "steps"):
            out.append(str(value))
        else:
            out.append(f"{name}{value}")
    return _SAFE.sub("_", "-".join(out))


def _stored_options(path: Path) -> Any:
    try:
        return json.loads(path.read_text()).get("options")
    except (OSError, ValueError, AttributeError):
        return object()  # unreadable: never the same options


def claim(folder: Path, prefix: str, tag: str, options: Mapping[str, Any], suffix: str = ".json") -> Path:
    """`folder/<prefix>-<tag>.json`, unless that holds a result of other options: then `-2`, `-3`, ..."""
    wanted = json.loads(json.dumps(options, default=str))
    k = 1
    while True:
        path = folder / f"{prefix}-{tag}{'' if k == 1 else f'-{k}'}{suffix}"
        if not path.exists() or _stored_options(path) == wanted:
            return path
        k += 1


def can_write(folder: Path) -> bool:
    """Whether files can be created in `folder` (tried, not guessed from the mode bits)."""
    probe = folder / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
            return False
        raise


def writable_folder(preferred: Path, fallback: Path) -> tuple[Path, str | None]:
    """`preferred` when files can be written there, else `fallback` (created) with a message saying so."""
    if preferred.is_dir() and can_write(preferred):
        return preferred, None
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback, f"{preferred} cannot be written to (read-only or no permission): writing results to {fallback}"
