"""An LSP server that answers inline completions through llama-server, the way llama.vim asks it.

    completer replay SESSION --server-cmd "python bench/llama_shim.py --url http://127.0.0.1:8012"

It is the llama.vim + llama.cpp side of bench/llama_server.py's side-by-side: the replay drives it
exactly as it drives `completer serve --stdio`, so both servers see the same keystrokes. What it
does per request is what llama.vim (autoload/llama.vim) does per cursor move in insert mode:

- the local context: up to 256 lines above, the cursor line's left part, the rest of that line and
  up to 64 lines below; a line of only whitespace starts from column 0;
- no request when more than 8 characters follow the cursor on its line (max_line_suffix);
- a client-side cache of answers keyed by the context: an answer whose text the user has since
  typed through (up to 128 characters back) is shown at once, without asking the server;
- one request at a time (llama.vim waits while a job runs); a request the editor has moved past
  still completes and fills the cache, as llama.vim's does;
- POST /infill with llama.vim's fields: n_predict 128, n_indent, top_k 40, top_p 0.90, samplers
  top_k/top_p/infill, cache_prompt, t_max_prompt_ms 500, t_max_predict_ms 250 (its first request);
- the answer trimmed as llama.vim renders it: trailing empty lines dropped, leading whitespace on a
  blank line, nothing shown that only repeats the rest of the line or the next line.

Not reproduced: llama.vim's ring buffer of extra chunks from other buffers (the replay has one
file) and its speculative follow-up request after a suggestion shows.

--layout same-prompt instead sends our model's own FIM layout (the cursor line's left part after
<|fim_middle|>, which is how the embedded model was trained) as token ids from our tokenizer to
/completion, with greedy decoding and our server's token limit: the same prompt for both servers,
so the comparison is of the engines, not of the prompt layouts.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

N_PREFIX_LINES, N_SUFFIX_LINES = 256, 64  # llama.vim's n_prefix, n_suffix
MAX_LINE_SUFFIX = 8
LOOK_BACK_CHARS = 128
CACHE_KEYS = 250
_BLANK = re.compile(r"^\s*$")


def local_context(lines: list[str], row: int, col: int) -> dict:
    """llama.vim's s:fim_ctx_local for a cursor at (row, col), 0-based, col in code points."""
    cur = lines[row] if row < len(lines) else ""
    left, right = cur[:col], cur[col:]
    above = lines[max(0, row - N_PREFIX_LINES):row]
    below = lines[row + 1:row + 1 + N_SUFFIX_LINES]
    if _BLANK.match(cur):
        indent, left, right = 0, "", ""
    else:
        indent = len(cur) - len(cur.lstrip())
    return {"prefix": "\n".join(above) + "\n", "middle": left, "suffix": right + "\n" + "\n".join(below) + "\n",
            "indent": indent, "line": cur, "left": cur[:col], "right": cur[col:]}


def context_key(prefix_and_middle: str, suffix: str) -> str:
    return hashlib.sha256((prefix_and_middle + "\u00ce" + suffix).encode("utf-8", "surrogatepass")).hexdigest()


class AnswerCache:
    """llama.vim's g:cache_data: context key -> generated text, with its typed-through look-up."""

    def __init__(self, size: int = CACHE_KEYS):
        self.size = size
        self.data: dict[str, str] = {}

    def put(self, ctx: dict, content: str) -> None:
        if len(self.data) >= self.size:
            self.data.pop(next(iter(self.data)))
        self.data[context_key(ctx["prefix"] + ctx["middle"], ctx["suffix"])] = content

    def get(self, ctx: dict) -> str | None:
        pm = ctx["prefix"] + ctx["middle"]
        hit = self.data.get(context_key(pm, ctx["suffix"]))
        if hit is not None:
            return hit
        best = None
        for i in range(min(LOOK_BACK_CHARS, len(pm))):
            typed = pm[len(pm) - 1 - i:]  # the last i+1 characters, typed since that answer
            cached = self.data.get(context_key(pm[:len(pm) - 1 - i], ctx["suffix"]))
            if cached and cached.startswith(typed) and len(cached) > len(typed):
                rest = cached[len(typed):]
                if best is None or len(rest) > len(best):
                    best = rest
        return best


def shown_text(content: str, ctx: dict, next_lines: list[str]) -> str:
    """What llama.vim would display of an answer at the cursor ("" for nothing)."""
    parts = content.split("\n")
    while parts and parts[-1] == "":
        parts.pop()
    if not parts:
        return ""
    if _BLANK.match(ctx["line"]):  # the model wrote from column 0: drop the indentation already there
        lead = min(len(parts[0]) - len(parts[0].lstrip()), len(ctx["line"]))
        parts[0] = parts[0][lead:]
    if len(parts) == 1 and parts[0] == ctx["right"]:
        return ""
    following = next((ln for ln in next_lines if not _BLANK.match(ln)), None)
    if len(parts) == 1 and following is not None and ctx["left"] + parts[0] == following:
        return ""
    text = "\n".join(parts)
    return "" if _BLANK.match(text) else text


async def post_json(url: str, body: dict, timeout: float = 30.0) -> dict:
    """One HTTP/1.1 POST on a fresh connection (localhost: the connect costs ~0.1 ms)."""
    u = urlsplit(url)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(u.hostname, u.port or 80), timeout)
    try:
        data = json.dumps(body).encode()
        writer.write(f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1] if head else b"?"
    if status != b"200":
        raise RuntimeError(f"llama-server {u.path}: HTTP {status.decode()}: {payload[:300]!r}")
    return json.loads(payload)


class LlamaClient:
    """Builds llama.vim's (or our) request for a context and asks llama-server."""

    def __init__(self, url: str, layout: str, model_dir: Path, max_tokens: int):
        self.url = url.rstrip("/")
        self.layout = layout
        self.max_tokens = max_tokens
        self.tok = None
        if layout == "same-prompt":
            from completer.completion.fim import detect_template
            from completer.tokenizer import Tokenizer

            self.tok = Tokenizer(model_dir)
            self.fim = detect_template(self.tok)

    async def complete(self, ctx: dict, path: str) -> str:
        if self.layout == "llama.vim":
            body = {"input_prefix": ctx["prefix"], "input_suffix": ctx["suffix"], "input_extra": [],
                    "prompt": ctx["middle"], "n_predict": 128, "n_indent": ctx["indent"], "top_k": 40,
                    "top_p": 0.90, "stream": False, "samplers": ["top_k", "top_p", "infill"],
                    "cache_prompt": True, "t_max_prompt_ms": 500, "t_max_predict_ms": 250,
                    "response_fields": ["content", "timings/prompt_n", "timings/predicted_n", "tokens_cached"]}
            return (await post_json(self.url + "/infill", body)).get("content", "")
        # Our layout: [<|file_sep|>path\n] <|fim_prefix|>ABOVE <|fim_suffix|>SUFFIX <|fim_middle|>LEFT
        f, enc = self.fim, self.tok.encode
        ids = ([f.file_sep_id, *enc(path + "\n")] if f.file_sep_id is not None else [])
        ids += [f.prefix_id, *enc(ctx["prefix"]), f.suffix_id, *enc(ctx["suffix"]), f.middle_id, *enc(ctx["middle"])]
        body = {"prompt": ids, "n_predict": self.max_tokens, "n_indent": ctx["indent"], "top_k": 1,
                "samplers": ["top_k"], "stream": False, "cache_prompt": True, "t_max_predict_ms": 250,
                "response_fields": ["content"]}
        return (await post_json(self.url + "/completion", body)).get("content", "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="llama-server's address, e.g. http://127.0.0.1:8012")
    p.add_argument("--layout", choices=("llama.vim", "same-prompt"), default="llama.vim")
    p.add_argument("--model", type=Path, default=Path(__file__).resolve().parent.parent / "completer/models/embedded",
                   help="tokenizer for --layout same-prompt (default: the embedded model)")
    p.add_argument("--max-tokens", type=int, default=48, help="--layout same-prompt: tokens per answer (ours: 48)")
    args = p.parse_args()

    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    from lsp.transport import serve_stdio

    server = LanguageServer("llama-shim", "1", text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
    llama = LlamaClient(args.url, args.layout, args.model, args.max_tokens)
    cache = AnswerCache()
    one_at_a_time = asyncio.Lock()

    async def fetch(ctx: dict, path: str) -> str:
        content = await llama.complete(ctx, path)
        cache.put(ctx, content)  # kept even when the editor has moved on, as llama.vim keeps it
        return content

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION)
    async def inline(params: types.InlineCompletionParams) -> types.InlineCompletionList:
        doc = server.workspace.get_text_document(params.text_document.uri)
        lines = doc.source.split("\n")
        row = params.position.line
        if row >= len(lines):
            return types.InlineCompletionList(items=[])
        col = len(lines[row].encode("utf-16-le")[:params.position.character * 2].decode("utf-16-le", "ignore"))
        ctx = local_context(lines, row, col)
        if len(ctx["right"]) > MAX_LINE_SUFFIX:
            return types.InlineCompletionList(items=[])
        content = cache.get(ctx)
        if content is None:
            async with one_at_a_time:
                content = cache.get(ctx)  # the request we waited for may have answered this one
                if content is None:
                    # shielded: a superseded request still completes and fills the cache
                    content = await asyncio.shield(fetch(ctx, Path(doc.path).name))
        text = shown_text(content, ctx, lines[row + 1:])
        return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=text)] if text else [])

    serve_stdio(server)


if __name__ == "__main__":
    main()
