"""initialize / initialized: negotiate positions, read initializationOptions (options.py says which;
command-line flags are the defaults), start loading the model."""

from __future__ import annotations

import asyncio
import logging

from lsprotocol import types
from pygls.uris import to_fs_path

from completer.completion.context import ContextRing, Workspace

log = logging.getLogger(__name__)

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
        ls.apply_client_settings(params.initialization_options)
        root = _workspace_root(params)
        ls.workspace_root = root or ""
        log.info("position encoding %s, engine %s", ls.store.encoding, ls.options.engine)
        ls.start_loading()
        if root and ls.switches.context:  # Workspace asks git for the user's excludes file: off the loop
            ls.ring = ContextRing(await asyncio.to_thread(Workspace, root))

    @server.feature(types.INITIALIZED)
    async def initialized(ls, params: types.InitializedParams):
        if ls.completer is not None:
            ls.send_status("ready")
        elif ls.load_error:
            ls.send_status("error", message=ls.load_error)
        else:
            ls.send_status("loading")
