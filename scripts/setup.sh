#!/usr/bin/env bash
# Creates .venv and installs trm with its test tools. PyTorch comes first and on its own:
# a CPU build where there is no NVIDIA GPU, so a CPU-only machine never downloads the CUDA stack.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip="$VENV/bin/python -m pip"

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "setup: NVIDIA GPU found, installing the CUDA build of torch"
        $pip install "torch>=2.4"
    else
        echo "setup: no NVIDIA GPU, installing the CPU build of torch $TORCH_VERSION"
        $pip install --retries 1 --timeout 20 --index-url "$TORCH_CPU_INDEX" "torch==$TORCH_VERSION" \
            || $pip install "torch==$TORCH_VERSION"
    fi
fi
# The package and its extras; torch is already satisfied, so nothing CUDA comes in here.
$pip install -q -e ".[dev,plot]"
echo "setup: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
