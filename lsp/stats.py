"""completer/stats (request; params optional): what the server did so far, for benchmarks and debugging.

Returns {"counters": {...requests, answered, empty, cancelled, stale, reuse_typed_through, ...},
"engine": {...prompt, cached, restored, shifted, prefilled, decoded, drafted, accepted tokens},
"lastLatencyMs": float | null, "context": [{"uri", "paths": chunks of other files in its prompt}]};
"engineInfo": the engine's describe() (with --engine auto|connect: the daemon's pid and socket); with
params {"requests": true} also "requests": the RequestLog's records (oldest first); with {"documents":
true} also "documents": [{"uri", "version", "chars", "sha256" of the text}].
Local only.
"""

from __future__ import annotations

import hashlib

STATS_REQUEST = "completer/stats"


def register(server) -> None:
    @server.feature(STATS_REQUEST)
    async def stats(ls, params=None):
        context = [{"uri": uri, "paths": [path for path, _ in doc.context]}
                   for uri, doc in ls.store.documents.items() if doc.context]
        answer = {"counters": dict(ls.counters), "engine": dict(ls.engine_totals),
                  "lastLatencyMs": ls.last_latency_ms, "context": context,
                  "engineInfo": ls.completer.engine.describe() if ls.completer else None}
        if _asked(params, "requests"):
            answer["requests"] = list(ls.request_log.records)
        if _asked(params, "documents"):  # what the server holds, to check sync against the client's copy
            answer["documents"] = [{"uri": uri, "version": doc.version, "chars": sum(map(len, doc.lines)),
                                    "sha256": hashlib.sha256("".join(doc.lines).encode("utf-8", "surrogatepass"))
                                    .hexdigest()} for uri, doc in ls.store.documents.items()]
        return answer


def _asked(params, key: str) -> bool:
    return getattr(params, key, None) is True or (isinstance(params, dict) and params.get(key) is True)
