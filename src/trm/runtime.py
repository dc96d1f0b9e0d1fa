"""Where and how a model runs: the device, the activation dtype and whether to torch.compile.

Training, evaluation and solving all choose these the same way, so they share this module (and the
inference path does not import the trainer):

    device = pick_device("auto")                  # cuda > mps > cpu
    dtype = pick_dtype("auto", device)            # bfloat16 on CUDA, float32 elsewhere
    if use_compile("auto", device): ...           # on for CUDA
"""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")
"""Device names a recipe or command accepts (also `cuda:<index>`)."""
DTYPES = ("auto", "float32", "bfloat16")
COMPILE = ("auto", "on", "off")


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """The device `name` means: auto picks cuda (this process's GPU under torchrun), then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """The activation dtype `name` means on `device`: auto is bfloat16 on CUDA, float32 elsewhere."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def use_compile(name: str, device: torch.device) -> bool:
    """Whether to torch.compile the model's step: on, off, or auto (on for CUDA)."""
    return name == "on" or (name == "auto" and device.type == "cuda")
