"""The server's own options, and the client's settings applied to all of them.

ServerSwitches turn the server's shortcuts on and off; EnginePlacement says where the model runs.
`apply_client_settings` reads initializationOptions or a didChangeConfiguration section
({"backend": "torch", "model": "embedded" | "/path", "device", "dtype", "cacheMb", "editReuse",
"reuse", "context", "prefetch", "recycle", "debounce", "reconsider", "maxTokens", "speculative", "cache",
"multiline", "rerank", "minConfidence", "coldPromptTokens", "lineMaxTokens", "promptTokens"}, all optional) into new typed values; a value of the wrong
type or range is ignored with a warning, never half-applied.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from completer.completion.pipeline import CompletionSettings
from completer.completion.prompt import MIN_PROMPT_TOKENS
from completer.engines.options import EngineOptions

log = logging.getLogger(__name__)

# cacheMb from a client: the KV block pool is allocated in full when the model loads, so a setting
# is a memory allocation. 4096 MB is 64x the default 64 MB (for the shipped models, thousands of
# prompts' worth of K/V) and fits beside a model on any machine that runs one; past that an editor
# setting could swap or OOM the machine. `--cache-mb` on the command line, which the user types
# themselves, is not capped.
MAX_CACHE_MB = 4096
# The server's CompletionSettings.cold_prompt_tokens: a keystroke prefills at most this many prompt
# tokens; a newly opened file's first key is answered from a prompt this long while the full one is
# warmed behind it (BENCHMARKS.md, "The first key in a newly opened file").
COLD_PROMPT_TOKENS = 256


@dataclass(frozen=True)
class ServerSwitches:
    reuse: bool = True  # answer from a suggestion that is still valid, without the model
    context: bool = True  # chunks of other workspace files in prompts
    prefetch: bool = True  # compute the next suggestion as if the shown one were accepted
    recycle: bool = True  # a request that typed what is being generated takes the generation over
    debounce: bool = True  # wait a moment before asking the model while typing outruns it
    reconsider: bool = True  # typing into a withheld suggestion decides again without the model
    closers: bool = True  # a suggestion through the closers right of the cursor replaces them (its item's range)


@dataclass(frozen=True)
class EnginePlacement:
    """inproc: the model runs in this process; auto: share a `completer engine` daemon, starting one
    if none runs; connect: use a running daemon only."""
    mode: str = "inproc"
    socket: str | None = None
    idle_exit_s: float | None = None


@dataclass(frozen=True)
class ServerOptions:
    engine: EngineOptions = EngineOptions()
    settings: CompletionSettings = CompletionSettings()
    switches: ServerSwitches = ServerSwitches()


_ENGINE_STRINGS = ("backend", "model", "device", "dtype")
_SWITCHES = ("reuse", "context", "prefetch", "recycle", "debounce", "reconsider")
_SETTINGS = {"maxTokens": ("max_tokens", int), "speculative": ("speculative", bool), "cache": ("use_cache", bool),
             "multiline": ("multiline", bool), "rerank": ("rerank", bool), "minConfidence": ("min_confidence", float),
             "coldPromptTokens": ("cold_prompt_tokens", int), "lineMaxTokens": ("line_max_tokens", int),
             "promptTokens": ("prompt_tokens", int)}
_INT_MIN = {"cold_prompt_tokens": 0, "prompt_tokens": MIN_PROMPT_TOKENS}  # cold 0: always the full prompt
_INT_MAX = {"prompt_tokens": 32_768}  # the engine's cache length caps it further


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def apply_client_settings(current: ServerOptions, raw) -> ServerOptions:
    """`current` with the client's settings `raw` applied (see the module docstring)."""
    if not isinstance(raw, dict):
        if raw is not None:
            log.warning("ignoring client settings that are not an object: %r", raw)
        return current
    engine: dict = {}
    for key in _ENGINE_STRINGS:
        if isinstance(raw.get(key), str) and raw[key]:
            engine[key] = raw[key]
    if isinstance(raw.get("editReuse"), bool):
        engine["edit_reuse"] = raw["editReuse"]
    cache_mb = raw.get("cacheMb")
    if cache_mb is not None:
        if _is_number(cache_mb) and 0 <= cache_mb <= MAX_CACHE_MB:
            engine["cache_mb"] = float(cache_mb)
        else:
            log.warning("ignoring cacheMb=%r (a number of MB from 0 to %d)", cache_mb, MAX_CACHE_MB)
    switches = {key: raw[key] for key in _SWITCHES if isinstance(raw.get(key), bool)}
    settings = {}
    for key, (name, kind) in _SETTINGS.items():
        value = raw.get(key)
        if value is None:
            continue
        if kind is int and _is_number(value) and isinstance(value, int) \
                and _INT_MIN.get(name, 1) <= value <= _INT_MAX.get(name, 1024):
            settings[name] = value
        elif kind is float and _is_number(value) and 0 <= value <= 1:
            settings[name] = float(value)
        elif kind is bool and isinstance(value, bool):
            settings[name] = value
        else:
            log.warning("ignoring client setting %s=%r", key, value)
    try:
        new_engine = current.engine.replace(**engine)
    except ValueError as exc:  # an unknown backend name, say
        log.warning("ignoring engine settings %r: %s", engine, exc)
        new_engine = current.engine
    return ServerOptions(new_engine, dataclasses.replace(current.settings, **settings),
                         dataclasses.replace(current.switches, **switches))
