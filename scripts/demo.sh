#!/usr/bin/env bash
# The quick-start demo: set up .venv, then train CAC and the cross-entropy baseline on the
# embedded Digits data, evaluate both, and print a comparison table.
# Usage: bash scripts/demo.sh       trial 0 (its duration on 2 CPU cores: README, "Quick start")
#        bash scripts/demo.sh 5     trials 0-4, the table as mean ± std over them (five times as long)
#        add --cpu to set up the CPU build of PyTorch (scripts/setup.sh --cpu)
# One trial does not rank the two methods on Digits (the README shows why); five do what they can.
# Run it again and it starts over: the trainings pass --overwrite, which replaces the demo's
# own runs (name `demo`) and no other.
set -euo pipefail
cd "$(dirname "$0")/.."
trials=1 setup=()
for arg in "$@"; do
  case "$arg" in
    --cpu) setup=(--cpu) ;;
    [1-5]) trials=$arg ;;
    *) echo "error: bash scripts/demo.sh [TRIALS] [--cpu]: give 1 to 5 trials (Digits has trials 0-4), not '$arg'" >&2; exit 2 ;;
  esac
done
bash scripts/setup.sh "${setup[@]}"
PY=.venv/bin/python
start=$(date +%s)
for trial in $(seq 0 $((trials - 1))); do
  $PY train_cacOpenset.py --dataset Digits --trial "$trial" --name demo --overwrite
  $PY train_closedSet.py --dataset Digits --trial "$trial" --name demo --overwrite
done
$PY eval_cacOpenset.py -dataset Digits --num_trials "$trials" --start_trial 0 --name demo
$PY eval_closedSet.py -dataset Digits --num_trials "$trials" --start_trial 0 --name demo
last=$((trials - 1))
$PY scripts/results_table.py "results/Digits_demoCAC_trials0-$last.json" "results/Digits_demoClosedSet_trials0-$last.json"
echo "demo: $(( $(date +%s) - start )) s for training and evaluation"
