#!/usr/bin/env bash
# The prepared GPU check (issue 14): one Markdown report of what this repo does on one CUDA GPU,
# in under 8 minutes, without the network.
#
#   benchmarks/gpu_check.sh PATH_TO_FASHION_GZ_DIR [--dry-run] [--report FILE]
#
# PATH_TO_FASHION_GZ_DIR holds Fashion-MNIST's four .gz files (train-images-idx3-ubyte.gz, ...).
# The report goes to docs/gpu/<UTC date>.md unless --report says where. Steps, in order (each
# with its own time limit; a failed step is reported and the next one runs):
#   versions   nvidia-smi, Python, torch, CUDA, cuDNN, torchvision
#   tests      the CUDA-relevant tests (CUDA_TESTS below) on the device
#   speed      benchmarks/speed.py at 1x32x32, 3x32x32, 3x64x64: fp32, --amp, channels_last, --compile
#   fashion    a full-schedule Fashion-MNIST trial 0 (both phases, CAC and CE) via reproduce.py
#   amp        the same trial with --amp, its metrics beside the fp32 ones
#   ddp        torchrun, one process, nccl: a Digits training run
#   cuda_paths benchmarks/gpu_check_ddp.py: --amp --compile epoch, nccl ranks, CPU <-> CUDA --continue
# --dry-run: the same steps on the CPU at toy size (gloo, no nvidia-smi, Digits 1 + 1 epochs
# instead of Fashion's schedule, speed.py --quick on one shape); CI runs it
# (tests/e2e/test_gpu_check.py). To add a step: write a function and list it in STEPS.
set -u
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
PY=${PYTHON:-python}
[[ $PY == */* ]] && PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")  # steps run in other folders
usage() { echo "usage: benchmarks/gpu_check.sh PATH_TO_FASHION_GZ_DIR [--dry-run] [--report FILE]" >&2; exit 2; }
FASHION="" DRY=0 REPORT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --report) [ $# -ge 2 ] || usage; REPORT=$2; shift ;;
    -*) usage ;;
    *) [ -z "$FASHION" ] || usage; FASHION=$1 ;;
  esac
  shift
done
[ -n "$FASHION" ] || usage
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
  if [ ! -f "$FASHION/$f" ]; then
    echo "error: $FASHION/$f not found: give the folder holding Fashion-MNIST's four .gz files" >&2; exit 2
  fi
done
FASHION=$(cd "$FASHION" && pwd)
export CAC_SYSTEM_FASHION_MNIST=$FASHION  # datasets/sources.py reads the .gz files from there
REPORT=${REPORT:-docs/gpu/$(date -u +%Y-%m-%d).md}
mkdir -p "$(dirname "$REPORT")" || exit 2
WORK=${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}
if [ $DRY = 1 ]; then
  # toy size: --compile is left out of the speed step (inductor's C++ build takes minutes on a CPU)
  DEVICE=cpu; SHAPES="1x32x32"; SPEED=(--quick --steps 1 --eval_images 24); SETTINGS=("" "--amp" "--channels_last on")
  TRIAL=(--datasets Digits --epochs 1 1 --methods ce); CUDA_TESTS=(tests/unit/engine/test_accel.py -k "cuda or channels")
  LIMITS=(300 300 300 300 300 300 400)  # per step, in STEPS' order: a busy 2-core machine
else
  # --compile on 3x32x32 only (its compile time); limits sum to 480 s, the slot's 8 minutes
  DEVICE=cuda; SHAPES="1x32x32 3x32x32 3x64x64"; SPEED=(--steps 30 --eval_images 600)
  SETTINGS=("" "--amp" "--channels_last on" "--compile")
  TRIAL=(--datasets FashionMNIST --methods cac ce)
  CUDA_TESTS=(tests/unit/engine/test_accel.py tests/e2e/test_accel.py tests/e2e/test_recipe.py)
  # the first six fit the slot's 8 minutes; cuda_paths (issue 15) adds up to 2 more, last so a
  # short slot loses only it
  LIMITS=(20 60 110 130 130 30 120)
fi
BODY="$WORK/body.md"
START=$SECONDS

# step NAME LIMIT: run the function NAME (this script again, GPU_CHECK_STEP=NAME, so that
# `timeout` can stop it) under a time limit, its output to its log; note the outcome
step() {
  local name=$1 limit=$2 t0=$SECONDS rc
  echo "== $name" >&2
  GPU_CHECK_STEP=$name GPU_CHECK_WORK=$WORK timeout "$limit" "$0" "$FASHION" $([ $DRY = 1 ] && echo --dry-run) \
    > "$WORK/$name.log" 2>&1; rc=$?
  local status="ok"; [ $rc = 0 ] || status="FAILED (exit $rc$([ $rc = 124 ] && echo ', time limit'))"
  printf '\n### %s: %s, %d s\n\n`%s`\n\n<details><summary>output (last 40 lines)</summary>\n\n```\n%s\n```\n</details>\n' \
    "$name" "$status" $((SECONDS - t0)) "$(type "$name" | sed -n 3p | cut -c1-150)" "$(tail -n 40 "$WORK/$name.log")" >> "$BODY"
  echo "$name: $status" >> "$WORK/summary"
  return $rc
}

versions() {
  [ $DRY = 1 ] || nvidia-smi
  $PY -c "import sys, torch, torchvision; print('python', sys.version.split()[0]); print('torch', torch.__version__, \
'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'gpu', torch.cuda.is_available() and \
torch.cuda.get_device_name(0)); print('torchvision', torchvision.__version__)"
  git -C "$REPO" log -1 --format='commit %H %s' 2>/dev/null || true
}
tests() { $PY -m pytest -q -x -p no:cacheprovider "${CUDA_TESTS[@]}"; }
speed() {
  local shape flags name
  for shape in $SHAPES; do
    for flags in "${SETTINGS[@]}"; do
      [ "$flags" = --compile ] && [ $DRY = 0 ] && [ $shape != 3x32x32 ] && continue
      name="$shape${flags// /}"
      $PY benchmarks/speed.py --device $DEVICE --shapes $shape "${SPEED[@]}" $flags --out "$WORK/speed_$name.json" \
        > "$WORK/speed_$name.out" 2>&1 || { tail -n 5 "$WORK/speed_$name.out"; return 1; }
      $PY - "$WORK/speed_$name.json" "${flags:-fp32}" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
for row in r["rows"]:
    if row["measure"] in ("step", "loop"):
        print(f"| {row['shape']} | {sys.argv[2]} | {row['measure']} | {row.get('pipeline', '')} | "
              f"{row['images_per_s']} | {row['bound_share']} |")
PYEOF
    done
  done
}
fashion() { $PY benchmarks/reproduce.py "${TRIAL[@]}" --trials 0 --device $DEVICE --workdir "$WORK" --out "$WORK/table_fp32" --name gpu_fp32; }
amp() {
  $PY benchmarks/reproduce.py "${TRIAL[@]}" --trials 0 --device $DEVICE --amp --workdir "$WORK" --out "$WORK/table_amp" --name gpu_amp \
    > "$WORK/amp_table.out" || { tail -n 3 "$WORK/amp_table.out"; return 1; }
  $PY - "$WORK/table_fp32.json" "$WORK/table_amp.json" <<'PYEOF'
import json, sys
fp32, amp = (json.load(open(p))["summary"] for p in sys.argv[1:])
print("| data set | method | scorer | metric | fp32 | amp (bf16) |\n|---|---|---|---|---|---|")
for ds, methods in fp32.items():
    for m, scorers in methods.items():
        for s, metrics in scorers.items():
            for k, v in metrics.items():
                print(f"| {ds} | {m} | {s} | {k} | {v['mean']:.4f} | {amp[ds][m][s][k]['mean']:.4f} |")
PYEOF
}
ddp() {
  (cd "$WORK" && $PY -m torch.distributed.run --standalone --nproc_per_node 1 "$REPO/train_closedSet.py" \
    --dataset Digits --trial 0 --epochs 1 --device $DEVICE --name ddp --no_download --overwrite) || return 1
  $PY -c "import torch.distributed as d; print('backend on $DEVICE:', 'nccl' if '$DEVICE' == 'cuda' else 'gloo', \
'(engine/accel.py), nccl available:', d.is_nccl_available())"
}

# issue 15's CUDA paths (benchmarks/gpu_check_ddp.py): one CAC epoch with --amp --compile, two
# ranks on nccl with --sync_bn (one without a second GPU), a CPU -> CUDA and a CUDA -> CPU --continue
cuda_paths() { $PY benchmarks/gpu_check_ddp.py $([ $DRY = 1 ] && echo --dry-run) --work "$WORK/cuda_paths"; }

if [ -n "${GPU_CHECK_STEP:-}" ]; then "$GPU_CHECK_STEP"; exit; fi
: > "$BODY"
STEPS=(versions tests speed fashion amp ddp cuda_paths)  # append new steps here (and their limits to LIMITS)
for i in "${!STEPS[@]}"; do
  step "${STEPS[$i]}" "${LIMITS[$i]:-60}"
done

{
  echo "# GPU check $(date -u +'%Y-%m-%d %H:%M UTC')$([ $DRY = 1 ] && echo ' (dry run on the CPU)')"
  echo
  echo "Command: \`benchmarks/gpu_check.sh $FASHION$([ $DRY = 1 ] && echo ' --dry-run')\`; total $((SECONDS - START)) s; device $DEVICE."
  echo
  echo "## Summary"
  echo
  sed 's/^/- /' "$WORK/summary"
  echo
  echo "## Speed (images/s, share of the FLOP bound)"
  echo
  echo "| shape | setting | measure | pipeline | images/s | share of FLOP bound |"
  echo "|---|---|---|---|---|---|"
  grep '^| ' "$WORK/speed.log" 2>/dev/null
  echo
  echo "## Fashion-MNIST trial 0, both phases (reproduce.py)"
  echo
  cat "$WORK/table_fp32.md" 2>/dev/null || echo "(no table: see the fashion step)"
  echo
  echo "## Same trial, fp32 against --amp"
  echo
  grep '^| ' "$WORK/amp.log" 2>/dev/null || echo "(see the amp step)"
  echo
  echo "fp32 and amp runs' full output: $WORK/table_{fp32,amp}.log (this machine)."
  echo
  echo "## Steps"
  cat "$BODY"
} > "$REPORT"
echo "wrote $REPORT ($((SECONDS - START)) s)"
grep -q FAILED "$WORK/summary" && exit 1
exit 0
