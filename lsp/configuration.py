"""workspace/didChangeConfiguration: the user changed settings while the server runs.

The settings are those of initializationOptions (options.py), under a "completer" section or at the
top level: {"completer": {"maxTokens": 24, "reuse": false, "model": "/path", ...}}. Completion
settings apply to the next request; a changed backend, model, device, dtype, cache size or edit
reuse reloads the engine (the status goes to loading, then ready), keeping every open document.
"""

from __future__ import annotations

import logging

from lsprotocol import types

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
        before = ls.options.engine
        if ls.apply_client_settings(settings):
            log.info("engine options changed: %s -> %s; reloading", before, ls.options.engine)
            ls.reload_engine()
