"""completer/stats (request; params optional): what the server did so far, for benchmarks and debugging.

Returns {"counters": {...requests, answered, empty, cancelled, stale, reuse_typed_through, ...},
"engine": {engine_requests, prompt_tokens, cached_tokens, restored_tokens, shifted_tokens, prefill_tokens,
decode_tokens, drafted_tokens, accepted_tokens},
"lastLatencyMs": float | null, "context": [{"uri", "paths": chunks of other files in its prompt}]};
"engineInfo": the engine's describe() (with --engine auto|connect: the daemon's pid and socket); with
params {"requests": true} also "requests": the RequestLog's records (completer.records.AnswerRecord as
JSON, oldest first), with {"requests": N} only the last N of them (a bench that reads the log after
every session asks for that session's, not for thousands each time); with {"documents":
true} also "documents": [{"uri", "version", "chars", "sha256" of the text}].
Local only.
"""

from __future__ import annotations

import dataclasses
import hashlib

STATS_REQUEST = "completer/stats"


def register(server) -> None:
    @server.feature(STATS_REQUEST)
    async def stats(ls, params=None):
        context = [{"uri": uri, "paths": [path for path, _ in doc.context]}
                   for uri, doc in ls.store.documents.items() if doc.context]
        answer = {"counters": dataclasses.asdict(ls.counters), "engine": dataclasses.asdict(ls.engine_totals),
                  "lastLatencyMs": ls.last_latency_ms, "context": context,
                  "engineInfo": ls.completer.engine.describe() if ls.completer else None}
        last = _count(params, "requests")
        if _asked(params, "requests") or last:
            records = ls.request_log.records
            answer["requests"] = [record.to_json() for record in
                                  (list(records)[-last:] if last else records)]
        if _asked(params, "documents"):  # what the server holds, to check sync against the client's copy
            answer["documents"] = [{"uri": uri, "version": doc.version, "chars": sum(map(len, doc.lines)),
                                    "sha256": hashlib.sha256("".join(doc.lines).encode("utf-8", "surrogatepass"))
                                    .hexdigest()} for uri, doc in ls.store.documents.items()]
        return answer


def _count(params, key: str) -> int:
    """A positive integer given for `key` (True is not one), else 0."""
    value = getattr(params, key, None) if not isinstance(params, dict) else params.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _asked(params, key: str) -> bool:
    return getattr(params, key, None) is True or (isinstance(params, dict) and params.get(key) is True)
