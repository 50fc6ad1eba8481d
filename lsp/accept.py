"""Acceptance telemetry, Copilot's conventions (counted locally, never sent anywhere):

- workspace/executeCommand `completer.didAcceptCompletion` [item id]: the item's `command`, run by
  the client when the user accepts a suggestion;
- textDocument/didShowCompletion {item}: the client displayed an item;
- textDocument/didPartiallyAcceptCompletion {item, acceptedLength}: accepted a word or a line.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

ACCEPT_COMMAND = "completer.didAcceptCompletion"
DID_SHOW = "textDocument/didShowCompletion"
DID_PARTIALLY_ACCEPT = "textDocument/didPartiallyAcceptCompletion"


def register(server) -> None:
    @server.command(ACCEPT_COMMAND)
    async def did_accept(ls, *args):
        ls.counters.accepted += 1
        log.info("accepted %s", args[0] if args else "?")
        if ls.recorder and args and isinstance(args[0], str):
            ls.recorder.accepted(args[0])
        return None

    @server.feature(DID_SHOW)
    async def did_show(ls, params):
        ls.counters.shown += 1

    @server.feature(DID_PARTIALLY_ACCEPT)
    async def did_partially_accept(ls, params):
        ls.counters.partially_accepted += 1
        item_id, length = _partial_accept(params)
        log.info("partially accepted %s: %d characters", item_id or "?", length)
        if ls.recorder and item_id is not None:
            ls.recorder.accepted(item_id, length)


def _partial_accept(params) -> tuple[str | None, int]:
    """(our item id, acceptedLength) from {item: {command: {arguments: [id]}}, acceptedLength}, if present."""
    try:
        item = getattr(params, "item", None)
        command = getattr(item, "command", None)
        arguments = getattr(command, "arguments", None) or []
        length = int(getattr(params, "acceptedLength", 0))
        return (arguments[0] if arguments and isinstance(arguments[0], str) else None), max(0, length)
    except (TypeError, ValueError):
        return None, 0
