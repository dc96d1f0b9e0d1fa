"""Models: TRM, HRM and the transformer baseline, each with its configuration dataclass."""

from __future__ import annotations

from typing import Any

import torch

from trm.models.act import ACTModel, Carry, StepOutput
from trm.models.config import ConfigError, ModelConfig
from trm.models.hrm import HRM, HRMConfig
from trm.models.transformer import Transformer, TransformerConfig
from trm.models.trm import TRM, TRMConfig

# arch name -> (config class, model class); adding a model touches this dict and its own file.
REGISTRY: dict[str, tuple[type[ModelConfig], type[ACTModel]]] = {
    "trm": (TRMConfig, TRM),
    "hrm": (HRMConfig, HRM),
    "transformer": (TransformerConfig, Transformer),
}


def config_from_dict(values: dict[str, Any]) -> ModelConfig:
    """A model configuration from a dict with an `arch` key (as saved in checkpoints)."""
    arch = values.get("arch")
    if arch not in REGISTRY:
        raise ConfigError(f"unknown arch {arch!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[arch][0].from_dict(values)


def build_model(config: ModelConfig, *, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> ACTModel:
    """The model for `config`, with activations in `dtype` on `device`."""
    model_cls = REGISTRY[config.arch][1]
    return model_cls(config, dtype=dtype, device=device)  # type: ignore[call-arg]


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters (the puzzle-embedding table is a buffer and is not counted)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["ACTModel", "Carry", "StepOutput", "ConfigError", "ModelConfig", "TRM", "TRMConfig", "HRM", "HRMConfig",
           "Transformer", "TransformerConfig", "REGISTRY", "config_from_dict", "build_model", "count_parameters"]
