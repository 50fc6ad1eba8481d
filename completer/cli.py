"""The `completer` command line: serve, complete, demo, doctor, version."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .engine import BACKENDS


def _add_engine_options(p: argparse.ArgumentParser, settings: bool = True) -> None:
    """The engine's options, and (unless `settings` is False) the per-request completion settings."""
    g = p.add_argument_group("engine")
    g.add_argument("--model", metavar="DIR", help="model directory (Hugging Face layout) or a shipped model name "
                   "(default: the embedded model)")
    g.add_argument("--backend", choices=BACKENDS, default="torch", help="inference backend (default: torch)")
    g.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:N (default: auto)")
    g.add_argument("--dtype", default="auto", help="float32, bfloat16, float16 (default: fp32 on CPU, bf16 on CUDA)")
    if settings:
        g.add_argument("--max-tokens", type=int, default=None, metavar="N", help="most tokens per suggestion")
        g.add_argument("--no-speculative", action="store_true", help="plain greedy decoding, no n-gram drafts")
        g.add_argument("--no-cache", action="store_true", help="recompute the whole prompt every request")
        g.add_argument("--no-syntax", action="store_true",
                       help="line-based prompt windows (default: cut at statement boundaries with tree-sitter)")
        g.add_argument("--fim-template", default=None,
                       choices=["qwen", "starcoder", "deepseek", "codellama", "codestral"],
                       help="FIM sentinel family (default: detected from the tokenizer)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch (default: one fewer than the cores, at least 1)")
    g.add_argument("--cache-mb", type=float, default=None, metavar="MB",
                   help="memory for the KV block pool shared by all files and sessions (default 64)")
    g.add_argument("--no-edit-reuse", action="store_true",
                   help="after an edit, recompute everything past it instead of moving unchanged K/V chunks")
    g.add_argument("--compile", nargs="?", const="on", default=None, choices=["on", "off", "background", "auto"],
                   help="torch.compile the decode step, ~3x faster on CPU: on (alone: compile before serving, "
                   "~1.5-2 min on 2 cores), background (serve at once, switch when ready), auto (background on CPU, off on CUDA), "
                   "off. Servers (serve, engine, serve-openai) default to $COMPLETER_COMPILE or auto; replay and "
                   "demo to on, so they measure the steady state; other commands to off")
    g.add_argument("--draft-model", metavar="DIR", default=None,
                   help="a small model sharing the tokenizer, proposing tokens for speculative decoding "
                   "(e.g. embedded-draft); used when its measured cost pays off")
    g = p.add_argument_group("GPU and server backends (see engine_builds/README.md)")
    g.add_argument("--speculation", choices=["ngram", "draft", "none"], default=None,
                   help="trtllm: NGram prompt lookup (default), DraftTarget with --draft-model, or none; "
                   "lmdeploy: only none (it has no draft-target or n-gram proposer)")
    g.add_argument("--backend-options", metavar="FILE", default=None,
                   help="trtllm/lmdeploy: YAML or JSON mapping of extra engine arguments (trtllm: LLM(...) keywords, "
                   "the same keys as trtllm-serve --extra_llm_api_options; lmdeploy: engine config fields)")
    g.add_argument("--lmdeploy-engine", choices=["turbomind", "pytorch"], default=None,
                   help="lmdeploy: TurboMind (default) or its PyTorch engine")
    g.add_argument("--server-url", metavar="URL", default=None,
                   help="openai: the server's base URL, e.g. http://127.0.0.1:8000/v1 (API key from "
                   "$COMPLETER_API_KEY or $OPENAI_API_KEY)")
    g.add_argument("--served-model", metavar="NAME", default=None,
                   help="openai: the model name to request (default: the first the server lists); --model must "
                   "hold the same model's tokenizer")
    g.add_argument("--affinity-header", metavar="NAME", default=None,
                   help="openai: header carrying the editor session, for routers with session affinity "
                   "(default X-Session-Id; empty: none)")
    g.add_argument("--server-stop-ids", action="store_true",
                   help="openai: also send the FIM stop ids as stop_token_ids (vLLM, SGLang, completer serve-openai)")
    g.add_argument("--server-extra", metavar="JSON", default=None,
                   help="openai: extra fields merged into every request body")


def _settings_from_args(args):
    from .completion import CompletionSettings

    kw = {"speculative": not args.no_speculative, "use_cache": not args.no_cache}
    if getattr(args, "fim_template", None):
        kw["fim_template"] = args.fim_template
    if args.max_tokens:
        kw["max_tokens"] = args.max_tokens
    if getattr(args, "no_syntax", False):
        from .prompt import PromptSettings

        kw["prompt"] = PromptSettings(syntax=False)
    return CompletionSettings(**kw)


def _engine_options(args) -> dict:
    return {"backend": args.backend, "model": args.model, "device": args.device, "dtype": args.dtype,
            "threads": args.threads, "cache_mb": args.cache_mb, "edit_reuse": False if args.no_edit_reuse else None,
            "compile": args.compile, "draft_model": args.draft_model, "server_url": args.server_url,
            "served_model": args.served_model, "affinity_header": args.affinity_header,
            "server_stop_ids": args.server_stop_ids, "server_extra": args.server_extra,
            "speculation": args.speculation, "lmdeploy_engine": args.lmdeploy_engine,
            "backend_options": args.backend_options}


def _compile_mode(args, default: str) -> str | None:
    """--compile, else $COMPLETER_COMPILE, else `default`; None for backends other than torch."""
    mode = getattr(args, "compile", None)
    if mode is None and getattr(args, "backend", None) in (None, "torch"):
        mode = os.environ.get("COMPLETER_COMPILE") or default
    return mode


def _server_engine_options(args) -> dict:
    """Engine options of a process that serves for hours: unless told otherwise the torch engine
    compiles its decode step in the background ($COMPLETER_COMPILE sets the default; tests use off)."""
    return {**_engine_options(args), "compile": _compile_mode(args, "auto")}


def cmd_serve(args) -> int:
    from lsp.server import create_server

    engine = {"mode": args.engine, "socket": args.engine_socket, "idle_exit_s": args.engine_idle_exit_s}
    server = create_server(_server_engine_options(args), _settings_from_args(args), reuse=not args.no_reuse,
                           context=not args.no_context, record_dir=args.record, engine=engine,
                           prefetch=not args.no_prefetch, recycle=not args.no_recycle,
                           debounce=not args.no_debounce)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not port.isdigit():
            raise SystemExit(f"completer serve: --tcp expects HOST:PORT or PORT, got {args.tcp!r}")
        server.start_tcp(host or "127.0.0.1", int(port))
    else:
        server.start_io()
    return 0


def _utf16_to_codepoints(line: str, character: int) -> int:
    units = 0
    for i, ch in enumerate(line):
        if units >= character:
            return i
        units += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


def cmd_complete(args) -> int:
    from .completion import Completer, CompletionRequest
    from .prompt import split_lines
    from .runtime import load_engine
    from .syntax import DocumentSyntax, language_for

    path = Path(args.file)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        print(f"completer complete: {path}: no such file", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print(f"completer complete: {path}: not UTF-8 text", file=sys.stderr)
        return 2
    lines = split_lines(text)
    if not 0 <= args.line < len(lines):
        print(f"completer complete: line {args.line} is outside {path} (0..{len(lines) - 1})", file=sys.stderr)
        return 2
    if args.character < 0:
        print("completer complete: --character must be >= 0", file=sys.stderr)
        return 2
    body = lines[args.line].rstrip("\r\n")
    character = _utf16_to_codepoints(body, args.character)  # past the end clamps, as LSP says
    engine = load_engine(**_engine_options(args))
    completer = Completer(engine, _settings_from_args(args))
    language = language_for("", str(path))
    syntax = DocumentSyntax(language, text).snapshot if language else None
    result = completer.complete(CompletionRequest(lines, args.line, character, path=path.name, syntax=syntax))
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print(result.text)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args, _serve_flags(args), compiles_first=_compile_mode(args, "on") == "on")


def cmd_doctor(args) -> int:
    from .doctor import run_doctor

    return run_doctor(args)


def _serve_flags(args) -> list[str]:
    """`completer serve` options from the engine options (and reuse/context switches) of `args`."""
    flags = []
    for name in ("model", "backend", "device", "dtype", "max_tokens", "threads", "cache_mb", "fim_template",
                 "draft_model", "speculation", "backend_options", "lmdeploy_engine", "server_url", "served_model",
                 "affinity_header", "server_extra"):
        value = getattr(args, name, None)
        if value is not None and not (name in ("backend", "device", "dtype") and value in ("torch", "auto")):
            flags += [f"--{name.replace('_', '-')}", str(value)]
    for name in ("no_speculative", "no_cache", "no_edit_reuse", "no_syntax", "no_reuse", "no_context",
                 "no_prefetch", "no_recycle", "no_debounce", "server_stop_ids"):
        if getattr(args, name, False):
            flags.append(f"--{name.replace('_', '-')}")
    # Replay and demo measure the steady state: the compiled step ready before the first key.
    compile_mode = _compile_mode(args, "on")
    if compile_mode is not None:
        flags += ["--compile", compile_mode]
    return flags


def cmd_replay(args) -> int:
    from .replay import run_replay

    return run_replay(args, _serve_flags(args))


def cmd_synthesize(args) -> int:
    from .session import write_session
    from .typist import language_of, synthesize_tree

    paths: list[Path] = []
    for src in map(Path, args.sources):
        if src.is_dir():
            paths += sorted(p for p in src.rglob("*") if p.is_file() and language_of(p))
        elif src.is_file():
            paths.append(src)
        else:
            raise SystemExit(f"completer synthesize: {src}: no such file or directory")
    if args.max_files:
        paths = paths[:args.max_files]
    root = Path(args.sources[0]) if len(args.sources) == 1 and Path(args.sources[0]).is_dir() else None
    sessions = synthesize_tree(paths, args.per_file, args.seed, root=root)
    args.out.mkdir(parents=True, exist_ok=True)
    for session in sessions:
        out = args.out / f"{session.meta['name'].replace('/', '_')}.msgpack"
        write_session(out, session)
        plan = session.of_kind("plan")[0]
        print(f"{out}: {len(plan['text'])} characters, {len(plan['steps'])} steps, "
              f"{sum(s[3] for s in plan['steps']) / 1000:.0f} s of typing")
    if not sessions:
        print("completer synthesize: no spans found (files of a known language?)", file=sys.stderr)
        return 1
    return 0


def cmd_engine(args) -> int:
    from .daemon import EngineDaemon
    from .engine_protocol import default_socket
    from .runtime import load_engine

    options = _server_engine_options(args)
    socket_path = args.socket or default_socket(options)
    engine = load_engine(**options)
    EngineDaemon(engine, socket_path, idle_exit_s=args.idle_exit_s).serve_forever()
    return 0


def cmd_serve_openai(args) -> int:
    from .openai_server import serve
    from .runtime import load_engine

    api_key = None
    if args.require_api_key:
        api_key = os.environ.get("COMPLETER_API_KEY")
        if not api_key:
            raise SystemExit("completer serve-openai: --require-api-key needs $COMPLETER_API_KEY set")
    engine = load_engine(**_server_engine_options(args))
    name = args.served_name or (args.model or "embedded")

    def ready(url: str) -> None:  # tests and scripts wait for this line
        print(f"completer serve-openai: {name!r} on {url}", flush=True)

    serve(engine, host=args.host, port=args.port, model_name=name, api_key=api_key, ready=ready)
    return 0


def cmd_version(args) -> int:
    print(f"completer {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="completer", description="Self-hosted code completion language server.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ERROR (logs go to stderr)")
    common.add_argument("--log-file", type=Path, help="write logs here instead of stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_parser = sub.add_parser

    def add_parser(name, **kw):
        return _add_parser(name, parents=[common], **kw)

    sub.add_parser = add_parser

    p = sub.add_parser("serve", help="run the language server", description="Run the LSP server (stdio by default).")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (default)")
    mode.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead (HOST defaults to 127.0.0.1)")
    p.add_argument("--no-reuse", action="store_true",
                   help="always ask the model, never answer from a suggestion that is still valid")
    p.add_argument("--no-context", action="store_true",
                   help="no chunks of other workspace files in prompts (default: recent files and imports)")
    p.add_argument("--no-prefetch", action="store_true",
                   help="do not compute the next suggestion while one is shown (as if it were accepted)")
    p.add_argument("--no-recycle", action="store_true",
                   help="always cancel the running generation on a new request, even if the user typed what it "
                   "is producing")
    p.add_argument("--no-debounce", action="store_true",
                   help="ask the model at once even while typing outruns it (default: adaptive debounce)")
    p.add_argument("--engine", choices=["inproc", "auto", "connect"], default="inproc",
                   help="inproc: the model runs in this process (default); auto: share a `completer engine` daemon "
                   "with other windows, starting one if none runs; connect: use a running daemon only")
    p.add_argument("--engine-socket", metavar="PATH", default=None,
                   help="the daemon's socket (default: one per engine configuration in your runtime dir)")
    p.add_argument("--engine-idle-exit-s", type=float, default=None, metavar="S",
                   help="a daemon started by --engine auto exits after S seconds without clients (default 600)")
    p.add_argument("--record", metavar="DIR", default=None,
                   help="record this editing session (documents, edits, suggestions, accepts) to a session file "
                   "in DIR, for `completer replay`; off by default, never leaves your disk")
    _add_engine_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("complete", help="one completion at a position", description="Complete FILE at a 0-based "
                       "LSP position (character in UTF-16 code units) and print the suggestion.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--line", type=int, required=True, help="0-based line")
    p.add_argument("--character", type=int, required=True, help="0-based character (UTF-16 code units)")
    p.add_argument("--json", action="store_true", help='print {"text", "timings", "stats"} as JSON')
    _add_engine_options(p)
    p.set_defaults(func=cmd_complete)

    p = sub.add_parser("demo", help="type into a file through the real server and show suggestions",
                       description="Start `completer serve --stdio`, retype part of a source file keystroke by "
                       "keystroke like an editor, print each suggestion and a latency summary.")
    p.add_argument("file", nargs="?", help="source file to retype (default: the bundled demo file)")
    p.add_argument("--lines", type=int, default=12, help="how many lines to retype (default 12)")
    p.add_argument("--start-line", type=int, default=None, help="first line to retype (default: a function body)")
    p.add_argument("--cps", type=float, default=12.0, help="typing speed, characters per second (0 = no delay)")
    p.add_argument("--no-accept", action="store_true", help="never accept suggestions (default: accept those "
                   "that match what is typed next, like a user pressing Tab)")
    p.add_argument("--no-reuse", action="store_true", help="the server never answers from a still-valid suggestion")
    p.add_argument("--session", nargs="+", metavar="SESSION", help="replay these typing sessions (human timing, "
                   "see `completer synthesize`) instead of retyping FILE at a steady speed")
    p.add_argument("--max-pause-ms", type=float, default=1000.0, metavar="MS",
                   help="with --session: cap thinking pauses (default 1000)")
    _add_engine_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("doctor", help="check the installation", description="Report what is installed, which "
                       "backends can run, the selected model, CPU and GPU; exit 1 if the default setup cannot serve.")
    _add_engine_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("engine", help="run the shared engine daemon (for serve --engine auto|connect)",
                       description="Load the model once and serve token generation to language servers over a "
                       "unix socket private to you (0600 in a 0700 directory), msgpack-framed.")
    p.add_argument("--socket", metavar="PATH", default=None,
                   help="socket path (default: derived from the engine options, in $XDG_RUNTIME_DIR/completer)")
    p.add_argument("--idle-exit-s", type=float, default=600.0, metavar="S",
                   help="exit after S seconds without clients (0: never; default 600)")
    _add_engine_options(p, settings=False)  # completion settings travel with each request
    p.set_defaults(func=cmd_engine)

    p = sub.add_parser("serve-openai", help="serve the engine over an OpenAI-compatible HTTP API",
                       description="POST /v1/completions (prompts as token ids or text, streaming), GET /v1/models, "
                       "GET /health, backed by a completer engine: for --backend openai clients and small teams.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port; default 8000)")
    p.add_argument("--served-name", metavar="NAME", default=None, help="model name in the API (default: --model)")
    p.add_argument("--require-api-key", action="store_true",
                   help="require `Authorization: Bearer $COMPLETER_API_KEY` on every request")
    _add_engine_options(p, settings=False)
    p.set_defaults(func=cmd_serve_openai)

    p = sub.add_parser("replay", help="replay typing sessions against the real server and report latency",
                       description="Drive `completer serve --stdio` (or --server-cmd) with typing sessions like an "
                       "editor: didChange + inlineCompletion per keystroke, superseded requests cancelled. Prints "
                       "latency, reuse, engine work and acceptance; with --ab, the same for several server "
                       "configurations and their ratios to the first.")
    p.add_argument("sessions", nargs="+", metavar="SESSION", help="session files (.msgpack) or directories of them")
    p.add_argument("--speed", type=float, default=1.0, help="replay X times faster than typed (default 1: real time)")
    p.add_argument("--max-pause-ms", type=float, default=None, metavar="MS",
                   help="cap every pause (after --speed); thinking pauses otherwise dominate the run time")
    p.add_argument("--json", metavar="OUT", help="write every request and the summaries as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write the latency CDF and per-keystroke timeline (matplotlib)")
    p.add_argument("--ab", action="append", metavar="NAME=FLAGS",
                   help="also replay under the base server plus FLAGS (repeatable), e.g. --ab 'no-cache=--no-cache'")
    p.add_argument("--name", default="default", help="name of the base configuration in the report")
    p.add_argument("--server-cmd", metavar="CMD", help="another LSP server command line (stdio) instead of completer")
    p.add_argument("--no-accept", action="store_true", help="synthetic typists never take suggestions")
    p.add_argument("--seed", type=int, default=0, help="seed of the typists' reaction times")
    p.add_argument("--no-reuse", action="store_true", help="server: never answer from a still-valid suggestion")
    p.add_argument("--no-context", action="store_true", help="server: no cross-file context")
    p.add_argument("--no-prefetch", action="store_true", help="server: no prefetch of the next suggestion")
    p.add_argument("--no-recycle", action="store_true", help="server: no in-flight recycling")
    p.add_argument("--no-debounce", action="store_true", help="server: no adaptive debounce")
    _add_engine_options(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("synthesize", help="make typing sessions from source files",
                       description="Pick spans (function bodies, blocks, statements, lines) with tree-sitter in "
                       "each file, remove them and plan retyping them with a seeded human timing model.")
    p.add_argument("sources", nargs="+", metavar="SRC", help="source files or directories")
    p.add_argument("--out", type=Path, required=True, help="directory for the session files")
    p.add_argument("--per-file", type=int, default=2, help="spans per file (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-files", type=int, default=None)
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    handler = logging.FileHandler(args.log_file) if args.log_file else logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error, not a traceback, for expected failures
        from .runtime import EXPECTED_ERRORS

        if isinstance(exc, EXPECTED_ERRORS):
            print(f"completer {args.command}: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
