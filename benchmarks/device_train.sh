#!/usr/bin/env bash
# One session on a lent GPU machine, from the repo root: the GPU benchmarks, then the demo SAM
# and the demo CLIP trained side by side.
#
#   bash benchmarks/device_train.sh "$OUT"
#
# Env: SAM_MINUTES / CLIP_MINUTES (training budgets, default 6; 0 skips CLIP), SAM_ARGS / CLIP_ARGS (extra
# arguments of sam.train.demo / prompts.train_clip), BENCH=0 to skip the benchmarks, PYTHON
# (default python3). Packages the machine lacks travel as wheels in .whl/ (see the device notes).
# Everything is written under a work folder, then packed into $OUT/{sam,clip,logs}.tgz (the
# device tool brings back few files).
set -uo pipefail

FINAL_OUT=${1:?usage: bash benchmarks/device_train.sh OUT_DIR}
OUT=$(mktemp -d)
PY=${PYTHON:-python3}
SAM_MINUTES=${SAM_MINUTES:-6}
CLIP_MINUTES=${CLIP_MINUTES:-6}
SAM_ARGS=${SAM_ARGS:-}
CLIP_ARGS=${CLIP_ARGS:-}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT/sam" "$OUT/clip"
DEVICE=${DEVICE:-cuda}
if ! "$PY" -c "import open_clip, pycocotools, segment_anything" 2>/dev/null \
  && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,utilization.gpu \
    --format=csv || echo "nvidia-smi failed"
  echo "cpus: $(nproc)"
  "$PY" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
} 2>&1 | tee "$OUT/env.log"

"$PY" -c "import sam.train.demo" 2>&1 | tee -a "$OUT/env.log" || true

declare -A JOBS=()
# start_job NAME TIMEOUT_S COMMAND...: runs in the background, output tee'd to $OUT/NAME.log
start_job() {
  local name=$1 limit=$2
  shift 2
  echo "[$(date -u +%T)] start $name: $*"
  ( timeout --kill-after=20 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"; exit "${PIPESTATUS[0]}" ) &
  JOBS[$name]=$!
}

nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 15 \
  > "$OUT/gpu.log" 2>&1 &
MONITOR=$!

if [ "${BENCH:-1}" = 1 ]; then
  timeout 120 "$PY" benchmarks/bench_predictor.py --device "$DEVICE" --repeats 10 2>&1 \
    | tee "$OUT/bench_predictor.log"
  timeout 60 "$PY" benchmarks/bench_text.py --device "$DEVICE" --repeats 5 2>&1 \
    | tee "$OUT/bench_text.log"
fi

# training budget + start-up, evaluation and saving
SAM_LIMIT=$(awk -v m="$SAM_MINUTES" 'BEGIN { printf "%d", m * 60 + 100 }')
# shellcheck disable=SC2086
start_job sam_train "$SAM_LIMIT" "$PY" -m sam.train.demo --minutes "$SAM_MINUTES" --device "$DEVICE" \
  --output-dir "$OUT/sam" $SAM_ARGS
if [ "$CLIP_MINUTES" != 0 ]; then
CLIP_LIMIT=$(awk -v m="$CLIP_MINUTES" 'BEGIN { printf "%d", m * 60 + 100 }')
# shellcheck disable=SC2086
start_job clip_train "$CLIP_LIMIT" "$PY" -m prompts.train_clip --minutes "$CLIP_MINUTES" \
  --device "$DEVICE" --output "$OUT/clip/clip_demo.safetensors" $CLIP_ARGS
fi

STATUS=0
for name in "${!JOBS[@]}"; do
  wait "${JOBS[$name]}"
  rc=$?
  echo "[$(date -u +%T)] $name finished: rc=$rc"
  [ "$rc" -eq 0 ] || STATUS=$rc
done
kill "$MONITOR" 2>/dev/null
rm -f "$OUT/sam/run/train_state.pt"  # optimizer state: not needed back, keeps $OUT small
ls -la "$OUT" "$OUT/sam" "$OUT/clip"
mkdir -p "$FINAL_OUT"
tar -C "$OUT" -czf "$FINAL_OUT/sam.tgz" sam
tar -C "$OUT" -czf "$FINAL_OUT/clip.tgz" clip
tar -C "$OUT" -czf "$FINAL_OUT/logs.tgz" --exclude=sam --exclude=clip .
exit "$STATUS"
