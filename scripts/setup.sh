#!/usr/bin/env bash
# Create .venv (once) and install requirements.txt into it. Idempotent: a second run only
# checks that everything is installed.
#
#   bash scripts/setup.sh          # PyTorch as pip picks it: on Linux x86-64 the CUDA build (about 5.8 GB)
#   bash scripts/setup.sh --cpu    # PyTorch's CPU build (about 1 GB in all): no GPU, a tenth of the disk
#
# --cpu installs torch and torchvision from PyTorch's CPU index first (CAC_TORCH_CPU_INDEX, default
# https://download.pytorch.org/whl/cpu), then the rest of requirements.txt; a .venv that already holds a
# CPU build keeps it. PYTHON: the interpreter that makes .venv (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CPU=0
for arg in "$@"; do
  case "$arg" in
    --cpu) CPU=1 ;;
    *) echo "error: unknown argument '$arg'; usage: bash scripts/setup.sh [--cpu]" >&2; exit 2 ;;
  esac
done
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ $CPU = 1 ]; then
  # kept: a CPU build of torch (torch.version.cuda is None) beside a torchvision; else both from the CPU index
  if ! .venv/bin/python -c "import importlib.util as u, sys, torch
sys.exit(torch.version.cuda is not None or u.find_spec('torchvision') is None)" 2>/dev/null; then
    .venv/bin/python -m pip uninstall --quiet --yes torch torchvision 2>/dev/null || true  # a CUDA build
    .venv/bin/python -m pip install --quiet --index-url "${CAC_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}" \
      torch torchvision
  fi
  # the rest: without the torch lines, so that pip keeps the CPU build it has
  rest=$(mktemp)
  trap 'rm -f "$rest"' EXIT
  grep -vE '^(torch|torchvision)([<>=!~ ]|$)' requirements.txt > "$rest"
  .venv/bin/python -m pip install --quiet -r "$rest"
else
  .venv/bin/python -m pip install --quiet -r requirements.txt
fi
.venv/bin/python -c "import torch, torchvision, sklearn; print(f'environment ready: torch {torch.__version__} \
({\"CPU build\" if torch.version.cuda is None else \"CUDA \" + torch.version.cuda + \" build\"}), torchvision \
{torchvision.__version__}, CUDA available: {torch.cuda.is_available()}')"
