"""workspace/didChangeWorkspaceFolders: the context follows the folders the client has open.

pygls advertises workspace folders with change notifications and keeps `ls.workspace.folders` up to
date before this handler runs. The context ring then gets a Workspace of the new folders (built on a
worker thread: it asks git for each folder's excludes file) and keeps the files still inside them;
those of a removed folder leave every open document's context at once.
The KV cache's scope stays the first folder of `initialize`: it only keeps workspaces apart.
"""

from __future__ import annotations

import asyncio

from lsprotocol import types
from pygls.uris import to_fs_path

from completer.completion.context import ContextRing, Workspace

from .context_updates import withdraw


def folder_paths(folders) -> list[str]:
    """Local paths of workspace folders (URIs that are not files are left out), in the client's order."""
    paths = (to_fs_path(folder.uri) for folder in folders or ())
    return [path for path in paths if path]


def register(server) -> None:
    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    async def did_change_workspace_folders(ls, params: types.DidChangeWorkspaceFoldersParams):
        if not ls.switches.context:
            return
        folders = folder_paths(ls.workspace.folders.values())
        workspace = await asyncio.to_thread(Workspace, folders)
        if folder_paths(ls.workspace.folders.values()) != folders:
            return  # changed again meanwhile: the handler of that change sets the ring
        if ls.ring is None:
            ls.ring = ContextRing(workspace)
        else:  # a removed folder's files leave every document's context now (context_updates.withdraw)
            withdraw(ls, ls.ring.set_workspace(workspace))
