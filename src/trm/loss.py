"""The loss head of deep supervision: token cross-entropy, the halting losses and the metrics.

Per supervision step, as the reference computes it:
- lm loss: per example, the mean cross-entropy over its labelled tokens, summed over the batch;
- halt loss: binary cross-entropy (summed) of q_halt against "every token of this example is right";
- continue loss (only with a continue target): binary cross-entropy of q_continue against it;
- total = lm + 0.5 * (halt + continue). The trainer divides by the global batch size.
Metrics are sums over slots that halted at this step and have labels; divide by `count`.

Research options (all off by default, leaving the published loss unchanged):
- `step_weight_decay` lambda < 1: the loss of an example's k-th supervision step is weighted by
  lambda^(k-1), normalised so that the weights of steps 1..N_sup average 1 (CGAR's decaying
  supervision weights, arXiv 2511.08653);
- a dense per-recursion loss: with the model's `recursion_loss`, the token loss is the mean over the
  answers after every recursion (`StepOutput.recursion_logits` and the final one);
- winner-take-all over `group` = K latents: consecutive slots are K copies of one example started
  from different initial latents; only the copy with the lowest token loss is trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from trm.data.sampler import IGNORE_LABEL_ID
from trm.models.act import Carry, StepOutput

LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def _stablemax_s(x: Tensor, epsilon: float = 1e-30) -> Tensor:
    return torch.where(x < 0, 1 / (1 - x + epsilon), x + 1)


def log_stablemax(x: Tensor, dim: int = -1) -> Tensor:
    """log of s(x) / sum s(x), with s(x) = x + 1 for x >= 0 and 1 / (1 - x) below."""
    s = _stablemax_s(x)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Per-token stablemax cross-entropy (float64, as published), 0 where `mask` is False."""
    logprobs = log_stablemax(logits.to(torch.float64), dim=-1)
    safe = torch.where(mask, labels, 0).long()
    picked = torch.gather(logprobs, -1, safe.unsqueeze(-1)).squeeze(-1)
    return -torch.where(mask, picked, 0)


def softmax_cross_entropy(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Per-token softmax cross-entropy in float32, 0 where `mask` is False."""
    safe = torch.where(mask, labels, IGNORE_LABEL_ID).long()
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), safe.reshape(-1),
                           ignore_index=IGNORE_LABEL_ID, reduction="none")
    return loss.view(labels.shape)


LOSSES: dict[str, LossFn] = {
    "stablemax": stablemax_cross_entropy,
    "softmax": softmax_cross_entropy,
}


@dataclass
class LossOutput:
    """The losses and metrics of one supervision step."""

    total: Tensor
    """lm + 0.5 * (halt + continue): what the trainer differentiates (summed over the batch)."""
    lm_loss: Tensor
    q_halt_loss: Tensor
    q_continue_loss: Tensor | None
    metrics: dict[str, Tensor]
    """Sums over halted, labelled slots: count, accuracy, exact_accuracy, q_halt_accuracy, steps,
    lm_loss, q_halt_loss (and q_continue_loss)."""
    preds: Tensor
    """Argmax token predictions [batch, seq_len]."""
    seq_correct: Tensor
    """Whether each slot's prediction is entirely right, bool [batch]."""


def step_weights(steps: Tensor, max_steps: int, decay: float) -> Tensor:
    """lambda^(k-1) for an example at its k-th supervision step, scaled so that steps 1..max_steps average 1."""
    powers = decay ** torch.arange(max_steps, dtype=torch.float64, device=steps.device)
    table = powers * (max_steps / powers.sum())
    return table[(steps.long() - 1).clamp(0, max_steps - 1)]


def act_loss(carry: Carry, out: StepOutput, loss_type: str = "stablemax", *, step_weight_decay: float = 1.0,
             max_steps: int = 16, group: int = 1) -> LossOutput:
    """Losses and metrics for the step that produced (`carry`, `out`); `step_weight_decay` < 1 (with the
    model's N_sup as `max_steps`) and `group` > 1 are the research options of the module docstring."""
    if loss_type not in LOSSES:
        raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {sorted(LOSSES)}")
    if step_weight_decay != 1.0 or group > 1 or out.recursion_logits:
        return _weighted_act_loss(carry, out, loss_type, step_weight_decay, max_steps, group)
    labels = carry.data["labels"]
    mask = labels != IGNORE_LABEL_ID
    counts = mask.sum(-1)
    divisor = counts.clamp_min(1).unsqueeze(-1)  # examples without labels contribute 0, not NaN

    with torch.no_grad():
        preds = out.logits.argmax(-1)
        correct = mask & (preds == labels)
        seq_correct = correct.sum(-1) == counts
        valid = carry.halted & (counts > 0)
        metrics = {
            "count": valid.sum(),
            "accuracy": torch.where(valid, (correct.float() / divisor).sum(-1), 0).sum(),
            "exact_accuracy": (valid & seq_correct).sum(),
            "q_halt_accuracy": (valid & ((out.q_halt >= 0) == seq_correct)).sum(),
            "steps": torch.where(valid, carry.steps, 0).sum(),
        }

    lm_loss = (LOSSES[loss_type](out.logits, labels, mask) / divisor).sum()
    q_halt_loss = F.binary_cross_entropy_with_logits(out.q_halt, seq_correct.to(out.q_halt.dtype), reduction="sum")
    metrics["lm_loss"] = lm_loss.detach()
    metrics["q_halt_loss"] = q_halt_loss.detach()
    q_continue_loss = None
    halting = q_halt_loss
    if out.target_q_continue is not None:
        q_continue_loss = F.binary_cross_entropy_with_logits(out.q_continue, out.target_q_continue, reduction="sum")
        metrics["q_continue_loss"] = q_continue_loss.detach()
        halting = q_halt_loss + q_continue_loss
    return LossOutput(total=lm_loss + 0.5 * halting, lm_loss=lm_loss, q_halt_loss=q_halt_loss,
                      q_continue_loss=q_continue_loss, metrics=metrics, preds=preds, seq_correct=seq_correct)


def _weighted_act_loss(carry: Carry, out: StepOutput, loss_type: str, decay: float, max_steps: int,
                       group: int) -> LossOutput:
    """`act_loss` with per-example terms: step weights, the dense recursion loss and winner-take-all."""
    plain = act_loss(carry, StepOutput(logits=out.logits, q_halt=out.q_halt, q_continue=out.q_continue,
                                       target_q_continue=out.target_q_continue), loss_type)
    labels = carry.data["labels"]
    mask = labels != IGNORE_LABEL_ID
    divisor = mask.sum(-1).clamp_min(1)
    answers = [*out.recursion_logits, out.logits]
    lm = torch.stack([LOSSES[loss_type](logits, labels, mask).sum(-1) / divisor for logits in answers]).mean(0)
    halt = F.binary_cross_entropy_with_logits(out.q_halt, plain.seq_correct.to(out.q_halt.dtype), reduction="none")
    if out.target_q_continue is not None:
        halt = halt + F.binary_cross_entropy_with_logits(out.q_continue, out.target_q_continue, reduction="none")
    per_example = lm + 0.5 * halt
    if decay != 1.0:
        per_example = per_example * step_weights(carry.steps, max_steps, decay).to(per_example.dtype)
    if group > 1:
        if per_example.shape[0] % group:
            raise ValueError(f"{per_example.shape[0]} slots are not groups of {group} copies")
        winner = lm.detach().view(-1, group).argmin(-1, keepdim=True)
        per_example = per_example.view(-1, group).gather(-1, winner)
        lm = lm.view(-1, group).gather(-1, winner)  # the logged token loss is the winners'
    plain.metrics["lm_loss"] = lm.sum().detach()
    return LossOutput(total=per_example.sum(), lm_loss=lm.sum(), q_halt_loss=plain.q_halt_loss,
                      q_continue_loss=plain.q_continue_loss, metrics=plain.metrics, preds=plain.preds,
                      seq_correct=plain.seq_correct)
