"""The benchmark suite's bookkeeping: MFU against the ceiling of the dtype a row computes in, bf16 rows
skipped (with the reason) on a CPU without bf16 matrix units, no figure from another machine."""

from __future__ import annotations

import math

import pytest
import torch

from trm import bench


def _fake_ceilings(monkeypatch: pytest.MonkeyPatch, fp32: float, bf16: float) -> None:
    def fake(dtype, size, runs, device, budget_s=2.0):
        value = fp32 if dtype == torch.float32 else bf16
        name = "fp32" if dtype == torch.float32 else "bf16"
        return bench.Row(f"ceiling.matmul_{name}", "matmul", "GFLOP/s", value, value, value, 1)

    monkeypatch.setattr(bench, "bench_matmul", fake)


def test_bf16_rows_are_skipped_without_bf16_units(monkeypatch):
    _fake_ceilings(monkeypatch, fp32=88.0, bf16=1.0)  # the AVX2 kind
    called: list[tuple[str, bool]] = []

    def fake_training(shape, mode, device, ceiling, runs, checkpointing=False):
        called.append((mode, checkpointing))
        return bench.Row(f"train.{shape.name}.{mode}", "training", "example-steps/s", 1.0, 1.0, 1.0, 1)

    monkeypatch.setattr(bench, "bench_training", fake_training)
    rows = bench.run_benchmarks(quick=True, only="train.trm_mlp.", device=torch.device("cpu"))
    by_name = {r.name: r for r in rows}
    assert called == [("fp32", False), ("fp32", True)]  # activation checkpointing measured in fp32 too
    skipped = by_name["train.trm_mlp.bf16"]
    assert math.isnan(skipped.median) and "no bf16 matrix units" in skipped.extra["skipped"]
    assert "skipped" in bench.format_row(skipped)


def test_mfu_uses_the_ceiling_of_the_rows_dtype(monkeypatch):
    _fake_ceilings(monkeypatch, fp32=100.0, bf16=600.0)  # bf16 units: bf16 rows run
    seen: dict[str, float] = {}

    def fake_training(shape, mode, device, ceiling, runs, checkpointing=False):
        seen[mode] = ceiling
        return bench.Row(f"train.{shape.name}.{mode}", "training", "example-steps/s", 1.0, 1.0, 1.0, 1)

    monkeypatch.setattr(bench, "bench_training", fake_training)
    bench.run_benchmarks(quick=True, only="train.trm_mlp.", device=torch.device("cpu"))
    assert seen == {"fp32": 100.0, "bf16": 600.0, "autocast": 600.0}  # the .ckpt row reuses bf16


def test_training_row_reports_mfu_and_nothing_from_elsewhere():
    shape = bench.Shape("tiny", bench.SHAPE_BY_NAME["trm_mlp"].config, 2)
    row = bench.bench_training(shape, "fp32", torch.device("cpu"), ceiling=50.0, runs=1)
    assert row.extra["mfu_ceiling"] == "fp32" and 0 < row.extra["mfu"]
    assert not {"reference", "speedup_vs_reference"} & set(row.extra)
    assert not hasattr(bench, "REFERENCE")


def test_matmul_ceiling_stays_within_its_budget():
    row = bench.bench_matmul(torch.float32, 4096, runs=1, device=torch.device("cpu"), budget_s=1e-9)
    assert row.metric == "512^3 matmul"  # the full product would exceed the budget: the small one is reported
