"""The numeric-mode decision (trm.runtime): `auto` never picks the slower dtype, decisions are cached,
explicit settings are kept, and the probe abandons a dtype that is far slower. The probe is faked
here (no timing in tests); its real cost is measured by `trm bench`."""

from __future__ import annotations

import math

import pytest
import torch

from trm import runtime
from trm.models import TRMConfig

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRM_CACHE_DIR", str(tmp_path / "cache"))


def fake_probe(seconds: dict[torch.dtype, float], calls: list[torch.dtype] | None = None):
    def probe(dtype: torch.dtype) -> float:
        if calls is not None:
            calls.append(dtype)
        return seconds[dtype]
    return probe


@pytest.mark.parametrize(("fp32", "bf16", "expected"), [
    (1.0, 0.2, torch.bfloat16),   # bf16 matrix units (AMX)
    (1.0, 3.5, torch.float32),    # AVX-512 without them
    (1.0, 80.0, torch.float32),   # AVX2
    (1.0, math.inf, torch.float32),  # abandoned by the probe
    (1.0, 1.0, torch.float32),    # a tie keeps the reference's numerics
])
def test_auto_picks_the_faster_dtype(fp32, bf16, expected):
    mode = runtime.choose("auto", "auto", CPU, probe=fake_probe({torch.float32: fp32, torch.bfloat16: bf16}),
                          cache_key="k")
    assert mode.dtype == expected
    assert not mode.compile  # compile stays off on CPU under auto
    assert ("bfloat16" if expected == torch.bfloat16 else "float32") in mode.reason.split(":")[0]


def test_decision_is_cached_per_key():
    calls: list[torch.dtype] = []
    probe = fake_probe({torch.float32: 1.0, torch.bfloat16: 0.5}, calls)
    assert runtime.choose("auto", "auto", CPU, probe=probe, cache_key="a").dtype == torch.bfloat16
    assert len(calls) == 2
    again = runtime.choose("auto", "auto", CPU, probe=probe, cache_key="a")
    assert again.dtype == torch.bfloat16 and "cached" in again.reason and len(calls) == 2
    # another shape or machine is measured anew
    slower = fake_probe({torch.float32: 1.0, torch.bfloat16: 2.0}, calls)
    assert runtime.choose("auto", "auto", CPU, probe=slower, cache_key="b").dtype == torch.float32
    assert len(calls) == 4
    assert set(runtime.read_cache()) == {"a", "b"}


def test_unwritable_cache_is_not_an_error(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("TRM_CACHE_DIR", str(blocker / "sub"))  # a folder under a file cannot be made
    mode = runtime.choose("auto", "auto", CPU, probe=fake_probe({torch.float32: 1.0, torch.bfloat16: 2.0}),
                          cache_key="k")
    assert mode.dtype == torch.float32


def test_explicit_settings_and_other_devices():
    never = fake_probe({})  # raises KeyError if called
    assert runtime.choose("float32", "off", CPU, probe=never).dtype == torch.float32
    assert runtime.choose("bfloat16", "on", CPU, probe=never) == runtime.NumericMode(
        torch.bfloat16, True, "bfloat16 as configured; compile on as configured")
    cuda = runtime.choose("auto", "auto", torch.device("cuda", 0), probe=never)
    assert (cuda.dtype, cuda.compile) == (torch.bfloat16, True)
    mps = runtime.choose("auto", "auto", torch.device("mps"), probe=never)
    assert (mps.dtype, mps.compile) == (torch.float32, False)
    with pytest.raises(runtime.RuntimeConfigError, match="dtype='half'"):
        runtime.choose("half", "auto", CPU)
    with pytest.raises(runtime.RuntimeConfigError, match="compile='maybe'"):
        runtime.choose("auto", "maybe", CPU)


def test_explicit_bf16_on_a_cpu_measured_slower_warns():
    runtime.choose("auto", "auto", CPU, probe=fake_probe({torch.float32: 1.0, torch.bfloat16: 9.0}), cache_key="k")
    mode = runtime.choose("bfloat16", "off", CPU, cache_key="k")
    assert mode.dtype == torch.bfloat16 and "warning" in mode.reason and "slower" in mode.reason


def test_probe_abandons_a_far_slower_dtype():
    now = [0.0]
    cost = {torch.float32: 1.0, torch.bfloat16: 50.0}
    forwards: list[torch.dtype] = []

    class Net(torch.nn.Module):
        def __init__(self, dtype):
            super().__init__()
            self.dtype = dtype
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, h, inj, cos_sin):
            forwards.append(self.dtype)
            now[0] += cost[self.dtype]
            return h * self.w

    real_matmul = torch.Tensor.__matmul__

    def matmul(a, b):  # the pre-check's product costs like the network
        now[0] += cost[a.dtype] / 10
        return real_matmul(a, b)

    probe = runtime.network_probe(Net, (2, 3, 4), runs=3, clock=lambda: now[0])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.Tensor, "__matmul__", matmul)
        assert probe(torch.float32) == 1.0
        assert probe(torch.bfloat16) == math.inf
    assert forwards.count(torch.float32) == 5  # two warm-ups and three runs
    assert forwards.count(torch.bfloat16) == 0  # abandoned after the matrix product


def test_probe_at_the_model_shape_runs_the_real_network():
    config = TRMConfig(vocab_size=11, seq_len=16, hidden_size=32, num_heads=2, puzzle_emb_ndim=32, puzzle_emb_len=2,
                       mlp_t=True, pos_encodings="none", T=1, n=1, layers=2, num_puzzle_identifiers=1)
    mode = runtime.numeric_mode("auto", "auto", CPU, config, batch=4)
    assert mode.dtype in (torch.float32, torch.bfloat16)
    (entry,) = runtime.read_cache().values()
    assert entry["dtype"] == mode.dtype_name and entry["seconds"]["float32"] > 0


def test_inference_uses_the_training_dtype_unless_bf16_is_slower_here():
    config = TRMConfig(vocab_size=11, seq_len=16, hidden_size=32, num_heads=2, puzzle_emb_ndim=32, puzzle_emb_len=2,
                       mlp_t=True, pos_encodings="none", T=1, n=1, layers=2, num_puzzle_identifiers=1)
    assert runtime.inference_mode("train", "float32", CPU, config).dtype == torch.float32
    assert runtime.inference_mode("train", "auto", CPU, config).dtype == torch.float32  # older runs
    assert runtime.inference_mode("train", "bfloat16", torch.device("cuda"), config).dtype == torch.bfloat16
    # bf16-trained on a CPU where the (cached) measurement says bf16 is slower: float32, said so
    key = next(iter(runtime.read_cache()), None)
    assert key is None
    runtime.numeric_mode("auto", "off", CPU, config, batch=1 << 20)  # measures and caches
    (key,) = runtime.read_cache()
    runtime.write_cache(key, {"dtype": "float32", "reason": "bfloat16 9.0x slower than float32 here (measured)"})
    mode = runtime.inference_mode("train", "bfloat16", CPU, config)
    assert mode.dtype == torch.float32 and "not the training dtype" in mode.reason
    runtime.write_cache(key, {"dtype": "bfloat16", "reason": "bfloat16 2.0x faster than float32 here (measured)"})
    assert runtime.inference_mode("train", "bfloat16", CPU, config).dtype == torch.bfloat16


def test_pick_device_refuses_what_is_not_there():
    assert runtime.pick_device("cpu") == CPU
    if not torch.cuda.is_available():
        with pytest.raises(runtime.RuntimeConfigError, match="no CUDA"):
            runtime.pick_device("cuda")


@pytest.mark.parametrize(("eager_s", "speedup", "compile_s", "expected"), [
    (3600, 1.4, 60, True),     # an hour of training, 1.4x: saves ~17 min for ~2 min of compiling
    (3600, 1.02, 60, False),   # no faster
    (700, 1.2, 60, False),     # saves ~2 min, compiling the model costs about as much
    (3600, 0.8, 60, False),    # slower compiled
])
def test_compile_decision_weighs_the_saving_against_the_compile_time(eager_s, speedup, compile_s, expected):
    assert runtime.decide_cpu_compile(eager_s, speedup, compile_s)[0] is expected


def test_each_compiled_graph_counts_against_the_saving():
    assert runtime.decide_cpu_compile(700, 1.4, 60, graphs=1)[0]      # saves 200 s for 120 s of compiling
    assert not runtime.decide_cpu_compile(700, 1.4, 60, graphs=2)[0]  # two curriculum stages: 240 s


def test_the_run_estimate_follows_the_depth_curriculum_and_the_time_cap(monkeypatch):
    config = TRMConfig(vocab_size=11, seq_len=16, hidden_size=32, num_heads=2, puzzle_emb_ndim=32, puzzle_emb_len=2,
                       mlp_t=True, pos_encodings="none", T=2, n=2, layers=2, num_puzzle_identifiers=1)
    full = runtime.network_applications(config)
    assert full == (2 * 3 + 2 * 3) / 3 and runtime.network_applications(config, (1, 1)) == (1 * 2 + 2 * 2) / 3
    assert runtime.run_applications(config, 100) == 100 * full
    shallow_half = [[0, 1, 1], [0.5, 2, 2]]
    assert runtime.run_applications(config, 100, shallow_half) == 50 * 2 + 50 * full
    assert runtime.run_applications(config, 100, [[0.25, 1, 1]]) == 25 * full + 75 * 2  # before the first stage

    seen = {}

    def choose(*args, eager_seconds=None, graphs=1, **kwargs):
        seen.update(eager=eager_seconds(1.0), graphs=graphs)
        return runtime.NumericMode(torch.float32, False, "")

    monkeypatch.setattr(runtime, "choose", choose)
    monkeypatch.setattr(runtime, "network_probe", lambda build, shape: None)
    batch = runtime.probe_shape(8, config.positions, 32)[0]
    runtime.numeric_mode("auto", "auto", CPU, config, batch=batch, steps=100)
    assert seen == {"eager": 100 * full, "graphs": 1}
    runtime.numeric_mode("auto", "auto", CPU, config, batch=batch, steps=100, curriculum=shallow_half)
    assert seen == {"eager": 50 * 2 + 50 * full, "graphs": 2}
    runtime.numeric_mode("auto", "auto", CPU, config, batch=batch, steps=100, curriculum=shallow_half, max_seconds=30)
    assert seen["eager"] == 30
    runtime.numeric_mode("auto", "auto", CPU, config, batch=batch, steps=100, curriculum=[[0.25, 1, 1]])
    assert seen == {"eager": 25 * full + 75 * 2, "graphs": 2}  # the model's own depth, then n=1, T=1


def test_compile_is_probed_only_for_runs_long_enough_and_cached():
    probes: list[torch.dtype] = []

    def compile_probe(dtype):
        probes.append(dtype)
        return 60.0, 1.4

    seconds = {torch.float32: 1.0, torch.bfloat16: 9.0}
    short = runtime.choose("auto", "auto", CPU, probe=fake_probe(seconds), cache_key="k",
                           compile_probe=compile_probe, eager_seconds=lambda s: 300 * s)
    assert not short.compile and "too short" in short.reason and probes == []
    long = runtime.choose("auto", "auto", CPU, probe=fake_probe(seconds), cache_key="k",
                          compile_probe=compile_probe, eager_seconds=lambda s: 3600 * s)
    assert long.compile and long.dtype == torch.float32 and probes == [torch.float32]
    again = runtime.choose("auto", "auto", CPU, probe=fake_probe(seconds), cache_key="k",
                           compile_probe=compile_probe, eager_seconds=lambda s: 3600 * s)
    assert again.compile and "cached" in again.reason and probes == [torch.float32]
    forced = runtime.choose("auto", "off", CPU, probe=fake_probe(seconds), cache_key="k",
                            compile_probe=compile_probe, eager_seconds=lambda s: 3600 * s)
    assert not forced.compile


def test_the_command_lines_dtype_choices_are_the_runtimes():
    from trm.commands.eval import DTYPE_CHOICES

    assert DTYPE_CHOICES == runtime.INFERENCE_DTYPES
