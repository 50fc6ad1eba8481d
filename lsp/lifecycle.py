"""initialize / initialized: negotiate positions, read initializationOptions (options.py says which;
command-line flags are the defaults), start loading the model."""

from __future__ import annotations

import asyncio
import logging

from lsprotocol import types
from pygls.uris import to_fs_path

from completer.completion.context import ContextRing, Workspace

from .workspace_folders import folder_paths

log = logging.getLogger(__name__)


def _workspace_folders(params: types.InitializeParams) -> list[str]:
    """The folders the client opened (workspaceFolders, else rootUri, else rootPath), as local paths."""
    if params.workspace_folders:
        return folder_paths(params.workspace_folders)
    path = to_fs_path(params.root_uri) if params.root_uri else params.root_path
    return [path] if path else []


def register(server) -> None:
    @server.feature(types.INITIALIZE)
    async def initialize(ls, params: types.InitializeParams):
        ls.store.encoding = str(ls.workspace.position_encoding.value
                                if hasattr(ls.workspace.position_encoding, "value")
                                else ls.workspace.position_encoding or "utf-16")
        if ls.recorder:
            ls.recorder.encoding = ls.store.encoding
        ls.apply_client_settings(params.initialization_options)
        folders = _workspace_folders(params)
        ls.workspace_root = folders[0] if folders else ""
        log.info("position encoding %s, engine %s", ls.store.encoding, ls.options.engine)
        ls.start_loading()
        if folders and ls.switches.context:  # Workspace asks git for the user's excludes file: off the loop
            ls.ring = ContextRing(await asyncio.to_thread(Workspace, folders))

    @server.feature(types.INITIALIZED)
    async def initialized(ls, params: types.InitializedParams):
        if ls.completer is not None:
            ls.send_status("ready")
        elif ls.load_error:
            ls.send_status("error", message=ls.load_error)
        else:
            ls.send_status("loading")
