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

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from trm.layers import Block, ConvSwiGLU, CosSin, Stack, SwiGLU, trunc_normal_
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
    grad_depth: int = 0
    """Truncated back-propagation: keep gradients through the last `grad_depth` applications of the
    network in a supervision step (counting z and y updates, across recursions; URM, arXiv 2512.14693).
    0: the published rule, the last recursion's n + 1 updates (2 with one_step_grad)."""
    recursion_loss: bool = False
    """Dense per-recursion loss: every recursion's answer is decoded and supervised, each recursion
    back-propagated through itself only (its input state detached); the token loss is their mean."""
    conv_kernel: int = 0
    """ConvSwiGLU (URM): a depthwise k x k convolution over the 2-D grid inside every channel SwiGLU
    (0: off). Needs a square grid (seq_len a perfect square)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.T >= 1, "T", "needs at least one recursion per supervision step")
        self._check(self.n >= 1, "n", "needs at least one latent update per recursion")
        self._check(self.layers >= 1, "layers", "f needs at least one block")
        self._check(not (self.single_z and self.separate_nets), "separate_nets",
                    "has no meaning with single_z (there is no y to update)")
        self._check(self.grad_depth >= 0, "grad_depth", "must be >= 0 (0: the last recursion)")
        self._check(not (self.grad_depth and self.one_step_grad), "grad_depth",
                    "and one_step_grad both set the gradient depth: use one (one_step_grad is grad_depth=2)")
        self._check(not (self.recursion_loss and (self.grad_depth or self.one_step_grad)), "recursion_loss",
                    "back-propagates each recursion through itself: it takes no grad_depth or one_step_grad")
        self._check(self.conv_kernel >= 0 and (self.conv_kernel == 0 or self.conv_kernel % 2 == 1), "conv_kernel",
                    "must be 0 (off) or an odd kernel size")
        self._check(self.conv_kernel == 0 or math.isqrt(self.seq_len) ** 2 == self.seq_len, "conv_kernel",
                    f"needs a square grid, but seq_len={self.seq_len} is not a perfect square")

    @property
    def grid(self) -> tuple[int, int] | None:
        """The (rows, columns) of the token grid when a convolution needs it."""
        side = math.isqrt(self.seq_len)
        return (side, side) if self.conv_kernel else None


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
        self.recursion_logits: list[Tensor] = []
        """With `recursion_loss` (training): the token logits after each recursion but the last, as the last
        `step` produced them."""
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

        def channel_mlp() -> SwiGLU | None:
            if c.grid is None:
                return None
            return ConvSwiGLU(c.hidden_size, c.expansion, c.conv_kernel, c.grid, c.prefix_len)

        return Stack([Block(c.hidden_size, c.num_heads, c.expansion, c.rms_norm_eps, token_mlp_width=width,
                            mlp=channel_mlp()) for _ in range(c.layers)])

    def initial_state(self, batch_size: int, device: torch.device) -> State:
        shape = (batch_size, self.config.positions, self.config.hidden_size)
        names = ("z",) if self.config.single_z else ("y", "z")
        return {k: torch.zeros(shape, dtype=self.dtype, device=device) for k in names}

    def reset_state(self, state: State, reset: Tensor) -> State:
        mask = reset.view(-1, 1, 1)
        inits = {"y": self.y_init, "z": self.z_init}
        return {k: torch.where(mask, inits[k].to(self.dtype), v) for k, v in state.items()}

    def recursion(self, x: Tensor, y: Tensor, z: Tensor, cos_sin: CosSin | None,
                  grad: list[bool] | None = None) -> tuple[Tensor, Tensor]:
        """One recursion: n latent updates z = f(z, y + x), then the answer update y = f_y(y, z) (single_z:
        z = f(z, x), then z = f(z), and y is z). `grad` says for each of the n + 1 network applications
        whether it records gradients (default: all, as the ambient mode allows)."""
        n = self._n_T()[0]
        flags = grad or [True] * (n + 1)
        enabled = torch.is_grad_enabled()
        single = self.config.single_z
        for i in range(n):
            with torch.set_grad_enabled(enabled and flags[i]):
                z = self.apply_net(self.net, z, x if single else y + x, cos_sin)
        with torch.set_grad_enabled(enabled and flags[n]):
            if single:
                return (z := self.apply_net(self.net, z, None, cos_sin)), z
            return self.apply_net(self.net_y or self.net, y, z, cos_sin), z

    def grad_from(self, n: int, T: int) -> int:
        """The first of the T * (n + 1) network applications of a supervision step that keeps gradients
        (the rest run as constants): the last recursion by default, the last `grad_depth` with truncation."""
        c = self.config
        depth = c.grad_depth or (2 if c.one_step_grad else n + 1)
        return max(0, T * (n + 1) - depth)

    def step(self, state: State, batch: Batch) -> tuple[State, Tensor, Tensor, Tensor]:
        n, T = self._n_T()
        x = self.embed(batch["inputs"], batch["puzzle_identifiers"], self.dtype)
        cos_sin = self.rotary() if self.rotary is not None else None
        dense = self.config.recursion_loss and self.training and torch.is_grad_enabled()
        first = self.grad_from(n, T)
        z = state["z"]
        y = z if self.config.single_z else state["y"]
        self.recursion_logits = []
        for r in range(T):
            flags = [dense or r * (n + 1) + i >= first for i in range(n + 1)]
            if not any(flags):
                with torch.no_grad():
                    y, z = self.recursion(x, y, z, cos_sin)
                continue
            if dense:  # each recursion back-propagated through itself only
                y, z = y.detach(), z.detach()
            y, z = self.recursion(x, y, z, cos_sin, flags)
            if dense and r < T - 1:
                self.recursion_logits.append(self.lm_head(y)[:, self.prefix_len:])
        new_state = {"z": z.detach()} if self.config.single_z else {"y": y.detach(), "z": z.detach()}

        logits = self.lm_head(y)[:, self.prefix_len:]
        q = self.q_head(y[:, 0]).float()  # the halting head reads the first (prefix) position
        return new_state, logits, q[..., 0], q[..., 1]
