"""The `completer` command line: serve, complete, demo, doctor, version."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
from pathlib import Path

from completer import __version__
from completer.completion.fim import UnknownFimTemplateError
from completer.engines.contract import BackendUnavailableError
from completer.engines.model_config import UnsupportedModelError

from .options import (
    add_engine_flags,
    add_switch_flags,
    completion_settings,
    engine_options,
    serve_flags,
    server_engine_options,
    server_switches,
)

# Failures a user can fix (wrong path, missing backend): reported in one line, not a traceback.
EXPECTED_ERRORS = (FileNotFoundError, UnsupportedModelError, BackendUnavailableError, UnknownFimTemplateError,
                   ValueError, RuntimeError)


def cmd_serve(args) -> int:
    from lsp.options import COLD_PROMPT_TOKENS, EnginePlacement, ServerOptions
    from lsp.server import create_server

    options = ServerOptions(server_engine_options(args), completion_settings(args, cold_default=COLD_PROMPT_TOKENS),
                            server_switches(args))
    placement = EnginePlacement(args.engine, args.engine_socket, args.engine_idle_exit_s)
    server = create_server(options, placement, record_dir=args.record)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not port.isdigit():
            raise SystemExit(f"completer serve: --tcp expects HOST:PORT or PORT, got {args.tcp!r}")
        host = host or "127.0.0.1"
        token = os.environ.get(TCP_TOKEN_VARIABLE) or secrets.token_urlsafe(24)

        def ready(bound_host: str, bound_port: int) -> None:
            where = f"${TCP_TOKEN_VARIABLE}"
            if not os.environ.get(TCP_TOKEN_VARIABLE):
                where = str(_write_token_file(f"lsp-{bound_port}.token", token))
            print(f"completer serve: LSP on {bound_host}:{bound_port} for one client sending "
                  f"initializationOptions.token (the token: {where})", file=sys.stderr, flush=True)

        if host not in ("127.0.0.1", "::1", "localhost"):
            print(f"completer serve: warning: {host} is reachable from other machines and LSP over TCP is not "
                  "encrypted (the token and your code cross the network in clear text)", file=sys.stderr)
        server.start_tcp(host, int(port), token, ready)
    else:
        server.start_io()
    return 0


TCP_TOKEN_VARIABLE = "COMPLETER_LSP_TOKEN"


def _write_token_file(name: str, token: str) -> Path:
    """The token in a new 0600 file in the user's private runtime directory."""
    from completer.serving.wire import runtime_dir

    path = runtime_dir() / name
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return path


def _utf16_to_codepoints(line: str, character: int) -> int:
    units = 0
    for i, ch in enumerate(line):
        if units >= character:
            return i
        units += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


def cmd_complete(args) -> int:
    from completer.completion.pipeline import Completer, CompletionRequest
    from completer.engines.loading import load_engine
    from completer.lines import split_lines
    from completer.syntax import DocumentSyntax, language_for

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
    engine = load_engine(engine_options(args))
    completer = Completer(engine, completion_settings(args))
    language = language_for("", str(path))
    syntax = DocumentSyntax(language, text).snapshot if language else None
    result = completer.complete(CompletionRequest(lines, args.line, character, path=path.name, syntax=syntax))
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print(result.text)
    return 0


def cmd_demo(args) -> int:
    from completer.replay.demo import run_demo

    compiles_first = engine_options(args, compile_default="on").compile == "on"
    return run_demo(args, serve_flags(args), compiles_first=compiles_first)


def cmd_doctor(args) -> int:
    from .doctor import run_doctor

    return run_doctor(engine_options(args), as_json=args.json)


def cmd_replay(args) -> int:
    from completer.replay.driver import run_replay

    cold = args.cold_start_s is not None
    return run_replay(args, serve_flags(args, compile_default=None if cold else "on"))


def cmd_synthesize(args) -> int:
    from completer.replay.session import write_session
    from completer.replay.typist import language_of, synthesize_tree

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
    from completer.engines.loading import load_engine
    from completer.serving.daemon import EngineDaemon
    from completer.serving.wire import default_socket

    options = server_engine_options(args)
    if args.warm:  # build the compiled engine into the cache now rather than at a server's first start
        if options.backend != "torch":
            raise SystemExit("--warm: only the torch backend compiles an engine")
        info = load_engine(options.replace(compile="on")).describe()
        print(f"compiled engine ready: {info['compiled_engine'] or 'compiled in memory (' + info['device'] + ')'}")
        return 0
    socket_path = args.socket or default_socket(options)
    daemon = EngineDaemon(None, socket_path, idle_exit_s=args.idle_exit_s)
    daemon.lock()  # before the model loads: of several daemons started at once, one loads a model
    daemon.engine = load_engine(options)
    daemon.serve_forever()
    return 0


def cmd_serve_openai(args) -> int:
    from completer.engines.loading import load_engine
    from completer.serving.openai_server import serve

    api_key = None
    if args.require_api_key:
        api_key = os.environ.get("COMPLETER_API_KEY")
        if not api_key:
            raise SystemExit("completer serve-openai: --require-api-key needs $COMPLETER_API_KEY set")
    engine = load_engine(server_engine_options(args))
    name = args.served_name or (args.model or "embedded")

    def ready(url: str) -> None:  # tests and scripts wait for this line
        print(f"completer serve-openai: {name!r} on {url}", flush=True)

    serve(engine, host=args.host, port=args.port, model_name=name, api_key=api_key, ready=ready,
          report_cached=args.report_cached_tokens)
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
    mode.add_argument("--tcp", metavar="HOST:PORT",
                      help="listen on TCP instead (HOST defaults to 127.0.0.1), for one client at a time that sends "
                      "initializationOptions.token: $COMPLETER_LSP_TOKEN, else a new token written to a 0600 file "
                      "whose path is printed")
    add_switch_flags(p)
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
    add_engine_flags(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("complete", help="one completion at a position", description="Complete FILE at a 0-based "
                       "LSP position (character in UTF-16 code units) and print the suggestion.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--line", type=int, required=True, help="0-based line")
    p.add_argument("--character", type=int, required=True, help="0-based character (UTF-16 code units)")
    p.add_argument("--json", action="store_true", help='print {"text", "timings", "stats"} as JSON')
    add_engine_flags(p)
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
    add_switch_flags(p)
    p.add_argument("--session", nargs="+", metavar="SESSION", help="replay these typing sessions (human timing, "
                   "see `completer synthesize`) instead of retyping FILE at a steady speed")
    p.add_argument("--max-pause-ms", type=float, default=1000.0, metavar="MS",
                   help="with --session: cap thinking pauses (default 1000)")
    add_engine_flags(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("doctor", help="check the installation", description="Report what is installed, which "
                       "backends can run, the selected model, CPU and GPU; exit 1 if the default setup cannot serve.")
    add_engine_flags(p)
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("engine", help="run the shared engine daemon (for serve --engine auto|connect)",
                       description="Load the model once and serve token generation to language servers over a "
                       "unix socket private to you (0600 in a 0700 directory), msgpack-framed.")
    p.add_argument("--socket", metavar="PATH", default=None,
                   help="socket path (default: derived from the engine options, in $XDG_RUNTIME_DIR/completer)")
    p.add_argument("--idle-exit-s", type=float, default=600.0, metavar="S",
                   help="exit after S seconds without clients (0: never; default 600)")
    p.add_argument("--warm", action="store_true",
                   help="build the compiled engine for these options into the cache (~1 minute on 2 cores) and "
                   "exit, so that the first server start serves compiled at once")
    add_engine_flags(p, settings=False)  # completion settings travel with each request
    p.set_defaults(func=cmd_engine)

    p = sub.add_parser("serve-openai", help="serve the engine over an OpenAI-compatible HTTP API",
                       description="POST /v1/completions (prompts as token ids or text, streaming), GET /v1/models, "
                       "GET /health, backed by a completer engine: for --backend openai clients and small teams.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port; default 8000)")
    p.add_argument("--served-name", metavar="NAME", default=None, help="model name in the API (default: --model)")
    p.add_argument("--require-api-key", action="store_true",
                   help="require `Authorization: Bearer $COMPLETER_API_KEY` on every request")
    p.add_argument("--report-cached-tokens", action="store_true",
                   help="report usage.prompt_tokens_details.cached_tokens (off by default: the prefix cache is "
                   "shared, so with several users one could learn what another sent; for one user or a benchmark)")
    add_engine_flags(p, settings=False)
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
    p.add_argument("--cold-start-s", type=float, default=None, metavar="S",
                   help="the first key S seconds after the server starts, without waiting for its model or its "
                   "compile (which then keeps the server's default, --compile auto): an editor opened and typed "
                   "into. Adds the time to the first suggestion and latency over the first 60 s and the rest")
    p.add_argument("--workspace", action="store_true",
                   help="open the sessions' folder as the editor's workspace, so the server takes cross-file context "
                   "from the files the sessions open (sessions made with bench/make_sessions.py --neighbors open "
                   "other files of their project beside the one typed into); default: no workspace, each file alone")
    p.add_argument("--auto-close", action="store_true",
                   help="synthetic sessions type into an editor that closes brackets and quotes as they are typed "
                   "(VS Code's default): the closers wait right of the cursor, and a suggestion is taken only where "
                   "its item replaces those it runs through")
    add_switch_flags(p)
    add_engine_flags(p)
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
        if isinstance(exc, EXPECTED_ERRORS):
            print(f"completer {args.command}: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
