#!/usr/bin/env bash
# completer's `lmdeploy` backend: lmdeploy's AsyncEngine inside the completer process, with prefix
# caching. Checks the prerequisites, shows that a draft model is refused, runs one completion,
# optionally replays the typing sessions, and prints the command line for an editor.
#
#   engine_builds/lmdeploy/inprocess.sh [MODEL_DIR]        (default /models/qwen2.5-coder-1.5b)
#
# Environment: ENGINE [turbomind | pytorch], OPTIONS [engine_builds/lmdeploy/$ENGINE.yaml; "none"
# for completer's defaults], REPLAY [0]: 1 also replays bench/sessions, OUT [bench/results],
# COMPLETER [completer], PYTHON [python3].
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-${MODEL:-/models/qwen2.5-coder-1.5b}}
ENGINE=${ENGINE:-turbomind}
OPTIONS=${OPTIONS:-engine_builds/lmdeploy/$ENGINE.yaml}
REPLAY=${REPLAY:-0}
OUT=${OUT:-bench/results}
COMPLETER=${COMPLETER:-completer}
PYTHON=${PYTHON:-python3}
TOTAL=7; STEP=0
step() { STEP=$((STEP + 1)); echo "== [$STEP/$TOTAL] $*"; }
die() { echo "error: $*" >&2; exit 1; }
case "$ENGINE" in turbomind|pytorch) ;; *) die "ENGINE must be turbomind or pytorch" ;; esac

step "GPU"
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: lmdeploy needs an NVIDIA GPU and driver"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || die "nvidia-smi failed: no GPU visible"

step "lmdeploy and completer"
"$PYTHON" -c "import lmdeploy; print('lmdeploy', lmdeploy.__version__)" \
  || die "lmdeploy does not import with $PYTHON: pip install lmdeploy==0.18.0"
command -v "$COMPLETER" >/dev/null || die "$COMPLETER not on PATH: pip install -e . in this environment"
"$COMPLETER" doctor || echo "(doctor exits 1 when the default setup cannot serve; the lmdeploy line above is what matters)"

step "model directory"
[ -f "$MODEL/config.json" ] && [ -f "$MODEL/tokenizer.json" ] || die "$MODEL: need a Hugging Face model directory (config.json, tokenizer.json)"
grep -q '"Starcoder2ForCausalLM"' "$MODEL/config.json" && die "StarCoder2 is not supported by lmdeploy 0.18.0"
FLAGS=(--backend lmdeploy --model "$MODEL" --lmdeploy-engine "$ENGINE")
if [ "$OPTIONS" != none ]; then
  [ -f "$OPTIONS" ] || die "$OPTIONS: no such file"
  FLAGS+=(--backend-options "$OPTIONS")
fi
echo "engine flags: ${FLAGS[*]}"

step "a draft model is refused at start-up (lmdeploy cannot speculate for this pair)"
if "$COMPLETER" complete completer/replay/demo_data/inventory.py --line 40 --character 8 "${FLAGS[@]}" \
     --draft-model "$MODEL" >/dev/null 2>&1; then
  echo "warning: completer accepted --draft-model with lmdeploy; it should refuse it"
else
  echo "refused, as it should be"
fi

step "one completion"
"$COMPLETER" complete completer/replay/demo_data/inventory.py --line 40 --character 8 --json "${FLAGS[@]}"

step "replay of bench/sessions"
if [ "$REPLAY" = 1 ]; then
  mkdir -p "$OUT"
  "$COMPLETER" replay bench/sessions --max-pause-ms 1000 "${FLAGS[@]}" --name "lmdeploy-$ENGINE" \
    --json "$OUT/replay-lmdeploy-$ENGINE.json"
else
  echo "skipped (REPLAY=1 runs it)"
fi

step "editor command line"
echo "completer serve --stdio ${FLAGS[*]}"
