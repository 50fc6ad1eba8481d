#!/usr/bin/env bash
# The torch engine on one NVIDIA GPU, from a stock PyTorch image (python + torch with CUDA), with
# one summary table at the end whose fields are the same every run.
#
#   bash bench/gpu_check.sh                                    # everything, on cuda
#   GPU_CHECK_SESSIONS=4 GPU_CHECK_REPEATS=3 bash bench/gpu_check.sh    # a shorter run
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_SESSIONS=1 GPU_CHECK_REPEATS=1 bash bench/gpu_check.sh   # dry run, no GPU
#
# Steps: machine and prerequisites; Python dependencies (installed only when asked); one completion
# through the CLI; bench/engine_bench.py eager and with --compile; `completer replay` of
# bench/sessions with the server on the device, eager and with --compile; the same sessions from a
# cold start (the first key 1 s after the server's launch), defaults and --compile; the summary. Each step
# runs under a time limit with its log in $GPU_CHECK_OUT; a failed or skipped step shows in the table
# and the script goes on with the next.
#
# Environment [default]:
#   GPU_CHECK_DEVICE        cuda, cuda:N or cpu [cuda]; weights are bf16 on CUDA, fp32 on CPU
#   GPU_CHECK_MODEL         model name or directory [embedded]
#   GPU_CHECK_REPEATS       engine_bench --repeats [7]
#   GPU_CHECK_SESSIONS      all, or N: N sessions spread over bench/sessions [all]
#   GPU_CHECK_MAX_PAUSE_MS  replay --max-pause-ms [1000, as `make bench`]
#   GPU_CHECK_SPEED         replay --speed [1: real time]
#   GPU_CHECK_COMPILE       0 skips the --compile variants [1]
#   GPU_CHECK_DRAFT         1: also replay the compiled server with auto, n-gram, draft-model and no speculation [0]
#   GPU_CHECK_STEP_TIMEOUT  seconds allowed per step [900]
#   GPU_CHECK_INSTALL       1: pip-install the missing dependencies named in pyproject.toml (needs an index) [0]
#   GPU_CHECK_WHEELS        a directory of wheels: install the missing dependencies from it, offline
#   GPU_CHECK_OUT           logs, JSON and summary [$OUT, else bench/results/gpu-check]
#   PYTHON                  interpreter [.venv/bin/python if it exists, else python3]
# The repository itself is never installed: it runs from this checkout (PYTHONPATH).
# Time: a dry run with 2 sessions and 3 repeats takes about 2 minutes on a 2-core CPU. Replays type
# in real time, so all 16 sessions should take about 3.5 minutes per replay step (estimated from the
# dry run). The compiled engine_bench step fills Inductor's on-disk cache, so the compiled replay
# server should be ready within replay's 120 s start-up limit.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
DEVICE=${GPU_CHECK_DEVICE:-cuda}
MODEL=${GPU_CHECK_MODEL:-embedded}
REPEATS=${GPU_CHECK_REPEATS:-7}
SESSIONS=${GPU_CHECK_SESSIONS:-all}
MAX_PAUSE_MS=${GPU_CHECK_MAX_PAUSE_MS:-1000}
SPEED=${GPU_CHECK_SPEED:-1}
COMPILE=${GPU_CHECK_COMPILE:-1}
STEP_TIMEOUT=${GPU_CHECK_STEP_TIMEOUT:-900}
INSTALL=${GPU_CHECK_INSTALL:-0}
WHEELS=${GPU_CHECK_WHEELS:-}
OUTDIR=${GPU_CHECK_OUT:-${OUT:-bench/results/gpu-check}}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=$(command -v python3 || command -v python || true); fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

TOTAL=11
STEP=0
step() { STEP=$((STEP + 1)); echo; echo "== [$STEP/$TOTAL] $*"; }
die() { echo "gpu_check: $*" >&2; exit 1; }
record() { printf '%s\t%s\t%s\n' "$1" "$2" "${3:-0}" >>"$OUTDIR/status.tsv"; }  # key, status, seconds

# run KEY LOG CMD...: run under the step time limit, output to LOG and (indented) here; record the
# outcome; never stops the script.
run() {
  local key=$1 log=$2 rc=0 t0=$SECONDS status
  shift 2
  echo "   \$ $*"
  { timeout --kill-after=15 "$STEP_TIMEOUT" "$@" 2>&1 | tee "$log" | sed -u 's/^/   | /'; } || rc=$?
  if [ "$rc" -eq 0 ]; then status=ok
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status="timed out (${STEP_TIMEOUT}s)"
  else status="failed (exit $rc)"; fi
  record "$key" "$status" $((SECONDS - t0))
  echo "   -> $status after $((SECONDS - t0)) s; log: $log"
}

skip() { record "$1" "skipped: $2"; echo "   -> skipped: $2"; }

[ -n "$PYTHON" ] || die "no python3 or python on PATH (set PYTHON=/path/to/python)"
[ "$SESSIONS" = all ] || [[ "$SESSIONS" =~ ^[1-9][0-9]*$ ]] || die "GPU_CHECK_SESSIONS must be 'all' or a positive number (got '$SESSIONS')"
mkdir -p "$OUTDIR"
: >"$OUTDIR/status.tsv"
rm -f "$OUTDIR"/engine-*.log "$OUTDIR"/replay-*.json "$OUTDIR"/replay-*.log "$OUTDIR"/cold-*.json "$OUTDIR"/cold-*.log \
  "$OUTDIR"/speculation.* "$OUTDIR"/summary.*

step "machine and prerequisites (device $DEVICE)"
for f in bench/engine_bench.py bench/sessions completer/replay/demo_data/inventory.py pyproject.toml; do
  [ -e "$f" ] || die "$f is missing: run this from a full checkout of the repository"
done
case "$DEVICE" in
  cuda*)
    command -v nvidia-smi >/dev/null || die "nvidia-smi not found: no NVIDIA driver here (GPU_CHECK_DEVICE=cpu for a dry run)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUTDIR/nvidia-smi.txt" \
      || die "nvidia-smi failed: is a GPU visible to this container?"
    DTYPE_FLAGS=(--dtype bfloat16) ;;
  cpu) echo "   dry run on the CPU: nvidia-smi not needed"; DTYPE_FLAGS=() ;;
  *) die "GPU_CHECK_DEVICE must be cuda, cuda:N or cpu (got '$DEVICE')" ;;
esac
"$PYTHON" - "$DEVICE" "$OUTDIR/machine.json" <<'EOF' || die "python or torch is not usable (see above)"
import json, os, platform, sys
device, out = sys.argv[1], sys.argv[2]
try:
    import torch
except ImportError:
    sys.exit("torch is not installed for " + sys.executable)
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "device": device}
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit(f"torch {torch.__version__} in {sys.executable} sees no CUDA device (a CPU-only build? set PYTHON; "
                 "or no GPU in this container)")
    index = int(device.split(":")[1]) if ":" in device else 0
    info["device_name"] = torch.cuda.get_device_name(index)
    info["bf16"] = torch.cuda.is_bf16_supported()
else:
    name = platform.processor() or platform.machine()
    try:
        name = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info["device_name"] = f"{name}, {os.cpu_count()} cores (cpu)"
json.dump(info, open(out, "w"), indent=1)
print("   " + ", ".join(f"{k} {v}" for k, v in info.items()))
EOF

step "Python dependencies (pyproject.toml)"
# Which of the project's dependencies import here; install only the missing ones, and only if asked.
MISSING=$("$PYTHON" - <<'EOF'
import importlib.util, re
try:
    import tomllib
    deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
except ImportError:  # Python 3.10: read the list by hand
    text = open("pyproject.toml").read()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    deps = re.findall(r'^\s*"([^"]+)"', block, re.M)
for spec in deps:
    name = re.match(r"[A-Za-z0-9_.-]+", spec).group(0)
    if importlib.util.find_spec(name.replace("-", "_").lower()) is None:
        print(spec)
EOF
)
if [ -n "$MISSING" ] && { [ "$INSTALL" = 1 ] || [ -n "$WHEELS" ]; }; then
  echo "   missing: $(echo $MISSING)"
  pip_args=(install --quiet)
  [ -n "$WHEELS" ] && pip_args+=(--no-index --find-links "$WHEELS")
  mapfile -t specs <<<"$MISSING"
  if "$PYTHON" -m pip "${pip_args[@]}" "${specs[@]}" >"$OUTDIR/pip.log" 2>&1; then
    echo "   installed: $(echo $MISSING)"; record deps "installed: $(echo $MISSING)"
  else
    echo "   pip could not install them (no package index reachable?); see $OUTDIR/pip.log"
    tail -n 5 "$OUTDIR/pip.log" | sed 's/^/   | /'
    record deps "install failed: $(echo $MISSING)"
  fi
elif [ -n "$MISSING" ]; then
  echo "   missing (not installed; GPU_CHECK_INSTALL=1 or GPU_CHECK_WHEELS=DIR would install them): $(echo $MISSING)"
  record deps "missing: $(echo $MISSING)"
else
  echo "   all importable"; record deps ok
fi
# The engine needs torch, tokenizers, safetensors and rapidfuzz; the server and replay need the rest.
ENGINE_OK=1; SERVER_OK=1
"$PYTHON" -c "import completer.engines.torch.engine, completer.engines.loading, safetensors, rapidfuzz" 2>"$OUTDIR/import-engine.log" || ENGINE_OK=0
"$PYTHON" -c "import completer.replay.driver, lsp.server, rapidfuzz" 2>"$OUTDIR/import-server.log" || SERVER_OK=0
[ "$ENGINE_OK" = 1 ] || echo "   the engine does not import: $(tail -n 1 "$OUTDIR/import-engine.log")"
[ "$SERVER_OK" = 1 ] || echo "   the language server does not import: $(tail -n 1 "$OUTDIR/import-server.log")"

step "one completion through the CLI (completer complete --device $DEVICE)"
if [ "$ENGINE_OK" = 1 ]; then
  run complete "$OUTDIR/complete.log" "$PYTHON" -m completer complete completer/replay/demo_data/inventory.py \
    --line 40 --character 8 --json --model "$MODEL" --device "$DEVICE" "${DTYPE_FLAGS[@]}"
else skip complete "the engine does not import (see $OUTDIR/import-engine.log)"; fi

step "engine micro-benchmark, eager (bench/engine_bench.py --device $DEVICE)"
if [ "$ENGINE_OK" = 1 ]; then
  run engine-eager "$OUTDIR/engine-eager.log" "$PYTHON" bench/engine_bench.py --model "$MODEL" --device "$DEVICE" --repeats "$REPEATS"
else skip engine-eager "the engine does not import"; fi

step "engine micro-benchmark, compiled (bench/engine_bench.py --compile)"
# Say what --compile is here, from the code itself: on CUDA the decode step is compiled as
# fixed-shape graphs (forward_static) with Inductor's CUDA-graph capture; check that it still is.
"$PYTHON" - >"$OUTDIR/compile-mode.txt" <<'EOF' || echo "unknown (could not read completer/engines/torch/compile.py)" >"$OUTDIR/compile-mode.txt"
import inspect
from completer.engines.torch.compile import Compiler
src = inspect.getsource(Compiler.build)
graphs = "triton.cudagraphs" in src and "forward_static" in src
print("--compile on CUDA = torch.compile of fixed-shape decode steps (forward_static), "
      + ("captured as CUDA graphs: one launch per step (TORCH_LOGS=cudagraphs says if capture was skipped)"
         if graphs else "Inductor kernel fusion only, NOT CUDA-graph capture"))
EOF
echo "   $(cat "$OUTDIR/compile-mode.txt")"
if [ "$COMPILE" != 1 ]; then skip engine-compiled "GPU_CHECK_COMPILE=$COMPILE"
elif [ "$ENGINE_OK" = 1 ]; then
  run engine-compiled "$OUTDIR/engine-compiled.log" "$PYTHON" bench/engine_bench.py --model "$MODEL" --device "$DEVICE" \
    --repeats "$REPEATS" --compile
else skip engine-compiled "the engine does not import"; fi

# The sessions to replay: all of bench/sessions, or N of them spread evenly over the sorted list
# (so a short run still mixes Python, JavaScript and Go).
mapfile -t ALL_SESSIONS < <(ls bench/sessions/*.msgpack | sort)
if [ "$SESSIONS" = all ]; then PICKED=("${ALL_SESSIONS[@]}")
else
  PICKED=()
  n=${#ALL_SESSIONS[@]}; k=$(( SESSIONS < n ? SESSIONS : n ))
  for ((i = 0; i < k; i++)); do PICKED+=("${ALL_SESSIONS[$(( i * n / k ))]}"); done
fi
REPLAY_FLAGS=(--max-pause-ms "$MAX_PAUSE_MS" --speed "$SPEED" --model "$MODEL" --device "$DEVICE" "${DTYPE_FLAGS[@]}")

step "replay ${#PICKED[@]} session(s), server eager on $DEVICE (completer replay ... --json)"
if [ "$SERVER_OK" = 1 ]; then
  run replay-eager "$OUTDIR/replay-eager.log" "$PYTHON" -m completer replay "${PICKED[@]}" "${REPLAY_FLAGS[@]}" \
    --name eager --json "$OUTDIR/replay-eager.json"
else skip replay-eager "the language server does not import (see $OUTDIR/import-server.log)"; fi

step "replay ${#PICKED[@]} session(s), server with --compile"
if [ "$COMPILE" != 1 ]; then skip replay-compiled "GPU_CHECK_COMPILE=$COMPILE"
elif [ "$SERVER_OK" = 1 ]; then
  run replay-compiled "$OUTDIR/replay-compiled.log" "$PYTHON" -m completer replay "${PICKED[@]}" "${REPLAY_FLAGS[@]}" \
    --compile --name compiled --json "$OUTDIR/replay-compiled.json"
else skip replay-compiled "the language server does not import"; fi

# What a user meets: the server started as an editor starts it and the first key 1 s later, no warm-up.
# Time to the first suggestion, latency over the first 60 s and after, and the slowest answer once the
# first second is over (issue 23: none above 100 ms on a GPU).
step "cold-start replay, ${#PICKED[@]} session(s): server defaults, first key 1 s after launch"
if [ "$SERVER_OK" = 1 ]; then
  run cold-eager "$OUTDIR/cold-eager.log" "$PYTHON" -m completer replay "${PICKED[@]}" "${REPLAY_FLAGS[@]}" \
    --cold-start-s 1 --name cold-default --json "$OUTDIR/cold-eager.json"
else skip cold-eager "the language server does not import"; fi

step "cold-start replay, ${#PICKED[@]} session(s): server with --compile, first key 1 s after launch"
if [ "$COMPILE" != 1 ]; then skip cold-compiled "GPU_CHECK_COMPILE=$COMPILE"
elif [ "$SERVER_OK" = 1 ]; then
  run cold-compiled "$OUTDIR/cold-compiled.log" "$PYTHON" -m completer replay "${PICKED[@]}" "${REPLAY_FLAGS[@]}" \
    --cold-start-s 1 --compile --name cold-compiled --json "$OUTDIR/cold-compiled.json"
else skip cold-compiled "the language server does not import"; fi

# Issue 23's draft pair: the same sessions with the default (auto: the target's paired draft, used
# only where its measured cost pays), n-gram drafts alone, the draft model always loaded, and no
# speculation; the engine's policy decides per request from measured costs. Opt-in: four more replays.
step "speculation: auto (default), n-gram, draft model, none; compiled server (GPU_CHECK_DRAFT=1)"
if [ "${GPU_CHECK_DRAFT:-0}" != 1 ]; then skip speculation "GPU_CHECK_DRAFT=${GPU_CHECK_DRAFT:-0}"
elif [ "$COMPILE" != 1 ]; then skip speculation "GPU_CHECK_COMPILE=$COMPILE"
elif [ "$SERVER_OK" = 1 ]; then
  run speculation "$OUTDIR/speculation.log" "$PYTHON" -m completer replay "${PICKED[@]}" "${REPLAY_FLAGS[@]}" \
    --compile --name auto --ab "ngram=--draft-model none" --ab "draft=--draft-model embedded-draft" \
    --ab "none=--no-speculative" \
    --json "$OUTDIR/speculation.json"
else skip speculation "the language server does not import"; fi

step "summary"
"$PYTHON" - "$OUTDIR" "$MODEL" <<'EOF'
import json, re, sys
from pathlib import Path

out, model = Path(sys.argv[1]), sys.argv[2]
status = {}
for line in (out / "status.tsv").read_text().splitlines():
    key, state, secs = line.split("\t")
    status[key] = (state, int(secs))
machine = json.loads((out / "machine.json").read_text())


def engine(variant):
    log = out / f"engine-{variant}.log"
    text = log.read_text() if log.exists() else ""
    def num(pattern):
        m = re.search(pattern, text)
        return float(m.group(1)) if m else None
    weights = re.search(r"weights (\w+), decode weights (\w+)", text)
    return {
        "weights": f"{weights.group(1)} (decode {weights.group(2)})" if weights else None,
        "ready_s": num(r"ready in ([\d.]+) s"),
        "cold_prefill_1024_ms": num(r"cold prefill 1024 tokens:\s+([\d.]+) ms"),
        "cold_prefill_2048_ms": num(r"cold prefill 2048 tokens:\s+([\d.]+) ms"),
        "warm_first_token_ms": num(r"warm first token, 1 new token\s*:\s+([\d.]+) ms"),
        "decode_ms_per_token": num(r"decode:\s+([\d.]+) ms/token"),
        "completion_16_ms": num(r"warm 16-token completion:\s+([\d.]+) ms"),
        "ngram_copy_heavy_x": num(r"speculation\s+copy-heavy:.*?\(([\d.]+)x\)"),
        "graphs": (re.search(r"compiled graphs: ([^;\n]+)", text) or [None, None])[1],
    }


def replay(variant):
    path = out / f"replay-{variant}.json"
    if not path.exists():
        return {}
    s = json.loads(path.read_text())["configs"][0]["summary"]
    return {"sessions_requests": f"{s['sessions']} / {s['requests']}", "p50_ms": s["latency_p50_ms"],
            "p95_ms": s["latency_p95_ms"], "engine_p50_ms": s["latency_p50_by_kind_ms"].get("engine")}


def cold(variant):
    path = out / f"cold-{variant}.json"
    if not path.exists():
        return {}
    c = json.loads(path.read_text())["configs"][0]["summary"].get("cold_start") or {}
    first, rest = c.get("first_60s") or {}, c.get("after_60s") or {}
    slowest = c.get("after_1s_max_ms")
    return {"first_suggestion_ms": c.get("first_suggestion_after_first_key_ms"),
            "first_60s": "/".join(str(first.get(k, "-")) for k in ("p50_ms", "p95_ms", "p99_ms")),
            "after_60s": "/".join(str(rest.get(k, "-")) for k in ("p50_ms", "p95_ms", "p99_ms")),
            "after_1s_max_ms": slowest,
            "none_above_100ms": None if slowest is None else ("yes" if slowest <= 100 else "no")}


def state(key):
    return status.get(key, ("not run", 0))[0]


data = {"machine": machine, "model": model, "status": {k: v[0] for k, v in status.items()},
        "compile_mode": (out / "compile-mode.txt").read_text().strip() if (out / "compile-mode.txt").exists() else None}
for v in ("eager", "compiled"):
    data[f"engine_{v}"], data[f"replay_{v}"], data[f"cold_{v}"] = engine(v), replay(v), cold(v)


def cell(v, key, section):
    """A value, or why there is none: the step's state when it did not run or failed."""
    value = data[f"{section}_{v}"].get(key)
    if value is not None:
        return f"{value:.2f}" if isinstance(value, float) else str(value)
    st = state(f"{section}-{v}")
    return "n/a" if st == "ok" else st.split(":")[0].split(" (")[0]


ROWS = [  # label, key, section: the same fields every run
    ("weights dtype", "weights", "engine"),
    ("compiled graphs", "graphs", "engine"),
    ("engine ready s", "ready_s", "engine"),
    ("cold prefill 1024 tokens ms", "cold_prefill_1024_ms", "engine"),
    ("cold prefill 2048 tokens ms", "cold_prefill_2048_ms", "engine"),
    ("warm first token (1 new token) ms", "warm_first_token_ms", "engine"),
    ("decode ms/token", "decode_ms_per_token", "engine"),
    ("16-token completion ms (warm cache)", "completion_16_ms", "engine"),
    ("n-gram speculation, copy-heavy x", "ngram_copy_heavy_x", "engine"),
    ("replay sessions / requests", "sessions_requests", "replay"),
    ("replay p50 ms", "p50_ms", "replay"),
    ("replay p95 ms", "p95_ms", "replay"),
    ("replay p50 ms, model-answered", "engine_p50_ms", "replay"),
    ("cold start: first suggestion, ms after the first key", "first_suggestion_ms", "cold"),
    ("cold start: first 60 s p50/p95/p99 ms", "first_60s", "cold"),
    ("cold start: after 60 s p50/p95/p99 ms", "after_60s", "cold"),
    ("cold start: slowest answer after the first second ms", "after_1s_max_ms", "cold"),
    ("cold start: none above 100 ms after the first second", "none_above_100ms", "cold"),
]
rows = [("field", "eager", "compiled"),
        ("device", machine["device_name"], "(same)"),
        ("torch / CUDA", f"{machine['torch']} / {machine['cuda'] or '-'}", "(same)"),
        ("model", model, "(same)")]
rows += [(label, cell("eager", key, sec), cell("compiled", key, sec)) for label, key, sec in ROWS]
rows.append(("CLI completion / dependencies", state("complete"), state("deps")))
w = [max(len(r[i]) for r in rows) for i in range(3)]
lines = []
for i, r in enumerate(rows):
    lines.append(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}")
    if i == 0:
        lines.append("-" * len(lines[0]))
spec = out / "speculation.json"
if spec.exists():  # one row per speculation variant
    lines.append("")
    lines.append("speculation (compiled): p50 / p95 ms, model answers' decoded tokens, drafts accepted / drafted")
    for c in json.loads(spec.read_text())["configs"]:
        s = c["summary"]
        work = s.get("engine_per_request") or {}
        lines.append(f"  {c['name']:<6} {s['latency_p50_ms']} / {s['latency_p95_ms']}, {work.get('decode_tokens')}, "
                     f"{work.get('accepted_tokens')} / {work.get('drafted_tokens')} per answer "
                     f"(acceptance {s.get('draft_acceptance')})")
        data[f"speculation_{c['name']}"] = {k: s.get(k) for k in ("latency_p50_ms", "latency_p95_ms", "draft_acceptance")}
lines.append("")
lines.append(data["compile_mode"] or "")
bad = {k: v for k, v in data["status"].items() if v != "ok"}
if bad:
    lines.append("not ok: " + "; ".join(f"{k}: {v}" for k, v in bad.items()) + f" (logs in {out})")
table = "\n".join(lines)
print(table)
(out / "summary.txt").write_text(table + "\n")
(out / "summary.json").write_text(json.dumps(data, indent=1) + "\n")
EOF
echo
echo "logs, replay JSON and summary.{txt,json} are in $OUTDIR"
