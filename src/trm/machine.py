"""What a figure was measured on, in words: "2-core AVX2-only CPU (AMD EPYC 7B13), torch 2.13.0+cpu"."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path


def cpu_kind() -> str:
    """The CPU's vector kind and model name, e.g. "AVX2-only CPU (AMD EPYC 7B13)"."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.machine()} CPU"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.processor() or platform.machine())
    flags = set(re.findall(r"\b(amx_bf16|avx512_bf16|avx512f|avx2)\b", info))
    kind = ("AMX" if "amx_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2-only" if "avx2" in flags
            else platform.machine())
    return f"{kind} CPU ({model})"


def machine_kind() -> str:
    """The device that runs models here: the GPU when there is one, else the CPU with its usable cores."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} GPU, torch {torch.__version__}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores}-core {cpu_kind()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
