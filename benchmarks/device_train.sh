#!/usr/bin/env bash
# Train the demo SAM on a GPU machine (and, later, other jobs beside it), from the repo root:
#
#   bash benchmarks/device_train.sh "$OUT"
#
# Env: SAM_MINUTES (training budget, default 6), SAM_ARGS (extra sam.train.demo arguments, e.g.
# "--images-per-step 64 --num-workers 6"), PYTHON (default python3).
# Writes $OUT/sam/{sam_demo.safetensors,results.md,scenes_held_out.json,train_log.json,run/},
# $OUT/sam_train.log, $OUT/gpu.log and $OUT/env.log. Every job runs in the background through
# start_job; add another one (e.g. the CLIP trainer) with one more start_job line below.
set -uo pipefail

OUT=${1:?usage: bash benchmarks/device_train.sh OUT_DIR}
PY=${PYTHON:-python3}
SAM_MINUTES=${SAM_MINUTES:-6}
SAM_ARGS=${SAM_ARGS:-}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT/sam"

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,utilization.gpu \
    --format=csv || echo "nvidia-smi failed"
  echo "cpus: $(nproc)"
  "$PY" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
} 2>&1 | tee "$OUT/env.log"

# sam.checkpoint imports huggingface_hub at module level (only Hub downloads need it): where
# it is missing, put a stub on the path that fails only if a download is attempted.
if ! "$PY" -c "import huggingface_hub" 2>/dev/null; then
  STUBS=$(mktemp -d)
  mkdir -p "$STUBS/huggingface_hub"
  cat > "$STUBS/huggingface_hub/__init__.py" <<'PYEOF'
"""Stub: huggingface_hub is not installed here; only Hub downloads need it."""


def _missing(*args, **kwargs):
    raise OSError("huggingface_hub is not installed on this machine")


hf_hub_download = snapshot_download = _missing


class HfApi:
    def __init__(self, *args, **kwargs):
        _missing()
PYEOF
  cat > "$STUBS/huggingface_hub/errors.py" <<'PYEOF'
class EntryNotFoundError(Exception):
    pass


class LocalEntryNotFoundError(EntryNotFoundError):
    pass
PYEOF
  export PYTHONPATH="$STUBS${PYTHONPATH:+:$PYTHONPATH}"
  echo "huggingface_hub missing: using the stub in $STUBS" | tee -a "$OUT/env.log"
fi
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

# training budget + start-up, evaluation and saving
SAM_LIMIT=$(awk -v m="$SAM_MINUTES" 'BEGIN { printf "%d", m * 60 + 240 }')
# shellcheck disable=SC2086
start_job sam_train "$SAM_LIMIT" "$PY" -m sam.train.demo --minutes "$SAM_MINUTES" \
  --output-dir "$OUT/sam" $SAM_ARGS
# start_job clip_train LIMIT "$PY" -m sam.train.demo_clip ...   <- add parallel jobs here

STATUS=0
for name in "${!JOBS[@]}"; do
  wait "${JOBS[$name]}"
  rc=$?
  echo "[$(date -u +%T)] $name finished: rc=$rc"
  [ "$rc" -eq 0 ] || STATUS=$rc
done
kill "$MONITOR" 2>/dev/null
rm -f "$OUT/sam/run/train_state.pt"  # optimizer state: not needed back, keeps $OUT small
ls -la "$OUT" "$OUT/sam"
exit "$STATUS"
