#!/usr/bin/env bash
# Train the embedded models on one NVIDIA GPU, four sizes side by side, then check the CUDA path of
# the torch engine and evaluate. Needs data/stdlib from `python -m engine_builds.prepare_data`.
#
#   OUT=results MINUTES=5.5 bash engine_builds/gpu_train.sh
#
# Writes to $OUT: draft.tar, small.tar, target.tar (Hugging Face model dirs) and logs.tar (training
# logs, CUDA completion and latency checks, quality of the large model that is too big to bring back).
set -u
OUT=${OUT:-runs/gpu-out}; MINUTES=${MINUTES:-5.5}; BATCH=${BATCH:-32}; SEQ=${SEQ:-2048}; WORKERS=${WORKERS:-3}
PRESETS=${PRESETS:-"draft:3e-3 small:2e-3 target:1.5e-3 large:1e-3"}
export PYTHONPATH=.:${PYTHONPATH:-} PYTHONUNBUFFERED=1
R=runs/gpu
mkdir -p "$OUT" "$R"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  nproc; } | tee "$R/machine.txt"

for spec in $PRESETS; do
  preset=${spec%%:*}; lr=${spec##*:}
  python3 -m engine_builds.train --preset "$preset" --lr "$lr" --batch-size "$BATCH" --seq-len "$SEQ" \
    --minutes "$MINUTES" --workers "$WORKERS" --eval-every 200 --eval-rows 64 --ckpt-minutes 100 \
    --out "$R/$preset" --export "$R/$preset/hf" > "$R/$preset.log" 2>&1 &
done
wait
for spec in $PRESETS; do
  preset=${spec%%:*}
  tail -n 4 "$R/$preset.log"
  [ "$preset" != large ] && [ -d "$R/$preset/hf" ] && tar cf "$OUT/$preset.tar" -C "$R/$preset" hf
done
tar cf "$OUT/logs.tar" "$R"/*.log "$R"/machine.txt "$R"/*/hf/train_log.json 2>/dev/null

# The CUDA path of our engine: one completion per model, then keystroke latency and quality.
DEV=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
for preset in target large; do
  [ -d "$R/$preset/hf" ] && timeout 60 python3 -m completer complete completer/replay/demo_data/inventory.py \
    --line 40 --character 8 --json --model "$R/$preset/hf" --device "$DEV"
done > "$R/cuda_complete.txt" 2>&1
timeout 90 python3 bench/keystroke_latency.py --device "$DEV" --model "$R/target/hf" --lines 5 > "$R/cuda_latency.txt" 2>&1
models=$(for p in large target small; do [ -d "$R/$p/hf" ] && echo "$R/$p/hf"; done)
timeout 150 python3 bench/quality.py --models $models --device "$DEV" --cases 300 --json "$R/quality_gpu.json" \
  > "$R/quality_gpu.txt" 2>&1
cat "$R/cuda_complete.txt" "$R/cuda_latency.txt" "$R/quality_gpu.txt"
tar cf "$OUT/logs.tar" "$R"/*.log "$R"/*.txt "$R"/*.json "$R"/*/hf/train_log.json 2>/dev/null
ls -la "$OUT"
