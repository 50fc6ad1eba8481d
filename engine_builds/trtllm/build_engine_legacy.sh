#!/usr/bin/env bash
# RETIRING PATH. TensorRT engines with convert_checkpoint.py + trtllm-build (TensorRT-LLM 1.2.1).
# Both tools warn that they are deprecated and are deleted from TensorRT-LLM's main branch; prefer
# the PyTorch backend (serve.sh, inprocess.sh). Kept thin, for comparing against it.
#
#   TRTLLM_SRC=~/TensorRT-LLM engine_builds/trtllm/build_engine_legacy.sh [qwen|embedded]   (default qwen)
#
# TRTLLM_SRC: a checkout of TensorRT-LLM at tag v1.2.1 (the converters live in its examples/).
# Environment: MODEL, DRAFT [qwen: /models/qwen2.5-coder-{1.5b,0.5b}; embedded: completer/models/
# embedded{,-draft}], WORK [/engines], PYTHON [python3], SPECULATIVE [1]: 1 builds the target for
# externally drafted tokens (draft-target, up to 4) plus a draft engine; 0 builds one plain target
# engine, the one trtllm-serve can serve.
set -euo pipefail
cd "$(dirname "$0")/../.."
WHICH=${1:-qwen}
WORK=${WORK:-/engines}
SPECULATIVE=${SPECULATIVE:-1}
TRTLLM_SRC=${TRTLLM_SRC:-}
PYTHON=${PYTHON:-python3}
case "$WHICH" in
  qwen) MODEL=${MODEL:-/models/qwen2.5-coder-1.5b}; DRAFT=${DRAFT:-/models/qwen2.5-coder-0.5b}
        CONVERT=examples/models/core/qwen/convert_checkpoint.py; MAX_INPUT=8192; MAX_SEQ=8448; MAX_TOKENS=8192 ;;
  embedded) MODEL=${MODEL:-completer/models/embedded}; DRAFT=${DRAFT:-completer/models/embedded-draft}
        CONVERT=examples/models/core/llama/convert_checkpoint.py; MAX_INPUT=1984; MAX_SEQ=2048; MAX_TOKENS=2048 ;;
  *) echo "usage: $0 [qwen|embedded]" >&2; exit 2 ;;
esac
if [ "$SPECULATIVE" = 1 ]; then TOTAL=8; else TOTAL=6; fi
STEP=0
step() { STEP=$((STEP + 1)); echo "== [$STEP/$TOTAL] $*"; }
die() { echo "error: $*" >&2; exit 1; }

step "GPU"
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: building TensorRT engines needs the target NVIDIA GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || die "nvidia-smi failed: no GPU visible"

step "TensorRT-LLM, trtllm-build and the converter"
"$PYTHON" -c "import tensorrt_llm; print('tensorrt_llm', tensorrt_llm.__version__)" \
  || die "tensorrt_llm does not import: use the NGC image or NVIDIA's package index (engine_builds/README.md)"
command -v trtllm-build >/dev/null || die "trtllm-build is not on PATH"
[ -n "$TRTLLM_SRC" ] || die "set TRTLLM_SRC to a TensorRT-LLM checkout at tag v1.2.1 (git clone -b v1.2.1 https://github.com/NVIDIA/TensorRT-LLM)"
[ -f "$TRTLLM_SRC/$CONVERT" ] || die "$TRTLLM_SRC/$CONVERT not found (wrong checkout or tag?)"
# The engine's KV block size is fixed at build time; the flag's name in 1.2.1 is unconfirmed.
BLOCK_FLAGS=()
if trtllm-build --help 2>/dev/null | grep -q -- '--tokens_per_block'; then BLOCK_FLAGS=(--tokens_per_block 16)
else echo "note: trtllm-build lists no --tokens_per_block; the engine keeps its default KV block size"; fi

step "model directories"
[ -f "$MODEL/config.json" ] || die "$MODEL: not a Hugging Face model directory (no config.json)"
[ "$SPECULATIVE" != 1 ] || [ -f "$DRAFT/config.json" ] || die "$DRAFT: draft model directory not found (set DRAFT=... or SPECULATIVE=0)"
mkdir -p "$WORK" || die "cannot create $WORK (set WORK=...)"
T=$WORK/$WHICH-target; D=$WORK/$WHICH-draft
[ "$SPECULATIVE" != 1 ] || T=$WORK/$WHICH-target-spec

BUILD=(--gemm_plugin auto --max_batch_size 32 --max_input_len "$MAX_INPUT" --max_seq_len "$MAX_SEQ"
       --max_num_tokens "$MAX_TOKENS" --use_paged_context_fmha enable "${BLOCK_FLAGS[@]}")
step "convert the target to a TensorRT-LLM checkpoint ($T-ckpt)"
"$PYTHON" "$TRTLLM_SRC/$CONVERT" --model_dir "$MODEL" --output_dir "$T-ckpt" --dtype bfloat16

if [ "$SPECULATIVE" = 1 ]; then
  step "build the target engine for external drafts ($T-engine)"
  trtllm-build --checkpoint_dir "$T-ckpt" --output_dir "$T-engine" "${BUILD[@]}" \
    --speculative_decoding_mode draft_tokens_external --max_draft_len 4
  step "convert the draft ($D-ckpt)"
  "$PYTHON" "$TRTLLM_SRC/$CONVERT" --model_dir "$DRAFT" --output_dir "$D-ckpt" --dtype bfloat16
  step "build the draft engine ($D-engine)"
  trtllm-build --checkpoint_dir "$D-ckpt" --output_dir "$D-engine" "${BUILD[@]}"
else
  step "build the target engine ($T-engine)"
  trtllm-build --checkpoint_dir "$T-ckpt" --output_dir "$T-engine" "${BUILD[@]}"
fi

step "how to run it"
if [ "$SPECULATIVE" = 1 ]; then cat <<MSG
Draft-target engines run only through the C++ runtime example (not trtllm-serve, not completer):
  python3 $TRTLLM_SRC/examples/run.py --engine_dir $T-engine --draft_engine_dir $D-engine \\
    --tokenizer_dir $MODEL --draft_target_model_config "[4,[0],[1],False]" --kv_cache_enable_block_reuse ...
(see $TRTLLM_SRC/examples/draft_target_model/README.md). To serve, rebuild with SPECULATIVE=0.
MSG
else cat <<MSG
  trtllm-serve $T-engine --tokenizer $MODEL --backend tensorrt --port 8000
  completer serve --stdio --backend openai --server-url http://127.0.0.1:8000/v1 --model $MODEL
(completer's in-process trtllm backend loads Hugging Face directories with the PyTorch backend, not engines.)
MSG
fi
