#!/usr/bin/env bash
# Every GPU figure the README lacks, from one command on a bare GPU machine.
#
#   bash benchmarks/gpu.sh          # install, then measure on the GPU
#   bash benchmarks/gpu.sh --tiny   # the same parts, tiny, on the CPU backend
#
# Parts, each with its own time cap, each run whatever happened to the
# others (a failed or timed-out part is reported, not fatal):
#   fast     experiments/cifar10_fast.py trained from scratch (10 epochs)
#            and evaluated: time end to end and test accuracy (target 94%;
#            airbench94: 2.59 s on an A100), via benchmarks.accuracy
#   simclr   one epoch of experiments/cifar10_simclr_resnet18.py in
#            bfloat16: wall time and steady images/s, via
#            benchmarks.train_speed
#   memory   benchmarks.memory --full --recipes=cifar10: device peak
#            memory per trainer (steps capped)
#   compare  benchmarks.compare in bfloat16 with --batch_multiplier=4:
#            jvision vs PyTorch on the same GPU, and the SimCLR step's MFU
#            (needs torch with CUDA; skipped without torch)
# GPU_SH_PARTS (default "fast simclr memory compare") runs a subset, e.g.
# to rerun a failed part on a warm machine. The whole script keeps to $GPU_SH_BUDGET_S (540 s; 1500 s with --tiny,
# whose parts are mostly start-up and compilation on a shared CPU): a part
# starts with the smaller of its cap and the time left.
#
# Set-up (skipped when JVISION_PYTHON names a ready interpreter, as the
# test suite does): a venv ($GPU_SH_VENV, default .venv-gpu) made from this
# repo. GPU_SH_INSTALL chooses how:
#   pip    `pip install -e '.[$ACCEL]'` (ACCEL default cuda12: the CUDA
#          jaxlib of the pinned JAX) and torch==2.13.0 if missing; needs a
#          package index
#   image  for a machine whose python3 already has a CUDA JAX and torch
#          and no index (the device tool's H200: jax-cuda13 0.11.x): the
#          venv sees that python's packages, installs the wheels of
#          $JVISION_WHEELS (ml-collections, tensorboardX, ...) offline and
#          imports jvision from this checkout
#   auto   (default) image if python3's JAX already runs on a GPU, else pip
#
# Data: CIFAR-10 from $JVISION_CIFAR10 (else ../shared/data/cifar10_q75/
# cifar10_q75.zip beside the checkout). Results: $OUT (default
# ./gpu_out): results/*.json (benchmarks/results' format: copy them there
# and run `python -m benchmarks.report --write`), gpu.log (every part's
# output) and summary.txt (printed at the end). At most 8 files land in
# $OUT (the device tool returns 8); workdirs and checkpoints go to
# $GPU_SH_WORK (default: a temporary directory).
set -uo pipefail # no -e: one failing part must not stop the others

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
TINY=0
for arg in "$@"; do
  case $arg in
    --tiny) TINY=1 ;;
    -h | --help)
      sed -n '2,/^set -uo/p' "$0" | sed '$d'
      exit 0
      ;;
    *)
      echo "gpu.sh: unknown argument '$arg' (expected --tiny or --help)" >&2
      exit 2
      ;;
  esac
done

BUDGET_S=${GPU_SH_BUDGET_S:-$([ "$TINY" = 1 ] && echo 1500 || echo 540)}
OUT=${OUT:-$REPO/gpu_out}
RESULTS=$OUT/results
LOG=$OUT/gpu.log
SUMMARY=$OUT/summary.txt
WORK=${GPU_SH_WORK:-$(mktemp -d /tmp/jvision_gpu.XXXXXX)}
mkdir -p "$RESULTS" "$WORK" || exit 1
: >"$LOG"
: >"$SUMMARY"
export JVISION_BENCHMARK_RESULTS=$RESULTS PYTHONUNBUFFERED=1
START=$SECONDS

say() { echo "gpu.sh: $*" | tee -a "$LOG"; }
status() { printf '%-8s %-8s %s\n' "$1" "$2" "$3" | tee -a "$SUMMARY"; }

# ---- set-up ---------------------------------------------------------------
image_has_gpu_jax() {
  timeout 120 python3 -c \
    'import jax, sys; sys.exit(jax.default_backend() != "gpu")' 2>/dev/null
}

setup_pip() {
  # The CUDA jaxlib on a GPU run; --tiny installs no accelerator extra.
  local venv=$1 accel=${ACCEL:-$([ "$TINY" = 1 ] || echo cuda12)}
  python3 -m venv "$venv" &&
    "$venv/bin/python" -m pip install -q --upgrade pip &&
    "$venv/bin/python" -m pip install -q -e ".${accel:+[$accel]}" &&
    { "$venv/bin/python" -c 'import torch' 2>/dev/null ||
      "$venv/bin/python" -m pip install -q "torch==2.13.0"; }
}

# The folders that hold python3's JAX and torch (its site-packages).
IMAGE_SITES='import importlib.util as u, os
for d in sorted({os.path.dirname(os.path.dirname(u.find_spec(m).origin))
                 for m in ("jax", "torch") if u.find_spec(m)}): print(d)'

setup_image() {
  local venv=$1 sites own dir
  sites=$(python3 -c "$IMAGE_SITES") && [ -n "$sites" ] || return 1
  python3 -m venv "$venv" || return 1
  own=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # The image's packages after the venv's own; then this checkout.
  for dir in $sites; do
    echo "import site; site.addsitedir('$dir')"
  done >"$own/zz_image_site.pth"
  echo "$REPO" >"$own/zz_jvision_repo.pth"
  if [ -n "${JVISION_WHEELS:-}" ]; then
    "$venv/bin/python" -m pip install -q --no-index --no-deps \
      "$JVISION_WHEELS"/*.whl || return 1
  fi
}

setup() {
  if [ -n "${JVISION_PYTHON:-}" ]; then
    PY=$JVISION_PYTHON
    status setup given "JVISION_PYTHON=$PY (nothing installed)"
    return 0
  fi
  local venv=${GPU_SH_VENV:-$REPO/.venv-gpu} how=${GPU_SH_INSTALL:-auto}
  if [ "$how" = auto ]; then
    if image_has_gpu_jax; then how=image; else how=pip; fi
  fi
  local t0=$SECONDS
  case $how in
    pip) setup_pip "$venv" >>"$LOG" 2>&1 ;;
    image) setup_image "$venv" >>"$LOG" 2>&1 ;;
    *)
      say "GPU_SH_INSTALL=$how: expected auto, pip or image"
      return 1
      ;;
  esac || {
    status setup failed "GPU_SH_INSTALL=$how into $venv; see gpu.log"
    return 1
  }
  PY=$venv/bin/python
  status setup ok "GPU_SH_INSTALL=$how into $venv ($((SECONDS - t0)) s)"
}

# ---- parts ----------------------------------------------------------------
# run_part NAME CAP_S COMMAND...: runs COMMAND with the smaller of CAP_S and
# the budget left, its output appended to gpu.log; records ok / failed /
# timeout / skipped with its seconds in summary.txt.
FAILED=0
PARTS=" ${GPU_SH_PARTS:-fast simclr memory compare} "
run_part() {
  local name=$1 cap=$2
  shift 2
  if [[ $PARTS != *" $name "* ]]; then
    status "$name" skipped "not in GPU_SH_PARTS"
    return
  fi
  local left=$((BUDGET_S - (SECONDS - START)))
  if [ "$left" -lt 15 ]; then
    status "$name" skipped "no time left of the ${BUDGET_S} s budget"
    return
  fi
  [ "$cap" -gt "$left" ] && cap=$left
  say "--- $name (cap ${cap} s): $*"
  local t0=$SECONDS rc
  timeout --kill-after=10 "$cap" "$@" >>"$LOG" 2>&1
  rc=$?
  local took=$((SECONDS - t0))
  if [ $rc -eq 0 ]; then
    status "$name" ok "${took} s"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    status "$name" timeout "stopped at its ${cap} s cap"
    FAILED=1
  else
    status "$name" failed "exit $rc after ${took} s; see gpu.log"
    FAILED=1
  fi
}

if [ "$TINY" = 1 ]; then
  export JAX_PLATFORMS=cpu JVISION_ACCELERATOR=cpu
  # Compile quickly (the toy steps' speed does not matter) and share
  # compilations between the parts' processes.
  FAST_COMPILE="--xla_backend_optimization_level=0"
  FAST_COMPILE+=" --xla_llvm_disable_expensive_passes=true"
  export XLA_FLAGS="${XLA_FLAGS:-} $FAST_COMPILE"
  export JAX_COMPILATION_CACHE_DIR=$WORK/jax_cache
  export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
  PLATFORM=cpu
  # The same commands as on the GPU at toy sizes: a dry run of the script.
  TINY_SIZES=(--config.batch_size=16 --config.eval_batch_size=50
    --config.data.max_per_class=5 --config.log_every_steps=1)
  FAST_ARGS=(--config=experiments/cifar10_fast.py:runlocal "${TINY_SIZES[@]}"
    --config.model.name=cnn --config.num_train_steps=2
    --config.eval_every_steps=0 --config.eval_tta=none)
  SIMCLR_ARGS=(--config=experiments/cifar10_simclr_resnet18.py:runlocal
    "${TINY_SIZES[@]}" --config.model.name=resnet_tiny
    --config.num_train_steps=3 --config.eval_every_steps=3)
  SIMCLR_DTYPE=float32 # XLA:CPU's bfloat16 is slow (benchmarks/NOTES.md)
  MEMORY_ARGS=(--recipes=cifar10 --steps=1 --set=model.name=resnet_tiny
    --set=batch_size=16 --set=eval_batch_size=50 --set=data.max_per_class=5
    --set=eval_every_steps=0)
  COMPARE_ARGS=(--models=cnn --torch_modes=eager --rounds=1 --steps=1
    --warmup=1 --matmul_sizes=64)
  CAPS=(fast=300 simclr=400 memory=500 compare=300)
else
  export JAX_PLATFORMS=cuda JVISION_ACCELERATOR=gpu
  PLATFORM=gpu
  FAST_ARGS=(--config=experiments/cifar10_fast.py)
  SIMCLR_ARGS=(--config=experiments/cifar10_simclr_resnet18.py:epochs=1
    --config.log_every_steps=10)
  SIMCLR_DTYPE=bfloat16
  MEMORY_ARGS=(--full --recipes=cifar10 --steps=20)
  COMPARE_ARGS=(--batch_multiplier=4 --rounds=3 --steps=20)
  CAPS=(fast=90 simclr=100 memory=110 compare=220)
fi
cap() { local kv; for kv in "${CAPS[@]}"; do [ "${kv%%=*}" = "$1" ] && echo "${kv#*=}"; done; }

say "repo $REPO; results in $OUT; work in $WORK; platform $PLATFORM"
setup || {
  cat "$SUMMARY"
  exit 1
}

# Where it runs: the devices JAX starts (an error, not a CPU fall-back, if
# the platform asked for is missing), the GPU and the versions.
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm \
    --format=csv 2>/dev/null
  "$PY" -c 'import jvision.parallel as p, json; import importlib.metadata as m
s = p.start_devices()
print(json.dumps({**s, "versions": {k: m.version(k) for k in ("jax", "jaxlib",
 "flax", "optax")}}))'
} >"$OUT/devices.txt" 2>>"$LOG"
if [ $? -ne 0 ]; then
  status devices failed "JAX could not start $PLATFORM; see gpu.log"
  cat "$SUMMARY"
  exit 1
fi
status devices ok "$(tail -1 "$OUT/devices.txt" | cut -c1-160)"

run_part fast "$(cap fast)" "$PY" -m benchmarks.accuracy "${FAST_ARGS[@]}" \
  --seeds=0 --name="cifar10_fast_$PLATFORM" --workdirs="$WORK/accuracy"
run_part simclr "$(cap simclr)" "$PY" -m benchmarks.train_speed \
  "${SIMCLR_ARGS[@]}" --config.dtype="$SIMCLR_DTYPE" \
  --name="cifar10_simclr_resnet18_epoch_$PLATFORM" --workdir="$WORK/simclr"
run_part memory "$(cap memory)" "$PY" -m benchmarks.memory "${MEMORY_ARGS[@]}"
if "$PY" -c 'import torch' 2>/dev/null; then
  # JAX leaves PyTorch room on the shared GPU (it takes 75% by default).
  run_part compare "$(cap compare)" env XLA_PYTHON_CLIENT_MEM_FRACTION=.5 \
    "$PY" -m benchmarks.compare --dtype=bfloat16 "${COMPARE_ARGS[@]}"
else
  status compare skipped "torch is not installed for $PY"
fi

{
  echo
  "$PY" -m benchmarks.report --results="$RESULTS" 2>>"$LOG" ||
    echo "(benchmarks.report could not render $RESULTS; see gpu.log)"
  echo
  echo "total $((SECONDS - START)) s of the ${BUDGET_S} s budget"
} >>"$SUMMARY"
echo
echo "=== gpu.sh summary ($OUT/summary.txt) ==="
cat "$SUMMARY"
exit $FAILED
