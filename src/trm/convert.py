"""Import configurations and weights saved by the reference implementation.

The reference saves `torch.save(model.state_dict())` of its loss head around the model, so names
look like `model.inner.L_level.layers.0.self_attn.qkv_proj.weight`, with `_orig_mod.` inserted
where torch.compile wrapped a module. Its architecture config (its `all_config.yaml`, section
`arch`) names a class and uses H_cycles / L_cycles / L_layers for TRM's T / n / layers.
Attention keeps q, k, v packed along the output axis and the SwiGLU keeps gate then up packed, as
ours do, so weights copy over after renaming; shapes are checked on the way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from trm.models import ACTModel, HRMConfig, ModelConfig, TransformerConfig, TRMConfig

# Class names (and module@class names of its YAML) -> our arch.
_ARCHES = {
    "TinyRecursiveReasoningModel_ACTV1": "trm",
    "HierarchicalReasoningModel_ACTV1": "hrm",
    "Model_ACTV2": "transformer",
}
_COMMON = ("seq_len", "vocab_size", "num_puzzle_identifiers", "puzzle_emb_ndim", "hidden_size", "num_heads",
           "expansion", "pos_encodings", "rms_norm_eps", "rope_theta", "halt_max_steps", "halt_exploration_prob")


class ConversionError(ValueError):
    """A reference checkpoint or config that cannot be mapped onto our models."""


def reference_arch(name: str) -> str:
    """Our arch for a reference class name such as `recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1`."""
    cls = name.split("@")[-1]
    if cls not in _ARCHES:
        raise ConversionError(f"unknown reference model class {name!r}; known: {sorted(_ARCHES)}")
    return _ARCHES[cls]


def config_from_reference(values: dict[str, Any], model_class: str) -> tuple[ModelConfig, torch.dtype]:
    """Our configuration (and the activation dtype) for a reference architecture config."""
    arch = reference_arch(model_class)
    common = {k: values[k] for k in _COMMON if k in values}
    if "pos_encodings" in common and common["pos_encodings"] not in ("rope", "learned"):
        common["pos_encodings"] = "none"
    dtype = getattr(torch, str(values.get("forward_dtype", "bfloat16")))
    try:
        config: ModelConfig
        if arch == "trm":
            config = TRMConfig(**common, T=values["H_cycles"], n=values["L_cycles"], layers=values["L_layers"],
                               mlp_t=bool(values.get("mlp_t", False)),
                               puzzle_emb_len=values.get("puzzle_emb_len", 16),
                               act_continue=not values.get("no_ACT_continue", True))
        elif arch == "hrm":
            config = HRMConfig(**common, H_cycles=values["H_cycles"], L_cycles=values["L_cycles"],
                               H_layers=values["H_layers"], L_layers=values["L_layers"], puzzle_emb_len=0)
        else:
            config = TransformerConfig(**common, layers=values["H_layers"], puzzle_emb_len=0)
    except KeyError as e:
        raise ConversionError(f"reference {model_class} config lacks {e.args[0]!r}") from None
    return config, dtype


_LAYER = re.compile(r"^(H_level|L_level)\.layers\.(\d+)\.(self_attn|mlp_t|mlp)\."
                    r"(qkv_proj|o_proj|gate_up_proj|down_proj)\.weight$")
_SUB = {"self_attn": "attn", "mlp_t": "token_mlp", "mlp": "mlp"}
_PROJ = {"qkv_proj": "qkv", "o_proj": "out", "gate_up_proj": "gate_up", "down_proj": "down"}
_LEVEL = {"trm": {"L_level": "net"}, "hrm": {"H_level": "H_net", "L_level": "L_net"}, "transformer": {"H_level": "net"}}
_INIT = {"trm": {"H_init": "y_init", "L_init": "z_init"}, "hrm": {"H_init": "H_init", "L_init": "L_init"},
         "transformer": {"H_init": "h_init"}}
_TOP = {"embed_tokens.embedding_weight": "embed.tokens.weight", "embed_pos.embedding_weight": "embed.positions.weight",
        "puzzle_emb.weights": "embed.puzzle.weight", "lm_head.weight": "lm_head.weight",
        "q_head.weight": "q_head.weight", "q_head.bias": "q_head.bias"}


def reference_name(name: str) -> str:
    """Strip the wrappers from a reference parameter name: `_orig_mod.`, `model.`, `inner.`."""
    name = name.replace("_orig_mod.", "")
    for prefix in ("model.", "inner."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name


def our_name(name: str, arch: str) -> str | None:
    """Our state-dict name for a reference name; None for entries with no counterpart."""
    name = reference_name(name)
    if name in _TOP:
        return _TOP[name]
    if name in _INIT[arch]:
        return _INIT[arch][name]
    m = _LAYER.match(name)
    if m and m.group(1) in _LEVEL[arch]:
        level, idx, sub, proj = m.groups()
        return f"{_LEVEL[arch][level]}.layers.{idx}.{_SUB[sub]}.{_PROJ[proj]}.weight"
    if name.endswith(("cos_cached", "sin_cached", "local_weights", "local_ids")):
        return None  # derived or per-batch buffers, not weights
    raise ConversionError(f"reference parameter {name!r} has no counterpart in our {arch} model")


def convert_state_dict(reference: dict[str, Tensor], model: ACTModel) -> dict[str, Tensor]:
    """Rename a reference state dict for `model`, checking that every weight is present and fits."""
    arch = model.config.arch
    ours = model.state_dict()
    out: dict[str, Tensor] = {}
    for name, value in reference.items():
        target = our_name(name, arch)
        if target is None:
            continue
        if target not in ours:
            raise ConversionError(f"reference {name!r} maps to {target!r}, which this {arch} model does not have "
                                  "(does the config match the checkpoint?)")
        if tuple(ours[target].shape) != tuple(value.shape):
            raise ConversionError(f"reference {name!r} has shape {tuple(value.shape)} but {target!r} expects "
                                  f"{tuple(ours[target].shape)} (does the config match the checkpoint?)")
        out[target] = value.to(ours[target].dtype)
    missing = sorted(set(ours) - set(out))
    if missing:
        raise ConversionError(f"the reference state dict lacks weights for {missing}")
    return out


def load_reference_state_dict(model: ACTModel, reference: dict[str, Tensor]) -> ACTModel:
    """Load reference weights into `model` in place and return it."""
    model.load_state_dict(convert_state_dict(reference, model))
    return model


def load_reference_checkpoint(path: str | Path, *, device: torch.device | str | None = None,
                              dtype: torch.dtype | None = None, data: str | Path | None = None,
                              seq_len: int | None = None) -> ACTModel:
    """A model from a reference checkpoint file and the `all_config.yaml` beside it (`trm.load` with the
    reference's dtype unless `dtype` is given; `data` or `seq_len` where the weights leave seq_len open).

    The file is read with `torch.load(weights_only=True)`, which executes no code.
    """
    from trm.checkpoint import CheckpointError
    from trm.loader import load, read_reference_config

    path = Path(path)
    config_path = path.parent / "all_config.yaml"
    if not config_path.is_file():
        raise ConversionError(f"{path}: no all_config.yaml beside it to say which model it holds")
    try:
        if dtype is None:
            arch = read_reference_config(config_path)["arch"]
            dtype = getattr(torch, str(arch.get("forward_dtype", "bfloat16")))
        return load(path, device=device, dtype=dtype, data=data, seq_len=seq_len).model
    except CheckpointError as e:
        raise ConversionError(str(e)) from None
