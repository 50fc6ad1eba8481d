#!/usr/bin/env bash
# trtllm-serve (TensorRT-LLM 1.2.1, PyTorch backend) as an OpenAI-compatible /v1/completions server
# for completer's `openai` backend. Runs in the foreground; stop it with Ctrl-C.
#
#   engine_builds/trtllm/serve.sh [ngram|draft|nospec|embedded]      (default ngram)
#
# Environment: MODEL [/models/qwen2.5-coder-1.5b; completer/models/embedded for `embedded`],
# DRAFT [/models/qwen2.5-coder-0.5b], HOST [127.0.0.1], PORT [8000], PYTHON [python3].
set -euo pipefail
cd "$(dirname "$0")/../.."
VARIANT=${1:-ngram}
DRAFT=${DRAFT:-/models/qwen2.5-coder-0.5b}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
PYTHON=${PYTHON:-python3}
case "$VARIANT" in
  ngram|draft|nospec) MODEL=${MODEL:-/models/qwen2.5-coder-1.5b}; YAML=engine_builds/trtllm/qwen-$VARIANT.yaml ;;
  embedded) MODEL=${MODEL:-completer/models/embedded}; YAML=engine_builds/trtllm/embedded.yaml ;;
  *) echo "usage: $0 [ngram|draft|nospec|embedded]" >&2; exit 2 ;;
esac
TOTAL=5; STEP=0
step() { STEP=$((STEP + 1)); echo "== [$STEP/$TOTAL] $*"; }
die() { echo "error: $*" >&2; exit 1; }

step "GPU"
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: TensorRT-LLM needs an NVIDIA GPU and driver"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || die "nvidia-smi failed: no GPU visible"

step "TensorRT-LLM"
version=$("$PYTHON" -c "import tensorrt_llm; print(tensorrt_llm.__version__)" 2>/dev/null | tail -n 1) \
  || die "tensorrt_llm does not import with $PYTHON: use the NGC image or NVIDIA's package index (engine_builds/README.md)"
command -v trtllm-serve >/dev/null || die "trtllm-serve is not on PATH"
echo "tensorrt_llm $version"
[ "$version" = 1.2.1 ] || echo "warning: these files target 1.2.1; LLM arguments are strict, so keys another version lacks fail at start-up"

step "model directories"
[ -f "$MODEL/config.json" ] && [ -f "$MODEL/tokenizer.json" ] || die "$MODEL: need a Hugging Face model directory (config.json, tokenizer.json)"
echo "target: $MODEL"
if [ "$VARIANT" = draft ]; then
  [ -f "$DRAFT/config.json" ] || die "$DRAFT: draft model directory not found (set DRAFT=...)"
  echo "draft:  $DRAFT"
fi

step "engine arguments ($YAML)"
if [ "$VARIANT" = draft ] && [ "$DRAFT" != /models/qwen2.5-coder-0.5b ]; then
  # Same file with the draft path replaced.
  tmp=$(mktemp --suffix=.yaml)
  "$PYTHON" - "$YAML" "$DRAFT" "$tmp" <<'PY'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
cfg["speculative_config"]["speculative_model_dir"] = sys.argv[2]
yaml.safe_dump(cfg, open(sys.argv[3], "w"), sort_keys=False)
PY
  YAML=$tmp
fi
"$PYTHON" -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1])))" "$YAML" || die "$YAML does not parse"

step "trtllm-serve on http://$HOST:$PORT/v1"
cat <<MSG
When "Uvicorn running" appears, check it and point completer at it:
  engine_builds/trtllm/check_openai_server.sh http://$HOST:$PORT/v1 $MODEL
  completer serve --stdio --backend openai --server-url http://$HOST:$PORT/v1 --model $MODEL
MSG
set -x
exec trtllm-serve "$MODEL" --host "$HOST" --port "$PORT" --backend pytorch --extra_llm_api_options "$YAML"
