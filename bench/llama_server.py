"""completer beside llama-server (the engine behind llama.vim), on the same model and keystrokes.

    python bench/llama_server.py all bench/sessions --rounds 2     # build, convert, compare
    python bench/llama_server.py build      # llama.cpp's server from the pinned llama-cpp-python sdist
    python bench/llama_server.py convert    # the embedded model as GGUF, with llama.cpp's own converter
    python bench/llama_server.py compare bench/sessions [--rounds N] [--language python] [--json OUT]

`build` fetches the llama-cpp-python sdist that tests/vocabs.py already pins (sha256-checked; the
network is needed at this step only) and builds its vendored llama.cpp's `llama-server` for this CPU
(GGML_NATIVE, no curl, no web UI) into .cache/llama/build: ~15 minutes on 2 cores.

`convert` runs llama.cpp's convert_hf_to_gguf.py on completer/models/embedded (fp32, as our CPU
engine runs it). Our tokenizer's pre-tokenizer regex is not one llama.cpp knows, so the converter's
hash check cannot name it; we name the closest of llama.cpp's built-in ones (qwen2: 80% of our
tokens come out the same on stdlib code, best of gpt-2, starcoder, deepseek-coder). That only
matters where llama-server tokenizes text itself (the llama.vim layout below).

`compare` replays the same sessions, interleaved round by round, against:
- completer: `completer serve --stdio` with its defaults (the compiled engine from the cache);
- completer ungated: the same with --no-rerank: the model's own greedy text, shown whatever its
  confidence, as llama-server shows it (the defaults decode less: the gate stops unlikely answers);
- llama.vim: llama-server behind bench/llama_shim.py, which asks /infill exactly as llama.vim
  does (text, its sampling, its client-side answer cache);
- llama same-prompt: llama-server asked for our model's own prompt (token ids, greedy, 48 tokens)
  through /completion: the same work as completer does, so the engines are compared alone.
Each llama-server runs with 2 threads on this 2-core machine, one slot, and llama.vim's
recommended --cache-reuse 256. It prints the replay's table with each column's ratio to completer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.vocabs import SDIST

CACHE = ROOT / ".cache" / "llama"
SRC = CACHE / f"llama_cpp_python-{SDIST[1]}" / "vendor" / "llama.cpp"
BUILD = CACHE / "build"
SERVER_BIN = BUILD / "bin" / "llama-server"
MODEL_DIR = ROOT / "completer" / "models" / "embedded"
GGUF = CACHE / "embedded-f32.gguf"
PRE_TOKENIZER = "qwen2"
THREADS = 2


def build() -> Path:
    if SERVER_BIN.exists():
        print(f"llama-server: {SERVER_BIN} (built)", file=sys.stderr)
        return SERVER_BIN
    from engine_builds.corpus_fetch import download, resolve_pypi

    name, version, sha = SDIST
    if not SRC.exists():
        f = resolve_pypi(name, version)[0]
        archive = download(f["url"], CACHE / f["file"], sha)  # refuses anything but the pinned sha256
        with tarfile.open(archive) as tar:
            tar.extractall(CACHE, filter="data")
    flags = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(SRC), "-B", str(BUILD), *flags, "-DCMAKE_BUILD_TYPE=Release",
                    "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
                    "-DGGML_NATIVE=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                    "-DBUILD_SHARED_LIBS=OFF"], check=True)
    t0 = time.monotonic()
    subprocess.run(["nice", "cmake", "--build", str(BUILD), "--target", "llama-server", "-j", str(os.cpu_count() or 2)],
                   check=True)
    print(f"llama-server built in {time.monotonic() - t0:.0f} s: {SERVER_BIN}", file=sys.stderr)
    return SERVER_BIN


# Runs in a fresh interpreter: llama.cpp's converter and its own gguf-py, with the pre-tokenizer named.
_CONVERT = """
import sys
src, pre = sys.argv[1], sys.argv[2]
sys.path[:0] = [src, src + "/gguf-py"]
from conversion import base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
def no_sentencepiece(self):  # ours is a byte-level BPE; the converter would import sentencepiece first
    raise FileNotFoundError("no tokenizer.model")
base.TextModel._set_vocab_sentencepiece = no_sentencepiece
import convert_hf_to_gguf
sys.argv = ["convert_hf_to_gguf.py", *sys.argv[3:]]
convert_hf_to_gguf.main()
"""


def convert() -> Path:
    newest = max(p.stat().st_mtime for p in MODEL_DIR.iterdir())
    if GGUF.exists() and GGUF.stat().st_mtime > newest:
        print(f"GGUF: {GGUF} (converted)", file=sys.stderr)
        return GGUF
    if not SRC.exists():
        raise SystemExit("no llama.cpp sources: run `python bench/llama_server.py build` first")
    subprocess.run([sys.executable, "-c", _CONVERT, str(SRC), PRE_TOKENIZER, str(MODEL_DIR), "--outfile", str(GGUF),
                    "--outtype", "f32"], check=True)
    return GGUF


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """llama-server on a free local port, up until the context exits."""

    def __init__(self, gguf: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [str(SERVER_BIN), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(self.port),
                    "-t", str(THREADS), "-tb", str(THREADS), "-c", "2048", "-np", "1", "--cache-reuse", "256",
                    "--no-ui"]

    def __enter__(self):
        self.log = open(CACHE / "llama-server.log", "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"llama-server exited ({self.proc.returncode}); see {CACHE / 'llama-server.log'}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise SystemExit("llama-server did not become healthy in 60 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def compare(args) -> int:
    from completer.replay import report
    from completer.replay.driver import ReplayOptions, replay_all
    from completer.replay.editor_client import default_server_cmd, private_log
    from completer.replay.session import iter_paths, read_session

    sessions = [s for s in map(read_session, iter_paths(args.sessions))
                if args.language == "all" or s.meta.get("language") == args.language]
    if not sessions:
        raise SystemExit(f"no {args.language} sessions in {' '.join(args.sessions)}")
    options = ReplayOptions(max_pause_ms=args.max_pause_ms)
    shim = [sys.executable, str(ROOT / "bench" / "llama_shim.py")]
    configs = [{"name": "completer", "server_cmd": default_server_cmd([]), "llama": False},
               {"name": "completer ungated", "server_cmd": default_server_cmd(["--no-rerank"]), "llama": False},
               {"name": "llama.vim", "server_cmd": shim + ["--layout", "llama.vim"], "llama": True},
               {"name": "llama same-prompt", "server_cmd": shim + ["--layout", "same-prompt"], "llama": True}]
    for c in configs:
        c["results"] = []
    log = private_log("llama-compare")
    for rnd in range(args.rounds):
        for c in configs:
            print(f"round {rnd + 1}/{args.rounds}: {c['name']}", file=sys.stderr, flush=True)
            if c["llama"]:
                with LlamaServer(GGUF) as server:
                    results, _ = asyncio.run(replay_all(c["server_cmd"] + ["--url", server.url], sessions, options,
                                                        log_path=log))
            else:
                results, _ = asyncio.run(replay_all(c["server_cmd"], sessions, options, log_path=log))
            c["results"] += results
    for c in configs:
        c["summary"] = report.summarize(c["results"])
    print(report.table(configs))
    if args.json:
        report.write_json(args.json, configs, {"rounds": args.rounds, "max_pause_ms": args.max_pause_ms,
                                               "sessions": [s.path for s in sessions],
                                               "llama_server": shlex.join(LlamaServer(GGUF).cmd)})
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=("build", "convert", "compare", "all"))
    p.add_argument("sessions", nargs="*", default=[str(ROOT / "bench" / "sessions")],
                   help="session files or directories (default: bench/sessions)")
    p.add_argument("--rounds", type=int, default=2, help="replays of every configuration, interleaved (default 2)")
    p.add_argument("--max-pause-ms", type=float, default=1000.0, help="cap thinking pauses (default 1000)")
    p.add_argument("--language", default="python",
                   help="replay only the sessions in this language (default python, the one the embedded model "
                   "knows; all: every session)")
    p.add_argument("--json", metavar="OUT", help="write every request and the summaries as JSON")
    args = p.parse_args()
    if args.step in ("build", "all"):
        build()
    if args.step in ("convert", "all"):
        convert()
    if args.step in ("compare", "all"):
        if not SERVER_BIN.exists() or not GGUF.exists():
            raise SystemExit("run `python bench/llama_server.py build` and `convert` first (or `all`)")
        return compare(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
