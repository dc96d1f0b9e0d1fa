"""One loader for every model source: `trm.load(source)`.

    import trm
    m = trm.load("runs/sudoku/train")                                   # our run (its latest checkpoint)
    m = trm.load("hf://Sanjin2024/TinyRecursiveModels-Sudoku-Extreme-mlp")  # a published reference run
    m = trm.load("checkpoints/arc/step_518071", data="data/arc-agi-1")     # a reference file, shapes from data
    m.model, m.config, m.meta                                           # the model, its config, what was stored

A source is one of:

- our checkpoint folder (`config.json` + `model.safetensors`, `ema.safetensors` when training kept an
  EMA), a run folder (its latest checkpoint) or an exported model (`trm export`);
- a reference TRM run folder: `step_<N>` files (a `torch.save` of the compiled loss head's state dict,
  names `_orig_mod.model.inner....`; the EMA weights when the run kept an EMA) and `all_config.yaml`
  (the whole pretraining config; no seq_len, vocabulary size or identifier count). The highest step is
  taken; file names may carry a suffix (`step_32550_sudoku_epoch50k`);
- an HRM folder (one file named `checkpoint` and `all_config.yaml`, the same pickle layout);
- a folder with `pytorch_model.bin` and `config.yaml` in the reference's naming;
- a bare weights file with its config beside it;
- `hf://owner/name[/subfolder][@revision]` (the optional `hub` extra; see `trm.hub`).

Pickled weights are read with `torch.load(weights_only=True)`, which executes no code.

Shapes the reference leaves out of its config come from the weights where they determine them: the
vocabulary from the token table, the identifier count from the puzzle table, seq_len from the
token-MLP width or the learned positions. Otherwise seq_len comes from the dataset (`data=`, or the
dataset the run recorded when it exists here), or `seq_len=`; when it cannot be known, the error says
which and how to give it.

A model never meets a dataset it does not fit in silence: `check_fits` names both numbers and the
likely cause (a table of another size is the classic failure: the reference replaces it by its mean and
reports near-zero scores). Re-initialising the puzzle rows for fine-tuning is asked for by name
(`initial_weights(..., puzzle_rows="reset")`), never a fallback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from trm.checkpoint import CheckpointError, Loaded, is_run_folder, latest_checkpoint, load_checkpoint
from trm.models import ModelConfig, build_model

# Weight files of the reference layouts, in order of preference; `step_<N>...` files come after these.
_NAMED_WEIGHTS = ("checkpoint", "pytorch_model.bin")
_REFERENCE_CONFIGS = ("all_config.yaml", "config.yaml")
_STEP = re.compile(r"^step_(\d+)(?!.*_all_preds)")
PUZZLE_ROWS = ("check", "reset", "keep")
"""How `initial_weights` treats a puzzle table of another size: check (an error), reset (fresh rows)."""


class MismatchError(CheckpointError):
    """A model and a dataset that do not fit; the message names both numbers and the likely cause."""


# ---------------------------------------------------------------------------------------------
# Which files a model needs (used on a folder here and on a Hub listing before downloading)


def pick_files(names: list[str], use_ema: bool = True) -> list[str]:
    """The files (names in one folder) that one model needs: its config and one weights file.

    Empty when the names hold no model this loader knows."""
    have = set(names)
    if "config.json" in have and ({"model.safetensors", "ema.safetensors"} & have):
        ours = "ema.safetensors" if use_ema and "ema.safetensors" in have else "model.safetensors"
        return ["config.json", ours] if ours in have else []
    config = next((c for c in _REFERENCE_CONFIGS if c in have), None)
    weights = reference_weights(names)
    return [config, weights] if config and weights else []


def reference_weights(names: list[str]) -> str | None:
    """The reference weights file among `names`: `checkpoint` / `pytorch_model.bin`, else the highest step."""
    for name in _NAMED_WEIGHTS:
        if name in names:
            return name
    steps = [(int(m.group(1)), n) for n in names if (m := _STEP.match(n))]
    return max(steps)[1] if steps else None


# ---------------------------------------------------------------------------------------------
# Loading


def load(source: str | Path, *, data: str | Path | None = None, seq_len: int | None = None, use_ema: bool = True,
         device: torch.device | str | None = None, dtype: torch.dtype | str = torch.float32,
         cache_dir: str | Path | None = None) -> Loaded:
    """The model of `source` (see the module docstring) with its config and metadata.

    `data`: a dataset folder; it supplies a seq_len the weights do not determine, and the model must fit
    it (`check_fits`). `use_ema`: our checkpoints' EMA weights when they have them (a reference run saved
    only one set: the EMA when it kept one). `dtype`: the activation dtype, or "train" / "auto" /
    "float32" / "bfloat16" as in `trm eval --dtype`. `meta["format"]` says which layout was read,
    `meta["source"]` what was asked for."""
    where = str(source)
    path = _local(source, use_ema=use_ema, cache_dir=cache_dir)
    meta_data = _dataset_meta(data) if data is not None else None
    if path.is_file() and path.suffix == ".safetensors" and (path.parent / "config.json").is_file():
        path, use_ema = path.parent, path.name == "ema.safetensors"  # one of our weights files: its folder
    if path.is_file() and path.name == "latest" and is_run_folder(path.parent):
        path = path.parent  # a run's `latest` pointer: the run, whose latest complete checkpoint it names
    if path.is_dir() and ((path / "latest").is_file() or (path / "config.json").is_file()) and not _reference_dir(path):
        if meta_data is not None:  # before building (and timing) anything
            check_fits(_our_config(path), meta_data, where=where, data=str(data))
        loaded = load_checkpoint(path, use_ema=use_ema, device=device, dtype=dtype)
        loaded.meta.setdefault("format", "trm")
    else:
        loaded = _load_reference(path, where, meta_data, str(data), seq_len, device, dtype)
    loaded.meta["source"] = where
    if meta_data is not None:
        loaded.meta.setdefault("train", {})["data"] = str(data)
    return loaded


def _our_config(path: Path) -> ModelConfig:
    from trm.checkpoint import read_meta
    from trm.models import config_from_dict

    folder = latest_checkpoint(path) if (path / "latest").is_file() else path
    if folder is None:
        raise CheckpointError(f"{path}: 'latest' names a checkpoint that does not exist")
    try:
        return config_from_dict(read_meta(folder)["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / 'config.json'}: bad model config ({e})") from None


def _local(source: str | Path, *, use_ema: bool, cache_dir: str | Path | None) -> Path:
    if isinstance(source, str) and source.startswith("hf://"):
        from trm.hub import resolve

        return resolve(source, use_ema=use_ema, cache_dir=cache_dir)
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"{path}: not a checkpoint folder or file (nothing there; a Hub model is hf://owner/name)")
    return path


def _reference_dir(path: Path) -> bool:
    return any((path / c).is_file() for c in _REFERENCE_CONFIGS) and not (path / "model.safetensors").is_file()


def _dataset_meta(data: str | Path) -> Any:
    """The training split's `DatasetMetadata` of a dataset folder."""
    from trm.data.format import load_dataset

    return load_dataset(data).train.meta


def _reference_files(path: Path, where: str) -> tuple[Path, Path]:
    """(weights, config) of a reference folder or of a weights file with its config beside it."""
    folder = path if path.is_dir() else path.parent
    config = next((folder / c for c in _REFERENCE_CONFIGS if (folder / c).is_file()), None)
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir() if p.is_file())
        found = reference_weights(names)
        if found is None or config is None:
            raise CheckpointError(
                f"{where}: not a model folder: expected config.json with model.safetensors (ours), "
                "all_config.yaml with step_<N> files (a reference TRM run) or a checkpoint file (HRM), or "
                f"config.yaml with pytorch_model.bin; found {', '.join(names[:8]) or 'nothing'}")
        path = folder / found
    elif config is None:
        raise CheckpointError(f"{where}: no all_config.yaml or config.yaml beside it to say which model it holds")
    assert config is not None
    return path, config


def read_reference_config(config_path: Path) -> dict[str, Any]:
    """The `arch` section of a reference config file (a whole pretraining dump, or the arch alone)."""
    import yaml

    try:
        values = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise CheckpointError(f"{config_path}: cannot read it ({type(e).__name__}: {e})") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{config_path}: not a mapping of settings")
    arch = values.get("arch", values)
    if not isinstance(arch, dict) or "name" not in arch:
        raise CheckpointError(f"{config_path}: no model class ('arch: name: ...') to say which model it holds")
    return {"arch": dict(arch), "data": _recorded_data(values)}


def _recorded_data(values: dict[str, Any]) -> list[str]:
    paths = values.get("data_paths") or ([values["data_path"]] if values.get("data_path") else [])
    return [str(p) for p in paths] if isinstance(paths, list) else []


def read_reference_weights(path: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a corrupt or non-tensor file; say which file
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict (a mapping of names to tensors)")
    return state


def reference_shapes(arch: dict[str, Any], state: dict[str, Tensor]) -> dict[str, int | None]:
    """vocab_size, num_puzzle_identifiers, puzzle_emb_ndim and (where the weights determine it) seq_len
    of a reference state dict; seq_len None when nothing in the weights says it."""
    from trm.convert import reference_arch, reference_name

    flat = {reference_name(k): v for k, v in state.items()}
    if "embed_tokens.embedding_weight" not in flat:
        raise CheckpointError("no token table (embed_tokens.embedding_weight): not a TRM / HRM state dict")
    table = flat.get("puzzle_emb.weights")
    hidden = int(flat["embed_tokens.embedding_weight"].shape[1])
    ndim = int(table.shape[1]) if table is not None else int(arch.get("puzzle_emb_ndim", 0) or 0)
    emb_len = int(arch.get("puzzle_emb_len", 16)) if reference_arch(str(arch["name"])) == "trm" else 0
    prefix = 0 if ndim == 0 else (emb_len or -(ndim // -hidden))
    seq_len: int | None = None
    token_mlp = next((v for k, v in flat.items() if k.endswith(".mlp_t.gate_up_proj.weight")), None)
    if token_mlp is not None:
        seq_len = int(token_mlp.shape[1]) - prefix  # the token-mixing SwiGLU reads prefix + tokens positions
    elif "embed_pos.embedding_weight" in flat:
        seq_len = int(flat["embed_pos.embedding_weight"].shape[0]) - prefix
    return {"vocab_size": int(flat["embed_tokens.embedding_weight"].shape[0]),
            "num_puzzle_identifiers": int(table.shape[0]) if table is not None else 1,
            "puzzle_emb_ndim": ndim, "seq_len": seq_len}


def _load_reference(path: Path, where: str, meta_data: Any, data: str, seq_len: int | None,
                    device: torch.device | str | None, dtype: torch.dtype | str) -> Loaded:
    from trm.convert import ConversionError, config_from_reference, load_reference_state_dict, reference_arch
    from trm.models.config import ConfigError

    weights, config_path = _reference_files(path, where)
    recorded = read_reference_config(config_path)
    arch = recorded["arch"]
    try:
        kind = reference_arch(str(arch["name"]))
    except ConversionError as e:
        raise CheckpointError(f"{config_path}: {e}") from None
    state = read_reference_weights(weights)
    try:
        shapes = reference_shapes(arch, state)
    except CheckpointError as e:
        raise CheckpointError(f"{weights}: {e}") from None
    inferred, data_used = shapes["seq_len"], None
    if meta_data is None and inferred is None and seq_len is None:
        meta_data, data_used = _recorded_dataset(recorded["data"])
    if seq_len is not None and inferred is not None and seq_len != inferred:
        raise MismatchError(f"{where}: seq_len={seq_len} was given, but the weights read {inferred} tokens")
    final = seq_len or inferred or arch.get("seq_len") or (meta_data.seq_len if meta_data is not None else None)
    if final is None:
        raise CheckpointError(
            f"{where}: its sequence length is not stored (with rotary or no positions the reference takes it from "
            f"the dataset) and its {kind} weights do not determine it; "
            f"give the dataset it was trained on (--data DIR, or data=) or seq_len=N (81 for 9x9 Sudoku, "
            f"900 for 30x30 Maze and ARC)")
    values = {**arch, **{k: v for k, v in shapes.items() if k != "seq_len"}, "seq_len": final}
    try:
        config, trained_dtype = config_from_reference(values, str(arch["name"]))
        if meta_data is not None:  # before building (and timing) anything
            check_fits(config, meta_data, where=where, data=data_used or data)
        note = ""
        if isinstance(dtype, str):
            from trm.runtime import inference_mode

            mode = inference_mode(dtype, str(trained_dtype).removeprefix("torch."), torch.device(device or "cpu"),
                                  config)
            dtype, note = mode.dtype, mode.reason
        model = build_model(config, dtype=dtype, device=device)
        load_reference_state_dict(model, state)
    except (ConversionError, ConfigError) as e:
        raise CheckpointError(f"{weights}: {e}") from None
    fmt = {"trm": "reference-trm", "hrm": "hrm", "transformer": "reference-transformer"}[kind]
    meta: dict[str, Any] = {"model": config.to_dict(), "format": fmt, "weights_file": str(weights),
                            "reference_config": arch}
    if data_used is not None:
        meta["train"] = {"data": data_used}
    step = _STEP.match(weights.name)
    if step:
        meta["step"] = int(step.group(1))
    return Loaded(model=model, config=config, meta=meta, path=weights.parent, numeric=note)


def _recorded_dataset(paths: list[str]) -> tuple[Any, str | None]:
    """The dataset a reference run recorded, when a folder of that name exists here (else None)."""
    for p in paths:
        if (Path(p) / "train" / "dataset.json").is_file():
            return _dataset_meta(p), p
    return None, None


# ---------------------------------------------------------------------------------------------
# Fitting a dataset


def check_fits(config: ModelConfig, meta: Any, *, where: str, data: str) -> None:
    """MismatchError unless a dataset (its `DatasetMetadata`) fits the model: vocabulary, sequence length
    and, when the model has a puzzle table, its size."""
    arc = getattr(meta, "task", None) == "arc" or (meta.seq_len == 900 and meta.vocab_size == 12)
    if config.vocab_size != meta.vocab_size:
        raise MismatchError(f"{where}: the checkpoint reads {config.vocab_size} token ids, the dataset {data} has "
                            f"{meta.vocab_size}: a dataset of another task, or built with another token layout")
    if config.seq_len != meta.seq_len:
        raise MismatchError(f"{where}: the checkpoint reads {config.seq_len} tokens per example, the dataset {data} "
                            f"has {meta.seq_len}: puzzles of another size (another grid or canvas size)")
    if config.puzzle_emb_ndim and config.num_puzzle_identifiers != meta.num_puzzle_identifiers:
        raise MismatchError(puzzle_table_message(config.num_puzzle_identifiers, meta.num_puzzle_identifiers,
                                                 where=where, data=data, arc=arc))


def puzzle_table_message(have: int, want: int, *, where: str, data: str, arc: bool, fine_tune: bool = False) -> str:
    """The error for a puzzle-embedding table that does not fit a dataset."""
    if arc:
        cause = ("an ARC checkpoint only fits a dataset whose puzzle identifiers are numbered exactly as those it "
                 "was trained on: build it with `trm build arc --reference-identical` from the same task files, "
                 "subsets, augmentation count and seed")
    else:
        cause = "the dataset holds other puzzles, or was built with another augmentation count, than the training one"
    hint = ("; the names of its rows are unknown: give init_from_identifiers=<its dataset's identifiers.json> to "
            "keep the rows of puzzles in both, or, to fine-tune on these puzzles with fresh embedding rows, set "
            "init_from_puzzle_rows=reset" if fine_tune else "")
    return (f"{where}: the checkpoint has {have} puzzle identifiers, the dataset {data} {want}: {cause}{hint}")


def initial_weights(source: str, config: ModelConfig, *, data: str | Path | None = None,
                    puzzle_rows: str = "check") -> dict[str, Tensor]:
    """Weights of `source` for a new model of `config` (fine-tuning, `init_from=`): EMA weights where
    the checkpoint has them. Every shape must match; a puzzle table of another size is an error naming
    both sizes unless `puzzle_rows="reset"`, which starts every row afresh (zeros, as the reference
    initialises its table) and says so, or "keep", which leaves the table as the checkpoint has it for the
    caller to lay out (`trm.puzzle_rows`)."""
    if puzzle_rows not in PUZZLE_ROWS:
        from trm.models.config import ConfigError

        raise ConfigError(f"init_from_puzzle_rows={puzzle_rows!r}: must be one of {PUZZLE_ROWS}")
    where = f"init_from {source}"
    try:
        loaded = load(source, seq_len=config.seq_len)  # the run's own seq_len where the weights leave it open
    except MismatchError as e:
        raise MismatchError(f"{where}: {e}") from None
    for name, what in (("seq_len", "tokens per example"), ("vocab_size", "token ids")):
        have_n, want_n = getattr(loaded.config, name), getattr(config, name)
        if have_n != want_n:
            raise MismatchError(f"{where}: the checkpoint reads {have_n} {what}, this run's dataset has {want_n}")
    state = loaded.model.state_dict()
    table = "embed.puzzle.weight"
    have = loaded.config.num_puzzle_identifiers
    if table in state and have != config.num_puzzle_identifiers and puzzle_rows != "keep":
        if puzzle_rows == "check":
            raise MismatchError(puzzle_table_message(have, config.num_puzzle_identifiers, where=where,
                                                     data=str(data or "of this run"), arc=config.seq_len == 900,
                                                     fine_tune=True))
        state[table] = torch.zeros(config.num_puzzle_identifiers, config.puzzle_emb_ndim)
        print(f"init_from: puzzle-embedding table re-initialised (init_from_puzzle_rows=reset): the checkpoint has "
              f"{have} rows, this dataset {config.num_puzzle_identifiers}; all start from zero")
    ours, theirs = config.to_dict(), loaded.config.to_dict()
    differ = {k: (theirs.get(k), v) for k, v in ours.items()
              if k != "num_puzzle_identifiers" and theirs.get(k) != v and _shapes_depend_on(k)}
    if differ:
        raise MismatchError(f"{where}: the checkpoint's model differs from this run's in "
                            + ", ".join(f"{k} ({a} there, {b} here)" for k, (a, b) in sorted(differ.items())))
    return state


_SHAPE_FIELDS = {"hidden_size", "num_heads", "expansion", "pos_encodings", "puzzle_emb_ndim", "puzzle_emb_len",
                 "T", "n", "layers", "mlp_t", "separate_nets", "single_z", "conv_kernel", "H_cycles", "L_cycles",
                 "H_layers", "L_layers", "arch"}


def _shapes_depend_on(field: str) -> bool:
    """Fields whose difference would make the loaded weights mean another model."""
    return field in _SHAPE_FIELDS


def describe(loaded: Loaded) -> str:
    """One line: what was loaded."""
    c = loaded.config
    fmt = loaded.meta.get("format", "trm")
    return (f"{loaded.meta.get('source', loaded.path)}: {c.arch.upper()} ({fmt} layout, "
            f"{sum(p.numel() for p in loaded.model.parameters()) / 1e6:.2f}M parameters), vocab {c.vocab_size}, "
            f"seq_len {c.seq_len}, {c.num_puzzle_identifiers} puzzle identifiers")
