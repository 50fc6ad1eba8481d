"""completer/stats (request, no params): what the server did so far, for benchmarks and debugging.

Returns {"counters": {...requests, answered, empty, cancelled, stale, reuse_typed_through, ...},
"engine": {...prompt, cached, restored, shifted, prefilled, decoded, drafted, accepted tokens},
"lastLatencyMs": float | null, "context": [{"uri", "paths": chunks of other files in its prompt}]};
"engineInfo": the engine's describe() (with --engine auto|connect: the daemon's pid and socket); with
params {"requests": true} also "requests": the RequestLog's records (oldest first).
Local only.
"""

from __future__ import annotations

STATS_REQUEST = "completer/stats"


def register(server) -> None:
    @server.feature(STATS_REQUEST)
    async def stats(ls, params=None):
        context = [{"uri": uri, "paths": [path for path, _ in doc.context]}
                   for uri, doc in ls.store.documents.items() if doc.context]
        answer = {"counters": dict(ls.counters), "engine": dict(ls.engine_totals),
                  "lastLatencyMs": ls.last_latency_ms, "context": context,
                  "engineInfo": ls.completer.engine.describe() if ls.completer else None}
        if getattr(params, "requests", None) is True or (isinstance(params, dict) and params.get("requests") is True):
            answer["requests"] = list(ls.request_log.records)
        return answer
