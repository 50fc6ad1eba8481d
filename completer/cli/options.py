"""The command line's options, declared once and turned into the typed values the rest takes:
EngineOptions (which engine), CompletionSettings (each request), ServerSwitches (the server's
shortcuts), and for replay and demo the `completer serve` flags that say all of it again."""

from __future__ import annotations

import argparse

from completer.completion.pipeline import CompletionSettings
from completer.completion.prompt import MIN_PROMPT_TOKENS, PromptSettings
from completer.engines.options import BACKENDS, COMPILE_MODES, EngineOptions
from lsp.options import COLD_PROMPT_TOKENS, ServerSwitches

FIM_FAMILIES = ["qwen", "starcoder", "deepseek", "codellama", "codestral"]
SWITCH_HELP = {
    "reuse": "always ask the model, never answer from a suggestion that is still valid",
    "context": "no chunks of other workspace files in prompts (default: recent files and imports)",
    "prefetch": "do not compute the next suggestion while one is shown (as if it were accepted)",
    "recycle": "always cancel the running generation on a new request, even if the user typed what it is producing",
    "debounce": "ask the model at once even while typing outruns it (default: adaptive debounce)",
    "reconsider": "ask the model again on every key typed into a suggestion the confidence gate withheld "
                  "(default: its candidates, rescored without the model, decide)",
    "closers": "insert every suggestion at the cursor, even one that runs through the closers the editor put right "
               "of it (default: the item's range replaces those)",
}


def add_engine_flags(p: argparse.ArgumentParser, settings: bool = True) -> None:
    """The engine's options, and (unless `settings` is False) the per-request completion settings."""
    g = p.add_argument_group("engine")
    g.add_argument("--model", metavar="DIR", help="model directory (Hugging Face layout) or a shipped model name "
                   "(default: the embedded model)")
    g.add_argument("--backend", choices=BACKENDS, default="torch", help="inference backend (default: torch)")
    g.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:N (default: auto)")
    g.add_argument("--dtype", default="auto", help="float32, bfloat16, float16 (default: fp32 on CPU, bf16 on CUDA)")
    if settings:
        g.add_argument("--max-tokens", type=int, default=None, metavar="N", help="most tokens per suggestion")
        g.add_argument("--line-max-tokens", type=int, default=None, metavar="N",
                       help=f"most tokens the model writes for a one-line suggestion (default {CompletionSettings().line_max_tokens}; "
                       "multi-line suggestions keep --max-tokens)")
        g.add_argument("--no-speculative", action="store_true", help="plain greedy decoding, no n-gram drafts")
        g.add_argument("--no-cache", action="store_true", help="recompute the whole prompt every request")
        g.add_argument("--no-syntax", action="store_true",
                       help="line-based prompt windows (default: cut at statement boundaries with tree-sitter)")
        g.add_argument("--no-rerank", action="store_true",
                       help="show the model's own text only (default: copies from the document are candidates "
                       "too, scored by the model and ranked; needs a model with a reranker)")
        g.add_argument("--min-confidence", type=float, default=None, metavar="P",
                       help="show a suggestion only when the model's gate gives at least probability P that you "
                       "take some of it (default: the model's own thresholds; 0: always show)")
        g.add_argument("--cold-prompt-tokens", type=int, default=None, metavar="N",
                       help="the most prompt tokens one keystroke prefills: a prompt that would prefill more (a "
                       "newly opened file's first key) is answered from an N-token prompt while the full one is "
                       f"prefilled in the background (serve's default {COLD_PROMPT_TOKENS}; 0: always the full prompt)")
        g.add_argument("--prompt-tokens", type=int, default=None, metavar="N",
                       help="the prompt's budget in tokens, chunks of other files included (default "
                       f"{PromptSettings.budget_tokens}; at least {MIN_PROMPT_TOKENS})")
        g.add_argument("--fim-template", default=None,
                       choices=FIM_FAMILIES,
                       help="FIM sentinel family (default: detected from the tokenizer)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch (default: one fewer than the cores, at least 1)")
    g.add_argument("--cache-mb", type=float, default=None, metavar="MB",
                   help="memory for the KV block pool shared by all files and sessions (default 64)")
    g.add_argument("--edit-reuse", action=argparse.BooleanOptionalAction, default=None,
                   help="after an edit, move unchanged K/V chunks to their new positions (the default) or, with "
                   "--no-edit-reuse, recompute everything past the edit")
    g.add_argument("--compile", nargs="?", const="on", default=None, choices=COMPILE_MODES,
                   help="torch.compile the decode step, ~3x faster on CPU: on (alone: compile before serving, "
                   "~1.5-2 min on 2 cores), background (serve at once, switch when ready), auto (background on CPU, off on CUDA), "
                   "off. Servers (serve, engine, serve-openai) default to $COMPLETER_COMPILE or auto; replay and "
                   "demo to on, so they measure the steady state; other commands to off")
    g.add_argument("--draft-model", metavar="DIR", default=None,
                   help="a small model sharing the tokenizer, proposing tokens for speculative decoding "
                   "(e.g. embedded-draft), its drafts verified when their measured cost pays off; torch default "
                   "auto: the draft the model's completer.json pairs with it, loaded and used only where drafting "
                   "pays on this machine at the pair's measured acceptance; none: no draft model")
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



def add_switch_flags(p: argparse.ArgumentParser) -> None:
    """The server's --no-reuse, --no-context, ... (serve, and replay and demo, which pass them on)."""
    g = p.add_argument_group("server")
    for name, text in SWITCH_HELP.items():
        g.add_argument(f"--no-{name}", dest=f"no_{name}", action="store_true", help=text)


def engine_options(args, compile_default: str | None = None) -> EngineOptions:
    """The engine flags of `args`; with `compile_default`, the torch compile mode when --compile is
    not given ($COMPLETER_COMPILE first; see EngineOptions.with_compile_default)."""
    options = EngineOptions(
        backend=args.backend, model=args.model, device=args.device, dtype=args.dtype, threads=args.threads,
        cache_mb=args.cache_mb, edit_reuse=args.edit_reuse, compile=args.compile, draft_model=args.draft_model,
        speculation=args.speculation, backend_options=args.backend_options, lmdeploy_engine=args.lmdeploy_engine,
        server_url=args.server_url, served_model=args.served_model, affinity_header=args.affinity_header,
        server_stop_ids=args.server_stop_ids, server_extra=args.server_extra)
    return options.with_compile_default(compile_default) if compile_default else options


def server_engine_options(args) -> EngineOptions:
    """Engine options of a process that serves for hours: unless told otherwise the torch engine
    compiles its decode step in the background ($COMPLETER_COMPILE sets the default; tests use off)."""
    return engine_options(args, compile_default="auto")


def completion_settings(args, cold_default: int | None = None) -> CompletionSettings:
    """The per-request settings `args` give; cold_default: --cold-prompt-tokens when not given (the
    server's; one-shot commands answer from the full prompt)."""
    kw: dict = {"speculative": not args.no_speculative, "use_cache": not args.no_cache}
    cold = args.cold_prompt_tokens if args.cold_prompt_tokens is not None else cold_default
    if cold:
        kw["cold_prompt_tokens"] = cold
    if args.fim_template:
        kw["fim_template"] = args.fim_template
    if args.max_tokens:
        kw["max_tokens"] = args.max_tokens
    if args.line_max_tokens:
        kw["line_max_tokens"] = args.line_max_tokens
    if args.no_syntax:
        kw["prompt"] = PromptSettings(syntax=False)
    if args.prompt_tokens is not None:
        if args.prompt_tokens < MIN_PROMPT_TOKENS:
            raise SystemExit(f"--prompt-tokens {args.prompt_tokens}: at least {MIN_PROMPT_TOKENS}")
        kw["prompt_tokens"] = args.prompt_tokens
    if args.no_rerank:
        kw["rerank"] = False
    if args.min_confidence is not None:
        kw["min_confidence"] = args.min_confidence
    return CompletionSettings(**kw)


def server_switches(args) -> ServerSwitches:
    return ServerSwitches(**{name: not getattr(args, f"no_{name}") for name in SWITCH_HELP})


def serve_flags(args, compile_default: str | None = "on") -> list[str]:
    """`completer serve` flags for everything `args` says (replay and demo start the server with them).
    They measure the steady state: unless told otherwise the compiled step is ready before the first key
    (compile_default None: the server's own default)."""
    flags = engine_options(args, compile_default=compile_default).to_flags()
    settings = completion_settings(args)
    defaults = CompletionSettings()
    if settings.max_tokens != defaults.max_tokens:
        flags += ["--max-tokens", str(settings.max_tokens)]
    if settings.line_max_tokens != defaults.line_max_tokens:
        flags += ["--line-max-tokens", str(settings.line_max_tokens)]
    if settings.fim_template:
        flags += ["--fim-template", settings.fim_template]
    if settings.min_confidence is not None:
        flags += ["--min-confidence", str(settings.min_confidence)]
    if args.cold_prompt_tokens is not None:  # else the server's default
        flags += ["--cold-prompt-tokens", str(args.cold_prompt_tokens)]
    if settings.prompt_tokens is not None:  # else the server's default
        flags += ["--prompt-tokens", str(settings.prompt_tokens)]
    flags += [flag for flag, on in (("--no-speculative", not settings.speculative),
                                    ("--no-cache", not settings.use_cache),
                                    ("--no-syntax", not settings.prompt.syntax),
                                    ("--no-rerank", not settings.rerank)) if on]
    switches = server_switches(args)
    flags += [f"--no-{name}" for name in SWITCH_HELP if not getattr(switches, name)]
    return flags
