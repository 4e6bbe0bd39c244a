#!/usr/bin/env bash
# The quick-start demo: set up .venv, then train CAC and the cross-entropy baseline on the
# embedded Digits data (trial 0), evaluate both, and print a comparison table.
# Usage: bash scripts/demo.sh [--cpu]   (about 2-3 minutes on 2 CPU cores after the setup)
# Run it again and it starts over: the trainings pass --overwrite, which replaces the demo's
# own runs (name `demo`) and no other.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "$@"  # --cpu: the CPU build of PyTorch (scripts/setup.sh)
PY=.venv/bin/python
start=$(date +%s)
$PY train_cacOpenset.py --dataset Digits --trial 0 --name demo --overwrite
$PY train_closedSet.py --dataset Digits --trial 0 --name demo --overwrite
$PY eval_cacOpenset.py -dataset Digits --num_trials 1 --start_trial 0 --name demo
$PY eval_closedSet.py -dataset Digits --num_trials 1 --start_trial 0 --name demo
$PY scripts/results_table.py results/Digits_demoCAC_trials0-0.json results/Digits_demoClosedSet_trials0-0.json
echo "demo: $(( $(date +%s) - start )) s for training and evaluation"
