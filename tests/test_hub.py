"""hf:// sources: offline resolution from a local cache folder laid out as huggingface_hub lays it out,
only the files one model needs fetched when online (the Hub API replaced by a local fake), one-line
errors for what is missing, and `trm export --push` against a fake."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from test_published import DATA, assert_reference_logits, write_reference_run

import trm
from trm.checkpoint import CheckpointError
from trm.hub import parse

hub = pytest.importorskip("huggingface_hub")
constants = pytest.importorskip("huggingface_hub.constants")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_with(tmp_path: Path, repo: str, files: dict[str, Path]) -> Path:
    """A huggingface_hub cache folder holding `files` (repo path -> local file) of `repo` at main."""
    root = tmp_path / "hf-cache"
    entry = root / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(COMMIT)
    for name, src in files.items():
        dst = entry / "snapshots" / COMMIT / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return root


def test_parse() -> None:
    assert parse("hf://o/n") == parse("hf://o/n/") and parse("hf://o/n").subfolder == ""
    r = parse("hf://arcprize/trm_arc_prize_verification/arc_v1_public@v2")
    assert (r.repo_id, r.subfolder, r.revision) == ("arcprize/trm_arc_prize_verification", "arc_v1_public", "v2")
    for bad in ("hf://only", "hf://o/n@", "o/n"):
        with pytest.raises(CheckpointError, match="hf://owner/name"):
            parse(bad)


def test_offline_resolution_reads_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_reference_run(tmp_path / "run", "trm_mlp")
    files = {f"arc_v1_public/{n}": run / n for n in ("all_config.yaml", "step_1200")}
    cache = cache_with(tmp_path, "owner/trm", files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub.HfApi, "list_repo_files", lambda *a, **k: pytest.fail("offline: no listing asked"))
    loaded = trm.load("hf://owner/trm/arc_v1_public", cache_dir=cache)
    assert loaded.meta["source"] == "hf://owner/trm/arc_v1_public" and loaded.meta["format"] == "reference-trm"
    assert_reference_logits(loaded, "trm_mlp")
    with pytest.raises(CheckpointError, match=r"no model files there .*arc_v1_public"):
        trm.load("hf://owner/trm", cache_dir=cache)  # the repository root holds only folders
    with pytest.raises(CheckpointError, match=r"^hf://owner/other: cannot reach the Hub \(offline mode"):
        trm.load("hf://owner/other", cache_dir=cache)


def test_online_downloads_only_the_files_one_model_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_reference_run(tmp_path / "run", "trm_mlp")
    torch.save({}, run / "step_600")
    listing = {f"{sub}/{n}": run / n for sub in ("arc_v1_public", "arc_v2_public")
               for n in ("all_config.yaml", "step_600", "step_1200", "trm.py")}
    listing["README.md"] = run / "trm.py"
    fetched: list[str] = []
    snapshot = tmp_path / "snapshot"

    def fake_download(repo_id, filename, *, revision=None, cache_dir=None, local_files_only=False, **_):
        assert repo_id == "owner/trm" and revision == "abc" and not local_files_only
        fetched.append(filename)
        dst = snapshot / filename
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(listing[filename], dst)
        return str(dst)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub.HfApi, "list_repo_files", lambda self, repo_id, revision=None, **_: sorted(listing))
    monkeypatch.setattr(hub, "hf_hub_download", fake_download)
    assert_reference_logits(trm.load("hf://owner/trm/arc_v2_public@abc"), "trm_mlp")
    assert fetched == ["arc_v2_public/all_config.yaml", "arc_v2_public/step_1200"]


def test_missing_extra_network_and_file_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trm.cli import main

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(CheckpointError, match=r"pip install 'trm\[hub\]'"):
        trm.load("hf://owner/trm")
    monkeypatch.undo()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def no_network(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(hub.HfApi, "list_repo_files", no_network)
    with pytest.raises(CheckpointError, match=r"cannot reach the Hub \(OSError\) and the model is not in the local"):
        trm.load("hf://owner/trm", cache_dir=tmp_path / "empty-cache")
    run = write_reference_run(tmp_path / "run", "trm_mlp")
    cache = cache_with(tmp_path, "owner/trm", {"all_config.yaml": run / "all_config.yaml"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["eval", "hf://owner/trm", "--data", str(tmp_path)]) == 2  # listing from the cache: no weights
    monkeypatch.setattr(hub.HfApi, "list_repo_files", lambda *a, **k: ["all_config.yaml", "step_5"])
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "hf_hub_download", lambda *a, **k: (_ for _ in ()).throw(
        hub.errors.LocalEntryNotFoundError("not cached")) if k.get("local_files_only") or a[1] == "step_5"
        else str(cache / "models--owner--trm" / "snapshots" / COMMIT / a[1]))
    with pytest.raises(CheckpointError, match=r"^hf://owner/trm: step_5 is not in the local cache and the Hub cannot"):
        trm.load("hf://owner/trm", cache_dir=cache)


class FakeApi:
    """Stands in for huggingface_hub.HfApi: records the calls, 'uploads' into a local folder."""

    calls: list[tuple] = []
    remote = Path()

    def create_repo(self, repo_id, private=False, exist_ok=False, **_):
        FakeApi.calls.append(("create_repo", repo_id, private, exist_ok))

    def upload_folder(self, folder_path, repo_id, commit_message="", **_):
        FakeApi.calls.append(("upload_folder", repo_id))
        shutil.copytree(folder_path, FakeApi.remote / repo_id.replace("/", "--"))

    def list_repo_files(self, repo_id, revision=None, **_):
        return sorted(p.name for p in (FakeApi.remote / repo_id.replace("/", "--")).iterdir())


def test_export_push_then_load_from_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    from test_export import trained_run

    from trm.cli import main

    run = trained_run(tmp_path)
    FakeApi.calls, FakeApi.remote = [], tmp_path / "remote"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "HfApi", FakeApi)
    assert main(["export", str(run), str(tmp_path / "out"), "--push", "me/tiny-copy"]) == 0
    assert FakeApi.calls == [("create_repo", "me/tiny-copy", False, True), ("upload_folder", "me/tiny-copy")]
    assert "pushed to https://huggingface.co/me/tiny-copy" in capsys.readouterr().out
    remote = FakeApi.remote / "me--tiny-copy"
    assert sorted(p.name for p in remote.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "trm eval hf://me/tiny-copy --data" in (remote / "README.md").read_text()
    monkeypatch.setattr(hub, "hf_hub_download", lambda repo_id, filename, **_: str(remote / filename))
    pulled, local = trm.load("hf://me/tiny-copy"), trm.load(run)
    assert json.loads((remote / "config.json").read_text())["step"] == local.meta["step"]
    for name, value in local.model.state_dict().items():
        assert torch.equal(pulled.model.state_dict()[name], value), name
    assert DATA.is_dir()
