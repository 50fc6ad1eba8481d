#!/usr/bin/env bash
# completer's `trtllm` backend: TensorRT-LLM's PyTorch-backend LLM inside the completer process.
# Checks the prerequisites, runs one completion, optionally replays the typing sessions, and
# prints the command line for an editor.
#
#   engine_builds/trtllm/inprocess.sh [ngram|draft|none]       (default ngram)
#
# Environment: MODEL [/models/qwen2.5-coder-1.5b], DRAFT [/models/qwen2.5-coder-0.5b],
# OPTIONS [none]: a --backend-options YAML (e.g. engine_builds/trtllm/workstation.yaml),
# REPLAY [0]: 1 also replays bench/sessions (about 5 minutes), OUT [bench/results],
# COMPLETER [completer], PYTHON [python3].
set -euo pipefail
cd "$(dirname "$0")/../.."
SPEC=${1:-ngram}
MODEL=${MODEL:-/models/qwen2.5-coder-1.5b}
DRAFT=${DRAFT:-/models/qwen2.5-coder-0.5b}
OPTIONS=${OPTIONS:-}
REPLAY=${REPLAY:-0}
OUT=${OUT:-bench/results}
COMPLETER=${COMPLETER:-completer}
PYTHON=${PYTHON:-python3}
case "$SPEC" in ngram|draft|none) ;; *) echo "usage: $0 [ngram|draft|none]" >&2; exit 2 ;; esac
TOTAL=6; STEP=0
step() { STEP=$((STEP + 1)); echo "== [$STEP/$TOTAL] $*"; }
die() { echo "error: $*" >&2; exit 1; }

step "GPU"
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: TensorRT-LLM needs an NVIDIA GPU and driver"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || die "nvidia-smi failed: no GPU visible"

step "TensorRT-LLM and completer"
"$PYTHON" -c "import tensorrt_llm; print('tensorrt_llm', tensorrt_llm.__version__)" \
  || die "tensorrt_llm does not import with $PYTHON: use the NGC image or NVIDIA's package index (engine_builds/README.md)"
command -v "$COMPLETER" >/dev/null || die "$COMPLETER not on PATH: pip install -e . in this environment"
"$COMPLETER" doctor || echo "(doctor exits 1 when the default setup cannot serve; the trtllm line above is what matters)"

step "model directories"
[ -f "$MODEL/config.json" ] && [ -f "$MODEL/tokenizer.json" ] || die "$MODEL: need a Hugging Face model directory (config.json, tokenizer.json)"
FLAGS=(--backend trtllm --model "$MODEL" --speculation "$SPEC")
if [ "$SPEC" = draft ]; then
  [ -f "$DRAFT/config.json" ] || die "$DRAFT: draft model directory not found (set DRAFT=...)"
  FLAGS+=(--draft-model "$DRAFT")
fi
if [ -n "$OPTIONS" ]; then
  [ -f "$OPTIONS" ] || die "$OPTIONS: no such file"
  FLAGS+=(--backend-options "$OPTIONS")
fi
echo "engine flags: ${FLAGS[*]}"

step "one completion (loads the model, captures CUDA graphs: a minute or so)"
"$COMPLETER" complete completer/replay/demo_data/inventory.py --line 40 --character 8 --json "${FLAGS[@]}"

step "replay of bench/sessions"
if [ "$REPLAY" = 1 ]; then
  mkdir -p "$OUT"
  "$COMPLETER" replay bench/sessions --max-pause-ms 1000 "${FLAGS[@]}" --name "trtllm-$SPEC" \
    --json "$OUT/replay-trtllm-$SPEC.json"
else
  echo "skipped (REPLAY=1 runs it)"
fi

step "editor command line"
echo "completer serve --stdio ${FLAGS[*]}"
