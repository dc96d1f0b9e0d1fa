"""Published checkpoints load with `trm.load` exactly as their sources write them, and reproduce the
logits the sources' own model code computes on the same weights and input.

tests/data/checkpoints/<variant>/ holds, per layout, what was produced once by running the reference's
(TinyRecursiveModels) and HRM's own model code on tiny random weights (never imported here):
`state_dict.safetensors` (the state dict of the compiled loss head, the very tensors and names its
pretrain.py saves: `_orig_mod.model.inner....`, H_init / L_init in bfloat16 as trained),
`pretrain_config.json` (its `PretrainConfig.model_dump()`: no seq_len, vocabulary or identifier count)
and `expected.safetensors` (a batch and the logits of two ACT steps of that code in float32). Each test
writes the checkpoint the way its source does: `torch.save(state_dict, "step_<N>")` and
`yaml.dump(config.model_dump())` into `all_config.yaml`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import trm
from trm.checkpoint import CheckpointError
from trm.cli import main
from trm.loader import MismatchError, pick_files

DATA = Path(__file__).parent / "data" / "checkpoints"
SEQ, VOCAB, IDS = 16, 6, 5  # the shapes the expected logits were produced with


def write_reference_run(folder: Path, variant: str, weights_name: str = "step_1200", *,
                        config_name: str = "all_config.yaml", data_paths: list[str] | None = None) -> Path:
    """A run folder as the reference's pretrain.py leaves it (HRM's: the same, its file renamed `checkpoint`
    on publication), with the copies of the model source it makes beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads((DATA / variant / "pretrain_config.json").read_text())
    if data_paths is not None:
        config["data_paths" if "data_paths" in config else "data_path"] = data_paths if "data_paths" in config \
            else data_paths[0]
    torch.save(load_file(DATA / variant / "state_dict.safetensors"), folder / weights_name)  # save_train_state
    with open(folder / config_name, "w") as f:  # save_code_and_config
        yaml.dump(config, f)
    (folder / "trm.py").write_text("# model source copied by pretrain.py\n")
    (folder / "losses.py").write_text("# loss source copied by pretrain.py\n")
    return folder


def write_dataset(root: Path, *, ids: int = IDS, seq_len: int = SEQ, vocab: int = VOCAB, n: int = 12,
                  task: str | None = None) -> Path:
    """A small dataset with the given shapes (labels: the inputs shifted by one)."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        inputs = rng.integers(1, vocab - 1, size=(n, seq_len), dtype=np.int32)
        np.save(folder / "all__inputs.npy", inputs)
        np.save(folder / "all__labels.npy", (inputs + 1).astype(np.int32))
        np.save(folder / "all__puzzle_identifiers.npy", (np.arange(n) % (ids - 1) + 1).astype(np.int32))
        np.save(folder / "all__puzzle_indices.npy", np.arange(n + 1, dtype=np.int32))
        np.save(folder / "all__group_indices.npy", np.arange(n + 1, dtype=np.int32))
        meta = {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": vocab, "seq_len": seq_len,
                "num_puzzle_identifiers": ids, "total_groups": n, "mean_puzzle_examples": 1.0, "total_puzzles": n,
                "sets": ["all"], **({"task": task} if task else {})}
        (folder / "dataset.json").write_text(json.dumps(meta))
    (root / "identifiers.json").write_text(json.dumps(["<blank>"] + [f"p{i}" for i in range(1, ids)]))
    return root


def assert_reference_logits(loaded, variant: str) -> None:
    golden = load_file(DATA / variant / "expected.safetensors")
    batch = {k: golden[f"batch.{k}"] for k in ("inputs", "labels", "puzzle_identifiers")}
    model = loaded.model.eval()
    carry = model.initial_carry(batch)
    with torch.no_grad():
        for k in range(2):
            carry, out = model(carry, batch)
            for key, ours in (("logits", out.logits), ("q_halt_logits", out.q_halt),
                              ("q_continue_logits", out.q_continue)):
                ref = golden[f"step{k}.{key}"]
                err = float((ours.float() - ref).abs().max() / ref.abs().max())
                assert err <= 1e-5, f"{variant} step {k} {key}: relative error {err:.3g}"


def test_reference_mlp_run_loads_with_seq_len_from_the_token_mlp(tmp_path: Path) -> None:
    folder = write_reference_run(tmp_path / "run", "trm_mlp")
    torch.save(load_file(DATA / "trm_mlp" / "state_dict.safetensors"), folder / "step_600")  # an earlier step
    loaded = trm.load(folder)  # no dataset: the token-MLP width says seq_len
    assert loaded.meta["format"] == "reference-trm" and loaded.meta["step"] == 1200
    c = loaded.config
    assert (c.arch, c.seq_len, c.vocab_size, c.num_puzzle_identifiers, c.mlp_t, c.T, c.n) == \
        ("trm", SEQ, VOCAB, IDS, True, 2, 2)
    assert_reference_logits(loaded, "trm_mlp")
    assert_reference_logits(trm.load(folder / "step_600"), "trm_mlp")  # a bare weights file, config beside it


def test_reference_attention_run_needs_the_dataset_for_seq_len(tmp_path: Path) -> None:
    folder = write_reference_run(tmp_path / "run", "trm_att", "step_32550_sudoku_epoch50k")  # alphaXiv's naming
    with pytest.raises(CheckpointError, match=r"sequence length is not stored.*--data DIR.*seq_len=N"):
        trm.load(folder)
    assert_reference_logits(trm.load(folder, data=write_dataset(tmp_path / "data")), "trm_att")
    assert_reference_logits(trm.load(folder, seq_len=SEQ), "trm_att")


def test_reference_run_finds_the_dataset_it_recorded(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data")
    folder = write_reference_run(tmp_path / "run", "trm_att", data_paths=[str(data)])
    loaded = trm.load(folder)
    assert loaded.config.seq_len == SEQ and loaded.meta["train"]["data"] == str(data)


def test_hrm_checkpoint_loads(tmp_path: Path) -> None:
    folder = write_reference_run(tmp_path / "hrm", "hrm", "checkpoint")
    loaded = trm.load(folder, data=write_dataset(tmp_path / "data"))
    assert loaded.meta["format"] == "hrm" and loaded.config.arch == "hrm" and loaded.config.H_layers == 1
    assert_reference_logits(loaded, "hrm")


def test_bin_with_config_yaml_loads(tmp_path: Path) -> None:
    """pytorch_model.bin + config.yaml in the reference's naming (how CGAR's card describes its files)."""
    folder = write_reference_run(tmp_path / "cgar", "trm_mlp", "pytorch_model.bin", config_name="config.yaml")
    assert_reference_logits(trm.load(folder), "trm_mlp")


def test_pick_files_takes_one_model_only() -> None:
    assert pick_files(["all_config.yaml", "step_100", "step_2000", "step_2000_all_preds.0", "trm.py"]) == \
        ["all_config.yaml", "step_2000"]
    assert pick_files(["all_config.yaml", "checkpoint", "hrm_act_v1.py"]) == ["all_config.yaml", "checkpoint"]
    assert pick_files(["config.json", "model.safetensors", "ema.safetensors", "train_state.pt"]) == \
        ["config.json", "ema.safetensors"]
    assert pick_files(["config.json", "model.safetensors", "ema.safetensors"], use_ema=False) == \
        ["config.json", "model.safetensors"]
    assert pick_files(["README.md", "all_config.yaml"]) == []


def test_corrupt_and_foreign_files_say_what_is_wrong(tmp_path: Path) -> None:
    folder = write_reference_run(tmp_path / "run", "trm_mlp")
    (folder / "step_1200").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="step_1200: not a readable PyTorch checkpoint"):
        trm.load(folder)
    torch.save({"a": [1, 2]}, folder / "step_1200")
    with pytest.raises(CheckpointError, match="step_1200: not a readable PyTorch checkpoint|not a state dict"):
        trm.load(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a model folder"):
        trm.load(tmp_path / "empty")


# --- never a silent mismatch ----------------------------------------------------------------------


def test_a_puzzle_table_of_another_size_is_an_error_naming_both(tmp_path: Path) -> None:
    folder = write_reference_run(tmp_path / "run", "trm_mlp")
    with pytest.raises(MismatchError, match=r"the checkpoint has 5 puzzle identifiers, the dataset .* 9: "):
        trm.load(folder, data=write_dataset(tmp_path / "other", ids=9))
    arc = write_dataset(tmp_path / "arc", ids=9, task="arc", seq_len=SEQ)
    with pytest.raises(MismatchError, match=r"has 5 puzzle identifiers, the dataset .* 9: .*--reference-identical"):
        trm.load(folder, data=arc)
    with pytest.raises(MismatchError, match=r"reads 16 tokens per example, the dataset .* has 20"):
        trm.load(folder, data=write_dataset(tmp_path / "longer", seq_len=20))
    with pytest.raises(MismatchError, match=r"reads 6 token ids, the dataset .* has 8"):
        trm.load(folder, data=write_dataset(tmp_path / "vocab", vocab=8))


def test_eval_and_solve_stop_at_a_mismatched_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = write_reference_run(tmp_path / "run", "trm_mlp")
    other = write_dataset(tmp_path / "other", ids=9)
    for argv in (["eval", str(folder), "--data", str(other), "--device", "cpu", "--no-report", "--dtype", "float32"],
                 ["solve", str(folder), "1" * SEQ, "--data", str(other), "--device", "cpu",
                  "--dtype", "float32"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(f"trm {argv[0]}: ") and "has 5 puzzle identifiers" in err and " 9: " in err


def test_init_from_a_mismatched_table_is_an_error_unless_reset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from trm.train import TrainConfig, train

    folder = write_reference_run(tmp_path / "run", "trm_mlp")
    config = json.loads((DATA / "trm_mlp" / "pretrain_config.json").read_text())["arch"]
    model = {"arch": "trm", "hidden_size": 32, "num_heads": 2, "expansion": 2, "T": 2, "n": 2, "layers": 2,
             "mlp_t": True, "pos_encodings": "none", "puzzle_emb_ndim": 32, "puzzle_emb_len": 2,
             "halt_max_steps": config["halt_max_steps"], "halt_exploration_prob": 0.0}
    data = write_dataset(tmp_path / "other", ids=9)
    values = dict(data=str(data), run_dir=str(tmp_path / "ft"), model=model, global_batch_size=4, steps=1, lr=0.0,
                  puzzle_emb_lr=0.0, lr_warmup_steps=0, device="cpu", dtype="float32", compile="off", ema=False,
                  init_from=str(folder))
    with pytest.raises(MismatchError, match=r"init_from .*has 5 puzzle identifiers, the dataset .* 9: .*"
                                            r"init_from_puzzle_rows=reset"):
        train(TrainConfig(**values), progress=False)
    assert main(["train", "sudoku4-cpu", f"data={data}", f"run_dir={tmp_path / 'cli'}", f"init_from={folder}",
                 "steps=1", "device=cpu", "dtype=float32", "compile='off'"]) == 2
    assert "puzzle identifiers" in capsys.readouterr().err
    from trm.loader import initial_weights
    from trm.models import config_from_dict

    cfg = TrainConfig(**{**values, "init_from_puzzle_rows": "reset"})
    new = config_from_dict({**model, "vocab_size": VOCAB, "seq_len": SEQ, "num_puzzle_identifiers": 9})
    state = initial_weights(cfg.init_from, new, data=cfg.data, puzzle_rows=cfg.init_from_puzzle_rows)
    assert "puzzle-embedding table re-initialised" in capsys.readouterr().out
    source = trm.load(folder).model.state_dict()
    for name, value in state.items():  # the imported weights, fresh puzzle rows
        if name == "embed.puzzle.weight":
            assert torch.equal(value, torch.zeros(9, 32))
        else:
            assert torch.equal(value, source[name]), name
    from trm.models import build_model

    build_model(new).load_state_dict(state)  # what init_from then does: every weight fits


def test_init_from_the_same_table_keeps_every_weight(tmp_path: Path) -> None:
    from trm.loader import initial_weights
    from trm.models import TRMConfig

    folder = write_reference_run(tmp_path / "run", "trm_att")
    cfg = TRMConfig(vocab_size=VOCAB, seq_len=SEQ, num_puzzle_identifiers=IDS, puzzle_emb_ndim=32, puzzle_emb_len=16,
                    hidden_size=32, num_heads=2, expansion=2, T=2, n=2, layers=2, halt_max_steps=4)
    state = initial_weights(str(folder), cfg)  # seq_len: the run's own, as the weights leave it open
    ref = trm.load(folder, seq_len=SEQ).model.state_dict()
    assert state.keys() == ref.keys() and all(torch.equal(state[k], ref[k]) for k in ref)
    with pytest.raises(MismatchError, match=r"differs from this run's in hidden_size|expansion|layers"):
        initial_weights(str(folder), cfg.replace(layers=1))
