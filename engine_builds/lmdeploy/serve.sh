#!/usr/bin/env bash
# lmdeploy 0.18.0 api_server with prefix caching, for completer's `openai` backend. Foreground.
#
#   engine_builds/lmdeploy/serve.sh [MODEL_DIR]          (default /models/qwen2.5-coder-1.5b)
#
# Environment: ENGINE [turbomind | pytorch], HOST [127.0.0.1], PORT [23333], NAME [the directory's
# name], SESSION_LEN [unset: the model's context], BLOCK [64], CACHE [0.8], MAX_BATCH [32],
# SERVER_API_KEY (optional: clients then need it as COMPLETER_API_KEY), PYTHON [python3].
# No speculation: lmdeploy 0.18.0 has no draft-target and no n-gram proposer; setting DRAFT refuses.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-${MODEL:-/models/qwen2.5-coder-1.5b}}
ENGINE=${ENGINE:-turbomind}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-23333}
NAME=${NAME:-$(basename "$MODEL")}
SESSION_LEN=${SESSION_LEN:-}
BLOCK=${BLOCK:-64}
CACHE=${CACHE:-0.8}
MAX_BATCH=${MAX_BATCH:-32}
PYTHON=${PYTHON:-python3}
TOTAL=5; STEP=0
step() { STEP=$((STEP + 1)); echo "== [$STEP/$TOTAL] $*"; }
die() { echo "error: $*" >&2; exit 1; }
[ -z "${DRAFT:-}" ] || die "DRAFT is set, but lmdeploy 0.18.0 cannot speculate for this model pair (no draft-target or n-gram proposer)"
case "$ENGINE" in turbomind|pytorch) ;; *) die "ENGINE must be turbomind or pytorch" ;; esac

step "GPU"
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: lmdeploy needs an NVIDIA GPU and driver"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || die "nvidia-smi failed: no GPU visible"

step "lmdeploy"
version=$("$PYTHON" -c "import lmdeploy; print(lmdeploy.__version__)" 2>/dev/null | tail -n 1) \
  || die "lmdeploy does not import with $PYTHON: pip install lmdeploy==0.18.0 (a CUDA 12 wheel; it brings its own torch)"
command -v lmdeploy >/dev/null || die "the lmdeploy command is not on PATH"
echo "lmdeploy $version"
[ "$version" = 0.18.0 ] || echo "warning: these recipes target 0.18.0"

step "model ($MODEL)"
[ -f "$MODEL/config.json" ] && [ -f "$MODEL/tokenizer.json" ] || die "$MODEL: need a Hugging Face model directory (config.json, tokenizer.json)"
"$PYTHON" - "$MODEL/config.json" "$ENGINE" <<'PY' || exit 1
import json, sys
cfg, engine = json.load(open(sys.argv[1])), sys.argv[2]
arch = (cfg.get("architectures") or ["?"])[0]
head = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
print(f"{arch}, head size {head}, context {cfg.get('max_position_embeddings')}")
if arch == "Starcoder2ForCausalLM":
    sys.exit("error: lmdeploy 0.18.0 removed StarCoder2 support (both engines); serve it with trtllm-serve or vLLM")
if engine == "turbomind" and arch not in ("Qwen2ForCausalLM", "LlamaForCausalLM"):
    print(f"warning: completer's recipes use TurboMind for Qwen2/Llama only; try ENGINE=pytorch for {arch}")
if engine == "turbomind" and head not in (64, 128):
    print(f"warning: head size {head}: TurboMind's kernels may not cover it (unconfirmed); ENGINE=pytorch if loading fails")
PY

step "completer command line"
cat <<MSG
When "Uvicorn running" appears, check it and point completer at it:
  engine_builds/trtllm/check_openai_server.sh http://$HOST:$PORT/v1 $MODEL $NAME
  completer serve --stdio --backend openai --server-url http://$HOST:$PORT/v1 --served-model $NAME --model $MODEL
MSG

step "lmdeploy serve api_server on http://$HOST:$PORT/v1 ($ENGINE)"
KEY_FLAGS=()
LEN_FLAGS=()
[ -z "$SESSION_LEN" ] || LEN_FLAGS=(--session-len "$SESSION_LEN")
[ -z "${SERVER_API_KEY:-}" ] || KEY_FLAGS=(--api-keys "$SERVER_API_KEY")
set -x
exec lmdeploy serve api_server "$MODEL" --backend "$ENGINE" --server-name "$HOST" --server-port "$PORT" \
  --model-name "$NAME" "${LEN_FLAGS[@]}" --max-batch-size "$MAX_BATCH" \
  --cache-max-entry-count "$CACHE" --cache-block-seq-len "$BLOCK" --enable-prefix-caching "${KEY_FLAGS[@]}"
