"""HRM: the Hierarchical Reasoning Model (arXiv 2506.21734), TRM's ancestor.

Two networks at two speeds: a low-level L (z_L, updated L_cycles times per high-level cycle) and a
high-level H (z_H, updated once per cycle), for H_cycles cycles:

    z_L = L(z_L, z_H + x)   (L_cycles times);   z_H = H(z_H, z_L)

Everything but the final `z_L = L(z_L, z_H + x); z_H = H(z_H, z_L)` runs without gradients (the
"1-step gradient"). Halting is Q-learning: halt when q_halt > q_continue, with q_continue trained
toward sigmoid(last ? q_halt' : max(q_halt', q_continue')) from one more no-grad step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trm.layers import Block, Stack, trunc_normal_
from trm.models.act import ACTModel, Batch, State
from trm.models.config import ModelConfig


@dataclass(frozen=True, kw_only=True)
class HRMConfig(ModelConfig):
    arch = "hrm"

    H_cycles: int = 2
    """High-level cycles per supervision step."""
    L_cycles: int = 2
    """Low-level updates per high-level cycle."""
    H_layers: int = 4
    """Blocks in the high-level network H."""
    L_layers: int = 4
    """Blocks in the low-level network L."""
    puzzle_emb_len: int = 0
    """HRM sizes its prefix from the embedding: ceil(puzzle_emb_ndim / hidden_size) positions."""
    act_continue: bool = True
    """HRM halts on q_halt > q_continue and trains the continue head."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("H_cycles", "L_cycles", "H_layers", "L_layers"):
            self._check(getattr(self, name) >= 1, name, "must be at least 1")


class HRM(ACTModel):
    """The Hierarchical Reasoning Model with Q-learning halting."""

    config: HRMConfig
    H_init: Tensor
    L_init: Tensor

    def __init__(self, config: HRMConfig, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        c = config
        self._init_inputs(c, dtype, halt_on_continue=c.act_continue, continue_target=c.act_continue)
        self.H_net = Stack([Block(c.hidden_size, c.num_heads, c.expansion, c.rms_norm_eps) for _ in range(c.H_layers)])
        self.L_net = Stack([Block(c.hidden_size, c.num_heads, c.expansion, c.rms_norm_eps) for _ in range(c.L_layers)])
        self._init_heads()
        self.register_buffer("H_init", trunc_normal_(torch.empty(c.hidden_size), std=1.0))
        self.register_buffer("L_init", trunc_normal_(torch.empty(c.hidden_size), std=1.0))
        self.to(device)

    def initial_state(self, batch_size: int, device: torch.device) -> State:
        shape = (batch_size, self.config.positions, self.config.hidden_size)
        return {k: torch.zeros(shape, dtype=self.dtype, device=device) for k in ("z_H", "z_L")}

    def reset_state(self, state: State, reset: Tensor) -> State:
        mask = reset.view(-1, 1, 1)
        return {"z_H": torch.where(mask, self.H_init.to(self.dtype), state["z_H"]),
                "z_L": torch.where(mask, self.L_init.to(self.dtype), state["z_L"])}

    def step(self, state: State, batch: Batch) -> tuple[State, Tensor, Tensor, Tensor]:
        c = self.config
        x = self.embed(batch["inputs"], batch["puzzle_identifiers"], self.dtype)
        cos_sin = self.rotary() if self.rotary is not None else None
        z_H, z_L = state["z_H"], state["z_L"]

        with torch.no_grad():  # all updates but the last L and the last H
            for h in range(c.H_cycles):
                for l_step in range(c.L_cycles):
                    if not (h == c.H_cycles - 1 and l_step == c.L_cycles - 1):
                        z_L = self.L_net(z_L, z_H + x, cos_sin)
                if h != c.H_cycles - 1:
                    z_H = self.H_net(z_H, z_L, cos_sin)
        z_L = self.apply_net(self.L_net, z_L, z_H + x, cos_sin)  # the 1-step gradient
        z_H = self.apply_net(self.H_net, z_H, z_L, cos_sin)

        logits = self.lm_head(z_H)[:, self.prefix_len:]
        q = self.q_head(z_H[:, 0]).float()
        return {"z_H": z_H.detach(), "z_L": z_L.detach()}, logits, q[..., 0], q[..., 1]
