"""The research options beyond the published recipe (all off by default): truncated back-propagation depth,
the dense per-recursion loss, ConvSwiGLU, decaying supervision-step weights, winner-take-all over K latents,
Muon, and at evaluation the halt-first ensemble and per-step noise."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from model_shapes import SMALL, random_batch
from stubs import StubModel
from tiny_data import write_copy_task

from trm.evaluate import Scaling, halt_first, predict, run_steps
from trm.layers import Block, ConvSwiGLU
from trm.loss import act_loss, stablemax_cross_entropy, step_weights
from trm.models import ConfigError, TRMConfig, build_model
from trm.models.act import Carry, StepOutput
from trm.optim import AdamATan2, MuonAdamATan2, muon_parameters, orthogonalize
from trm.tasks import IDENTITY
from trm.train import TrainConfig, train


def _grad_flags(cfg: TRMConfig) -> list[bool]:
    model = build_model(cfg).train()
    batch = random_batch(cfg)
    calls: list[bool] = []
    hooks = [b.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
             for b in model.modules() if isinstance(b, Block)]
    model(model.initial_carry(batch), batch)
    for h in hooks:
        h.remove()
    return calls


@pytest.mark.parametrize("depth", [1, 3, 4, 6, 12, 20])
def test_grad_depth_keeps_gradients_through_the_last_k_applications(depth: int) -> None:
    calls = _grad_flags(TRMConfig(**{**SMALL, "layers": 1}, T=3, n=3, grad_depth=depth))
    assert len(calls) == 12
    kept = min(depth, 12)
    assert calls == [False] * (12 - kept) + [True] * kept


def _step_gradients(cfg: TRMConfig) -> dict[str, torch.Tensor]:
    """The parameter gradients of one supervision step's loss, from seed-0 weights."""
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = random_batch(cfg)
    carry, out = model(model.initial_carry(batch), batch)
    act_loss(carry, out).total.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_grad_depth_two_is_the_one_step_gradient() -> None:
    base = TRMConfig(**{**SMALL, "layers": 1}, T=2, n=3)
    grads = [_step_gradients(base.replace(one_step_grad=True)), _step_gradients(base.replace(grad_depth=2))]
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.equal(grads[0][name], grads[1][name]), name


def test_the_default_gradient_depth_is_the_last_recursion() -> None:
    """grad_depth = n + 1 written out gives bit-identical gradients to the default."""
    base = TRMConfig(**{**SMALL, "layers": 1}, T=3, n=2)
    grads = [_step_gradients(base), _step_gradients(base.replace(grad_depth=3))]
    for name in grads[0]:
        assert torch.equal(grads[0][name], grads[1][name]), name


def test_dense_recursion_loss_supervises_every_recursion_through_itself() -> None:
    cfg = TRMConfig(**{**SMALL, "layers": 1}, T=3, n=2, recursion_loss=True)
    model = build_model(cfg).train()
    batch = random_batch(cfg)
    carry, out = model(model.initial_carry(batch), batch)
    assert len(out.recursion_logits) == cfg.T - 1
    act_loss(carry, out).lm_loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    # By hand: each recursion from a detached state, its answer's loss, the mean over recursions.
    model.zero_grad()
    state = model.reset_state(model.initial_state(3, torch.device("cpu")), torch.ones(3, dtype=torch.bool))
    x = model.embed(batch["inputs"], batch["puzzle_identifiers"], torch.float32)
    labels = batch["labels"]
    mask = labels != -100
    y, z = state["y"], state["z"]
    total = torch.zeros((), dtype=torch.float64)
    for _ in range(cfg.T):
        y, z = model.recursion(x, y.detach(), z.detach(), model.rotary())
        logits = model.lm_head(y)[:, cfg.prefix_len:]
        total = total + (stablemax_cross_entropy(logits, labels, mask).sum(-1) / mask.sum(-1)).sum()
    (total / cfg.T).backward()
    for name, p in model.named_parameters():
        if name in ours:
            torch.testing.assert_close(ours[name], p.grad, rtol=1e-5, atol=1e-7, msg=name)
    with torch.no_grad():  # at evaluation nothing changes: one answer per step
        model.eval()
        _, out = model(model.initial_carry(batch), batch)
        assert out.recursion_logits == []


def test_conv_swiglu_mixes_only_neighbouring_cells() -> None:
    torch.manual_seed(0)
    grid, prefix = (4, 4), 2
    mlp = ConvSwiGLU(8, 2.0, 3, grid, prefix)
    x = torch.randn(1, prefix + 16, 8, requires_grad=True)
    cell = prefix + 1 * 4 + 1  # row 1, column 1
    (jac,) = torch.autograd.grad(mlp(x)[0, cell].sum(), x)
    touched = {int(i) for i in torch.nonzero(jac[0].abs().sum(-1)).flatten()}
    neighbours = {prefix + r * 4 + c for r in range(3) for c in range(3)}
    assert touched == neighbours
    (jac,) = torch.autograd.grad(mlp(x)[0, 0].sum(), x)  # a prefix position sees only itself
    assert {int(i) for i in torch.nonzero(jac[0].abs().sum(-1)).flatten()} == {0}


def test_conv_swiglu_with_an_identity_kernel_is_a_swiglu_with_one_more_silu() -> None:
    torch.manual_seed(0)
    mlp = ConvSwiGLU(8, 2.0, 3, (3, 3), 1)
    with torch.no_grad():
        mlp.conv_weight.zero_()
        mlp.conv_weight[:, 0, 1, 1] = 1.0
        mlp.conv_bias.zero_()
    x = torch.randn(2, 10, 8)
    gate, up = mlp.gate_up(x).chunk(2, dim=-1)
    expected = mlp.down(torch.nn.functional.silu(torch.nn.functional.silu(gate) * up))
    torch.testing.assert_close(mlp(x), expected)


def test_conv_kernel_builds_conv_blocks_and_needs_a_square_grid() -> None:
    cfg = TRMConfig(**SMALL, conv_kernel=3)  # seq_len 9: a 3 x 3 grid
    model = build_model(cfg)
    assert all(isinstance(b.mlp, ConvSwiGLU) for b in model.modules() if isinstance(b, Block))
    batch = random_batch(cfg)
    model(model.initial_carry(batch), batch)
    with pytest.raises(ConfigError, match="perfect square"):
        TRMConfig(**{**SMALL, "seq_len": 10}, conv_kernel=3)
    with pytest.raises(ConfigError, match="odd"):
        TRMConfig(**SMALL, conv_kernel=2)


def test_step_weights_decay_and_average_one() -> None:
    steps = torch.arange(1, 17)
    w = step_weights(steps, 16, 0.7)
    assert math.isclose(float(w.mean()), 1.0, rel_tol=1e-12)
    assert torch.allclose(w[1:] / w[:-1], torch.full((15,), 0.7, dtype=torch.float64))
    assert torch.equal(step_weights(steps, 16, 1.0), torch.ones(16, dtype=torch.float64))


def _loss_inputs(steps: list[int], seed: int = 0) -> tuple[Carry, StepOutput]:
    g = torch.Generator().manual_seed(seed)
    b = len(steps)
    labels = torch.randint(1, 5, (b, 6), generator=g)
    carry = Carry(state={}, steps=torch.tensor(steps, dtype=torch.int32), halted=torch.ones(b, dtype=torch.bool),
                  data={"labels": labels})
    out = StepOutput(logits=torch.randn(b, 6, 5, generator=g, requires_grad=True),
                     q_halt=torch.randn(b, generator=g, requires_grad=True), q_continue=torch.zeros(b))
    return carry, out


def test_decaying_step_weights_weigh_each_example_by_its_step() -> None:
    carry, out = _loss_inputs([1, 2, 3, 16])
    plain = act_loss(carry, out)
    weighted = act_loss(carry, out, step_weight_decay=0.5, max_steps=16)
    labels, mask = carry.data["labels"], torch.ones(4, 6, dtype=torch.bool)
    lm = stablemax_cross_entropy(out.logits, labels, mask).mean(-1)
    halt = torch.nn.functional.binary_cross_entropy_with_logits(out.q_halt, plain.seq_correct.float(),
                                                                reduction="none")
    w = 0.5 ** torch.tensor([0.0, 1, 2, 15]) * 16 / sum(0.5**k for k in range(16))
    torch.testing.assert_close(weighted.total, ((lm + 0.5 * halt) * w).sum().to(weighted.total.dtype))
    torch.testing.assert_close(act_loss(carry, out, step_weight_decay=1.0).total, plain.total)


def test_winner_take_all_trains_only_the_best_copy_of_each_example() -> None:
    carry, out = _loss_inputs([1, 1, 1, 1])
    carry.data["labels"][1] = carry.data["labels"][0]  # two examples, two copies each
    carry.data["labels"][3] = carry.data["labels"][2]
    loss = act_loss(carry, out, group=2)
    mask = torch.ones(4, 6, dtype=torch.bool)
    lm = stablemax_cross_entropy(out.logits, carry.data["labels"], mask).mean(-1).detach()
    winners = lm.view(2, 2).argmin(-1) + torch.tensor([0, 2])
    loss.total.backward()
    trained = {int(i) for i in torch.nonzero(out.logits.grad.abs().sum((1, 2))).flatten()}
    assert trained == set(winners.tolist())
    assert {int(i) for i in torch.nonzero(out.q_halt.grad).flatten()} == set(winners.tolist())


def test_winner_take_all_copies_start_apart_and_halt_together() -> None:
    cfg = TRMConfig(**{**SMALL, "halt_max_steps": 6, "halt_exploration_prob": 0.5})
    model = build_model(cfg).train()
    model.group, model.group_noise = 3, 1.0
    batch = {k: v.repeat_interleave(3, 0) for k, v in random_batch(cfg, size=4).items()}
    carry = model.initial_carry(batch)
    with torch.no_grad():
        model.q_head.bias.fill_(0.0)  # halting heads near 0: copies would disagree without grouping
        model.q_head.weight.normal_(0, 1)
    generator = torch.Generator().manual_seed(0)
    state0 = model._perturb_copies(model.reset_state(carry.state, carry.halted), carry.halted, generator)
    y = state0["y"].view(4, 3, *state0["y"].shape[1:])
    assert torch.equal(y[:, 0], model.y_init.expand_as(y[:, 0]))  # the first copy: the usual start
    assert not torch.equal(y[:, 1], y[:, 0]) and not torch.equal(y[:, 2], y[:, 1])
    for _ in range(8):
        carry, out = model(carry, batch, generator)
        halted = carry.halted.view(4, 3)
        assert torch.equal(halted.all(-1), halted.any(-1))
        assert torch.equal(carry.steps.view(4, 3).min(-1).values, carry.steps.view(4, 3).max(-1).values)


def test_orthogonalize_gives_singular_values_near_one() -> None:
    g = torch.randn(64, 24) @ torch.diag(torch.logspace(-1, 1, 24))  # condition ~100
    s = torch.linalg.svdvals(orthogonalize(g))
    assert s.min() > 0.5 and s.max() < 1.3
    assert orthogonalize(g.T).shape == (24, 64)


def test_muon_updates_matrices_by_orthogonalised_momentum_and_the_rest_by_adam_atan2() -> None:
    cfg = TRMConfig(**SMALL)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    matrices, rest = muon_parameters(model)
    assert matrices and all(p.ndim == 2 for p in matrices)
    assert any(p is model.lm_head.weight for p in rest) and any(p is model.embed.tokens.weight for p in rest)
    twin = build_model(cfg).train()
    twin.load_state_dict(model.state_dict())
    batch = random_batch(cfg)
    for m in (model, twin):
        carry, out = m(m.initial_carry(batch), batch)
        act_loss(carry, out).total.backward()
    muon = MuonAdamATan2([{"params": matrices, "muon": True}, {"params": rest}], lr=1e-2, weight_decay=0.1)
    rest_names = [n for n, p in model.named_parameters() if any(p is q for q in rest)]
    twin_params = dict(twin.named_parameters())
    adam = AdamATan2([twin_params[n] for n in rest_names], lr=1e-2, weight_decay=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    muon.step()
    adam.step()
    for name, p in model.named_parameters():
        if name in rest_names and name in grads:
            assert torch.equal(p, twin_params[name]), name  # exactly AdamATan2
        elif name in grads:
            step = (before[name] * (1 - 1e-2 * 0.1) - p.detach()) / 1e-2
            expected = orthogonalize(grads[name] * (1 + 0.95)) * 0.2 * math.sqrt(max(p.shape))
            torch.testing.assert_close(step, expected, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="matrices"):
        MuonAdamATan2([{"params": [model.q_head.bias], "muon": True}])


def test_muon_state_survives_a_state_dict_round_trip() -> None:
    w = torch.nn.Parameter(torch.randn(8, 4))
    b = torch.nn.Parameter(torch.randn(4))
    opt = MuonAdamATan2([{"params": [w], "muon": True}, {"params": [b]}], lr=1e-2)
    for _ in range(2):
        (w.sum() ** 2 + (b**3).sum()).backward()
        opt.step()
        opt.zero_grad()
    w2, b2 = torch.nn.Parameter(w.detach().clone()), torch.nn.Parameter(b.detach().clone())
    opt2 = MuonAdamATan2([{"params": [w2], "muon": True}, {"params": [b2]}], lr=1e-2)
    opt2.load_state_dict(opt.state_dict())
    for params, o in (((w, b), opt), ((w2, b2), opt2)):
        (params[0].sum() ** 2 + (params[1] ** 3).sum()).backward()
        o.step()
    assert torch.equal(w, w2) and torch.equal(b, b2)


def _runs_model(halt_step: dict[int, int], steps: int = 4) -> StubModel:
    """Answers row index + 10 * step; row r halts from step `halt_step[r]` (1-based) on, others never."""
    def answer(k: int, inputs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.repeat((rows % 5 + 1 + k)[:, None], 3, axis=1)

    def halt(k: int, inputs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.array([1.0 + r if k + 1 >= halt_step.get(int(r), 99) else -1.0 for r in rows], np.float32)

    return StubModel(answer, vocab=12, steps=steps, halt=halt)


def test_halt_first_stops_each_example_at_its_first_halting_run() -> None:
    # 2 examples x 3 runs: rows r * 2 + e. Example 0: run 2 halts at step 2 (run 1 at 3); example 1: never.
    model = _runs_model({4: 2, 2: 3})
    batch = {"inputs": torch.ones(2, 3, dtype=torch.long), "labels": torch.ones(2, 3, dtype=torch.long),
             "puzzle_identifiers": torch.zeros(2, dtype=torch.long)}
    scaling = Scaling(noise=3, noise_scale=1e-4, select="first")
    run = halt_first(model, batch, 4, scaling, [IDENTITY])
    assert run.stopped.tolist() == [2, 4]
    assert model.sizes == [6, 6, 3, 3]  # example 0's three runs leave the batch after step 2
    assert run.cost.tolist() == [3 * 2, 3 * 4]
    # example 0 takes run 2's step-2 answer (row 4: 4 % 5 + 1 + 1 = 6); example 1, never halting, the most
    # confident run at the last step (all -1: the first, row 1 -> 1 % 5 + 1 + 3 = 5)
    assert run.final[:, 0].tolist() == [6, 5]
    assert [t[0, 0].item() for t in run.trace] == [1, 6, 6, 6]
    assert torch.equal(predict(_runs_model({4: 2, 2: 3}), batch, 4, scaling=scaling).final, run.final)


def test_step_noise_perturbs_the_state_before_every_later_step() -> None:
    cfg = TRMConfig(**SMALL)
    model = build_model(cfg).eval()
    batch = random_batch(cfg)
    g = torch.Generator()
    plain = run_steps(model, batch, 3, generator=g.manual_seed(0))
    first = run_steps(model, batch, 3, noise_scale=0.5, generator=g.manual_seed(0))
    noisy = run_steps(model, batch, 3, noise_scale=0.5, step_noise=0.5, generator=g.manual_seed(0))
    assert torch.equal(first.trace[0], noisy.trace[0])  # the same first step: noise only before later ones
    assert not torch.equal(plain.trace[0], first.trace[0])
    with pytest.raises(ValueError, match="noise >= 2"):
        Scaling(step_noise=0.1)


@pytest.mark.parametrize("changes", [
    dict(optimizer="muon"),
    dict(step_weight_decay=0.7),
    dict(wta_latents=2),
    dict(model_changes=dict(grad_depth=5)),
    dict(model_changes=dict(recursion_loss=True)),
    dict(model_changes=dict(conv_kernel=3)),
])
def test_every_training_option_trains_and_resumes(tmp_path: Path, changes: dict) -> None:
    data = tmp_path / "data"
    write_copy_task(data, seq_len=9)  # a 3 x 3 grid for the convolution
    model = dict(arch="trm", hidden_size=32, num_heads=2, T=2, n=2, layers=1, puzzle_emb_ndim=32,
                 puzzle_emb_len=1, halt_max_steps=3, halt_exploration_prob=0.2)
    model.update(changes.pop("model_changes", {}))

    def cfg(run: str) -> TrainConfig:
        return TrainConfig(data=str(data), run_dir=str(tmp_path / run), model=model, global_batch_size=4, steps=6,
                           lr=3e-3, lr_warmup_steps=2, log_every=1, eval_max_batches=1, device="cpu",
                           dtype="float32", compile="off", **changes)

    full = train(cfg("full"), progress=False)
    assert math.isfinite(full["step"]) and full["step"] == 6
    train(cfg("split"), progress=False, stop_after=3)
    train(cfg("split"), resume=True, progress=False)
    lines = [[json.loads(x) for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()] for r in
             ("full", "split")]
    losses = [[x["lm_loss"] for x in r if x["kind"] == "train"] for r in lines]
    assert losses[0] == losses[1] and all(math.isfinite(v) for v in losses[0])


def test_training_options_are_checked() -> None:
    base = dict(data="d", model={"arch": "trm"})
    for changes, words in ((dict(optimizer="sgd"), "optimizer"), (dict(step_weight_decay=1.5), "step_weight_decay"),
                           (dict(wta_latents=0), "wta_latents")):
        with pytest.raises(ConfigError, match=words):
            TrainConfig(**base, **changes)
    with pytest.raises(ConfigError, match="one_step_grad"):
        TRMConfig(**SMALL, grad_depth=3, one_step_grad=True)
