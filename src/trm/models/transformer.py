"""The plain transformer baseline: the same blocks stacked, one pass per supervision step.

No recursion inside a step: `h = net(h, x)` once, with h carried (detached) into the next
supervision step, so depth comes from the layers and deep supervision alone. Halting follows
the same ACT rules as the other models (q_halt > q_continue), without the continue loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trm.layers import Block, Stack, trunc_normal_
from trm.models.act import ACTModel, Batch, State
from trm.models.config import ModelConfig


@dataclass(frozen=True, kw_only=True)
class TransformerConfig(ModelConfig):
    arch = "transformer"

    layers: int = 8
    """Stacked blocks."""
    puzzle_emb_len: int = 0
    """Prefix sized from the embedding: ceil(puzzle_emb_ndim / hidden_size) positions."""
    halt_on_continue: bool = True
    """Halt on q_halt > q_continue (the baseline's rule) rather than q_halt > 0."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.layers >= 1, "layers", "must be at least 1")


class Transformer(ACTModel):
    """A stack of post-norm transformer blocks under the ACT wrapper."""

    config: TransformerConfig
    h_init: Tensor

    def __init__(self, config: TransformerConfig, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        c = config
        self._init_inputs(c, dtype, halt_on_continue=c.halt_on_continue, continue_target=c.act_continue)
        self.net = Stack([Block(c.hidden_size, c.num_heads, c.expansion, c.rms_norm_eps) for _ in range(c.layers)])
        self._init_heads()
        self.register_buffer("h_init", trunc_normal_(torch.empty(c.hidden_size), std=1.0))
        self.to(device)

    def initial_state(self, batch_size: int, device: torch.device) -> State:
        shape = (batch_size, self.config.positions, self.config.hidden_size)
        return {"h": torch.zeros(shape, dtype=self.dtype, device=device)}

    def reset_state(self, state: State, reset: Tensor) -> State:
        return {"h": torch.where(reset.view(-1, 1, 1), self.h_init.to(self.dtype), state["h"])}

    def step(self, state: State, batch: Batch) -> tuple[State, Tensor, Tensor, Tensor]:
        x = self.embed(batch["inputs"], batch["puzzle_identifiers"], self.dtype)
        cos_sin = self.rotary() if self.rotary is not None else None
        h = self.apply_net(self.net, state["h"], x, cos_sin)
        logits = self.lm_head(h)[:, self.prefix_len:]
        q = self.q_head(h[:, 0]).float()
        return {"h": h.detach()}, logits, q[..., 0], q[..., 1]
