#!/usr/bin/env bash
# Creates .venv and installs trm. PyTorch comes first and on its own: a CPU build where there is
# no NVIDIA GPU, so a CPU-only machine never downloads the CUDA stack.
#   scripts/setup.sh        trm with the test and lint tools (`make test`)
#   scripts/setup.sh run    trm with what the demo and the benchmarks need (`make demo`, `make bench`)
# Packages are installed without byte-compiling every file up front (--no-compile): Python compiles
# each module the first time it is imported, so set-up does not spend ~30 s on files never used.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
WHAT=${1:-dev}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip="$VENV/bin/python -m pip --disable-pip-version-check"
install="$pip install --no-compile"

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "setup: NVIDIA GPU found, installing the CUDA build of torch"
        $install "torch>=2.4"
    else
        echo "setup: no NVIDIA GPU, installing the CPU build of torch $TORCH_VERSION"
        $install --retries 1 --timeout 20 --index-url "$TORCH_CPU_INDEX" "torch==$TORCH_VERSION" \
            || $install "torch==$TORCH_VERSION"
    fi
fi
# The package and its extras; torch is already satisfied, so nothing CUDA comes in here.
case "$WHAT" in
    dev) $install -q -e ".[dev,plot]" ;;
    run) $install -q -e ".[plot]" ;;
    *) echo "setup: unknown set-up '$WHAT' (dev or run)" >&2; exit 2 ;;
esac
echo "setup: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
