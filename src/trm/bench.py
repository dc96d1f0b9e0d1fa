"""Benchmarks: machine ceilings, training throughput and model FLOP utilisation (MFU), inference
speed, peak training memory (with and without activation checkpointing) and data pipelines.

Run `trm bench [--quick] [--only NAME] [--out FILE.json]`. Every figure is the median of several
timed runs after warm-up, reported with its min-max spread and the number of runs.

Throughput is in example-supervision-steps/s: one training call runs one supervision step (forward,
backward, optimizer step) on every slot of the batch, so it is batch size / seconds per call.
MFU counts matmul FLOPs analytically (`step_flops`): the forward of every application of the
network f, the backward (2x forward) of the applications that record gradients, the heads, and the
attention scores; it is divided by the measured matmul ceiling of the dtype the row computes in
(float32 rows by the float32 ceiling, bfloat16 and autocast rows by the bfloat16 one), and both
ceilings are reported.

Nothing here is compared with figures measured elsewhere: comparisons with the reference
implementation are run side by side on one machine and written to docs/benchmarks.md. On a CPU whose
bfloat16 products are far slower than float32 (no bf16 matrix units) the bfloat16 rows are skipped,
with the reason, instead of running for minutes; `numeric` shows what `dtype: auto` picks and what
the probe costs; `speedrun` trains the demo task and reports the wall time to 95% and 97% held-out exact
accuracy (the headline speed figure; not in --quick).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from trm.layers import swiglu_width
from trm.loss import act_loss
from trm.models import ACTModel, HRMConfig, ModelConfig, TransformerConfig, TRMConfig, build_model


@dataclass
class Row:
    """One benchmark figure: the median of `runs` timed runs, with their min and max."""

    name: str
    metric: str
    unit: str
    median: float
    low: float
    high: float
    runs: int
    extra: dict[str, Any] = field(default_factory=dict)
    """Derived figures (MFU, ratio to the reference, the settings used)."""


@dataclass(frozen=True)
class Shape:
    """A model shape to benchmark, with its batch size."""

    name: str
    config: ModelConfig
    batch: int
    quick: bool = True
    """Whether --quick runs it."""


def _sudoku(**kw: Any) -> dict[str, Any]:
    return dict(vocab_size=11, seq_len=81, puzzle_emb_len=16, **kw)


SHAPES = [
    Shape("trm_mlp", TRMConfig(**_sudoku(hidden_size=256, num_heads=4, puzzle_emb_ndim=256), mlp_t=True,
                               pos_encodings="none", T=3, n=6, layers=2), 64),
    Shape("trm_att", TRMConfig(**_sudoku(hidden_size=256, num_heads=4, puzzle_emb_ndim=256), T=3, n=6, layers=2), 64),
    Shape("trm_mlp_512", TRMConfig(**_sudoku(hidden_size=512, num_heads=8, puzzle_emb_ndim=512), mlp_t=True,
                                   pos_encodings="none", T=3, n=6, layers=2), 64),
    Shape("trm_att_512", TRMConfig(**_sudoku(hidden_size=512, num_heads=8, puzzle_emb_ndim=512), T=3, n=6, layers=2),
          64, quick=False),
    Shape("trm_att_900", TRMConfig(vocab_size=12, seq_len=900, hidden_size=512, num_heads=8, puzzle_emb_ndim=512,
                                   T=3, n=4, layers=2), 8, quick=False),
    Shape("hrm", HRMConfig(vocab_size=11, seq_len=81, hidden_size=512, num_heads=8, puzzle_emb_ndim=512), 32),
]
SHAPE_BY_NAME = {s.name: s for s in SHAPES}

# Numeric modes of a training step: (activation dtype, autocast to bfloat16, torch.compile of model.step).
MODES: dict[str, tuple[torch.dtype, bool, bool]] = {
    "fp32": (torch.float32, False, False),
    "bf16": (torch.bfloat16, False, False),
    "autocast": (torch.float32, True, False),
    "bf16+compile": (torch.bfloat16, False, True),
    "fp32+compile": (torch.float32, False, True),
}


# ---------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_runs(fn: Callable[[], object], warmup: int, runs: int, device: torch.device) -> list[float]:
    """Seconds of `runs` calls of `fn` after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def rate_row(name: str, metric: str, unit: str, work: float, times: list[float], **extra: Any) -> Row:
    """A row of `work` / seconds: the median of the per-run rates, with their min and max."""
    rates = [work / t for t in times]
    return Row(name, metric, unit, statistics.median(rates), min(rates), max(rates), len(rates), dict(extra))


# ---------------------------------------------------------------- FLOPs


def block_flops(config: ModelConfig, tokens: int, mlp_t: bool) -> float:
    """Matmul FLOPs of one block's forward on `tokens` = batch x positions (attention scores included)."""
    d, positions = config.hidden_size, config.positions
    batch = tokens // positions
    inner = swiglu_width(d, config.expansion)
    flops = 2.0 * tokens * d * 3 * inner  # SwiGLU: gate_up (2 x inner) and down (inner)
    if mlp_t:
        inner_t = swiglu_width(positions, config.expansion)
        flops += 2.0 * batch * d * positions * 3 * inner_t  # the same across the token axis
    else:
        flops += 2.0 * tokens * d * 4 * d  # qkv and out projections
        flops += 2.0 * 2 * batch * positions * positions * d  # q k^T and attention x v
    return flops


def step_flops(config: ModelConfig, batch: int, training: bool = True) -> float:
    """Useful matmul FLOPs of one supervision step on `batch` examples (see the module docstring).

    With the continue target (HRM), the extra no-grad step that computes it is counted too.
    Recomputation by activation checkpointing is not useful work and is not counted."""
    tokens = batch * config.positions
    heads = 2.0 * tokens * config.hidden_size * config.vocab_size
    if isinstance(config, TRMConfig):
        f = config.layers * block_flops(config, tokens, config.mlp_t)
        forward_apps = config.T * (config.n + 1)
        grad_apps = 2 if config.one_step_grad else config.n + 1
        forward, grad = forward_apps * f + heads, grad_apps * f + heads
    elif isinstance(config, HRMConfig):
        blk = block_flops(config, tokens, False)
        forward = config.H_cycles * (config.L_cycles * config.L_layers + config.H_layers) * blk + heads
        grad = (config.L_layers + config.H_layers) * blk + heads
    elif isinstance(config, TransformerConfig):
        forward = grad = config.layers * block_flops(config, tokens, False) + heads
    else:
        raise TypeError(f"no FLOP count for {type(config).__name__}")
    if not training:
        return forward
    extra = forward if config.act_continue else 0.0
    return forward + 2 * grad + extra


# ---------------------------------------------------------------- pieces of a benchmark


def _optimizer(model: ACTModel) -> tuple[torch.optim.Optimizer, str]:
    """AdamATan2, the optimizer training uses."""
    from trm.optim import AdamATan2

    return AdamATan2(model.parameters(), lr=1e-4, weight_decay=0.1), "AdamATan2"


def make_batch(config: ModelConfig, size: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs and labels of the right shapes (speed does not depend on the values)."""
    g = torch.Generator().manual_seed(seed)
    batch = {
        "inputs": torch.randint(1, config.vocab_size, (size, config.seq_len), generator=g, dtype=torch.int32),
        "labels": torch.randint(1, config.vocab_size, (size, config.seq_len), generator=g, dtype=torch.int32),
        "puzzle_identifiers": torch.randint(0, config.num_puzzle_identifiers, (size,), generator=g, dtype=torch.int32),
    }
    return {k: v.to(device) for k, v in batch.items()}


def training_step_fn(shape: Shape, mode: str, device: torch.device,
                     checkpointing: bool = False) -> tuple[Callable[[], None], str]:
    """A closure running one training call (forward, backward, optimizer step), and the optimizer name."""
    dtype, autocast, compile_step = MODES[mode]
    torch.manual_seed(0)
    model = build_model(shape.config, dtype=dtype, device=device).train()
    model.activation_checkpointing = checkpointing
    if compile_step:
        model.step = torch.compile(model.step)  # type: ignore[method-assign]
    optimizer, opt_name = _optimizer(model)
    batch = make_batch(shape.config, shape.batch, device)
    carry = model.initial_carry(batch)
    gen = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        nonlocal carry
        with torch.autocast(device.type, dtype=torch.bfloat16) if autocast else nullcontext():
            carry, out = model(carry, batch, generator=gen)
        (act_loss(carry, out).total / shape.batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, opt_name


def bench_matmul(dtype: torch.dtype, size: int, runs: int, device: torch.device, budget_s: float = 2.0) -> Row:
    """The matmul ceiling of `dtype` (GFLOP/s of a size^3 product). A small product is timed first;
    when the full size would take more than `budget_s` per run (bf16 without matrix units) the small
    product's figure is reported instead, so the ceiling costs seconds, not minutes."""
    name = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    small = min(size, 512)
    a = torch.randn(small, small, device=device).to(dtype)
    b = torch.randn(small, small, device=device).to(dtype)
    probe = time_runs(lambda: a @ b, warmup=1, runs=1, device=device)[0]
    if probe * (size / small) ** 3 > budget_s:
        size = small
    else:
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
    times = time_runs(lambda: a @ b, warmup=1 if size == small else 2, runs=runs, device=device)
    return rate_row(f"ceiling.matmul_{name}", f"{size}^3 matmul", "GFLOP/s", 2 * size**3 / 1e9, times)


def bench_training(shape: Shape, mode: str, device: torch.device, ceiling: float | None, runs: int,
                   checkpointing: bool = False) -> Row:
    step, opt_name = training_step_fn(shape, mode, device, checkpointing)
    warmup = 3 if MODES[mode][2] else 1  # compiled steps compile (twice: with and without grad) first
    times = time_runs(step, warmup=warmup, runs=runs, device=device)
    row = rate_row(f"train.{shape.name}.{mode}" + (".ckpt" if checkpointing else ""), "training",
                   "example-steps/s", shape.batch, times, batch=shape.batch, optimizer=opt_name)
    flops = step_flops(shape.config, shape.batch)
    row.extra["gflop_per_step"] = round(flops / 1e9, 1)
    row.extra["achieved_gflops"] = round(flops / 1e9 * row.median / shape.batch, 1)
    if ceiling:
        row.extra["mfu"] = round(flops * row.median / shape.batch / (ceiling * 1e9), 4)
        row.extra["mfu_ceiling"] = "bf16" if mode_computes_in_bf16(mode) else "fp32"
    return row


def mode_computes_in_bf16(mode: str) -> bool:
    dtype, autocast, _ = MODES[mode]
    return autocast or dtype == torch.bfloat16


def bench_optimizers(shape: Shape, device: torch.device, runs: int) -> list[Row]:
    """Milliseconds of one optimizer step on the shape's parameters: AdamATan2 (when present), and
    AdamW for comparison (the share of the optimizer in a training step)."""
    model = build_model(shape.config, device=device)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    adamw = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    optimizers: dict[str, torch.optim.Optimizer] = {"AdamW": adamw}
    found, name = _optimizer(model)
    optimizers[name] = found
    rows = []
    for name, opt in optimizers.items():
        times = [1e3 * t for t in time_runs(opt.step, warmup=2, runs=runs, device=device)]
        rows.append(Row(f"optim.{shape.name}.{name}", "optimizer step", "ms", statistics.median(times),
                        min(times), max(times), len(times), {"parameters": sum(p.numel() for p in model.parameters())}))
    return rows


def bench_inference(shape: Shape, dtype: torch.dtype, device: torch.device,
                    exit_fraction: float = 0.5) -> list[Row]:
    """Puzzles/s at evaluation: N_sup supervision steps under eval() and no_grad.

    One evaluation pass is run with every supervision step timed (after one warm-up step): the
    N_sup step times are the runs, and the rate is batch / (N_sup x step time). Early exit (stop a
    batch once every q_halt > 0) depends on a trained halting head, so it is simulated: the batch
    stops after `exit_fraction` x N_sup steps, each of which pays for the halting check (a sync)."""
    torch.manual_seed(0)
    model = build_model(shape.config, dtype=dtype, device=device).eval()
    batch = make_batch(shape.config, shape.batch, device)
    n_sup = shape.config.halt_max_steps
    n_early = max(1, round(exit_fraction * n_sup))

    def step_times(steps: int, check: bool) -> list[float]:
        times = []
        with torch.no_grad():
            carry = model.initial_carry(batch)
            for _ in range(steps):
                start = time.perf_counter()
                carry, out = model(carry, batch)
                if check:
                    bool((out.q_halt > 0).all())  # the decision to stop; never true untrained
                _sync(device)
                times.append(time.perf_counter() - start)
        return times

    name = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    step_times(1, False)  # warm-up
    full = [n_sup * t for t in step_times(n_sup, False)]
    early = [n_early * t for t in step_times(n_early, True)]
    return [rate_row(f"infer.{shape.name}.{name}", f"eval, {n_sup} steps", "puzzles/s", shape.batch, full,
                     batch=shape.batch, runs_are="supervision steps"),
            rate_row(f"infer.{shape.name}.{name}.early_exit", f"eval, exit after {n_early} steps (simulated)",
                     "puzzles/s", shape.batch, early, batch=shape.batch, simulated_exit_fraction=exit_fraction,
                     runs_are="supervision steps")]


# ---------------------------------------------------------------- memory (in a subprocess)


def _rss_now_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def _memory_child(args: dict[str, Any]) -> None:
    """Run in a fresh interpreter: peak memory of training steps above the state after set-up."""
    device = torch.device(args["device"])
    shape = SHAPE_BY_NAME[args["shape"]]
    step, _ = training_step_fn(shape, args["mode"], device, args["checkpointing"])
    if device.type == "cuda":
        step()  # optimizer state allocated, then measure the steady state
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        peak = torch.cuda.max_memory_allocated(device) - base
        print(json.dumps({"peak_mib": peak / 2**20, "how": "cuda max_memory_allocated above the steady state"}))
        return
    # ru_maxrss cannot be reset, so measure the first steps above the RSS after building the model;
    # this includes the optimizer state and gradients (a few times the parameters) besides activations.
    base = _rss_now_kib()
    start = time.perf_counter()
    for _ in range(args["steps"]):
        step()
    seconds = (time.perf_counter() - start) / args["steps"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    print(json.dumps({"peak_mib": peak / 1024, "seconds_per_step": seconds,
                      "how": "max RSS above RSS after set-up (fresh process)"}))


def bench_memory(shape: Shape, mode: str, device: torch.device, checkpointing: bool, steps: int = 2) -> dict[str, Any]:
    args = {"shape": shape.name, "mode": mode, "device": str(device), "checkpointing": checkpointing, "steps": steps}
    code = f"import json; from trm.bench import _memory_child; _memory_child(json.loads({json.dumps(args)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory benchmark of {shape.name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory_rows(shape: Shape, mode: str, device: torch.device, runs: int) -> list[Row]:
    rows = []
    for ckpt in (False, True):
        results = [bench_memory(shape, mode, device, ckpt) for _ in range(runs)]
        peaks = [r["peak_mib"] for r in results]
        rows.append(Row(f"memory.{shape.name}.{mode}" + (".ckpt" if ckpt else ""), "peak training memory", "MiB",
                        statistics.median(peaks), min(peaks), max(peaks), len(peaks),
                        {"how": results[0]["how"], "batch": shape.batch}))
    rows[1].extra["saving_x"] = round(rows[0].median / rows[1].median, 2)
    return rows


# ---------------------------------------------------------------- the suite


@contextmanager
def _announce(name: str, rows: list[Row]) -> Iterator[None]:
    """Progress on stderr: the part's name, its time, and its rows as soon as they are measured."""
    start, before = time.perf_counter(), len(rows)
    print(f"  {name} ...", end="", flush=True, file=sys.stderr)
    yield
    print(f" {time.perf_counter() - start:.0f} s", file=sys.stderr)
    for row in rows[before:]:
        print("    " + format_row(row), file=sys.stderr, flush=True)


def run_benchmarks(quick: bool = False, only: str | None = None, device: torch.device | None = None) -> list[Row]:
    """Run the suite (or the parts whose names contain `only`) and return its rows."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    runs = 3 if quick else 5
    rows: list[Row] = []

    def wanted(name: str) -> bool:
        return only is None or only in name

    ceilings: dict[str, float] = {}
    with _announce("ceilings", rows):
        size = 2048 if device.type == "cpu" else 8192
        for dtype in (torch.float32, torch.bfloat16):
            row = bench_matmul(dtype, size, runs, device)
            rows.append(row)  # both ceilings are always measured: MFU needs the one of each row's dtype
            ceilings[row.name.rsplit("_", 1)[1]] = row.median
    # Without bf16 matrix units a bf16 training step can take minutes on CPU: skip those rows.
    bf16_hopeless = device.type == "cpu" and ceilings["bf16"] < 0.5 * ceilings["fp32"]

    if wanted("numeric"):
        with _announce("numeric", rows):
            rows.append(bench_numeric_probe(SHAPE_BY_NAME["trm_mlp"], device))

    train_plan: list[tuple[str, str]] = [("trm_mlp", m) for m in ("fp32", "bf16", "autocast")]
    train_plan += [("trm_att", m) for m in (("fp32", "bf16") if quick else ("fp32", "bf16", "autocast"))]
    big = "fp32" if bf16_hopeless else "bf16"
    train_plan += [("trm_mlp_512", big), ("trm_att_512", big), ("trm_att_900", big), ("hrm", big)]
    if not quick:
        train_plan += [("trm_mlp", "bf16+compile"), ("trm_att", "bf16+compile"), ("hrm", "fp32"),
                       ("trm_mlp", "fp32+compile"), ("trm_att", "fp32+compile")]
    for shape_name, mode in dict.fromkeys(train_plan):
        shape = SHAPE_BY_NAME[shape_name]
        name = f"train.{shape_name}.{mode}"
        if (quick and not shape.quick) or not wanted(name):
            continue
        if bf16_hopeless and mode_computes_in_bf16(mode):
            rows.append(_skipped(name, "training", "example-steps/s", ceilings))
            continue
        with _announce(name, rows):
            ceiling = ceilings["bf16" if mode_computes_in_bf16(mode) else "fp32"]
            rows.append(bench_training(shape, mode, device, ceiling, runs))
    if wanted("optim"):
        with _announce("optim", rows):
            rows += bench_optimizers(SHAPE_BY_NAME["trm_mlp"], device, runs=5)
    ckpt_mode = "fp32" if bf16_hopeless else "bf16"
    if wanted(f"train.trm_mlp.{ckpt_mode}.ckpt"):
        with _announce(f"train.trm_mlp.{ckpt_mode}.ckpt", rows):
            rows.append(bench_training(SHAPE_BY_NAME["trm_mlp"], ckpt_mode, device, ceilings[ckpt_mode], runs,
                                       checkpointing=True))

    infer_dtype = torch.float32 if bf16_hopeless else torch.bfloat16
    for shape_name in ("trm_mlp",) if quick else ("trm_mlp", "trm_att"):
        if wanted(f"infer.{shape_name}"):
            with _announce(f"infer.{shape_name}", rows):
                rows += bench_inference(SHAPE_BY_NAME[shape_name], infer_dtype, device)

    if not quick and wanted("halting"):
        from trm.halting_bench import bench_halting

        with _announce("halting", rows):
            rows += bench_halting(device)

    for mode in (ckpt_mode,) if quick else dict.fromkeys((ckpt_mode, "fp32")):
        if wanted(f"memory.trm_mlp.{mode}"):
            with _announce(f"memory.trm_mlp.{mode}", rows):
                rows += memory_rows(SHAPE_BY_NAME["trm_mlp"], mode, device, runs=1 if quick else 3)

    if wanted("data"):
        rows += _data_rows(quick)
    if not quick and wanted("speedrun"):
        from trm.speedrun import time_to_accuracy_rows

        with _announce("speedrun", rows):
            rows += time_to_accuracy_rows()
    return rows


def _skipped(name: str, metric: str, unit: str, ceilings: dict[str, float]) -> Row:
    nan = float("nan")
    return Row(name, metric, unit, nan, nan, nan, 0, {
        "skipped": f"bf16 matmuls run at {ceilings['bf16']:.3g} GFLOP/s against {ceilings['fp32']:.3g} in fp32 "
                   "on this CPU (no bf16 matrix units); `dtype: auto` picks fp32 here"})


def bench_numeric_probe(shape: Shape, device: torch.device) -> Row:
    """What `dtype: auto` picks at `shape` and what the (uncached) probe costs, in seconds."""
    import os
    import tempfile

    from trm.runtime import numeric_mode

    old = os.environ.get("TRM_CACHE_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRM_CACHE_DIR"] = tmp  # measure the probe itself, not the user's cached decision
        try:
            start = time.perf_counter()
            mode = numeric_mode("auto", "auto", device, shape.config, shape.batch)
            seconds = time.perf_counter() - start
        finally:
            if old is None:
                os.environ.pop("TRM_CACHE_DIR", None)
            else:
                os.environ["TRM_CACHE_DIR"] = old
    return Row(f"numeric.{shape.name}", "dtype=auto probe", "s", seconds, seconds, seconds, 1,
               {"chosen": mode.dtype_name, "compile": mode.compile, "note": f"auto picks {mode.reason}"})


def _data_rows(quick: bool) -> list[Row]:
    """Rows of the data-pipeline benchmarks (`trm.tasks.bench`)."""
    from trm.tasks.bench import data_benchmarks

    with _announce("data", []):
        found = data_benchmarks(quick)
    return [_as_row(r) for r in found]


def _as_row(figure: dict[str, Any]) -> Row:
    """A row from one figure of `data_benchmarks` (name, unit, median, repeats); its other keys go to `extra`.
    Those figures carry a max - min `spread` instead of min and max, so low and high read NaN."""
    known = {f.name for f in dataclasses.fields(Row)}
    return Row(name=f"data.{figure['name']}", metric="data", unit=str(figure["unit"]), median=float(figure["median"]),
               low=float("nan"), high=float("nan"), runs=int(figure["repeats"]),
               extra={k: v for k, v in figure.items() if k not in known})


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def format_table(rows: list[Row]) -> str:
    """A fixed-width table: median, min-max, runs and the derived figures of each row."""
    header = f"{'benchmark':38} {'unit':18} {'median':>9} {'min-max':>17} {'runs':>4}  notes"
    return "\n".join([header] + [format_row(r) for r in rows])


def format_row(r: Row) -> str:
    """One line of the table."""
    notes = []
    if "mfu" in r.extra:
        notes.append(f"MFU {100 * r.extra['mfu']:.1f}% of the {r.extra['mfu_ceiling']} ceiling "
                     f"({r.extra['achieved_gflops']:.0f} GFLOP/s)")
    if "skipped" in r.extra:
        notes.append(f"skipped: {r.extra['skipped']}")
    if "note" in r.extra:
        notes.append(str(r.extra["note"]))
    if "saving_x" in r.extra:
        notes.append(f"{r.extra['saving_x']:.2f}x less than without checkpointing")
    spread = f"{r.low:.4g}-{r.high:.4g}"
    if r.low != r.low and "spread" in r.extra:  # NaN: only a max - min spread is known
        spread = f"+-{r.extra['spread'] / 2:.3g}"
    return f"{r.name:38} {r.unit:18} {r.median:9.4g} {spread:>17} {r.runs:4d}  {'; '.join(notes)}"


def to_json(rows: list[Row], quick: bool) -> dict[str, Any]:
    return {"machine": machine(), "quick": quick, "rows": [dataclasses.asdict(r) for r in rows]}
