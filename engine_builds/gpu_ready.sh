#!/usr/bin/env bash
# From a fresh checkout to everything the GPU run and what follows it need, in one command. data/,
# .whl/ and .venv/ are git-ignored, so every new checkout starts without them; a session that is lent
# a GPU runs this first (20 minutes from a fresh clone on 2 cores, 15 of them the corpus: extraction,
# tokenizer, shards), then the run itself:
#
#   bash engine_builds/gpu_ready.sh
#   # device tool: carry ["data/gpu_pack", ".whl"], timeout_s 600
#   OUT=$OUT MINUTES=6.5 bash engine_builds/gpu_train.sh
#   python -m engine_builds.adopt_gpu_run all --returned <files_at>
#
# Steps, in the order the GPU run needs them (what it carries first; what the adoption reads after):
#   1. .venv with the test extras (make install-test)
#   2. the corpus from its pins: fetch, extract, build, tokenizer, shards (engine_builds.corpus all;
#      Debian packages are located through apt, so the package lists are refreshed first where allowed)
#   3. the evaluation's wheels (.whl/), then the GPU pack in what the device tool's 64 MiB leave
#      (corpus pack --max-mib: at most 44)
#   4. a check that what the device tool carries (the working tree git does not ignore + pack + wheels)
#      fits its 64 MiB
#   5. E2 (data/stdlib) and E3 (data/ood), which the adoption's quality runs and reranker fit read
#   6. a CPU dry run of gpu_train.sh on the pack (DRY_RUN=0 skips it)
# A step whose output is already there is skipped (the corpus' own steps cache their work too), so a
# stopped run goes on. Each step's minutes are printed, and the table again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DRY_RUN=${DRY_RUN:-1}
T0=$(date +%s)
times=()
mark() { times+=("$(printf '%-34s %5.1f min' "$1" "$(awk -v s="$2" -v e="$(date +%s)" 'BEGIN { print (e - s) / 60 }')")"); }

echo "== [1/6] .venv"
t=$(date +%s); make --no-print-directory install-test; mark "venv" "$t"

echo "== [2/6] the corpus (fetch, extract, build, tokenizer, shards)"
t=$(date +%s)
if [ ! -f data/corpus/manifest.json ] || [ ! -f data/corpus/tokenizer/tokenizer.json ] || \
   ! ls data/corpus/tokens/train-*.u16 >/dev/null 2>&1; then
  if command -v apt-get >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq || true
    elif command -v sudo >/dev/null; then sudo -n apt-get update -qq || true; fi
  fi
  "$PY" -m engine_builds.corpus all
else
  echo "already built: data/corpus"
fi
mark "corpus all" "$t"

echo "== [3/6] the evaluation's wheels and the GPU pack"
t=$(date +%s)
if ! ls .whl/rapidfuzz-*.whl >/dev/null 2>&1; then PYTHON=$PY bash engine_builds/gpu_wheels.sh; else echo "already there: .whl"; fi
mark "wheels" "$t"
t=$(date +%s)
carried() { (git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null || true) | tail -n 1 | cut -f1; }
tracked=$(carried)  # the working tree as it travels
wheels=$(du -sb .whl | cut -f1)
# The pack gets what the device tool's 64 MiB leave beside the repository (which grows a little with
# every session) and the wheels, less half a MiB for files written before the run; 44 MiB at most.
room=$(awk -v t="$tracked" -v w="$wheels" 'BEGIN { r = (64 * 1048576 - t - w) / 1048576 - 0.5; r = r > 44 ? 44 : r; printf "%.1f", r }')
if [ -f data/gpu_pack/pack.json ] && [ "$(du -sb data/gpu_pack | cut -f1)" -gt "$(awk -v r="$room" 'BEGIN { printf "%d", r * 1048576 }')" ]; then
  echo "data/gpu_pack is over the $room MiB left for it: packing again"
  rm -rf data/gpu_pack
fi
if [ ! -f data/gpu_pack/pack.json ]; then "$PY" -m engine_builds.corpus pack --max-mib "$room"; else echo "already packed: data/gpu_pack"; fi
mark "pack" "$t"

echo "== [4/6] what the device tool carries"
tracked=$(carried)
pack=$(du -sb data/gpu_pack | cut -f1)
total=$((tracked + pack + wheels))
printf 'repository %.1f MiB + pack %.1f MiB + wheels %.1f MiB = %.1f MiB (the device tool carries at most 64)\n' \
  "$(awk -v b="$tracked" 'BEGIN { print b / 1048576 }')" "$(awk -v b="$pack" 'BEGIN { print b / 1048576 }')" \
  "$(awk -v b="$wheels" 'BEGIN { print b / 1048576 }')" "$(awk -v b="$total" 'BEGIN { print b / 1048576 }')"
if [ "$total" -gt $((64 * 1048576)) ]; then
  echo "gpu_ready: over the 64 MiB the device tool carries: pack with a smaller --max-mib" >&2
  exit 1
fi

echo "== [5/6] E2 and E3 for the adoption's quality runs"
t=$(date +%s)
[ -f data/stdlib/corpus.jsonl.gz ] || "$PY" -m engine_builds.prepare_data
[ -f data/ood/corpus.jsonl.gz ] || "$PY" -m engine_builds.prepare_ood
mark "E2 + E3 data" "$t"

if [ "$DRY_RUN" = 1 ]; then
  echo "== [6/6] a CPU dry run of gpu_train.sh on the pack"
  t=$(date +%s)
  dry=$(mktemp -d)
  DEVICE=cpu MINUTES=0.1 MODELS="draft:tiny:3e-3 s:tiny:2e-3" BATCH=2 SEQ=128 WORKERS=0 EVAL_CASES=3 EVAL_ROWS=1 \
    WARMUP=2 TOTAL_SECONDS=300 UNPACK_LIMIT_DOCS=200 RUN="$dry/run" OUT="$dry/out" \
    bash engine_builds/gpu_train.sh >"$dry/log" 2>&1 || { tail -n 20 "$dry/log"; echo "gpu_ready: the dry run failed ($dry/log)" >&2; exit 1; }
  ls "$dry/out"
  mark "dry run" "$t"
  rm -rf "$dry"
fi

echo
echo "ready in $(awk -v s="$T0" -v e="$(date +%s)" 'BEGIN { printf "%.1f", (e - s) / 60 }') min:"
printf '  %s\n' "${times[@]}"
echo "next: the device tool's run with carry [\"data/gpu_pack\", \".whl\"], timeout_s 600:"
echo "  OUT=\$OUT MINUTES=6.5 bash engine_builds/gpu_train.sh"
