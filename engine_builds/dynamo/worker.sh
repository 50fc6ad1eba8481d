#!/usr/bin/env bash
# One NVIDIA Dynamo TensorRT-LLM worker (one GPU) registering with the frontend (frontend.sh).
# Run one per GPU: CUDA_VISIBLE_DEVICES=1 engine_builds/dynamo/worker.sh, and so on. Foreground.
#
#   engine_builds/dynamo/worker.sh
#
# Environment: MODEL [/models/qwen2.5-coder-1.5b], NAME [qwen2.5-coder-1.5b: the served model
# name completer asks for], ARGS [engine_builds/dynamo/worker-qwen.yaml], PYTHON [python3].
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${MODEL:-/models/qwen2.5-coder-1.5b}
NAME=${NAME:-qwen2.5-coder-1.5b}
ARGS=${ARGS:-engine_builds/dynamo/worker-qwen.yaml}
PYTHON=${PYTHON:-python3}
TOTAL=5; STEP=0
step() { STEP=$((STEP + 1)); echo "== [$STEP/$TOTAL] $*"; }
die() { echo "error: $*" >&2; exit 1; }

step "GPU"
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: a TensorRT-LLM worker needs an NVIDIA GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || die "nvidia-smi failed: no GPU visible"

step "Dynamo and the TensorRT-LLM it pairs with"
dyn=$("$PYTHON" -c "import importlib.metadata as m; print(m.version('ai-dynamo'))" 2>/dev/null) \
  || die "ai-dynamo is not installed for $PYTHON (engine_builds/README.md)"
trt=$("$PYTHON" -c "import importlib.metadata as m; print(m.version('tensorrt_llm'))" 2>/dev/null) \
  || die "tensorrt_llm is not installed for $PYTHON: install ai-dynamo[trtllm] (it pins the matching version)"
echo "ai-dynamo $dyn, tensorrt_llm $trt"
case "$dyn" in  # the trtllm extra's pins
  0.7.1*) want=1.2.0rc3 ;; 0.8.1.post3) want=1.2.0rc6.post3 ;; 0.9.0*) want=1.3.0rc1 ;;
  1.0.0*) want=1.3.0rc5.post1 ;; 1.6.1*) want=1.3.0rc29 ;; *) want=unknown ;;
esac
if [ "$want" = unknown ]; then echo "warning: no known TensorRT-LLM pairing for ai-dynamo $dyn; check its trtllm extra"
elif [ "$trt" != "$want" ]; then echo "warning: ai-dynamo $dyn pins tensorrt_llm $want, found $trt"; fi

step "model and engine arguments"
[ -f "$MODEL/config.json" ] && [ -f "$MODEL/tokenizer.json" ] || die "$MODEL: need a Hugging Face model directory (config.json, tokenizer.json)"
[ -f "$ARGS" ] || die "$ARGS: no such file"
BLOCK=$("$PYTHON" -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['kv_cache_config']['tokens_per_block'])" "$ARGS") \
  || die "$ARGS: cannot read kv_cache_config.tokens_per_block"
echo "KV block size $BLOCK (from $ARGS; the worker announces the same to the router)"

step "worker flags for ai-dynamo $dyn"
FLAGS=(--served-model-name "$NAME" --extra-engine-args "$ARGS" --kv-block-size "$BLOCK")
if [ "${dyn%%.*}" = 0 ]; then  # 0.8-style flags
  FLAGS=(--model-path "$MODEL" "${FLAGS[@]}" --publish-events-and-metrics)
else                            # 1.6-style flags (versions in between unverified)
  FLAGS=(--model "$MODEL" "${FLAGS[@]}" --publish-kv-events --publish-metrics)
fi
echo "completer: completer serve --stdio --backend openai --server-url http://FRONTEND_HOST:8000/v1 --served-model $NAME --model $MODEL"

step "python -m dynamo.trtllm"
set -x
exec "$PYTHON" -m dynamo.trtllm "${FLAGS[@]}"
