#!/usr/bin/env bash
# The GPU check (issues 14, 15, 21): what this repo does on one borrowed CUDA GPU, in one command of the
# device tool (at most 10 minutes): the steps' limits sum to 480 s, and each step's section is appended to
# the report as soon as the step ends, so a kill keeps every finished step. docs/gpu/README.md: how to run it.
#
#   bash benchmarks/gpu_check.sh --out DIR [--fashion DIR] [--dry-run] [--plan]
#
#   --out DIR      DIR/report.md: a header, then a section per step as it ends, then a summary;
#                  DIR/steps.log: every step's whole output as it is printed; DIR/levers.json: speed.py's rows
#                  (3 files: the device tool brings back at most 8)
#   --fashion DIR  Fashion-MNIST's four .gz files (default: .gpu_data/ in the repo, the folder carried there)
#   --dry-run      on the CPU at toy size, one tiny step each (Digits, 8x8 images, one step per epoch);
#                  each step gets 300 s there (a CPU is not timed); tests/e2e/test_gpu_check.py runs it
#   --plan         print each step and its limit, and their sum; run nothing
#   PYTHON         the interpreter (default: python3, the lent machine's own, with its torch)
#   GPU_CHECK_LIMITS="STEP=SECONDS ..."  other limits for some steps (the tests cut a step this way)
#   GPU_CHECK_ONLY="STEP ..."  only these steps (a second call for the steps a first one lost)
#
# Steps, in order (most wanted first: a short slot loses the last):
#   versions   the GPU, Python, torch, CUDA, cuDNN, torchvision, Triton, the commit
#   levers     benchmarks/speed.py --levers, 3x32x32 batch 128 with --amp --tf32: each lever's training
#              images/s beside the original's pipeline (torchvision DataLoader, 2 workers), as ratios
#   tests      the CUDA-relevant tests on the device; the ones exact only on the CPU skip, saying why
#   fashion    Fashion-MNIST trial 0, CAC and cross-entropy, 4 + 1 epochs (the config's 35 + 35
#              shortened to fit), exact float32, in one process (benchmarks/gpu_check_train.py)
#   amp        the same with --amp, its metrics beside fp32's
#   cuda_paths benchmarks/gpu_check_ddp.py: nccl with one rank, an --amp --compile epoch, CPU <-> CUDA
#              --continue; says plainly that 2 nccl ranks need 2 GPUs
set -u
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
PY=${PYTHON:-python3}
[[ $PY == */* ]] && PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")  # steps run in other folders
STEPS=(versions levers tests fashion amp cuda_paths)
LIMITS=(15 160 55 100 70 80)  # seconds, in STEPS' order: 480 in all
usage() { echo "error: $1; usage: bash benchmarks/gpu_check.sh --out DIR [--fashion DIR] [--dry-run] [--plan]" >&2; exit 2; }
OUT="" FASHION="$REPO/.gpu_data" DRY=0 PLAN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --plan) PLAN=1 ;;
    --out) [ $# -ge 2 ] || usage "--out needs a folder"; OUT=$2; shift ;;
    --fashion) [ $# -ge 2 ] || usage "--fashion needs a folder"; FASHION=$2; shift ;;
    *) usage "unknown argument '$1'" ;;
  esac
  shift
done
if [ -n "${GPU_CHECK_ONLY:-}" ]; then
  kept=() kept_limits=()
  for i in "${!STEPS[@]}"; do
    [[ " $GPU_CHECK_ONLY " == *" ${STEPS[$i]} "* ]] && kept+=("${STEPS[$i]}") && kept_limits+=("${LIMITS[$i]}")
  done
  [ ${#kept[@]} -gt 0 ] || usage "GPU_CHECK_ONLY names no step of: ${STEPS[*]}"
  STEPS=("${kept[@]}") LIMITS=("${kept_limits[@]}")
fi
if [ $DRY = 1 ]; then  # a CPU's speed varies (a busy 2-core machine: many times slower): the dry run is not timed
  for i in "${!STEPS[@]}"; do LIMITS[$i]=300; done
fi
for pair in ${GPU_CHECK_LIMITS:-}; do
  for i in "${!STEPS[@]}"; do [ "${STEPS[$i]}" = "${pair%%=*}" ] && LIMITS[$i]=${pair#*=}; done
done
if [ $PLAN = 1 ]; then
  total=0
  for i in "${!STEPS[@]}"; do echo "${STEPS[$i]} ${LIMITS[$i]}"; total=$((total + ${LIMITS[$i]%.*})); done
  echo "sum $total"; echo "python $PY"; exit 0
fi
[ -n "$OUT" ] || usage "give --out DIR, the folder the report goes to (\$OUT on the device machine)"
if [ $DRY = 0 ]; then
  for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    [ -f "$FASHION/$f" ] || { echo "error: $FASHION/$f not found: give --fashion DIR, the folder of Fashion-MNIST's four .gz files (docs/gpu/README.md)" >&2; exit 2; }
  done
  export CAC_SYSTEM_FASHION_MNIST=$(cd "$FASHION" && pwd)  # datasets/sources.py reads the .gz files there
fi
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
WORK=${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}
export CAC_CACHE_DIR=${CAC_CACHE_DIR:-$WORK/cache} PYTHONUNBUFFERED=1
if [ $DRY = 1 ]; then DEVICE=cpu; else DEVICE=cuda; fi

versions() {
  [ $DRY = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $PY -c "import sys, torch, torchvision; print('python', sys.version.split()[0], sys.executable); print('torch', \
torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'gpu', \
torch.cuda.is_available() and torch.cuda.get_device_name(0)); print('torchvision', torchvision.__version__)
try:
    import triton; print('triton', triton.__version__)
except ImportError: print('triton: not installed')"
  echo "cpu cores $(nproc)"
  git -C "$REPO" log -1 --format='commit %H %s' 2>/dev/null || echo "commit: (no git here)"
}
levers() {
  if [ $DRY = 1 ]; then
    $PY benchmarks/speed.py --levers --quick --device cpu --shapes 1x32x32 --steps 1 --eval_images 24 \
      --augment_batches 2 --eval_batch 64 --step_backend eager --out "$OUT/levers.json"
  else
    $PY benchmarks/speed.py --levers --device cuda --shapes 3x32x32 --steps 200 --amp --tf32 \
      --eval_images 3000 --out "$OUT/levers.json"
  fi
}
tests() {
  if [ $DRY = 1 ]; then
    $PY -m pytest -q -rs -p no:cacheprovider tests/unit/engine/test_loop.py -k all_finite
  else
    $PY -m pytest -q -rs -p no:cacheprovider tests/unit/engine/test_accel.py tests/unit/engine/test_loop.py \
      tests/unit/test_cuda_placement.py tests/e2e/test_accel.py tests/e2e/test_recipe.py
  fi
}
train_args() {
  if [ $DRY = 1 ]; then echo "--dataset Digits --toy --methods ClosedSet --device cpu"
  else echo "--dataset FashionMNIST --epochs 4 1 --device cuda"; fi
}
fashion() { $PY benchmarks/gpu_check_train.py --work "$WORK/train" --name fp32 $(train_args); }
amp() { $PY benchmarks/gpu_check_train.py --work "$WORK/train" --name amp --amp --against fp32 $(train_args); }
cuda_paths() {
  if [ $DRY = 1 ]; then
    $PY benchmarks/gpu_check_ddp.py --dry-run --toy --steps collective amp-compile --work "$WORK/cuda_paths"
  else
    $PY benchmarks/gpu_check_ddp.py --work "$WORK/cuda_paths"
  fi
}
if [ -n "${GPU_CHECK_STEP:-}" ]; then "$GPU_CHECK_STEP"; exit; fi

REPORT=$OUT/report.md LOG=$OUT/steps.log START=$SECONDS
plan=""; for i in "${!STEPS[@]}"; do plan+="${STEPS[$i]} ${LIMITS[$i]} s, "; done
{
  echo "# GPU check $(date -u +'%Y-%m-%d %H:%M UTC')$([ $DRY = 1 ] && echo ' (dry run on the CPU, toy size)')"
  echo
  echo "Command: \`bash benchmarks/gpu_check.sh --out $OUT$([ $DRY = 1 ] && echo ' --dry-run')\`; device $DEVICE;"
  echo "python \`$PY\`; limits: ${plan%, }. Each section below was appended when its step ended."
  echo
  if [ $DRY = 1 ]; then
    echo "Process groups: gloo on the CPU (a dry run makes no NCCL group)."
  else
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
    [ "$gpus" -ge 2 ] || echo "NCCL with 2 ranks cannot run on this machine's $gpus GPU: two nccl ranks need two GPUs" \
      "(NCCL refuses two ranks on one device); cuda_paths makes an nccl group of one rank instead."
  fi
} > "$REPORT"
: > "$LOG"
summary=()
for i in "${!STEPS[@]}"; do
  name=${STEPS[$i]} limit=${LIMITS[$i]} t0=$SECONDS
  echo "== $name (limit $limit s)" | tee -a "$LOG" >&2
  # this script again for the one step, so that `timeout` stops it and all it started
  GPU_CHECK_STEP=$name GPU_CHECK_WORK=$WORK timeout -k 5 "$limit" bash "$REPO/benchmarks/gpu_check.sh" \
    --out "$OUT" --fashion "$FASHION" $([ $DRY = 1 ] && echo --dry-run) 2>&1 | tee -a "$LOG" > "$WORK/$name.log"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) status="ok" ;;
    124|137) status="CUT at its $limit s limit: the output below is what it printed until then" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  summary+=("- $name: $status, $((SECONDS - t0)) s")
  {
    echo
    echo "## $name: $status, $((SECONDS - t0)) s"
    echo
    echo '```'
    tail -n 60 "$WORK/$name.log"
    echo '```'
  } >> "$REPORT"
done
{
  echo
  echo "## Summary ($((SECONDS - START)) s in all)"
  echo
  printf '%s\n' "${summary[@]}"
  grep -h '^skip ddp:' "$WORK/cuda_paths.log" 2>/dev/null | sed 's/^skip ddp: /- /'
} >> "$REPORT"
echo "wrote $REPORT ($((SECONDS - START)) s)"
printf '%s\n' "${summary[@]}" | grep -qv ': ok,' && exit 1
exit 0
