"""Models on the Hugging Face Hub: `hf://owner/name[/subfolder][@revision]` (the optional `hub` extra).

Only the files one model needs are downloaded (its config and one weights file: not every step of a
run, nor the other folders of a repository that holds several models), into huggingface_hub's cache,
where they are reused. With `HF_HUB_OFFLINE=1` nothing is asked of the network: the listing and the
files come from the cache. Every failure is one line saying what is missing: the extra, the network,
the repository, the revision or the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trm.checkpoint import CheckpointError

SCHEME = "hf://"


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    subfolder: str = ""
    revision: str | None = None

    @property
    def url(self) -> str:
        sub = f"/{self.subfolder}" if self.subfolder else ""
        return f"{SCHEME}{self.repo_id}{sub}" + (f"@{self.revision}" if self.revision else "")


def parse(url: str) -> HubRef:
    """`hf://owner/name[/subfolder...][@revision]` as its parts."""
    if not url.startswith(SCHEME):
        raise CheckpointError(f"{url}: a Hub model is written hf://owner/name[/subfolder][@revision]")
    rest, at, revision = url[len(SCHEME):].partition("@")
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 2 or (at and not revision):
        raise CheckpointError(f"{url}: a Hub model is written hf://owner/name[/subfolder][@revision]")
    return HubRef("/".join(parts[:2]), "/".join(parts[2:]), revision or None)


def offline() -> bool:
    """Whether offline mode is on (HF_HUB_OFFLINE, read now rather than when huggingface_hub was imported)."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    if value.upper() in ("1", "ON", "YES", "TRUE"):
        return True
    _hub(None)
    from huggingface_hub import constants

    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _hub(url: str | None) -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointError(f"{url or 'the Hub'}: loading from the Hub needs the optional extra: "
                              "pip install 'trm[hub]'") from None
    return huggingface_hub


def _errors(hub: Any) -> Any:
    return getattr(hub, "errors", None) or hub.utils


def resolve(url: str, *, use_ema: bool = True, cache_dir: str | Path | None = None) -> Path:
    """The local folder (in the cache) holding the files of the model at `url`, downloading what is missing."""
    from trm.loader import pick_files

    ref = parse(url)
    hub = _hub(url)
    names = list_files(ref, cache_dir=cache_dir)
    prefix = f"{ref.subfolder}/" if ref.subfolder else ""
    here = sorted(n[len(prefix):] for n in names if n.startswith(prefix) and "/" not in n[len(prefix):])
    needed = pick_files(here, use_ema=use_ema)
    if not needed:
        folders = sorted({n.split("/")[0] for n in names if "/" in n})
        hint = f" (it has folders: {', '.join(folders[:6])}; add one: {url}/<folder>)" if folders else ""
        raise CheckpointError(f"{url}: no model files there (config.json + model.safetensors, all_config.yaml + "
                              f"step_<N>, or checkpoint){hint}")
    local = None
    for name in needed:
        local = Path(download(hub, ref, prefix + name, cache_dir=cache_dir)).parent
    assert local is not None
    return local


def list_files(ref: HubRef, *, cache_dir: str | Path | None = None) -> list[str]:
    """The repository's file names at the revision: from the Hub, or offline from the cached snapshot."""
    hub = _hub(ref.url)
    err = _errors(hub)
    if not offline():
        try:
            return list(hub.HfApi().list_repo_files(ref.repo_id, revision=ref.revision))
        except err.RepositoryNotFoundError:
            raise CheckpointError(f"{ref.url}: no such model repository on the Hub (or it is private or gated: "
                                  "log in with `hf auth login`)") from None
        except err.RevisionNotFoundError:
            raise CheckpointError(f"{ref.url}: the repository has no revision {ref.revision!r}") from None
        except Exception as e:  # no network: fall back to what the cache holds
            network = f"{type(e).__name__}"
    else:
        network = "offline mode (HF_HUB_OFFLINE) is on"
    try:
        snapshot = Path(hub.snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=cache_dir,
                                              local_files_only=True))
    except Exception:
        raise CheckpointError(f"{ref.url}: cannot reach the Hub ({network}) and the model is not in the local "
                              "cache; download it once with network access") from None
    return sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file() or p.is_symlink())


def download(hub: Any, ref: HubRef, filename: str, *, cache_dir: str | Path | None = None) -> str:
    """One file into the cache (or found there); its local path."""
    err = _errors(hub)
    try:
        return str(hub.hf_hub_download(ref.repo_id, filename, revision=ref.revision, cache_dir=cache_dir,
                                       local_files_only=offline()))
    except err.LocalEntryNotFoundError:
        why = "offline mode (HF_HUB_OFFLINE) is on" if offline() else "the Hub cannot be reached"
        raise CheckpointError(f"{ref.url}: {filename} is not in the local cache and {why}") from None
    except err.EntryNotFoundError:
        raise CheckpointError(f"{ref.url}: the repository has no file {filename}") from None
    except err.RepositoryNotFoundError:
        raise CheckpointError(f"{ref.url}: no such model repository on the Hub (or it is private or gated)") from None


def push(folder: str | Path, repo_id: str, *, private: bool = False, message: str = "Upload trm model") -> str:
    """Upload an exported model folder to the Hub repository `repo_id` (created when missing); its URL."""
    hub = _hub(f"{SCHEME}{repo_id}")
    if offline():
        raise CheckpointError(f"--push {repo_id}: offline mode (HF_HUB_OFFLINE) is on; nothing was uploaded")
    api = hub.HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=message)
    except Exception as e:  # authentication, network, permissions: one line, the export stays on disk
        raise CheckpointError(f"--push {repo_id}: upload failed ({type(e).__name__}: {e}); the export is in "
                              f"{folder}") from None
    return f"https://huggingface.co/{repo_id}"
