"""workspace/didChangeConfiguration: the user changed settings while the server runs.

The settings are those of initializationOptions (lifecycle.py), under a "completer" section or at the
top level: {"completer": {"maxTokens": 24, "reuse": false, "model": "/path", ...}}. Completion
settings apply to the next request; a changed backend, model, device, dtype, cache size or edit
reuse reloads the engine (the status goes to loading, then ready), keeping every open document.
"""

from __future__ import annotations

import logging

from lsprotocol import types

from .lifecycle import apply_initialization_options

log = logging.getLogger(__name__)


def register(server) -> None:
    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls, params: types.DidChangeConfigurationParams):
        settings = params.settings
        if isinstance(settings, dict) and isinstance(settings.get("completer"), dict):
            settings = settings["completer"]
        if not isinstance(settings, dict):
            log.info("ignoring didChangeConfiguration settings that are not an object: %r", settings)
            return
        before = dict(ls.engine_options)
        apply_initialization_options(ls, settings)
        if ls.engine_options != before:
            log.info("engine options changed: %s -> %s; reloading", before, ls.engine_options)
            ls.reload_engine()
