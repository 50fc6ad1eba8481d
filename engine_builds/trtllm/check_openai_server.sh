#!/usr/bin/env bash
# Check an OpenAI-compatible server the way completer's `openai` backend uses it: FIM prompts as
# token ids built from a local copy of the tokenizer, greedy, streamed. Works against trtllm-serve,
# lmdeploy api_server, the Dynamo frontend, vLLM, llama.cpp's server and `completer serve-openai`.
#
#   engine_builds/trtllm/check_openai_server.sh URL TOKENIZER_DIR [SERVED_MODEL]
#   engine_builds/trtllm/check_openai_server.sh http://127.0.0.1:8000/v1 /models/qwen2.5-coder-1.5b
#
# Reports: the served models; whether token-id prompts work (else whether text prompts do); time to
# first token for a cold prompt, the same prompt again (prefix reuse) and one with a keystroke
# added; whether unknown body fields are refused (trtllm-serve refuses them). API key from
# $COMPLETER_API_KEY or $OPENAI_API_KEY. Needs python3 with the `tokenizers` package.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 URL TOKENIZER_DIR [SERVED_MODEL]" >&2; exit 2; }
URL=$1; TOKDIR=$2; SERVED=${3:-}
PYTHON=${PYTHON:-python3}
TOTAL=3; STEP=0
step() { STEP=$((STEP + 1)); echo "== [$STEP/$TOTAL] $*"; }
die() { echo "error: $*" >&2; exit 1; }

step "client prerequisites"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=...)"
"$PYTHON" -c "import tokenizers" 2>/dev/null || die "the tokenizers package is missing for $PYTHON (completer's environment has it)"
[ -f "$TOKDIR/tokenizer.json" ] || die "$TOKDIR/tokenizer.json not found: the server's model's tokenizer is needed here"

step "server at $URL"
"$PYTHON" - "$URL" "$TOKDIR" "$SERVED" <<'PY'
import json, os, statistics, sys, time, urllib.error, urllib.request
from tokenizers import Tokenizer

base, tokdir, served = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
headers = {"Content-Type": "application/json", "X-Session-Id": "check-openai-server"}
key = os.environ.get("COMPLETER_API_KEY") or os.environ.get("OPENAI_API_KEY")
if key:
    headers["Authorization"] = f"Bearer {key}"


def call(path, body=None, timeout=120):
    """(status, parsed body or error text, ms to first streamed chunk, total ms)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers=headers, method="GET" if body is None else "POST")
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            if not (body or {}).get("stream"):
                return r.status, json.loads(r.read()), None, (time.perf_counter() - t0) * 1000
            first, text = None, ""
            for raw in r:
                line = raw.decode().strip()
                if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                    continue
                chunk = json.loads(line[5:])
                delta = chunk["choices"][0].get("text", "") if chunk.get("choices") else ""
                if first is None and delta:
                    first = (time.perf_counter() - t0) * 1000
                text += delta
            return r.status, text, first, (time.perf_counter() - t0) * 1000
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")[:200], None, (time.perf_counter() - t0) * 1000
    except urllib.error.URLError as e:
        sys.exit(f"error: cannot reach {base}: {e.reason}")


status, models, _, _ = call("/models")
if status != 200:
    sys.exit(f"error: GET /models answered {status}: {models}")
names = [m["id"] for m in models.get("data", [])]
print(f"served models: {names}")
served = served or (names[0] if names else "")

tok = Tokenizer.from_file(os.path.join(tokdir, "tokenizer.json"))
for family in (("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"), ("<fim_prefix>", "<fim_suffix>", "<fim_middle>")):
    sentinels = [tok.token_to_id(t) for t in family]
    if None not in sentinels:
        break
else:
    sys.exit("error: no FIM sentinels (Qwen or StarCoder style) in this tokenizer")
pre, suf, mid = sentinels
enc = lambda s: tok.encode(s, add_special_tokens=False).ids
above = "import os\n\n\ndef count_lines(path):\n    with open(path, encoding='utf-8') as f:\n        return sum(1 for _ in f)\n\n\ndef walk(root):\n    total = 0\n    for dirpath, _, names in os.walk(root):\n        for name in names:\n"
below = "\n    return total\n"
left = "            total += count_"
ids = [pre] + enc(above) + [suf] + enc(below) + [mid] + enc(left)
body = {"model": served, "max_tokens": 16, "temperature": 0, "stream": True}

status, text, _, _ = call("/completions", {**body, "prompt": ids})
prompt_form = "token ids"
if status != 200:
    print(f"token-id prompt: refused ({status}: {text})")
    status, text, _, _ = call("/completions", {**body, "prompt": tok.decode(ids, skip_special_tokens=False)})
    prompt_form = "text"
    if status != 200:
        sys.exit(f"error: text prompt refused too ({status}: {text})")
print(f"prompt form that works: {prompt_form}; greedy completion of {left.strip()!r}: {text!r}")
as_sent = ids if prompt_form == "token ids" else tok.decode(ids, skip_special_tokens=False)

ttft = []
for _ in range(6):
    status, _, first, total = call("/completions", {**body, "prompt": as_sent})
    ttft.append(first if first is not None else total)
typed = ids + enc("l") if prompt_form == "token ids" else as_sent + "l"
_, _, first_typed, total_typed = call("/completions", {**body, "prompt": typed})
print(f"first token: first request {ttft[0]:.1f} ms, same prompt again p50 {statistics.median(ttft[1:]):.1f} ms, "
      f"one more character {first_typed or total_typed:.1f} ms ({len(ids)}-token prompt)")

status, reply, _, _ = call("/completions", {**body, "stream": False, "prompt": as_sent, "max_tokens": 1,
                                            "completer_probe": 1})
print("unknown body fields: " + ("refused (%d) - send only standard fields; --server-extra must hold fields this "
                                 "server knows" % status if status != 200 else "accepted (ignored or used)"))
PY

step "completer command line"
echo "completer serve --stdio --backend openai --server-url $URL ${SERVED:+--served-model $SERVED }--model $TOKDIR"
