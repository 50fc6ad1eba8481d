"""textDocument/completion: the suggestion as one completion item, for clients without inline completion.

Clients that declare textDocument.inlineCompletion get an empty list here (they show ghost text
instead, and one suggestion in two places would be noise). For the others the item replaces the
word left of the cursor with that word plus the suggestion, so the client's own prefix filtering
keeps it while the user types; the list is marked incomplete so each keystroke asks again.
"""

from __future__ import annotations

from lsprotocol import types

from completer.lines import line_body, to_client_units

from .inline_completion import complete_inline

TRIGGER_CHARACTERS = [".", "(", ","]
LABEL_CHARS = 60


def _word_start(body: str, character: int) -> int:
    start = character
    while start > 0 and (body[start - 1].isalnum() or body[start - 1] == "_"):
        start -= 1
    return start


def _wants_completion_items(ls) -> bool:
    text_document = getattr(ls.client_capabilities, "text_document", None)
    return getattr(text_document, "inline_completion", None) is None


async def complete_items(ls, params: types.CompletionParams) -> types.CompletionList:
    empty = types.CompletionList(is_incomplete=True, items=[])
    if not _wants_completion_items(ls):
        return types.CompletionList(is_incomplete=False, items=[])
    inline = types.InlineCompletionParams(
        text_document=params.text_document, position=params.position,
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))
    answer = await complete_inline(ls, inline)
    located = ls.store.locate(params.text_document.uri)
    if not answer.items or located is None:
        return empty
    item = answer.items[0]
    text = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
    line = item.range.start.line  # the client's; the document's is located.first_line lines further
    doc_line = located.first_line + line
    body = line_body(located.doc.lines[doc_line]) if doc_line < len(located.doc.lines) else ""
    _, character = located.doc.clamp(doc_line, item.range.start.character, ls.store.encoding)
    start = _word_start(body, character)
    word = body[start:character]
    first_line = (word + text).split("\n", 1)[0].strip()
    label = first_line if len(first_line) <= LABEL_CHARS else first_line[:LABEL_CHARS - 1] + "…"
    edit_range = types.Range(start=types.Position(line=line, character=to_client_units(body, start, ls.store.encoding)),
                             end=item.range.end)
    return types.CompletionList(is_incomplete=True, items=[types.CompletionItem(
        label=label, kind=types.CompletionItemKind.Text, detail="completer", sort_text="0",
        filter_text=word + text.split("\n", 1)[0], insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=edit_range, new_text=word + text), command=item.command)])


def register(server) -> None:
    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=TRIGGER_CHARACTERS))
    async def completion(ls, params: types.CompletionParams):
        return await complete_items(ls, params)
