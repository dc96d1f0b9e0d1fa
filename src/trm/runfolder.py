"""A training run's folder owns its checkpoints.

    with RunFolder.open(run_dir, resume=False, restart=False) as folder:   # lock, clean, check
        ...train, folder.retain(keep_last) after each checkpoint...

- One run at a time: `run_dir/.lock` holds the owner's PID and host, and is locked with `flock`
  while the run lives, so a second run into the same folder is refused. A lock left by a process
  that died (kill -9, a crash, a reboot) is recognised as stale: the kernel has dropped its flock,
  and where `flock` is missing the PID is checked instead.
- Nothing is overwritten by accident: a folder that already holds checkpoints is refused unless the
  run resumes it (`--resume`) or starts over (`--restart`), which moves the previous run's
  checkpoints and logs into `run_dir/previous-<time>/` (never deletes them).
- Temporary folders of dead runs (`.step_*.tmp`, an interrupted replace's `.step_*.old-PID`, a
  `.latest.tmp-PID`) are cleaned at start; a checkpoint that only survives as `.old-PID` (a kill
  between the two renames of a replace) is put back in place first.
- `keep_last: N` keeps the N newest checkpoints (and always the one `latest` names).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from trm.checkpoint import CheckpointError, checkpoint_folders, latest_checkpoint, pointed_checkpoint

try:
    import fcntl
except ImportError:  # Windows: the PID in the lock file decides
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"
RUN_FILES = ("latest", "metrics.jsonl", "train_config.json", "tensorboard")
"""What a run writes besides its checkpoints; `--restart` moves these aside too."""
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?:[^.]+\.tmp|old-(?P<pid>\d+))$")


class RunFolderError(CheckpointError):
    """A run folder that cannot be trained into as asked (busy, or holding checkpoints)."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class RunLock:
    """`run_dir/.lock`: held by one process; `acquire` raises RunFolderError naming the owner."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK
        self._file: IO[str] | None = None

    def _owner(self) -> tuple[int, str]:
        try:
            pid, _, host = self.path.read_text().strip().partition(" ")
            return int(pid), host
        except (OSError, ValueError):
            return 0, ""

    def acquire(self) -> None:
        for _ in range(3):
            f = open(self.path, "a+")
            if fcntl is not None:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    f.close()
                    self._refuse()
                if not self.path.exists() or os.stat(self.path).st_ino != os.fstat(f.fileno()).st_ino:
                    f.close()  # the owner removed the file between our open and our lock: take the new one
                    continue
            else:
                pid, host = self._owner()
                if pid and pid != os.getpid() and host == socket.gethostname() and pid_alive(pid):
                    f.close()
                    self._refuse()
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()} {socket.gethostname()}\n")
            f.flush()
            self._file = f
            return
        self._refuse()

    def _refuse(self) -> None:
        pid, host = self._owner()
        who = f"process {pid}" + (f" on {host}" if host and host != socket.gethostname() else "") if pid else \
            "another process"
        raise RunFolderError(f"{self.path.parent}: another run ({who}) is training into this folder; wait for it "
                             "to finish, stop it, or choose another run_dir")

    def release(self) -> None:
        if self._file is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._file.close()  # closing drops the flock
        self._file = None


def clean_temporaries(run_dir: Path) -> list[str]:
    """Remove what dead runs left half-done; returns what was removed or put back (for a message).

    Call it holding the lock, so that no live writer owns these names."""
    done = []
    for p in sorted(run_dir.iterdir()):
        m = _TEMP.match(p.name)
        if p.name.startswith(".latest.tmp-"):
            p.unlink(missing_ok=True)
            done.append(f"removed {p.name}")
        elif m and m.group("pid") and not (run_dir / m.group("name")).exists() and p.is_dir():
            os.replace(p, run_dir / m.group("name"))  # the complete checkpoint of a replace cut short
            done.append(f"restored {m.group('name')} from {p.name}")
        elif m:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            done.append(f"removed {p.name}")
    return done


def move_aside(run_dir: Path) -> Path:
    """Move the previous run's checkpoints and logs into `run_dir/previous-<time>/`; returns that folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir / f"previous-{stamp}"
    k = 1
    while target.exists():
        k += 1
        target = run_dir / f"previous-{stamp}-{k}"
    target.mkdir()
    for p in [*checkpoint_folders(run_dir), *(run_dir / n for n in RUN_FILES)]:
        if p.exists() or p.is_symlink():
            os.replace(p, target / p.name)
    for p in run_dir.glob("eval-*"):
        os.replace(p, target / p.name)
    return target


def _remove_empty(folder: Path, top: Path) -> None:
    """Remove `folder` and its parents up to `top` while they are empty."""
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == top or folder.parent == folder:
            return
        folder = folder.parent


def retain(run_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the `keep_last` newest checkpoints (never the one `latest` names); 0 keeps all."""
    if keep_last <= 0:
        return []
    folders = checkpoint_folders(run_dir)
    keep = set(folders[-keep_last:])
    current = pointed_checkpoint(run_dir)
    removed = []
    for f in folders:
        if f not in keep and f != current:
            doomed = f.with_name(f".{f.name}.del.tmp")  # out of sight first, so a kill never leaves half a folder
            os.replace(f, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(f)
    return removed


class RunFolder:
    """A run folder taken for one training process (see the module's docstring)."""

    def __init__(self, run_dir: Path, lock: RunLock | None, notes: list[str]) -> None:
        self.run_dir, self.lock, self.notes = run_dir, lock, notes

    @classmethod
    @contextlib.contextmanager
    def open(cls, run_dir: str | Path, *, resume: bool = False, restart: bool = False,
             main: bool = True) -> Iterator[RunFolder]:
        """Take `run_dir` for a run; `main` is False on the processes of a group that write nothing."""
        if resume and restart:
            raise RunFolderError("--resume and --restart: choose one (continue the run, or start it over)")
        run_dir = Path(run_dir)
        notes: list[str] = []
        lock = None
        created = next((p for p in [*reversed(run_dir.parents), run_dir] if not p.exists()), None)
        if main:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise RunFolderError(f"run_dir={str(run_dir)!r}: cannot create it ({e.strerror or e})") from None
            lock = RunLock(run_dir)
            lock.acquire()
        try:
            if main:
                notes += clean_temporaries(run_dir)
            existing = checkpoint_folders(run_dir) if run_dir.is_dir() else []
            if resume and not existing:
                raise RunFolderError(f"--resume: {run_dir} has no checkpoint to resume from")
            if existing and not (resume or restart):
                newest = latest_checkpoint(run_dir) or existing[-1]
                raise RunFolderError(f"{run_dir}: already holds {len(existing)} checkpoint(s) (newest {newest.name}); "
                                     "pass --resume to continue that run, or --restart to start over (the old "
                                     "checkpoints are moved into a previous-<time> folder, not deleted)")
            if main and (restart or (not resume and (run_dir / "metrics.jsonl").exists())):
                if existing or any((run_dir / n).exists() for n in RUN_FILES):
                    notes.append(f"moved the previous run's files into {move_aside(run_dir)}")
            yield cls(run_dir, lock, notes)
        except BaseException:
            if lock is not None:
                lock.release()
                lock = None
            if created is not None:  # a run that failed before writing anything leaves no empty folders
                _remove_empty(run_dir, created)
            raise
        finally:
            if lock is not None:
                lock.release()
