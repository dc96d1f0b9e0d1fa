"""Adaptive computation (ACT): the persistent carry and the halting rule, shared by all models.

A batch of B slots persists across training steps. Each slot holds its recurrent state (y, z, ...),
a step count, a halted flag and its current example. At every call:

1. slots that halted take the example at the same position of the incoming batch and restart
   from the initial state with a zero count;
2. every slot runs one supervision step of the model;
3. count += 1; a slot halts when count >= N_sup, or (training only) when the halting head says
   so: q_halt > 0, or q_halt > q_continue with the continue head; with probability
   `halt_exploration_prob` a slot draws a minimum count in 2..N_sup before which it cannot halt.

Evaluation (model.eval()) never halts early: every slot runs N_sup steps, as the reference does;
other evaluation policies live in the evaluator, which reads q_halt itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from trm.layers import CosSin, InputEmbedding, Linear, RotaryEmbedding
from trm.models.config import ModelConfig

State = dict[str, Tensor]
Batch = dict[str, Tensor]


@dataclass
class Carry:
    """What persists between supervision steps for each slot of the batch."""

    state: State
    """Recurrent state tensors (y, z, ...), each [batch, positions, hidden], detached."""
    steps: Tensor
    """Supervision steps taken by each slot's current example, int32 [batch]."""
    halted: Tensor
    """Whether each slot finished its example (and takes a new one at the next call), bool [batch]."""
    data: Batch
    """The example each slot is working on (inputs, labels, puzzle_identifiers, ...)."""


@dataclass
class StepOutput:
    """What one supervision step produces."""

    logits: Tensor
    """Token logits [batch, seq_len, vocab] (the puzzle-identifier prefix dropped)."""
    q_halt: Tensor
    """Halting-head logit, float32 [batch]."""
    q_continue: Tensor
    """Continue-head logit, float32 [batch]."""
    target_q_continue: Tensor | None = field(default=None)
    """Bootstrapped target for q_continue (training with the continue loss only)."""
    recursion_logits: list[Tensor] = field(default_factory=list)
    """Token logits after each recursion but the last (a model's dense per-recursion loss only)."""


class ACTModel(nn.Module):
    """Base class: a model implements `initial_state`, `reset_state` and `step`; this class
    implements the carry bookkeeping and halting around them."""

    config: ModelConfig
    embed: InputEmbedding
    dtype: torch.dtype
    """Activation dtype (parameters stay float32)."""
    prefix_len: int
    halt_max_steps: int
    halt_exploration_prob: float
    halt_on_continue: bool
    """Halt on q_halt > q_continue (HRM's Q-learning) rather than on q_halt > 0 (TRM's default)."""
    continue_target: bool
    """Compute the bootstrapped target that trains q_continue (one more no-grad step)."""
    group: int = 1
    """Runtime switch for winner-take-all training: consecutive slots are `group` copies of one example;
    copies after the first start from the initial state plus Gaussian noise of `group_noise`, and a
    group halts together, when its first copy would."""
    group_noise: float = 1.0
    activation_checkpointing: bool = False
    """Runtime switch: keep only the inputs of each application of a network that records gradients
    and recompute its activations in the backward pass (less memory, one more forward of the
    last recursion). Gradients are unchanged."""

    def apply_net(self, net: nn.Module, h: Tensor, injection: Tensor | None, cos_sin: CosSin | None) -> Tensor:
        """`net(h, injection, cos_sin)`, checkpointed when the switch is on and gradients are recorded."""
        if self.activation_checkpointing and torch.is_grad_enabled():
            out: Tensor = checkpoint(net, h, injection, cos_sin, use_reentrant=False)
            return out
        return net(h, injection, cos_sin)

    def _init_inputs(self, config: ModelConfig, dtype: torch.dtype, *, halt_on_continue: bool,
                     continue_target: bool) -> None:
        """What every model builds first: halting settings, the input embedding x, rotary tables."""
        c = config
        self.config, self.dtype, self.prefix_len = c, dtype, c.prefix_len
        self.halt_max_steps, self.halt_exploration_prob = c.halt_max_steps, c.halt_exploration_prob
        self.halt_on_continue, self.continue_target = halt_on_continue, continue_target
        self.embed = InputEmbedding(
            vocab_size=c.vocab_size, hidden_size=c.hidden_size, seq_len=c.seq_len, prefix_len=c.prefix_len,
            num_puzzle_identifiers=c.num_puzzle_identifiers, puzzle_emb_ndim=c.puzzle_emb_ndim,
            pos_encodings=c.pos_encodings)
        self.rotary = (RotaryEmbedding(c.hidden_size // c.num_heads, c.positions, c.rope_theta)
                       if c.pos_encodings == "rope" else None)

    def _init_heads(self) -> None:
        """The output heads: lm_head (untied) and the halting head (2 logits: halt, continue)."""
        c = self.config
        self.lm_head = Linear(c.hidden_size, c.vocab_size)
        self.q_head = Linear(c.hidden_size, 2, bias=True)
        with torch.no_grad():  # start the halting head near "never halt", for stable bootstrapping
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)  # type: ignore[union-attr]

    def initial_state(self, batch_size: int, device: torch.device) -> State:
        raise NotImplementedError

    def reset_state(self, state: State, reset: Tensor) -> State:
        raise NotImplementedError

    def step(self, state: State, batch: Batch) -> tuple[State, Tensor, Tensor, Tensor]:
        """One supervision step: returns (new detached state, logits, q_halt, q_continue)."""
        raise NotImplementedError

    def initial_carry(self, batch: Batch) -> Carry:
        """A carry whose slots are all halted, so the first call loads the whole batch."""
        size = batch["inputs"].shape[0]
        device = batch["inputs"].device
        return Carry(
            state=self.initial_state(size, device),
            steps=torch.zeros(size, dtype=torch.int32, device=device),
            halted=torch.ones(size, dtype=torch.bool, device=device),
            data={k: torch.zeros_like(v) for k, v in batch.items()},
        )

    def forward(self, carry: Carry, batch: Batch,
                generator: torch.Generator | None = None) -> tuple[Carry, StepOutput]:
        halted = carry.halted
        state = self.reset_state(carry.state, halted)
        if self.group > 1 and self.training and bool(halted.any()):
            state = self._perturb_copies(state, halted, generator)
        steps = torch.where(halted, 0, carry.steps)
        data = {k: torch.where(halted.view((-1,) + (1,) * (batch[k].ndim - 1)), batch[k], v)
                for k, v in carry.data.items()}

        new_state, logits, q_halt, q_continue = self.step(state, data)
        out = StepOutput(logits=logits, q_halt=q_halt, q_continue=q_continue,
                         recursion_logits=list(getattr(self, "recursion_logits", [])))

        with torch.no_grad():
            steps = steps + 1
            is_last = steps >= self.halt_max_steps
            halted = is_last
            if self.training and self.halt_max_steps > 1:
                halted = halted | ((q_halt > q_continue) if self.halt_on_continue else (q_halt > 0))
                if self.halt_exploration_prob > 0:
                    explore = torch.rand(q_halt.shape, generator=generator, device=q_halt.device)
                    min_steps = torch.randint(2, self.halt_max_steps + 1, steps.shape, generator=generator,
                                              device=steps.device, dtype=steps.dtype)
                    halted = halted & (steps >= (explore < self.halt_exploration_prob) * min_steps)
                if self.group > 1:  # a group halts together, when its first copy would
                    halted = halted.view(-1, self.group).any(-1).repeat_interleave(self.group)
                if self.continue_target:
                    # Target from one more step of the new state on the same examples (no replay
                    # buffer or target network: the many parallel slots play that role).
                    _, _, next_halt, next_continue = self.step(new_state, data)
                    out.target_q_continue = torch.sigmoid(
                        torch.where(is_last, next_halt, torch.maximum(next_halt, next_continue)))

        return Carry(state=new_state, steps=steps, halted=halted, data=data), out

    def _perturb_copies(self, state: State, restarted: Tensor, generator: torch.Generator | None) -> State:
        """Winner-take-all: restarted copies after the first of their group get Gaussian noise on their state."""
        copy = torch.arange(restarted.shape[0], device=restarted.device) % self.group
        mask = (restarted & (copy > 0)).view(-1, 1, 1)
        return {k: torch.where(mask, v + self.group_noise * torch.randn(
            v.shape, generator=generator, device=v.device).to(v.dtype), v) for k, v in state.items()}
