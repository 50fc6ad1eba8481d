"""initialize / initialized: negotiate positions, read initializationOptions, start loading the model.

initializationOptions (all optional; command-line flags are the defaults):
    {"backend": "torch", "model": "embedded" | "/path/to/model", "device": "cpu", "dtype": "float32",
     "cacheMb": 64, "editReuse": true, "reuse": true, "context": true, "prefetch": true, "recycle": true,
     "debounce": true, "maxTokens": 48, "speculative": true, "cache": true, "multiline": true}
"""

from __future__ import annotations

import dataclasses
import logging

from lsprotocol import types
from pygls.uris import to_fs_path

from completer.context import ContextRing, Workspace
from completer.reuse import SuggestionReuse

log = logging.getLogger(__name__)

_ENGINE_KEYS = {"backend": "backend", "model": "model", "device": "device", "dtype": "dtype"}
_SETTING_KEYS = {"maxTokens": ("max_tokens", int), "speculative": ("speculative", bool),
                 "cache": ("use_cache", bool), "multiline": ("multiline", bool)}


def apply_initialization_options(server, options) -> None:
    if not isinstance(options, dict):
        if options is not None:
            log.warning("ignoring initializationOptions that are not an object: %r", options)
        return
    for key, name in _ENGINE_KEYS.items():
        if isinstance(options.get(key), str) and options[key]:
            server.engine_options[name] = options[key]
    if options.get("reuse") is False:
        server.reuse = None
    elif options.get("reuse") is True and server.reuse is None:
        server.reuse = SuggestionReuse()
    if isinstance(options.get("context"), bool):
        server.use_context = options["context"]
    if isinstance(options.get("prefetch"), bool):
        server.prefetch = options["prefetch"]
    if isinstance(options.get("recycle"), bool):
        server.recycle = options["recycle"]
    if isinstance(options.get("debounce"), bool):
        server.debounce = options["debounce"]
    if isinstance(options.get("editReuse"), bool):
        server.engine_options["edit_reuse"] = options["editReuse"]
    cache_mb = options.get("cacheMb")
    if isinstance(cache_mb, (int, float)) and not isinstance(cache_mb, bool) and 0 <= cache_mb <= 65536:
        server.engine_options["cache_mb"] = float(cache_mb)
    changes = {}
    for key, (name, kind) in _SETTING_KEYS.items():
        value = options.get(key)
        if value is None:
            continue
        if kind is int and isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1024:
            changes[name] = value
        elif kind is bool and isinstance(value, bool):
            changes[name] = value
        else:
            log.warning("ignoring initializationOptions.%s=%r", key, value)
    if changes:
        server.settings = dataclasses.replace(server.settings, **changes)
        if server.completer is not None:
            server.completer.settings = server.settings


def _workspace_root(params: types.InitializeParams) -> str | None:
    folders = params.workspace_folders or []
    uri = folders[0].uri if folders else params.root_uri
    path = to_fs_path(uri) if uri else params.root_path
    return path or None


def register(server) -> None:
    @server.feature(types.INITIALIZE)
    async def initialize(ls, params: types.InitializeParams):
        ls.store.encoding = str(ls.workspace.position_encoding.value
                                if hasattr(ls.workspace.position_encoding, "value")
                                else ls.workspace.position_encoding or "utf-16")
        if ls.recorder:
            ls.recorder.encoding = ls.store.encoding
        apply_initialization_options(ls, params.initialization_options)
        root = _workspace_root(params)
        ls.workspace_root = root or ""
        if root and ls.use_context:
            ls.ring = ContextRing(Workspace(root))
        log.info("position encoding %s, engine %s", ls.store.encoding, ls.engine_options)
        ls.start_loading()

    @server.feature(types.INITIALIZED)
    async def initialized(ls, params: types.InitializedParams):
        if ls.completer is not None:
            ls.send_status("ready")
        elif ls.load_error:
            ls.send_status("error", message=ls.load_error)
        else:
            ls.send_status("loading")
