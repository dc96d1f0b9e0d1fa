"""Activation checkpointing is a memory/compute trade only: two training steps with it give the
same losses, carries and gradients (parameters and puzzle-embedding rows) as without it."""

from __future__ import annotations

import copy

import pytest
import torch
from model_shapes import SMALL, random_batch

from trm.layers import Stack
from trm.loss import act_loss
from trm.models import HRMConfig, TransformerConfig, TRMConfig, build_model


def _two_steps(model, batch) -> list[dict[str, torch.Tensor]]:
    """Losses, carry and gradients of two successive training steps (grads cleared in between)."""
    carry, results = model.initial_carry(batch), []
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        carry, out = model(carry, batch)
        loss = act_loss(carry, out)
        loss.total.backward()
        got = {f"grad.{n}": p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        got.update({f"state.{k}": v.clone() for k, v in carry.state.items()})
        got["loss"] = loss.total.detach().clone()
        if model.embed.puzzle is not None and model.embed.puzzle.local_weights is not None:
            got["puzzle_rows"] = model.embed.puzzle.local_weights.grad.clone()
        results.append(got)
    return results


@pytest.mark.parametrize("config", [
    TRMConfig(**SMALL, T=2, n=3),
    TRMConfig(**SMALL, T=2, n=3, mlp_t=True, pos_encodings="none"),
    TRMConfig(**SMALL, T=2, n=2, single_z=True),
    TRMConfig(**SMALL, T=2, n=3, one_step_grad=True, separate_nets=True),
    HRMConfig(**SMALL, H_layers=1, L_layers=1),
    TransformerConfig(**SMALL, layers=2),
], ids=["trm_att", "trm_mlp", "single_z", "one_step_sep", "hrm", "transformer"])
def test_checkpointing_gives_identical_gradients(config) -> None:
    torch.manual_seed(0)
    plain = build_model(config).train()
    ckpt = copy.deepcopy(plain)
    ckpt.activation_checkpointing = True
    batch = random_batch(config)
    expected, got = _two_steps(plain, batch), _two_steps(ckpt, batch)
    for step, (e, g) in enumerate(zip(expected, got, strict=True)):
        assert e.keys() == g.keys()
        for key in e:
            torch.testing.assert_close(g[key], e[key], rtol=0, atol=0, msg=f"step {step}: {key}")


def test_checkpointing_recomputes_the_differentiable_applications_only(monkeypatch) -> None:
    """With the switch on, the network applications of the last recursion run once more (in the
    backward pass), and only those."""
    cfg = TRMConfig(**{**SMALL, "layers": 1}, T=3, n=3)
    model = build_model(cfg).train()
    model.activation_checkpointing = True
    batch = random_batch(cfg)
    calls: list[bool] = []
    forward = Stack.forward

    def counting(self, *args):
        calls.append(torch.is_grad_enabled())
        return forward(self, *args)

    monkeypatch.setattr(Stack, "forward", counting)
    carry, out = model(model.initial_carry(batch), batch)
    forward_calls = len(calls)
    act_loss(carry, out).total.backward()
    assert forward_calls == cfg.T * (cfg.n + 1)
    assert len(calls) - forward_calls == cfg.n + 1
