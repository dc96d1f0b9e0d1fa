"""Optimisation: AdamATan2 for parameters, sign-SGD for the puzzle-embedding table, LR schedule, EMA.

As the paper trains: AdamATan2 (Adam with atan2 in place of the epsilon division, decoupled weight
decay), linear warmup then cosine decay, an EMA of the weights for evaluation and checkpoints, and
sign-SGD on the embedding rows a batch touched. Everything here is plain PyTorch and runs on CPU, CUDA and MPS:

    opt = AdamATan2(model.parameters(), lr=1e-4, weight_decay=1.0)
    emb_opt = SignSGDEmbedding(model_puzzle_embedding, lr=1e-4, weight_decay=1.0)
    ema = EMA(model, decay=0.999)
    for step in range(total_steps):
        loss.backward()
        for o, base in ((opt, 1e-4), (emb_opt, 1e-4)):
            set_lr(o, cosine_schedule_with_warmup(step, base, warmup_steps, total_steps))
            o.step()
            o.zero_grad()
        ema.update(model)
    with ema.swapped_in(model):
        evaluate(model)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim.optimizer import Optimizer, ParamsT

__all__ = [
    "AdamATan2",
    "MuonAdamATan2",
    "orthogonalize",
    "EMA",
    "SignSGDEmbedding",
    "SparseEmbedding",
    "cosine_schedule_with_warmup",
    "set_lr",
]

LR = float | Tensor


def _check_lr(lr: LR) -> None:
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError(f"lr as a tensor must hold one value, got shape {tuple(lr.shape)}")
        return
    if not lr >= 0.0:
        raise ValueError(f"lr must be >= 0, got {lr}")


def _lr_on(lr: LR, device: torch.device, dtype: torch.dtype) -> LR:
    """A tensor lr moved next to the tensors it scales (foreach ops want one device); floats pass."""
    return lr.to(device=device, dtype=dtype).reshape(()) if isinstance(lr, Tensor) else lr


def set_lr(optimizer: Optimizer, lr: LR) -> None:
    """Set the learning rate of every parameter group (the trainer does this each step)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


# ---------------------------------------------------------------------------------------------------------
# AdamATan2
# ---------------------------------------------------------------------------------------------------------


class AdamATan2(Optimizer):
    """Adam with atan2 in place of the division by sqrt(v) + eps, and decoupled weight decay.

    The update is the one of the `adam_atan2` package that the TRM and HRM reference code train with
    (no scale constants, unlike the `adam-atan2-pytorch` variant with a=1.27, b=1), per tensor at step t:

        p <- p * (1 - lr * wd)
        m <- lerp(m, g, 1 - beta1)          (= beta1 * m + (1 - beta1) * g)
        v <- lerp(v, g*g, 1 - beta2)
        p <- p - lr * atan2(m / (1 - beta1^t), sqrt(v) / sqrt(1 - beta2^t))

    The first-moment bias correction sits inside atan2, as in the reference kernel. atan2 is bounded
    by pi/2, so no epsilon is needed and a zero gradient gives a zero update.

    `lr` may be a float or a one-element tensor. The moments are kept in float32 for bfloat16/float16
    parameters (float64 for float64 ones) and the arithmetic runs in that precision, writing the
    parameter back once per step, as the reference kernel does. `step` is a CPU float32 count.
    """

    def __init__(self, params: ParamsT, lr: LR = 1e-3, betas: tuple[float, float] = (0.9, 0.95),
                 weight_decay: float = 0.0) -> None:
        _check_lr(lr)
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @staticmethod
    def _state_dtype(p: Tensor) -> torch.dtype:
        return torch.float64 if p.dtype == torch.float64 else torch.float32

    def _state_for(self, p: Tensor) -> dict[str, Tensor]:
        state = self.state[p]
        if not state:
            dtype = self._state_dtype(p)
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One update of every parameter that has a gradient; returns closure() if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        # Bucket by (device, dtype): foreach kernels need one of each per call.
        buckets: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("AdamATan2 does not take sparse gradients")
            buckets.setdefault((p.device, p.dtype), []).append(p)
        for (device, dtype), params in buckets.items():
            self._update_bucket(params, device, dtype, group)

    def _update_bucket(self, params: list[Tensor], device: torch.device, dtype: torch.dtype,
                       group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        work = self._state_dtype(params[0])
        lr = _lr_on(group["lr"], device, work)
        wd: float = group["weight_decay"]

        states = [self._state_for(p) for p in params]
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        inv_bc1, sqrt_bc2 = [], []
        for s in states:
            s["step"] += 1
            t = s["step"].item()  # a CPU tensor: no device sync
            inv_bc1.append(1.0 / (1.0 - beta1**t))
            sqrt_bc2.append(math.sqrt(1.0 - beta2**t))

        grads = [p.grad.to(work) for p in params]  # type: ignore[union-attr]
        # Low-precision parameters are updated in a float32 copy and written back once.
        values = params if dtype == work else [p.to(work) for p in params]

        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
        torch._foreach_lerp_(exp_avg_sqs, torch._foreach_mul(grads, grads), 1.0 - beta2)
        num = torch._foreach_mul(exp_avgs, inv_bc1)
        den = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(den, sqrt_bc2)
        for n, d in zip(num, den, strict=True):  # there is no foreach atan2
            torch.atan2(n, d, out=n)

        if wd != 0.0:
            torch._foreach_mul_(values, 1.0 - lr * wd)
        if isinstance(lr, Tensor):
            torch._foreach_mul_(num, lr)
            torch._foreach_sub_(values, num)
        else:
            torch._foreach_add_(values, num, alpha=-lr)
        if values is not params:
            torch._foreach_copy_(params, values)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load state; the moments keep their own precision (torch would cast them to the param dtype)."""
        super().load_state_dict(state_dict)
        params = [p for g in self.param_groups for p in g["params"]]
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        for p, saved_id in zip(params, saved_ids, strict=True):
            saved = state_dict["state"].get(saved_id)
            if saved is None:
                continue
            for key in ("exp_avg", "exp_avg_sq"):
                self.state[p][key] = saved[key].to(device=p.device, dtype=self._state_dtype(p), copy=True)


# ---------------------------------------------------------------------------------------------------------
# Muon for the matrices of the recursive network, AdamATan2 for the rest
# ---------------------------------------------------------------------------------------------------------


def orthogonalize(g: Tensor, steps: int = 5) -> Tensor:
    """The nearest semi-orthogonal matrix to `g` (U V^T of its SVD), approximately, by Muon's quintic
    Newton-Schulz iteration in float32: singular values are pushed into roughly [0.7, 1.2]."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.float()
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / (x.norm() + 1e-7)  # singular values <= 1, where the iteration converges
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def muon_parameters(model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    """(matrices for Muon, the rest for AdamATan2): the 2-D weights of the network, not the token and
    position embeddings or the output and halting heads, which Muon is not meant for."""
    matrices: list[Tensor] = []
    rest: list[Tensor] = []
    for name, p in _unwrap(model).named_parameters():
        head = name.startswith(("embed.", "lm_head.", "q_head."))
        (matrices if p.ndim == 2 and not head else rest).append(p)
    return matrices, rest


class MuonAdamATan2(AdamATan2):
    """Muon (momentum, then orthogonalised updates) for the groups marked `muon`, AdamATan2 for the others.

    For a matrix W [out, in] with gradient G at a Muon step:

        B <- momentum * B + G;   U = G + momentum * B (Nesterov)
        W <- W * (1 - lr * wd) - lr * 0.2 * sqrt(max(out, in)) * orthogonalize(U)

    The 0.2 * sqrt(max(out, in)) factor gives the update the root-mean-square of an Adam update, so the
    Muon groups can share the AdamATan2 learning rate and schedule (a group's `lr_ratio` scales it).

        matrices, rest = muon_parameters(model)
        opt = MuonAdamATan2([{"params": matrices, "muon": True}, {"params": rest}], lr=1e-4, weight_decay=1.0)
    """

    def __init__(self, params: ParamsT, lr: LR = 1e-3, betas: tuple[float, float] = (0.9, 0.95),
                 weight_decay: float = 0.0, momentum: float = 0.95) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        super().__init__(params, lr=lr, betas=betas, weight_decay=weight_decay)
        for group in self.param_groups:
            group.setdefault("muon", False)
            group.setdefault("momentum", momentum)
            group.setdefault("lr_ratio", 1.0)
            if group["muon"] and any(p.ndim != 2 for p in group["params"]):
                raise ValueError("Muon groups take matrices (2-D parameters) only")

    def _step_group(self, group: dict[str, Any]) -> None:
        if not group["muon"]:
            super()._step_group(group)
            return
        momentum, wd = group["momentum"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            lr = _lr_on(group["lr"], p.device, torch.float32) * group["lr_ratio"]
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, dtype=torch.float32)
            buf = state["momentum_buffer"]
            g = p.grad.float()
            buf.mul_(momentum).add_(g)
            update = orthogonalize(g + momentum * buf) * (0.2 * math.sqrt(max(p.shape)))
            value = p.float()
            value.mul_(1 - lr * wd).sub_(lr * update)
            p.copy_(value)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        Optimizer.load_state_dict(self, state_dict)
        params = [p for g in self.param_groups for p in g["params"]]
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        for p, saved_id in zip(params, saved_ids, strict=True):
            for key, value in state_dict["state"].get(saved_id, {}).items():
                if key == "step":  # a CPU count, never shared with the optimizer the state came from
                    self.state[p][key] = value.to(torch.float32, copy=True)
                else:
                    self.state[p][key] = value.to(device=p.device, dtype=torch.float32 if key == "momentum_buffer"
                                                  else self._state_dtype(p), copy=True)


# ---------------------------------------------------------------------------------------------------------
# Sign-SGD for the puzzle-embedding table
# ---------------------------------------------------------------------------------------------------------


class SparseEmbedding(Protocol):
    """What the embedding optimizer reads from the embedding module (see SignSGDEmbedding)."""

    weight: Tensor
    local_ids: Tensor | None
    local_weights: Tensor | None


class SignSGDEmbedding(Optimizer):
    """Sign-SGD with decoupled weight decay on the touched rows of a puzzle-embedding table (each id's row
    moves by the sign of its gradient summed over the global batch).

    Hand-over protocol: the optimizer is built with the embedding module, which has
      - `weight`: the (num_ids, dim) table, a buffer (not a Parameter);
      - after a training forward, `local_ids`: the batch's ids (int tensor, shape (B,)) and
        `local_weights`: the gathered rows `weight[local_ids]` as a leaf tensor with requires_grad,
        so that after backward `local_weights.grad` has shape (B, dim).
    `step()` then applies, for every distinct id u of the global batch,

        weight[u] <- weight[u] * (1 - lr * wd) - lr * sign(sum of the grads of the rows with id u)

    Rows sharing an id (in one batch or across ranks) are summed before the sign; an id whose grads
    sum to zero still gets the weight decay, as in the reference; untouched rows do not change. Every id
    in the batch counts, the blank id 0 included (as in the reference).
    With torch.distributed initialised and world size > 1, ids and grads are all-gathered (every rank
    must hold the same local batch size and call step() together), so all ranks apply the same update.
    `step()` does nothing when there is no gradient (no training forward since zero_grad()); in a
    distributed run that must hold on all ranks alike. `zero_grad()` drops `local_weights.grad`.
    The optimizer has no state besides its hyperparameters, so its state_dict is just those.
    """

    def __init__(self, embedding: SparseEmbedding, lr: LR = 1e-3, weight_decay: float = 0.0,
                 process_group: dist.ProcessGroup | None = None) -> None:
        _check_lr(lr)
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if embedding.weight.ndim != 2:
            raise ValueError(f"embedding.weight must be (num_ids, dim), got shape {tuple(embedding.weight.shape)}")
        if embedding.weight.requires_grad:
            raise ValueError("embedding.weight must be a buffer without requires_grad; sign-SGD updates it "
                             "in place from the gathered rows' gradient")
        super().__init__([embedding.weight], {"lr": lr, "weight_decay": weight_decay})
        self.embedding = embedding
        self.process_group = process_group

    def _world_size(self) -> int:
        if not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group)

    def _gather(self, t: Tensor) -> Tensor:
        world = self._world_size()
        if world == 1:
            return t
        # all_gather (a list) rather than all_gather_into_tensor: gloo supports it everywhere.
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t.contiguous(), group=self.process_group)
        return torch.cat(parts)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """Update the rows touched by the global batch; returns closure() if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        local_ids, local_weights = self.embedding.local_ids, self.embedding.local_weights
        if local_ids is None or local_weights is None or local_weights.grad is None:
            return loss
        weight: Tensor = self.param_groups[0]["params"][0]
        if local_ids.shape != local_weights.shape[:1]:
            raise ValueError(f"local_ids {tuple(local_ids.shape)} and local_weights "
                             f"{tuple(local_weights.shape)} must agree on the batch size")

        ids = self._gather(local_ids.reshape(-1).to(device=weight.device, dtype=torch.long))
        grads = self._gather(local_weights.grad.to(device=weight.device, dtype=weight.dtype))
        unique_ids, inverse = torch.unique(ids, return_inverse=True)
        # Sum in float64: float32 grads then add up exactly in practice, so the result does not depend on
        # the (atomic, unordered on GPUs) summation order and every rank takes the same sign. MPS has no
        # float64 and keeps float32.
        acc = torch.float32 if weight.device.type == "mps" else torch.float64
        summed = torch.zeros(len(unique_ids), weight.shape[1], dtype=acc, device=weight.device)
        summed.index_add_(0, inverse, grads.to(acc))
        direction = torch.sign(summed).to(weight.dtype)

        for group in self.param_groups:
            lr = _lr_on(group["lr"], weight.device, weight.dtype)
            rows = weight[unique_ids]
            rows.mul_(1.0 - lr * group["weight_decay"]).sub_(lr * direction)
            weight[unique_ids] = rows
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gathered rows' gradient (the table itself never has one)."""
        local_weights = self.embedding.local_weights
        if local_weights is None or local_weights.grad is None:
            return
        if set_to_none:
            local_weights.grad = None
        else:
            local_weights.grad.zero_()


# ---------------------------------------------------------------------------------------------------------
# Learning-rate schedule
# ---------------------------------------------------------------------------------------------------------


def cosine_schedule_with_warmup(step: int, base_lr: float, warmup_steps: int, total_steps: int,
                                min_ratio: float = 0.0, num_cycles: float = 0.5) -> float:
    """Linear warmup from 0 to base_lr over warmup_steps, then cosine down to base_lr * min_ratio.

    Same curve as the reference trainer: with min_ratio = 1 the rate is constant after warmup; with the
    default num_cycles = 0.5 it reaches base_lr * min_ratio at total_steps and the cosine term is
    clipped at zero beyond.
    """
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * 2.0 * num_cycles * progress))
    return base_lr * (min_ratio + max(0.0, (1.0 - min_ratio) * cosine))


def depth_at(step: int, total_steps: int, curriculum: list[list[float]] | list[tuple[float, int, int]]
             ) -> tuple[int, int] | None:
    """The (n, T) of a depth curriculum at `step`: `curriculum` lists stages [start fraction of training,
    n, T] in increasing order (CGAR's progressive depth, arXiv 2511.08653, is e.g. [[0, 2, 1], [0.3, 4, 2],
    [0.6, 6, 3]]); None before the first stage or without a curriculum (the model's own depth)."""
    found = None
    for start, n, T in curriculum:
        if step >= start * total_steps:
            found = (int(n), int(T))
    return found


# ---------------------------------------------------------------------------------------------------------
# EMA of weights
# ---------------------------------------------------------------------------------------------------------


def _unwrap(model: nn.Module) -> nn.Module:
    """The module under DDP / DataParallel (`.module`) and torch.compile (`._orig_mod`) wrappers,
    so that parameter names stay the same however the model is wrapped."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(inner := getattr(model, "_orig_mod", None), nn.Module):
            model = inner
        else:
            return model


class EMA:
    """Exponential moving average of a model's trainable parameters, in float32 (decay 0.999, as published).

    As in the reference, only parameters with requires_grad are averaged: buffers, and so the
    puzzle-embedding table (a buffer trained by sign-SGD), stay at their raw values in the EMA model.
    The shadow starts as a copy of the parameters and each update does
    `shadow = decay * shadow + (1 - decay) * param` (no warmup of the decay).
    The EMA remembers the model it was built from; every method that takes `model` defaults to it.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {decay}")
        self.decay = decay
        self.model = model
        self.shadow: dict[str, Tensor] = {
            name: p.detach().to(torch.float32, copy=True) for name, p in self._params(model)
        }

    @staticmethod
    def _params(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
        return ((n, p) for n, p in _unwrap(model).named_parameters() if p.requires_grad)

    def _pairs(self, model: nn.Module | None) -> list[tuple[Tensor, Tensor]]:
        pairs = []
        for name, p in self._params(self.model if model is None else model):
            if name not in self.shadow:
                raise KeyError(f"parameter {name!r} has no EMA shadow; build the EMA from this model")
            pairs.append((self.shadow[name], p))
        return pairs

    @torch.no_grad()
    def update(self, model: nn.Module | None = None) -> None:
        """Fold the model's current parameters into the average (call after each optimizer step)."""
        pairs = self._pairs(model)
        if not pairs:
            return
        shadows = [s for s, _ in pairs]
        torch._foreach_mul_(shadows, self.decay)
        torch._foreach_add_(shadows, [p.detach().to(torch.float32) for _, p in pairs], alpha=1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module | None = None) -> None:
        """Overwrite the model's parameters with the averaged ones (cast to each parameter's dtype)."""
        for s, p in self._pairs(model):
            p.copy_(s)

    @contextmanager
    def swapped_in(self, model: nn.Module | None = None) -> Iterator[nn.Module]:
        """Evaluate with the EMA weights inside the block; the raw weights are restored exactly after."""
        target = self.model if model is None else model
        with torch.no_grad():
            raw = [p.detach().clone() for _, p in self._pairs(target)]
        try:
            self.copy_to(target)
            yield target
        finally:
            with torch.no_grad():
                for (_, p), r in zip(self._pairs(target), raw, strict=True):
                    p.copy_(r)

    def ema_state_dict(self, model: nn.Module | None = None) -> dict[str, Tensor]:
        """The model's full state_dict (of the unwrapped module) with the EMA parameters, for saving:
        it loads with `load_state_dict` like a raw one. Buffers keep their raw values; tensors are
        detached copies in each entry's dtype."""
        target = self.model if model is None else model
        out = {k: v.detach().clone() for k, v in _unwrap(target).state_dict().items()}
        for name, s in self.shadow.items():
            if name in out:
                out[name] = s.to(device=out[name].device, dtype=out[name].dtype, copy=True)
        return out

    def state_dict(self) -> dict[str, Any]:
        """Decay and float32 shadow tensors (copies)."""
        return {"decay": self.decay, "shadow": {k: v.clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore from state_dict(); the names must match the shadowed parameters."""
        shadow: Mapping[str, Tensor] = state_dict["shadow"]
        if set(shadow) != set(self.shadow):
            missing, extra = set(self.shadow) - set(shadow), set(shadow) - set(self.shadow)
            raise KeyError(f"EMA state does not match the model: missing {sorted(missing)}, "
                           f"unexpected {sorted(extra)}")
        self.decay = float(state_dict["decay"])
        for name, value in shadow.items():
            self.shadow[name] = value.to(device=self.shadow[name].device, dtype=torch.float32, copy=True)
