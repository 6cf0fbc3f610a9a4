#!/usr/bin/env bash
# Creates the peers' Python environments OUTSIDE the git tree (idempotent: an environment that already
# imports its framework is left alone):
#   $KILN_PEERS_VENV/nnabla  nnabla 1.39.0 (PyPI wheels exist for CPython 3.10, not for newer Pythons)
#   $KILN_PEERS_VENV/jax     jax[cpu] (the CPU-only jaxlib wheel from PyPI)
#   $KILN_PEERS_VENV/torch   torch from PyPI (its CPU kernels are oneDNN's; the wheel also carries CUDA libraries)
#   $KILN_PEERS_VENV/ort     onnxruntime (CPU provider) and onnx, to write the models it runs
# KILN_PEERS_VENV defaults to ~/.cache/kiln-peers. PYTHON310 names the CPython 3.10 interpreter that makes
# the venvs (default: pyenv's 3.10.13, else python3.10 on PATH).
set -euo pipefail

ROOT="${KILN_PEERS_VENV:-$HOME/.cache/kiln-peers}"
PY="${PYTHON310:-}"
if [ -z "$PY" ]; then
  if [ -x "$HOME/.pyenv/versions/3.10.13/bin/python" ]; then PY="$HOME/.pyenv/versions/3.10.13/bin/python"
  elif command -v python3.10 >/dev/null; then PY="$(command -v python3.10)"
  else echo "setup.sh: no CPython 3.10 found; set PYTHON310=/path/to/python3.10" >&2; exit 1; fi
fi
mkdir -p "$ROOT"

make_venv() {  # name, import check, pip requirements...
  local name="$1" check="$2"; shift 2
  local venv="$ROOT/$name"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
    echo "peers: $name ready in $venv"; return
  fi
  echo "peers: creating $venv ($*)"
  "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "$@"
  "$venv/bin/python" -c "$check"
}

# nnabla 1.39 wheels are built against NumPy 1.x.
make_venv nnabla "import nnabla" "nnabla==1.39.0" "numpy<2"
make_venv jax "import jax; jax.jit(lambda x: x + 1)(1.0)" "jax[cpu]"
make_venv torch "import torch; torch.zeros(1)" "torch" "numpy"
make_venv ort "import onnxruntime, onnx" "onnxruntime" "onnx" "numpy"
# PyTorch's ONNX exporter needs the onnx package (Benchmarks/interop/pytorch_models.py).
"$ROOT/torch/bin/python" -c "import onnx" 2>/dev/null || "$ROOT/torch/bin/python" -m pip install -q onnx
