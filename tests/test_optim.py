"""Optimizers, schedule and EMA against hand-written references and closed forms."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from trm.optim import (
    EMA,
    AdamATan2,
    SignSGDEmbedding,
    cosine_schedule_with_warmup,
    set_lr,
)

BETAS = (0.9, 0.95)
WD = 0.1


def lr_at(step: int) -> float:
    return 1e-2 * (1.0 + 0.5 * math.sin(step))  # changes every step


def random_tensors(gen: torch.Generator, dtype: torch.dtype) -> list[Tensor]:
    shapes = [(5, 7), (7,), (3, 4, 2), ()]
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]


def reference_adam_atan2(params: list[Tensor], grads_per_step: list[list[Tensor]]) -> list[Tensor]:
    """Plain float64 transcription of the adam_atan2 update, one tensor at a time."""
    params = [p.double().clone() for p in params]
    ms = [torch.zeros_like(p) for p in params]
    vs = [torch.zeros_like(p) for p in params]
    b1, b2 = BETAS
    for t, grads in enumerate(grads_per_step, start=1):
        lr = lr_at(t - 1)
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        for i, g in enumerate(grads):
            g = g.double()
            params[i] = params[i] * (1 - lr * WD)
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            params[i] = params[i] - lr * torch.atan2(ms[i] / bc1, torch.sqrt(vs[i]) / math.sqrt(bc2))
    return params


def run_adam_atan2(params: list[Tensor], grads_per_step: list[list[Tensor]], dtype: torch.dtype,
                   tensor_lr: bool = False) -> list[Tensor]:
    ps = [nn.Parameter(p.to(dtype).clone()) for p in params]
    opt = AdamATan2(ps, lr=0.0, betas=BETAS, weight_decay=WD)
    for step, grads in enumerate(grads_per_step):
        set_lr(opt, torch.tensor(lr_at(step), dtype=torch.float64) if tensor_lr else lr_at(step))
        for p, g in zip(ps, grads, strict=True):
            p.grad = g.to(dtype)
        opt.step()
        opt.zero_grad()
    return [p.detach() for p in ps]


@pytest.fixture(scope="module")
def adam_problem() -> tuple[list[Tensor], list[list[Tensor]]]:
    gen = torch.Generator().manual_seed(0)
    params = random_tensors(gen, torch.float64)
    grads = [random_tensors(gen, torch.float64) for _ in range(20)]
    grads[3][0][0, 0] = 0.0  # a zero gradient entry (atan2(0, .) and no epsilon)
    return params, grads


@pytest.mark.parametrize("tensor_lr", [False, True])
def test_adam_atan2_float64_matches_transcription(adam_problem, tensor_lr: bool) -> None:
    params, grads = adam_problem
    expected = reference_adam_atan2(params, grads)
    got = run_adam_atan2(params, grads, torch.float64, tensor_lr=tensor_lr)
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)


def test_adam_atan2_float32_close_to_float64_transcription(adam_problem) -> None:
    params, grads = adam_problem
    expected = reference_adam_atan2([p.float() for p in params], grads)
    got = run_adam_atan2(params, grads, torch.float32)
    for e, g in zip(expected, got, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g.double(), e, rtol=1e-6, atol=1e-6)


def test_adam_atan2_bfloat16_keeps_float32_state(adam_problem) -> None:
    params, grads = adam_problem
    got = run_adam_atan2(params, grads[:3], torch.bfloat16)
    expected = reference_adam_atan2([p.bfloat16() for p in params], [[g.bfloat16() for g in gs] for gs in grads[:3]])
    for e, g in zip(expected, got, strict=True):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g.double(), e, rtol=2e-2, atol=2e-2)
    p = nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    opt = AdamATan2([p], lr=1e-3)
    p.grad = torch.ones_like(p)
    opt.step()
    assert opt.state[p]["exp_avg"].dtype == torch.float32
    assert opt.state[p]["exp_avg_sq"].dtype == torch.float32


def test_adam_atan2_first_step_is_lr_times_quarter_pi() -> None:
    # After one step m/bc1 = g and sqrt(v)/sqrt(bc2) = |g|, so every entry moves by lr * pi/4 against g.
    p = nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    opt = AdamATan2([p], lr=0.1, weight_decay=0.0)
    p.grad = torch.tensor([5.0, -1e-8, 0.0], dtype=torch.float64)
    opt.step()
    expected = torch.tensor([1.0 - 0.1 * math.pi / 4, -2.0 + 0.1 * math.pi / 4, 3.0], dtype=torch.float64)
    torch.testing.assert_close(p.detach(), expected, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_adam_atan2_resume_is_bit_identical(adam_problem, dtype: torch.dtype, tmp_path: Path) -> None:
    params, grads = adam_problem

    def make() -> tuple[list[nn.Parameter], AdamATan2]:
        ps = [nn.Parameter(p.to(dtype).clone()) for p in params]
        return ps, AdamATan2(ps, lr=0.0, betas=BETAS, weight_decay=WD)

    def run(ps: list[nn.Parameter], opt: AdamATan2, steps: range) -> None:
        for step in steps:
            set_lr(opt, lr_at(step))
            for p, g in zip(ps, grads[step], strict=True):
                p.grad = g.to(dtype)
            opt.step()
            opt.zero_grad()

    ps_a, opt_a = make()
    run(ps_a, opt_a, range(20))

    ps_b, opt_b = make()
    run(ps_b, opt_b, range(8))
    torch.save({"params": [p.detach() for p in ps_b], "opt": opt_b.state_dict()}, tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt")
    ps_c, opt_c = make()
    with torch.no_grad():
        for p, saved in zip(ps_c, ckpt["params"], strict=True):
            p.copy_(saved)
    opt_c.load_state_dict(ckpt["opt"])
    run(ps_c, opt_c, range(8, 20))

    for a, c in zip(ps_a, ps_c, strict=True):
        assert torch.equal(a, c)


def test_adam_atan2_rejects_bad_arguments() -> None:
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="betas"):
        AdamATan2(p, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="weight_decay"):
        AdamATan2(p, weight_decay=-1.0)
    with pytest.raises(ValueError, match="lr"):
        AdamATan2(p, lr=-1.0)


# ---------------------------------------------------------------------------------------------------------
# Sign-SGD for the puzzle embedding
# ---------------------------------------------------------------------------------------------------------


class TableEmbedding(nn.Module):
    """Follows the hand-over protocol: `weight` buffer; `local_ids` / `local_weights` after forward."""

    weight: Tensor

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", table.clone())
        self.local_ids: Tensor | None = None
        self.local_weights: Tensor | None = None

    def forward(self, ids: Tensor) -> Tensor:
        rows = self.weight[ids.long()].detach().requires_grad_(True)
        self.local_ids, self.local_weights = ids, rows
        return rows


def feed_grads(emb: TableEmbedding, ids: list[int], grads: Tensor) -> None:
    """A forward and a backward whose gradient on the gathered rows is exactly `grads`."""
    out = emb(torch.tensor(ids, dtype=torch.int32))
    (out * grads).sum().backward()


def test_sign_sgd_sums_duplicate_ids_before_the_sign() -> None:
    table = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    emb = TableEmbedding(table)
    opt = SignSGDEmbedding(emb, lr=0.5, weight_decay=0.2)
    # id 1: +3 and -1 -> +2 / -1 and +4 -> +3 ; id 4 twice: +1 and -1 -> 0 (decay only) / -2 + 1 -> -1
    # id 2 once: (0.5, -0.5)
    ids = [1, 4, 1, 2, 4]
    grads = torch.tensor([[3.0, -1.0], [1.0, -2.0], [-1.0, 4.0], [0.5, -0.5], [-1.0, 1.0]])
    feed_grads(emb, ids, grads)
    opt.step()

    decay = 1 - 0.5 * 0.2
    expected = table.clone()
    expected[1] = table[1] * decay - 0.5 * torch.tensor([1.0, 1.0])
    expected[2] = table[2] * decay - 0.5 * torch.tensor([1.0, -1.0])
    expected[4] = table[4] * decay - 0.5 * torch.tensor([0.0, -1.0])
    assert torch.equal(emb.weight, expected)  # rows 0, 3, 5 untouched, bit for bit


def test_sign_sgd_tensor_lr_zero_grad_and_no_grad_step() -> None:
    table = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    emb = TableEmbedding(table)
    opt = SignSGDEmbedding(emb, lr=0.0, weight_decay=1.0)
    opt.step()  # no forward yet: nothing to do
    assert torch.equal(emb.weight, table)

    set_lr(opt, torch.tensor(0.25))
    feed_grads(emb, [3], torch.tensor([[1.0, -2.0, 0.0]]))
    opt.step()
    expected = table.clone()
    expected[3] = table[3] * 0.75 - 0.25 * torch.tensor([1.0, -1.0, 0.0])
    torch.testing.assert_close(emb.weight, expected, rtol=0, atol=0)

    opt.zero_grad()
    assert emb.local_weights is not None and emb.local_weights.grad is None
    opt.step()  # gradient dropped: the table stays
    torch.testing.assert_close(emb.weight, expected, rtol=0, atol=0)


def test_sign_sgd_state_dict_round_trip() -> None:
    emb = TableEmbedding(torch.zeros(3, 2))
    opt = SignSGDEmbedding(emb, lr=0.1, weight_decay=0.5)
    set_lr(opt, 0.03)
    other = SignSGDEmbedding(TableEmbedding(torch.zeros(3, 2)), lr=1.0, weight_decay=0.0)
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["lr"] == 0.03
    assert other.param_groups[0]["weight_decay"] == 0.5


def test_sign_sgd_rejects_a_parameter_table() -> None:
    class ParamTable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(2, 2))
            self.local_ids = None
            self.local_weights = None

    with pytest.raises(ValueError, match="buffer"):
        SignSGDEmbedding(ParamTable())  # type: ignore[arg-type]


DIST_TABLE = torch.linspace(-1.0, 1.0, 5 * 3).reshape(5, 3)
# Rank 0 and rank 1 both hold id 2 with different grads; rank 1 repeats id 4.
DIST_IDS = [[2, 0, 1], [2, 4, 4]]
DIST_GRADS = [
    torch.tensor([[1.0, -1.0, 0.5], [0.0, 2.0, -3.0], [-1.0, -1.0, -1.0]]),
    torch.tensor([[-3.0, 0.5, -0.5], [1.0, 1.0, -1.0], [1.0, -2.0, 1.0]]),
]
DIST_LR, DIST_WD = 0.1, 0.5


def _dist_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        emb = TableEmbedding(DIST_TABLE)
        opt = SignSGDEmbedding(emb, lr=DIST_LR, weight_decay=DIST_WD)
        feed_grads(emb, DIST_IDS[rank], DIST_GRADS[rank])
        opt.step()
        torch.save(emb.weight, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.barrier()  # no rank tears the group down while another still communicates (gloo aborts)
        dist.destroy_process_group()


def test_sign_sgd_two_processes_apply_the_global_update(tmp_path: Path) -> None:
    mp.spawn(_dist_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    tables = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    single = TableEmbedding(DIST_TABLE)
    opt = SignSGDEmbedding(single, lr=DIST_LR, weight_decay=DIST_WD)
    feed_grads(single, DIST_IDS[0] + DIST_IDS[1], torch.cat(DIST_GRADS))
    opt.step()

    assert torch.equal(tables[0], tables[1])
    assert torch.equal(tables[0], single.weight)
    # id 2 summed across ranks: (1-3, -1+0.5, 0.5-0.5) = (-2, -0.5, 0) -> only decay on the last entry
    expected_row2 = DIST_TABLE[2] * (1 - DIST_LR * DIST_WD) - DIST_LR * torch.tensor([-1.0, -1.0, 0.0])
    torch.testing.assert_close(tables[0][2], expected_row2, rtol=0, atol=0)
    assert torch.equal(tables[0][3], DIST_TABLE[3])  # untouched on every rank


# ---------------------------------------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------------------------------------


def test_cosine_schedule_with_warmup_values() -> None:
    lr = functools.partial(cosine_schedule_with_warmup, base_lr=2.0, warmup_steps=10, total_steps=110)
    assert lr(0) == 0.0
    assert lr(5) == pytest.approx(1.0)
    assert lr(10) == pytest.approx(2.0)
    assert lr(60) == pytest.approx(1.0)  # half way down the cosine
    assert lr(110) == pytest.approx(0.0, abs=1e-12)
    assert lr(110, min_ratio=0.1) == pytest.approx(0.2)
    for step in (10, 37, 60, 110, 500):
        assert lr(step, min_ratio=1.0) == 2.0
    assert lr(5, min_ratio=1.0) == pytest.approx(1.0)
    # No warmup: full rate at step 0.
    assert cosine_schedule_with_warmup(0, 3.0, 0, 100) == pytest.approx(3.0)


# ---------------------------------------------------------------------------------------------------------
# EMA
# ---------------------------------------------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("table", torch.ones(4, 3))


def test_ema_closed_form_for_a_constant_sequence() -> None:
    torch.manual_seed(0)
    model = Tiny()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3.0)
    k = 7
    for _ in range(k):
        ema.update(model)
    for name, s in start.items():
        expected = 0.9**k * s + (1 - 0.9**k) * 3.0
        torch.testing.assert_close(ema.shadow[name], expected, rtol=1e-6, atol=1e-6)
    assert "table" not in ema.shadow  # buffers are not averaged


def test_ema_swap_in_and_restore_exactly() -> None:
    torch.manual_seed(0)
    model = Tiny()
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    ema.update(model)
    raw = {n: t.clone() for n, t in model.state_dict().items()}
    with ema.swapped_in(model):
        for name, p in model.named_parameters():
            assert torch.equal(p.detach(), ema.shadow[name])
    for name, t in model.state_dict().items():
        assert torch.equal(t, raw[name])

    saved = ema.ema_state_dict(model)
    assert torch.equal(saved["lin.weight"], ema.shadow["lin.weight"])
    assert torch.equal(saved["table"], raw["table"])
    assert torch.equal(model.lin.weight.detach(), raw["lin.weight"])  # saving does not touch the model

    # Without an argument the EMA works on the model it was built from; the saved dict loads strictly.
    ema.update()
    reloaded = Tiny()
    reloaded.load_state_dict(ema.ema_state_dict())
    assert torch.equal(reloaded.lin.bias.detach(), ema.shadow["lin.bias"])


def test_ema_restores_after_an_exception() -> None:
    model = Tiny()
    ema = EMA(model)
    with torch.no_grad():
        model.lin.weight.add_(1.0)
    raw = model.lin.weight.detach().clone()
    with pytest.raises(RuntimeError), ema.swapped_in(model):
        raise RuntimeError("evaluation failed")
    assert torch.equal(model.lin.weight.detach(), raw)


def test_ema_state_round_trip_and_wrapped_models() -> None:
    torch.manual_seed(0)
    model = Tiny()
    ema = EMA(model, decay=0.8)
    with torch.no_grad():
        model.lin.bias.add_(2.0)
    ema.update(model)

    fresh = EMA(Tiny(), decay=0.1)
    fresh.load_state_dict(ema.state_dict())
    assert fresh.decay == 0.8
    for name in ema.shadow:
        assert torch.equal(fresh.shadow[name], ema.shadow[name])
    # Continuing from the restored state equals continuing the original.
    ema.update(model)
    fresh.update(model)
    for name in ema.shadow:
        assert torch.equal(fresh.shadow[name], ema.shadow[name])

    # Names are those of the unwrapped module, so a DataParallel-wrapped model updates the same shadow.
    ema.update(nn.DataParallel(model))
    with pytest.raises(KeyError, match="missing"):
        fresh.load_state_dict({"decay": 0.8, "shadow": {}})


def test_sign_sgd_drives_the_model_puzzle_embedding() -> None:
    from trm.layers import PuzzleEmbedding

    emb = PuzzleEmbedding(4, 2)
    opt = SignSGDEmbedding(emb, lr=0.1, weight_decay=0.0)
    emb.train()
    out = emb(torch.tensor([3, 1, 3]), torch.float32)
    (out * torch.tensor([[1.0, -1.0], [-2.0, 0.0], [1.0, 1.0]])).sum().backward()
    opt.step()
    expected = torch.zeros(4, 2)
    expected[3] = torch.tensor([-0.1, 0.0])  # id 3: (1 + 1, -1 + 1) -> sign (1, 0)
    expected[1] = torch.tensor([0.1, 0.0])  # id 1: (-2, 0) -> sign (-1, 0)
    assert torch.equal(emb.weight, expected)
