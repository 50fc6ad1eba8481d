#!/usr/bin/env bash
# One prepared GPU training run, inside one 600 s command: unpack the GPU pack into token shards with
# every core; train a draft and three target sizes side by side on the one GPU on samples cut from the
# shards (token_samples.py), each on a cosine schedule that ends when its MINUTES of clock (counted
# after warm-up) are over; evaluate each model (held-out loss per language; E2/E3/E4 line completions
# through our own completer pipeline); export Hugging Face directories and bring them back in $OUT.
#
#   OUT=$OUT MINUTES=6.5 bash engine_builds/gpu_train.sh     # from the repository root (fits the 570 s default)
#       device tool: carry ["data/gpu_pack", ".whl"], timeout_s 600
#   bash engine_builds/gpu_wheels.sh                         # once, here: .whl/ (tree-sitter, rapidfuzz;
#                                                            # the GPU image lacks them and the eval needs them)
#   DEVICE=cpu MINUTES=0.1 MODELS="draft:tiny:3e-3 s:tiny:2e-3" BATCH=2 SEQ=128 WORKERS=0 EVAL_CASES=3 \
#     EVAL_ROWS=1 WARMUP=2 TOTAL_SECONDS=300 bash engine_builds/gpu_train.sh     # a dry run on a CPU
#
# $OUT gets at most 8 files, each under 16 MiB: one NAME.tar per model (a Hugging Face directory NAME/,
# split into NAME.tar.part0, .part1 when over 16 MiB; `cat NAME.tar.part* > NAME.tar`), logs.tar (every
# log, train_log.json and eval.json, phase timings, GPU utilisation) and results.json (everything, as
# one JSON). The results table is printed last.
#
# Environment [default]:
#   OUT            the files to bring back [runs/gpu-out]
#   MINUTES        training clock per model, counted after its first steps [6]
#   TOTAL_SECONDS  the whole command's budget [570]: training is cut short (--end-by) so that the
#                  evaluation (EVAL_RESERVE s) and packing (TAIL_SECONDS s) still fit; the line
#                  evaluation stops starting cases TAIL_SECONDS before the end
#   EVAL_RESERVE   seconds kept after training for the line evaluation [110]
#   TAIL_SECONDS   seconds kept at the end for tars and the summary [25]
#   MODELS         NAME:PRESET:LR[:BATCH] ... presets from train.py (tiny, draft, s, m, l, xl)
#                  ["draft:draft:3e-3 target-s:s:2e-3 target-m:m:1.5e-3 target-l:l:1.2e-3"]
#   BATCH, SEQ     rows per step and tokens per row [32, 2048]
#   WARMUP         linear warm-up steps [200]
#   WORKERS        DataLoader workers per model (each cuts whole batches) [2]
#   COMPILE        1: torch.compile each model (unmeasured on a GPU, so off) [0]
#   EVAL_ROWS      held-out val rows per language [16]; EVAL_SECONDS between evaluations [60]
#   EVAL_CASES     line cuts per suite and language [150]
#   DEVICE         cuda or cpu [cuda when torch sees one]
#   PACK           the GPU pack [data/gpu_pack]; RUN logs, checkpoints, models [runs/gpu];
#   CORPUS         where the pack is unpacked [$RUN/corpus]
#   UNPACK_LIMIT_DOCS  only the first N documents of each packed file (dry runs) [0: all]
#   WHEELS         wheels installed (to /tmp/completer-site) when tree-sitter or rapidfuzz is missing [.whl]
#   PYTHON         [.venv/bin/python if present, else python3]
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
OUT=${OUT:-runs/gpu-out}
MINUTES=${MINUTES:-6}
TOTAL_SECONDS=${TOTAL_SECONDS:-570}
EVAL_RESERVE=${EVAL_RESERVE:-110}
TAIL_SECONDS=${TAIL_SECONDS:-25}
MODELS=${MODELS:-"draft:draft:3e-3 target-s:s:2e-3 target-m:m:1.5e-3 target-l:l:1.2e-3"}
BATCH=${BATCH:-32}; SEQ=${SEQ:-2048}; WARMUP=${WARMUP:-200}; WORKERS=${WORKERS:-2}; COMPILE=${COMPILE:-0}
EVAL_ROWS=${EVAL_ROWS:-16}; EVAL_SECONDS=${EVAL_SECONDS:-60}; EVAL_CASES=${EVAL_CASES:-150}
PACK=${PACK:-data/gpu_pack}; RUN=${RUN:-runs/gpu}; CORPUS=${CORPUS:-$RUN/corpus}
UNPACK_LIMIT_DOCS=${UNPACK_LIMIT_DOCS:-0}; WHEELS=${WHEELS:-.whl}; DEVICE=${DEVICE:-}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=$(command -v python3 || command -v python); fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
TOTAL=7
STEP=0
step() { STEP=$((STEP + 1)); echo; echo "== [$STEP/$TOTAL] $* (t=$(( $(date +%s) - T0 ))s)"; }
phase() { printf '%s\t%s\n' "$1" "$2" >>"$RUN/phases.tsv"; }
names=(); presets=(); lrs=(); batches=()
for spec in $MODELS; do
  IFS=: read -r n p l b <<<"$spec"
  names+=("$n"); presets+=("$p"); lrs+=("$l"); batches+=("${b:-$BATCH}")
done

# Refuse to start when the pack is missing or MINUTES cannot fit: no device minute is spent on a doomed run.
if [ ! -f "$PACK/pack.json" ] || [ ! -f "$PACK/tokenizer/tokenizer.json" ]; then
  echo "gpu_train: $PACK/pack.json not found. The run trains on the GPU pack: build it with" >&2
  echo "  python -m engine_builds.corpus pack --max-mib 44      (writes data/gpu_pack/, git-ignored)" >&2
  echo "and name it in the device tool's carry: [\"data/gpu_pack\", \".whl\"]." >&2
  exit 2
fi
if ! awk -v m="$MINUTES" -v t="$TOTAL_SECONDS" -v r="$EVAL_RESERVE" -v tail="$TAIL_SECONDS" \
     'BEGIN { exit !(m * 60 + r + tail + 40 <= t) }'; then
  echo "gpu_train: MINUTES=$MINUTES does not fit TOTAL_SECONDS=$TOTAL_SECONDS (start-up ~40 s + training +" \
       "EVAL_RESERVE=$EVAL_RESERVE + TAIL_SECONDS=$TAIL_SECONDS): at most" \
       "$(awk -v t="$TOTAL_SECONDS" -v r="$EVAL_RESERVE" -v tail="$TAIL_SECONDS" 'BEGIN { printf "%.1f", (t - r - tail - 40) / 60 }')" >&2
  exit 2
fi
mkdir -p "$OUT" "$RUN"
rm -f "$OUT"/*.tar "$OUT"/*.tar.part? "$OUT"/results.json  # what an earlier run left there
for n in "${names[@]}"; do rm -rf "${RUN:?}/$n" "$RUN/$n.log" "$RUN/$n.eval.log"; done
: >"$RUN/phases.tsv"

step "machine and prerequisites"
[ -n "$DEVICE" ] || DEVICE=$("$PYTHON" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PYTHON" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  echo "cores $(nproc); device $DEVICE; models $MODELS; batch $BATCH x $SEQ; minutes $MINUTES; compile $COMPILE"; } | tee "$RUN/machine.txt"
EVAL_OK=1
check_eval_deps() { "$PYTHON" -c "import tree_sitter, tree_sitter_python, rapidfuzz" 2>/dev/null; }
if ! check_eval_deps; then
  if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/completer-site \
      "$WHEELS"/*.whl >"$RUN/pip.log" 2>&1 || tail -n 3 "$RUN/pip.log"
    export PYTHONPATH=$PYTHONPATH:/tmp/completer-site
  fi
  check_eval_deps || { EVAL_OK=0; echo "tree-sitter / rapidfuzz missing (no wheels in $WHEELS: bash engine_builds/gpu_wheels.sh" \
    "here, then carry .whl): training runs, the line evaluation is skipped"; }
fi
[ "$EVAL_OK" = 1 ] && echo "evaluation dependencies importable"
phase setup $(( $(date +%s) - T0 ))

step "predicted throughput (and the presets checked)"
IFS=, ; preset_list="${presets[*]}"; unset IFS
"$PYTHON" -m engine_builds.train --predict --presets "$preset_list" --minutes "$MINUTES" --seq-len "$SEQ" \
  --predict-json "$RUN/prediction.json" >"$RUN/prediction.txt" 2>&1 || { cat "$RUN/prediction.txt"; exit 2; }
cat "$RUN/prediction.txt"

step "unpack $PACK into $CORPUS"
t=$(date +%s)
"$PYTHON" -m engine_builds.gpu_unpack --pack "$PACK" --out "$CORPUS" --limit-docs "$UNPACK_LIMIT_DOCS" --lenient || {
  echo "gpu_train: unpack failed"; exit 1; }
phase unpack $(( $(date +%s) - t ))


END_BY=$(( T0 + TOTAL_SECONDS - EVAL_RESERVE - TAIL_SECONDS ))
step "train ${#names[@]} models side by side on $DEVICE for $MINUTES min of clock each (by $(( END_BY - T0 ))s at the latest)"
t=$(date +%s)
compile_flag=(); [ "$COMPILE" = 1 ] && compile_flag=(--compile)
pids=()
for i in "${!names[@]}"; do
  n=${names[$i]}
  OMP_NUM_THREADS=2 "$PYTHON" -m engine_builds.train --tokens "$CORPUS" --preset "${presets[$i]}" --lr "${lrs[$i]}" \
    --batch-size "${batches[$i]}" --seq-len "$SEQ" --minutes "$MINUTES" --end-by "$END_BY" --warmup-steps "$WARMUP" \
    --workers "$WORKERS" --eval-every 0 --eval-seconds "$EVAL_SECONDS" --eval-rows "$EVAL_ROWS" --log-seconds 15 \
    --ckpt-minutes 0 --device "$DEVICE" "${compile_flag[@]}" --out "$RUN/$n" --export "$RUN/$n/hf" \
    >"$RUN/$n.log" 2>&1 &
  pids+=($!)
done
mon=""
if [ "$DEVICE" != cpu ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 5 >"$RUN/gpu_util.csv" 2>/dev/null &
  mon=$!
fi
rm -f "$RUN/.trained"
( last=$(date +%s)   # a progress line per model every minute; gone within a second once training ends
  while [ ! -f "$RUN/.trained" ]; do
    sleep 1
    [ $(( $(date +%s) - last )) -ge 60 ] || continue
    last=$(date +%s); echo "-- t=$(( last - T0 ))s"
    for n in "${names[@]}"; do
      printf '%-10s %s\n' "$n" "$(grep -E '^\[|eval step' "$RUN/$n.log" 2>/dev/null | tail -n 1 | cut -c1-150)"
    done
  done ) &
ticker=$!
failed=()
for i in "${!names[@]}"; do
  wait "${pids[$i]}" || failed+=("${names[$i]}")
done
touch "$RUN/.trained"; wait "$ticker" 2>/dev/null
[ -n "$mon" ] && { kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null; }
for n in "${names[@]}"; do echo "-- $n"; grep -E "parameters on|clock started|stopped at|exported" "$RUN/$n.log" | cut -c1-200; done
[ ${#failed[@]} -gt 0 ] && { echo "training failed: ${failed[*]}"; for n in "${failed[@]}"; do tail -n 5 "$RUN/$n.log"; done; }
[ -s "$RUN/gpu_util.csv" ] && awk -F', ' '{ gsub(/ %/, "", $2); s += $2; n++ } END { if (n) printf "GPU utilisation while training: mean %.0f%% over %d samples\n", s / n, n }' "$RUN/gpu_util.csv"
phase train $(( $(date +%s) - t ))

step "models into $OUT now, so they come back even if what follows runs out of time"
t=$(date +%s)
slots=6  # 8 minus logs.tar and results.json
limit=$((16 * 1024 * 1024 - 65536))  # under 16 MiB
: >"$RUN/returned.txt"
for n in "${names[@]}"; do
  [ -d "$RUN/$n/hf" ] || continue
  tar cf "$OUT/$n.tar" -C "$RUN/$n" --transform "s,^hf,$n," hf
  size=$(stat -c %s "$OUT/$n.tar")
  parts=$(( (size + limit - 1) / limit ))
  total_now=$(du -cb "$OUT" | tail -n 1 | cut -f1)
  if [ "$parts" -gt "$slots" ] || [ $(( total_now )) -gt $((60 * 1024 * 1024)) ]; then
    echo "$n: $(( size / 1048576 )) MiB does not fit what is left of the 8 files / 64 MiB: not brought back"
    rm -f "$OUT/$n.tar"; continue
  fi
  if [ "$parts" -gt 1 ]; then
    split -b "$limit" -d -a 1 "$OUT/$n.tar" "$OUT/$n.tar.part" && rm -f "$OUT/$n.tar"
  fi
  slots=$(( slots - parts ))
  ls "$OUT" | grep "^$n\.tar" >>"$RUN/returned.txt"
done
phase tars $(( $(date +%s) - t ))

EVAL_END=$(( T0 + TOTAL_SECONDS - TAIL_SECONDS ))
step "line completions E2/E3/E4 through the completer pipeline ($EVAL_CASES cuts per suite and language, until $(( EVAL_END - T0 ))s)"
t=$(date +%s)
if [ "$EVAL_OK" = 1 ]; then
  pids=()
  for n in "${names[@]}"; do
    [ -d "$RUN/$n/hf" ] || continue
    OMP_NUM_THREADS=2 timeout --kill-after=5 $(( EVAL_END - $(date +%s) + 15 )) "$PYTHON" -m engine_builds.gpu_eval lines \
      --model "$RUN/$n/hf" --pack "$PACK" --cases "$EVAL_CASES" --device "$DEVICE" --deadline "$EVAL_END" \
      --json "$RUN/$n/eval.json" >"$RUN/$n.eval.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  for n in "${names[@]}"; do [ -f "$RUN/$n.eval.log" ] && tail -n 1 "$RUN/$n.eval.log" | cut -c1-300; done
else
  echo "skipped: tree-sitter / rapidfuzz are not importable"
fi
phase eval $(( $(date +%s) - t ))

step "logs and results"
t=$(date +%s)
logs=()
for f in "$RUN"/*.log "$RUN"/machine.txt "$RUN"/phases.tsv "$RUN"/prediction.* "$RUN"/gpu_util.csv "$RUN"/pip.log \
         "$RUN"/*/hf/train_log.json "$RUN"/*/eval.json "$CORPUS"/tokens/unpack.json; do
  [ -f "$f" ] && logs+=("$f")
done
phase logs $(( $(date +%s) - t ))
phase total $(( $(date +%s) - T0 ))
tar cf "$OUT/logs.tar" "${logs[@]}" 2>/dev/null
echo "logs.tar results.json" >>"$RUN/returned.txt"
ls -la "$OUT"
IFS=, ; name_list="${names[*]}"; unset IFS
"$PYTHON" -m engine_builds.gpu_eval summary --run "$RUN" --models "$name_list" --json "$OUT/results.json"
echo "total $(( $(date +%s) - T0 ))s"
[ ${#failed[@]} -lt ${#names[@]} ]
