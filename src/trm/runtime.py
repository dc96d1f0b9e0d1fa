"""Where a model runs and in which numeric mode: the device, the activation dtype, torch.compile.

Training, evaluation, solving and the bench all choose through this module, so that `auto` means
the same everywhere:

- CUDA: bfloat16 activations, `torch.compile` on.
- MPS: float32, compile off (bfloat16 matmuls and the compiler are not dependable there).
- CPU: measured. Whether bfloat16 beats float32 depends on the processor: with bf16 matrix units
  (AMX) it is ~6x faster, without them (AVX-512 alone, AVX2) it is 3x to 100x *slower*. A short
  probe times the model's own network f (forward and backward) at the run's batch and sequence
  shape in both dtypes and keeps the faster. `torch.compile` fuses the element-wise work (1.3-1.8x
  in float32 on the AVX2-only CPU measured, docs/benchmarks.md) but costs a minute or two of compiling first, so under
  `auto` it is considered only for a run long enough to pay that back (an estimated 10 minutes of
  uncompiled training or more); then the network is compiled once as a probe and compile is
  switched on when the time it saves over the run exceeds twice the compile time of every graph the
  run compiles (one per stage of a depth curriculum). The run's uncompiled time is estimated stage
  by stage (a curriculum's shallow stages cost less per step) and capped by `max_train_seconds`.
  Decisions are cached per machine (processor, torch version, threads) and shape in
  `$XDG_CACHE_HOME/trm/numeric.json` (`TRM_CACHE_DIR` overrides the folder), so the probe runs
  once; each choice comes with one line saying what was chosen and why.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
DEVICES = ("auto", "cpu", "cuda", "mps")
"""Device names a recipe or command accepts (also `cuda:<index>`)."""
DTYPE_CHOICES = ("auto", *DTYPES)
INFERENCE_DTYPES = ("train", *DTYPE_CHOICES)
"""What `trm eval` / `trm solve` accept: "train" is the dtype the run trained with."""
COMPILE = ("auto", "on", "off")


@dataclass(frozen=True)
class NumericMode:
    """The resolved numeric mode of a run."""

    dtype: torch.dtype
    compile: bool
    reason: str
    """One line for the user: what was chosen and why."""

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES[self.dtype]


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto`: cuda (this process's local rank) > mps > cpu; otherwise the named device, checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeConfigError(f"device={name!r}: this torch build sees no CUDA device (use device=cpu or auto)")
    if name == "mps" and not mps_available():
        raise RuntimeConfigError("device='mps': Metal (MPS) is not available here (use device=cpu or auto)")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise RuntimeConfigError(f"device={name!r}: {e}") from None


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


class RuntimeConfigError(ValueError):
    """A device or numeric mode that cannot be used on this machine."""


# ---------------------------------------------------------------------------------------------
# The decision


Probe = Callable[[torch.dtype], float]
"""Seconds of one representative training call in the given dtype (median of a few runs), or
`math.inf` when it was abandoned for being far slower than the best so far."""


def decide_cpu_dtype(timings: dict[str, float]) -> tuple[str, str]:
    """The faster dtype of measured `timings` (name -> seconds) and the reason; float32 on ties,
    since it is the reference's numerics and the finer one."""
    fp32, bf16 = timings["float32"], timings["bfloat16"]
    if bf16 < fp32:
        return "bfloat16", f"bfloat16 {fp32 / bf16:.1f}x faster than float32 here (measured)"
    if bf16 == float("inf"):
        return "float32", "bfloat16 far slower than float32 here (measured; no bf16 matrix units)"
    return "float32", f"bfloat16 {bf16 / fp32:.1f}x slower than float32 here (measured)"


def choose(dtype: str, compile: str, device: torch.device, probe: Probe | None = None,
           cache_key: str | None = None, compile_probe: CompileProbe | None = None,
           eager_seconds: Callable[[float], float] | None = None, graphs: int = 1) -> NumericMode:
    """Resolve `dtype` (auto, float32, bfloat16) and `compile` (auto, on, off) for `device`.

    On CPU with `dtype='auto'`, `probe` is run for both dtypes unless `cache_key` has a cached
    decision. An explicit bfloat16 on a CPU where the probe is cached as slower is kept (the
    user asked for it) but the reason says so. On CPU with `compile='auto'`, `eager_seconds`
    (the probe's median -> estimated uncompiled training seconds of the run) and `compile_probe`
    decide, through `decide_cpu_compile`; `graphs` is how many step graphs the run compiles."""
    if dtype not in DTYPE_CHOICES:
        raise RuntimeConfigError(f"dtype={dtype!r}: must be auto, float32 or bfloat16")
    if compile not in COMPILE:
        raise RuntimeConfigError(f"compile={compile!r}: must be auto, on or off")
    if device.type == "cuda":
        use = compile != "off"
        name = "bfloat16" if dtype == "auto" else dtype
        how = "on CUDA" if dtype == "auto" else "as configured"
        return NumericMode(DTYPES[name], use, f"{name} {how}, compile {'on' if use else 'off'}")
    if device.type != "cpu":
        name = "float32" if dtype == "auto" else dtype
        use = compile == "on"
        return NumericMode(DTYPES[name], use, f"{name} on {device.type}, compile {'on' if use else 'off'}")

    if dtype == "auto":
        name, reason, median = cpu_dtype(probe, cache_key)
        reason = f"{name}: {reason}"
    else:
        name, reason, median = dtype, f"{dtype} as configured", None
        if dtype == "bfloat16" and cache_key is not None:
            cached = read_cache().get(cache_key)
            if cached and cached.get("dtype") == "float32":
                reason += f" (warning: {cached.get('reason', 'bfloat16 measured slower here')})"
    if compile != "auto":
        return NumericMode(DTYPES[name], compile == "on", f"{reason}; compile {compile} as configured")
    if median is None and probe is not None and eager_seconds is not None:
        median = probe(DTYPES[name])
    if median is None or eager_seconds is None or compile_probe is None:
        return NumericMode(DTYPES[name], False, f"{reason}; compile off (auto: not probed on CPU)")
    use, why = cpu_compile(eager_seconds(median), compile_probe, DTYPES[name],
                           f"{cache_key} | {name}" if cache_key else None, graphs)
    return NumericMode(DTYPES[name], use, f"{reason}; compile {'on' if use else 'off'}: {why}")


CompileProbe = Callable[[torch.dtype], tuple[float, float]]
"""Compiles the network in the given dtype: (seconds it took, eager time / compiled time)."""

COMPILE_WORTH_PROBING_S = 600.0
"""Uncompiled training time below which compiling is not even probed (it could not pay back)."""


def decide_cpu_compile(eager_s: float, speedup: float, compile_s: float, graphs: int = 1) -> tuple[bool, str]:
    """Compile when the time saved over the run beats twice the compile time (the whole model's
    step compiles longer than the probe's single network) of each of the run's `graphs` (a depth
    curriculum compiles one per stage)."""
    saved = eager_s * (1 - 1 / speedup) if speedup > 0 else 0.0
    cost = 2 * compile_s * max(1, graphs)
    if speedup <= 1.05:
        return False, f"compiled network measured {speedup:.2f}x, no faster"
    if saved <= cost:
        each = f", {graphs} graphs" if graphs > 1 else ""
        return False, (f"saves ~{saved:.0f} s over the run at {speedup:.2f}x, less than compiling costs "
                       f"(~{cost:.0f} s{each})")
    return True, f"compiled network {speedup:.2f}x faster (measured); saves ~{saved / 60:.0f} min over the run"


def cpu_compile(eager_s: float, compile_probe: CompileProbe, dtype: torch.dtype,
                cache_key: str | None, graphs: int = 1) -> tuple[bool, str]:
    """The CPU compile decision for a run of `eager_s` estimated uncompiled seconds that compiles
    `graphs` step graphs."""
    if eager_s < COMPILE_WORTH_PROBING_S:
        return False, (f"an estimated {eager_s / 60:.0f} min of training is too short to pay back "
                       "compiling (set compile=on to force it)")
    cache = read_cache() if cache_key else {}
    entry = cache.get(cache_key) if cache_key else None
    if entry and "speedup" in entry:
        use, why = decide_cpu_compile(eager_s, entry["speedup"], entry["compile_s"], graphs)
        return use, f"{why}; cached"
    print("numeric mode: compiling the network once to see whether torch.compile pays here "
          "(once per machine and shape)...", file=sys.stderr, flush=True)
    compile_s, speedup = compile_probe(dtype)
    if cache_key:
        write_cache(cache_key, {"speedup": round(speedup, 3), "compile_s": round(compile_s, 1)})
    return decide_cpu_compile(eager_s, speedup, compile_s, graphs)


def cpu_dtype(probe: Probe | None, cache_key: str | None) -> tuple[str, str, float | None]:
    """The CPU dtype decision (name, reason, probe seconds of the chosen dtype): cached, else measured
    with `probe` and cached; float32 without a probe."""
    cache = read_cache() if cache_key else {}
    if cache_key and cache_key in cache and cache[cache_key].get("dtype") in DTYPES:
        entry = cache[cache_key]
        seconds = (entry.get("seconds") or {}).get(entry["dtype"])
        return entry["dtype"], f"{entry['reason']}; cached in {cache_file()}", seconds
    if probe is None:
        return "float32", "no probe at this shape, float32 is the safe choice", None
    timings = {"float32": probe(torch.float32)}
    timings["bfloat16"] = probe(torch.bfloat16)
    name, reason = decide_cpu_dtype(timings)
    if cache_key:
        seconds = {k: (None if v == float("inf") else round(v, 5)) for k, v in timings.items()}
        write_cache(cache_key, {"dtype": name, "reason": reason, "seconds": seconds})
    return name, reason, timings[name]


# ---------------------------------------------------------------------------------------------
# The probe: the model's network f, forward and backward, at the run's shape


def _forward_backward(net: Callable[..., torch.Tensor], shape: tuple[int, int, int], dtype: torch.dtype,
                      clock: Callable[[], float] = time.perf_counter) -> Callable[[], float]:
    """A timed call of `net` (taking (h, injection, cos_sin)) forward and backward on fixed random
    [batch, positions, hidden] inputs: returns its seconds."""
    h = torch.randn(shape).to(dtype).requires_grad_(True)
    inj = torch.randn(shape).to(dtype)

    def call() -> float:
        start = clock()
        net(h, inj, None).float().square().mean().backward()
        return clock() - start

    return call


def network_probe(build: Callable[[torch.dtype], torch.nn.Module], shape: tuple[int, int, int], *,
                  runs: int = 5, warmup: int = 2, give_up: float = 3.0,
                  clock: Callable[[], float] = time.perf_counter) -> Probe:
    """A probe that times `build(dtype)` (a module taking (h, injection, cos_sin)) forward and
    backward on a [batch, positions, hidden] input. Before the network, one matrix product of the
    same rows is timed: a dtype whose product is more than `give_up` times slower than the best seen
    so far is abandoned (inf), so that a CPU without bf16 units spends a fraction of a second on it,
    not minutes."""
    best_matmul: list[float] = []

    def probe(dtype: torch.dtype) -> float:
        torch.manual_seed(0)
        rows, hidden = shape[0] * shape[1], shape[2]
        a, b = torch.randn(rows, hidden).to(dtype), torch.randn(hidden, 4 * hidden).to(dtype)
        a @ b  # warm-up (kernel selection)
        start = clock()
        a @ b
        matmul = clock() - start
        if best_matmul and matmul > give_up * min(best_matmul):
            return float("inf")
        best_matmul.append(matmul)

        call = _forward_backward(build(dtype), shape, dtype, clock)
        for _ in range(warmup):  # the first calls run slower (~1.4x for the first, measured)
            call()
        return statistics.median(call() for _ in range(runs))

    return probe


def probe_shape(batch: int, positions: int, hidden: int, target_rows: int = 2048) -> tuple[int, int, int]:
    """The probe's input shape: the run's positions and hidden size, and enough of its batch to be
    representative (matrix products of >= `target_rows` rows) without costing more."""
    rows = max(1, min(batch, -(-target_rows // positions)))
    return (rows, positions, hidden)


# ---------------------------------------------------------------------------------------------
# The cache


def cache_dir() -> Path:
    if os.environ.get("TRM_CACHE_DIR"):
        return Path(os.environ["TRM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trm"


def cache_file() -> Path:
    return cache_dir() / "numeric.json"


def machine_key() -> str:
    """What identifies this machine's numeric behaviour: processor model, torch version, threads."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def read_cache() -> dict[str, dict]:
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(key: str, entry: dict) -> None:
    """Add one decision; a cache that cannot be written is only a lost speed-up, never an error."""
    data = read_cache()
    data[key] = entry
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass


def compile_network_probe(build: Callable[[torch.dtype], torch.nn.Module], shape: tuple[int, int, int],
                          runs: int = 5) -> CompileProbe:
    """Compile `build(dtype)` (forward and backward) and compare it with the eager module, interleaved."""

    def probe(dtype: torch.dtype) -> tuple[float, float]:
        torch.manual_seed(0)
        net = build(dtype)
        eager_call = _forward_backward(net, shape, dtype)
        compiled_call = _forward_backward(torch.compile(net), shape, dtype)
        compile_s = compiled_call()  # the first call compiles
        eager_call()  # warm-up
        eager, fused = [], []
        for _ in range(runs):
            eager.append(eager_call())
            fused.append(compiled_call())
        return compile_s, statistics.median(eager) / statistics.median(fused)

    return probe


def network_applications(config: object, depth: tuple[int, int] | None = None) -> float:
    """Network applications per training supervision step, in forward-and-backward units (a
    forward is a third of one): what the probe's time is multiplied by to estimate a step.
    `depth` (n, T) replaces a TRM's own, as a depth curriculum does."""
    if hasattr(config, "T") and hasattr(config, "n"):
        n, T = depth or (config.n, config.T)  # type: ignore[attr-defined]
        forward, grad = T * (n + 1), n + 1
    elif hasattr(config, "H_cycles"):
        c: Any = config
        forward = c.H_cycles * (c.L_cycles + 1)
        grad = 2
    else:
        forward = grad = 1
    return (forward + 2 * grad) / 3


def depth_stages(steps: int, curriculum: Sequence[Sequence[float]] = ()) -> list[tuple[tuple[int, int] | None, int]]:
    """(depth, steps at it) of each stage of a `steps`-step run under a depth curriculum ([start fraction,
    n, T] stages; None: the model's own depth, before the first stage), empty stages left out. Step s
    (from 0) is in the last stage whose start fraction x total <= s, as `trm.optim.depth_at` decides."""
    starts = [0] + [min(steps, math.ceil(stage[0] * steps)) for stage in curriculum] + [steps]
    depths = [None] + [(int(stage[1]), int(stage[2])) for stage in curriculum]
    return [(depth, end - start) for depth, start, end in zip(depths, starts[:-1], starts[1:], strict=True)
            if end > start]


def run_applications(config: object, steps: int, curriculum: Sequence[Sequence[float]] = ()) -> float:
    """Network applications (forward-and-backward units) of a training run of `steps` steps, stage by
    stage of a depth curriculum."""
    return sum(network_applications(config, depth) * count for depth, count in depth_stages(steps, curriculum))


def numeric_mode(dtype: str, compile: str, device: torch.device, config: object, batch: int,
                 steps: int | None = None, curriculum: Sequence[Sequence[float]] = (),
                 max_seconds: float | None = None) -> NumericMode:
    """`choose` for a model configuration (any of trm.models' configs) trained or run at `batch`
    examples per process for `steps` steps (None: inference), under a depth `curriculum` and a
    `max_seconds` cap on training if given: the probe is one application of its network f at
    that shape."""
    from trm.layers import Block, Stack

    hidden, positions = config.hidden_size, config.positions  # type: ignore[attr-defined]
    mlp_t = bool(getattr(config, "mlp_t", False))
    layers = int(getattr(config, "layers", getattr(config, "L_layers", 2)))
    width = positions if mlp_t else None

    def build(dtype: torch.dtype) -> torch.nn.Module:
        return Stack([Block(hidden, config.num_heads, config.expansion, config.rms_norm_eps,  # type: ignore[attr-defined]
                            token_mlp_width=width) for _ in range(layers)])

    shape = probe_shape(batch, positions, hidden)
    kind = "token-mlp" if mlp_t else "attention"
    key = f"{machine_key()} | {kind} {layers}x[{shape[0]}, {positions}, {hidden}]"
    on_cpu = device.type == "cpu"
    wanted = dtype == "auto" or (compile == "auto" and steps is not None)
    probe = network_probe(build, shape) if on_cpu and wanted else None

    def eager_seconds(probe_s: float) -> float:
        estimate = probe_s * (batch / shape[0]) * run_applications(config, steps or 0, curriculum)
        return min(estimate, max_seconds) if max_seconds else estimate

    graphs = len({depth for depth, _ in depth_stages(steps or 0, curriculum)}) if curriculum else 1
    return choose(dtype, compile, device, probe=probe, cache_key=key if on_cpu else None,
                  compile_probe=compile_network_probe(build, shape) if on_cpu and steps else None,
                  eager_seconds=eager_seconds if steps else None, graphs=graphs)


def inference_mode(requested: str, trained: str, device: torch.device, config: object) -> NumericMode:
    """The dtype to evaluate or solve with. `requested`: "train" (the dtype the run trained with,
    unless that is bfloat16 on a CPU where it is measured slower than float32), "auto", float32 or
    bfloat16. `trained` is the run's resolved dtype (or its configured one for older runs)."""
    if requested not in INFERENCE_DTYPES:
        raise RuntimeConfigError(f"dtype={requested!r}: must be train, auto, float32 or bfloat16")
    if requested != "train":
        return numeric_mode(requested, "off", device, config, batch=1 << 20)
    if trained == "auto":  # runs before the probe existed resolved auto to bf16 on CUDA only
        trained = "bfloat16" if device.type == "cuda" else "float32"
    if trained == "bfloat16" and device.type == "cpu":
        best = numeric_mode("auto", "off", device, config, batch=1 << 20)
        if best.dtype == torch.float32:
            return NumericMode(torch.float32, False, f"float32, not the training dtype bfloat16: {best.reason}")
    return NumericMode(DTYPES.get(trained, torch.float32), False, f"{trained}, the training dtype")
