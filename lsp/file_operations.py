"""workspace/didRenameFiles and workspace/didDeleteFiles: a file renamed or deleted in the editor
leaves the context ring and every document's context at once (context_updates.withdraw). Without
this its old text fed other prompts under its old path until the ring rotated, even where the new
name is one the context may not use (renamed to `.env`, or into an ignored directory). The editor
opens the renamed file again under its new name, which notes it afresh.

The server registers for every file: scheme (VS Code sends these only for registered patterns).
"""

from __future__ import annotations

from lsprotocol import types
from pygls.uris import to_fs_path

from .context_updates import withdraw

EVERY_FILE = types.FileOperationRegistrationOptions(filters=[
    types.FileOperationFilter(scheme="file", pattern=types.FileOperationPattern(glob="**/*"))])


def forget(ls, uris) -> None:
    if ls.ring is None:
        return
    dropped = set()
    for uri in uris:
        path = to_fs_path(uri) if isinstance(uri, str) else None
        if path:
            dropped |= ls.ring.forget(path)
    withdraw(ls, dropped)


def register(server) -> None:
    @server.feature(types.WORKSPACE_DID_RENAME_FILES, EVERY_FILE)
    def did_rename_files(ls, params: types.RenameFilesParams):
        forget(ls, [rename.old_uri for rename in params.files])

    @server.feature(types.WORKSPACE_DID_DELETE_FILES, EVERY_FILE)
    def did_delete_files(ls, params: types.DeleteFilesParams):
        forget(ls, [deleted.uri for deleted in params.files])
