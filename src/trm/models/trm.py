"""TRM: the Tiny Recursive Model ("Less is More: Recursive Reasoning with Tiny Networks").

One tiny network f improves an answer y with a latent reasoning state z, given the question x:

    recursion:         n times  z = f(z, y + x);  then once  y = f(y, z)
    supervision step:  T recursions; only the last keeps gradients; y, z detached and carried on

with f(h, injection) = the layers run on h + injection. Deep supervision (up to N_sup steps per
example, with halting) wraps this in trm.models.act.

The paper's ablations are options of this one implementation:
`single_z` (one state; the answer is read from z), `separate_nets` (f_z and f_y),
`one_step_grad` (HRM's gradient: only the last z update and the y update keep gradients),
`act_continue` (HRM's halting with a Q-learning continue target), and T, n, layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trm.layers import Block, CosSin, Stack, trunc_normal_
from trm.models.act import ACTModel, Batch, State
from trm.models.config import ModelConfig


@dataclass(frozen=True, kw_only=True)
class TRMConfig(ModelConfig):
    arch = "trm"

    T: int = 3
    """Recursions per supervision step (reference: H_cycles); the first T-1 run without gradients."""
    n: int = 6
    """Latent updates z = f(z, y + x) per recursion (reference: L_cycles)."""
    layers: int = 2
    """Blocks in the network f (reference: L_layers)."""
    mlp_t: bool = False
    """Mix tokens with a SwiGLU across positions instead of attention (the MLP variant)."""
    single_z: bool = False
    """Ablation: one state z; n times z = f(z, x), then z = f(z); the answer is read from z."""
    separate_nets: bool = False
    """Ablation: separate networks f_z (latent updates) and f_y (answer update)."""
    one_step_grad: bool = False
    """Ablation: gradients only through the last z update and the y update (HRM's 1-step gradient)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.T >= 1, "T", "needs at least one recursion per supervision step")
        self._check(self.n >= 1, "n", "needs at least one latent update per recursion")
        self._check(self.layers >= 1, "layers", "f needs at least one block")
        self._check(not (self.single_z and self.separate_nets), "separate_nets",
                    "has no meaning with single_z (there is no y to update)")


class TRM(ACTModel):
    """The Tiny Recursive Model with ACT; `dtype` is the activation dtype (float32 or bfloat16)."""

    config: TRMConfig
    y_init: Tensor
    z_init: Tensor

    def __init__(self, config: TRMConfig, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        c = config
        self._init_inputs(c, dtype, halt_on_continue=c.act_continue, continue_target=c.act_continue)
        self.net = self._make_net()
        self.net_y = self._make_net() if c.separate_nets else None
        self._init_heads()

        # Initial y and z: fixed vectors, broadcast over positions whenever an example (re)starts.
        self.register_buffer("y_init", trunc_normal_(torch.empty(c.hidden_size), std=1.0))
        self.register_buffer("z_init", trunc_normal_(torch.empty(c.hidden_size), std=1.0))
        self.depth: tuple[int, int] | None = None
        """Runtime override of (n, T) for training (a depth curriculum); None: the config's."""
        self.to(device)

    def set_depth(self, n: int | None = None, T: int | None = None) -> None:
        """Train at a shallower recursion (n latent updates, T recursions) than configured, as a
        depth curriculum does (CGAR, arXiv 2511.08653); no arguments restore the configured depth.
        Evaluation (eval mode) always runs the configured depth."""
        if n is None and T is None:
            self.depth = None
            return
        n, T = n or self.config.n, T or self.config.T
        if not (1 <= n and 1 <= T):
            raise ValueError(f"depth n={n}, T={T}: both must be at least 1")
        self.depth = (n, T)

    def _n_T(self) -> tuple[int, int]:
        if self.depth is not None and self.training:
            return self.depth
        return self.config.n, self.config.T

    def _make_net(self) -> Stack:
        c = self.config
        width = c.positions if c.mlp_t else None
        return Stack([Block(c.hidden_size, c.num_heads, c.expansion, c.rms_norm_eps, token_mlp_width=width)
                      for _ in range(c.layers)])

    def initial_state(self, batch_size: int, device: torch.device) -> State:
        shape = (batch_size, self.config.positions, self.config.hidden_size)
        names = ("z",) if self.config.single_z else ("y", "z")
        return {k: torch.zeros(shape, dtype=self.dtype, device=device) for k in names}

    def reset_state(self, state: State, reset: Tensor) -> State:
        mask = reset.view(-1, 1, 1)
        inits = {"y": self.y_init, "z": self.z_init}
        return {k: torch.where(mask, inits[k].to(self.dtype), v) for k, v in state.items()}

    def recursion(self, x: Tensor, y: Tensor, z: Tensor, cos_sin: CosSin | None,
                  last: bool = False) -> tuple[Tensor, Tensor]:
        """One recursion: n latent updates, then one answer update. With `one_step_grad`, the
        final recursion (`last`) keeps gradients only for its last z update and the y update."""
        f_y = self.net_y or self.net
        n = self._n_T()[0]
        for i in range(n):
            with torch.set_grad_enabled(torch.is_grad_enabled() and not (
                    last and self.config.one_step_grad and i < n - 1)):
                z = self.apply_net(self.net, z, y + x, cos_sin)
        return self.apply_net(f_y, y, z, cos_sin), z

    def recursion_single_z(self, x: Tensor, z: Tensor, cos_sin: CosSin | None, last: bool = False) -> Tensor:
        n = self._n_T()[0]
        for i in range(n):
            with torch.set_grad_enabled(torch.is_grad_enabled() and not (
                    last and self.config.one_step_grad and i < n - 1)):
                z = self.apply_net(self.net, z, x, cos_sin)
        return self.apply_net(self.net, z, None, cos_sin)

    def step(self, state: State, batch: Batch) -> tuple[State, Tensor, Tensor, Tensor]:
        T = self._n_T()[1]
        x = self.embed(batch["inputs"], batch["puzzle_identifiers"], self.dtype)
        cos_sin = self.rotary() if self.rotary is not None else None

        if self.config.single_z:
            z = state["z"]
            with torch.no_grad():  # T-1 recursions without gradients
                for _ in range(T - 1):
                    z = self.recursion_single_z(x, z, cos_sin)
            y = z = self.recursion_single_z(x, z, cos_sin, last=True)
            new_state = {"z": z.detach()}
        else:
            y, z = state["y"], state["z"]
            with torch.no_grad():  # T-1 recursions without gradients
                for _ in range(T - 1):
                    y, z = self.recursion(x, y, z, cos_sin)
            y, z = self.recursion(x, y, z, cos_sin, last=True)
            new_state = {"y": y.detach(), "z": z.detach()}

        logits = self.lm_head(y)[:, self.prefix_len:]
        q = self.q_head(y[:, 0]).float()  # the halting head reads the first (prefix) position
        return new_state, logits, q[..., 0], q[..., 1]
