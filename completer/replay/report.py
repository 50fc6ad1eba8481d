"""What `completer replay` prints and writes: a summary per server configuration, the A/B ratios,
a terminal table, a JSON file and PNG plots (latency CDF, per-keystroke timeline)."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from pathlib import Path

from completer.records import SPENT_PARTS, AnswerRecord

from .metrics import percentiles
from .records import SessionResult

PCTS = (50, 90, 95, 99)
ENGINE_FIELDS = ("prompt_tokens", "cached_tokens", "prefill_tokens", "decode_tokens", "drafted_tokens",
                 "accepted_tokens")


def summarize(results: list[SessionResult]) -> dict:
    requests = [r for res in results for r in res.requests]
    answered = [r for r in requests if r.outcome in ("answered", "empty")]
    latencies = [r.latency_ms for r in answered if r.latency_ms is not None]
    p = percentiles(latencies, PCTS)
    kinds: dict[str, int] = {}
    by_kind: dict[str, list[float]] = {}
    server_by_kind: dict[str, list[float]] = {}
    engine = [r.server for r in requests if r.server and r.server.kind == "engine" and r.server.work]
    for r in requests:
        kind = r.server.kind if r.server else "unmatched"
        kinds[kind] = kinds.get(kind, 0) + 1
        if r.latency_ms is not None and r.outcome in ("answered", "empty"):
            by_kind.setdefault(kind, []).append(r.latency_ms)
        if r.server:
            server_by_kind.setdefault(kind, []).append(r.server.ms)
    accepted = sum(res.accepted_chars for res in results)
    accepted_share, acceptance_rate = _take_up(results)
    duration = sum(res.duration_ms for res in results)
    ghost = sum(res.ghost_ms for res in results)
    recorded = sum(res.recorded_accepted_chars for res in results)
    out = {
        "sessions": len(results),
        "keystrokes": sum(res.keystrokes for res in results),
        "requests": len(requests),
        "answered": len(answered),
        "with_text": sum(1 for r in answered if r.text),
        "cancelled": sum(1 for r in requests if r.outcome == "cancelled"),
        "stale": sum(1 for r in requests if r.outcome == "stale"),
        "errors": sum(1 for r in requests if r.outcome == "error"),
        **{f"latency_p{q}_ms": _round(p[q]) for q in PCTS},
        "latency_max_ms": _round(max(latencies)) if latencies else None,
        "latency_p50_by_kind_ms": {k: _round(percentiles(v, (50,))[50]) for k, v in sorted(by_kind.items())},
        "server_ms_p50_by_kind": {k: _round(percentiles(v, (50,))[50], 3) for k, v in sorted(server_by_kind.items())},
        "server_kinds": dict(sorted(kinds.items())),
        "engine_requests": len(engine),
        "engine_per_request": {f: _round(sum(getattr(e.work, f) for e in engine) / len(engine)) if engine else None
                               for f in ENGINE_FIELDS},
        "draft_acceptance": _round(sum(e.work.accepted_tokens for e in engine)
                               / max(1, sum(e.work.drafted_tokens for e in engine)), 3),
        "chars_typed": sum(res.typed_chars for res in results),
        "chars_accepted": accepted,
        "accepted_share": accepted_share,
        "shown": sum(res.shown for res in results),
        "accepts": sum(res.accepts for res in results),
        "acceptance_rate": acceptance_rate,
        "no_ghost_share": _round(1 - ghost / duration, 3) if duration else None,
        "duration_s": _round(duration / 1000, 1),
        "texts_ok": all(res.text_ok is not False for res in results),
    }
    # Where a model answer's server-side time went, on average and in the slowest 5% of them.
    timed = sorted(engine, key=lambda e: e.ms)
    out["engine_spent_mean_ms"] = _spent_means(timed)
    out["engine_spent_slowest5_mean_ms"] = _spent_means(timed[-max(1, len(timed) // 20):])
    if recorded:
        out["recorded_agreement"] = _round(sum(res.agreed_chars for res in results) / recorded, 3)
    if len({res.language for res in results}) > 1:
        out["by_language"] = by_language(results)
    return out


def _take_up(results: list[SessionResult]) -> tuple[float | None, float | None]:
    """The share of the typed text that came from suggestions, and the share of the suggestions shown
    that were taken."""
    final, shown = sum(res.final_chars for res in results), sum(res.shown for res in results)
    return (_round(sum(res.accepted_chars for res in results) / final, 3) if final else None,
            _round(sum(res.accepts for res in results) / shown, 3) if shown else None)


def by_language(results: list[SessionResult]) -> dict[str, dict]:
    """The share of the text from suggestions and the acceptance rate of each language's sessions
    (a language's own gate threshold is chosen from these)."""
    out = {}
    for language in sorted({res.language for res in results}):
        mine = [res for res in results if res.language == language]
        accepted_share, acceptance_rate = _take_up(mine)
        out[language or "unknown"] = {"sessions": len(mine), "shown": sum(res.shown for res in mine),
                                      "accepted_share": accepted_share, "acceptance_rate": acceptance_rate}
    return out


def by_language_lines(configs: list[dict]) -> list[str]:
    """Lines under the table: each language's share of text from suggestions / acceptance rate."""
    lines = []
    for c in configs:
        languages = c["summary"].get("by_language")
        if languages:
            cells = ", ".join(f"{lang} {_pct(v['accepted_share'])}/{_pct(v['acceptance_rate'])}"
                              for lang, v in languages.items())
            lines.append(f"{c['name']}, % of text from suggestions / % of shown accepted: {cells}")
    return [""] + lines if lines else []


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


COLD_WINDOW_S = 60.0


def cold_start(results: list[SessionResult], cold_start_s: float) -> dict:
    """A replay whose first key came cold_start_s after the server started: how long the first
    suggestion took from the first key, and client-observed latency over the first COLD_WINDOW_S from
    the first key and over the rest (a request counts where it was sent)."""
    sent = sorted(((res.started_ms + r.t_sent) / 1000, r) for res in results for r in res.requests)
    if not sent:
        return {"first_key_s": None}
    first_key_s = sent[0][0]
    shown = [(t + (r.latency_ms or 0.0) / 1000, r) for t, r in sent if r.text and r.latency_ms is not None]
    first_text_s = min((t for t, _ in shown), default=None)
    # Any answer, with text or empty (keys typed in between cancel the requests before): when the
    # server first answered at all. When a suggestion first showed also depends on what was typed.
    answers = [t + r.latency_ms / 1000 for t, r in sent if r.outcome in ("answered", "empty") and r.latency_ms is not None]

    def window(pairs) -> dict:
        lat = [r.latency_ms for _, r in pairs if r.outcome in ("answered", "empty") and r.latency_ms is not None]
        p = percentiles(lat, (50, 95, 99))
        return {"requests": len(pairs), "answered": len(lat), **{f"p{q}_ms": _round(p[q]) for q in (50, 95, 99)},
                "max_ms": _round(max(lat)) if lat else None}
    end = first_key_s + COLD_WINDOW_S
    return {
        "cold_start_s": cold_start_s,
        "first_key_s": _round(first_key_s),
        "first_suggestion_after_first_key_ms": None if first_text_s is None else _round((first_text_s - first_key_s)
                                                                                       * 1000),
        "first_answer_ms": _round(sent[0][1].latency_ms),
        "first_answer_after_first_key_ms": _round((min(answers) - first_key_s) * 1000) if answers else None,
        "first_60s": window([(t, r) for t, r in sent if t < end]),
        "after_60s": window([(t, r) for t, r in sent if t >= end]),
        # issue 23's GPU bar: no request above 100 ms once the first second after the first key is over
        "after_1s_max_ms": window([(t, r) for t, r in sent if t >= first_key_s + 1.0])["max_ms"],
    }


def cold_start_table(configs: list[dict]) -> str:
    rows = [["cold start", *[c["name"] for c in configs]]]
    window_keys = ("requests", "p50_ms", "p95_ms", "p99_ms", "max_ms")
    for label, get in (("first key, s after launch", _at("first_key_s")),
                       ("first key's answer ms", _at("first_answer_ms")),
                       ("first answer, ms after the first key", _at("first_answer_after_first_key_ms")),
                       ("first suggestion, ms after first key", _at("first_suggestion_after_first_key_ms")),
                       *[(f"first 60 s: {k}", _at("first_60s", k)) for k in window_keys],
                       *[(f"after 60 s: {k}", _at("after_60s", k)) for k in window_keys],
                       ("slowest answer after the first second, ms", _at("after_1s_max_ms"))):
        rows.append([label, *[_cell(get(c["summary"]["cold_start"])) for c in configs]])
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width[i]) if i == 0 else cell.rjust(width[i]) for i, cell in enumerate(r))
             for r in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def _cell(value) -> str:
    return "-" if value is None else str(value)


def _spent_means(records: list[AnswerRecord]) -> dict | None:
    if not records:
        return None
    return {part: _round(sum(getattr(e.spent, part) or 0.0 for e in records) / len(records), 2) for part in SPENT_PARTS}


def _round(x, nd: int = 2):
    if x is None or x != x:  # NaN
        return None
    return round(float(x), nd)


def _at(*path):
    """A getter of summary[path[0]][path[1]]...; None where a part is missing."""
    def get(summary: dict):
        value = summary
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        return value
    return get


def _kind_count(kind: str):
    return lambda summary: summary["server_kinds"].get(kind, 0)


def _draft_pair(summary: dict) -> str | None:
    e = summary.get("engine_per_request") or {}
    n = summary.get("engine_requests") or 0
    if not n or e.get("drafted_tokens") is None:
        return None
    return f"{e['drafted_tokens'] * n:.0f}/{e['accepted_tokens'] * n:.0f}"


# Lines of the terminal table: (label, key of the ratio, getter, format, ratio wanted).
ROWS = [
    ("sessions", "sessions", _at("sessions"), "{}", False),
    ("keystrokes", "keystrokes", _at("keystrokes"), "{}", False),
    ("requests", "requests", _at("requests"), "{}", False),
    ("  answered in time", "answered", _at("answered"), "{}", False),
    ("  with a suggestion", "with_text", _at("with_text"), "{}", False),
    ("  cancelled by the next key", "cancelled", _at("cancelled"), "{}", True),
    ("  stale (answered too late)", "stale", _at("stale"), "{}", True),
    *[(f"latency p{q} ms", f"latency_p{q}_ms", _at(f"latency_p{q}_ms"), "{:.1f}", True) for q in PCTS],
    ("latency max ms", "latency_max_ms", _at("latency_max_ms"), "{:.1f}", True),
    ("answered by the model", "engine_requests", _at("engine_requests"), "{}", True),
    ("  their latency p50 ms", "engine_latency_p50_ms", _at("latency_p50_by_kind_ms", "engine"), "{:.1f}", True),
    ("  server-side p50 ms", "engine_server_ms_p50", _at("server_ms_p50_by_kind", "engine"), "{:.1f}", True),
    ("  prompt tokens / request", "prompt_tokens", _at("engine_per_request", "prompt_tokens"), "{:.0f}", False),
    ("  cached tokens / request", "cached_tokens", _at("engine_per_request", "cached_tokens"), "{:.0f}", True),
    ("  prefilled tokens / request", "prefill_tokens", _at("engine_per_request", "prefill_tokens"), "{:.1f}", True),
    ("  decoded tokens / request", "decode_tokens", _at("engine_per_request", "decode_tokens"), "{:.1f}", True),
    ("  drafted / accepted drafts", "draft_pair", _draft_pair, "{}", False),
    ("typed-through answers", "typed_through", _kind_count("typed_through"), "{}", True),
    ("  their latency p50 ms", "typed_through_latency_p50_ms", _at("latency_p50_by_kind_ms", "typed_through"),
     "{:.2f}", True),
    ("  server-side p50 ms", "typed_through_server_ms_p50", _at("server_ms_p50_by_kind", "typed_through"),
     "{:.3f}", True),
    ("fuzzy-reuse answers", "recent", _kind_count("recent"), "{}", True),
    ("characters typed", "chars_typed", _at("chars_typed"), "{}", True),
    ("characters accepted", "chars_accepted", _at("chars_accepted"), "{}", True),
    ("share of text from suggestions", "accepted_share", _at("accepted_share"), "{:.1%}", True),
    ("suggestions shown", "shown", _at("shown"), "{}", False),
    ("acceptance rate", "acceptance_rate", _at("acceptance_rate"), "{:.1%}", True),
    ("time without ghost text", "no_ghost_share", _at("no_ghost_share"), "{:.1%}", True),
    ("replay time s", "duration_s", _at("duration_s"), "{:.0f}", False),
    ("documents end as intended", "texts_ok", _at("texts_ok"), "{}", False),
]


def ratios(configs: list[dict]) -> dict[str, dict[str, float | None]]:
    """Each configuration's numbers over the first one's, for the rows marked for ratios."""
    base = configs[0]["summary"]
    out = {}
    for cfg in configs[1:]:
        row = {}
        for _, key, get, _, want in ROWS:
            if not want:
                continue
            a, b = get(cfg["summary"]), get(base)
            row[key] = round(a / b, 3) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
        out[cfg["name"]] = row
    return out


def table(configs: list[dict]) -> str:
    names = [c["name"] for c in configs]
    header = ["", *names, *[f"{n}/{names[0]}" for n in names[1:]]]
    rows = [header]
    for label, _, get, fmt, want in ROWS:
        cells = [label]
        values = [get(c["summary"]) for c in configs]
        for v in values:
            cells.append("-" if v is None else (fmt.format(v) if not isinstance(v, str) else v))
        for v in values[1:]:
            b = values[0]
            ok = want and isinstance(v, (int, float)) and isinstance(b, (int, float)) and b and not isinstance(v, bool)
            cells.append(f"{v / b:.2f}x" if ok else "")
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[0]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)))
        if i == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines + where_time_went(configs) + by_language_lines(configs))


def where_time_went(configs: list[dict]) -> list[str]:
    """Lines under the table: the mean server-side milliseconds of a model answer by part."""
    lines = []
    for c in configs:
        for label, key in (("model answers", "engine_spent_mean_ms"), ("slowest 5%", "engine_spent_slowest5_mean_ms")):
            means = c["summary"].get(key)
            if means:
                parts = ", ".join(f"{part} {means[part]:.2f}" for part in SPENT_PARTS)
                lines.append(f"{c['name']}, {label}, server-side mean ms: {parts}")
    return [""] + lines if lines else []


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def to_json(configs: list[dict], options: dict) -> dict:
    return {
        "machine": machine(),
        "options": options,
        "configs": [{"name": c["name"], "server_cmd": c["server_cmd"], "summary": c["summary"],
                     "server_stats": c.get("server_stats"),
                     "sessions": [{**{k: v for k, v in asdict(res).items() if k != "requests"},
                                   "requests": [_request_json(r) for r in res.requests]} for res in c["results"]]}
                    for c in configs],
        "ratios": ratios(configs) if len(configs) > 1 else {},
    }


def _request_json(r) -> dict:
    out = asdict(r)
    out["server"] = r.server.to_json() if r.server else None
    return out


def write_json(path: str | Path, configs: list[dict], options: dict) -> None:
    Path(path).write_text(json.dumps(to_json(configs, options), indent=1) + "\n")


def plot(path: str | Path, configs: list[dict]) -> None:
    """Two panels: client latency CDF per configuration; per-keystroke latency over the first
    configuration's replay, coloured by who answered."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'completer[bench]'") from None
    fig, (cdf, timeline) = plt.subplots(1, 2, figsize=(13, 4.8))
    for c in configs:
        lat = sorted(r.latency_ms for res in c["results"] for r in res.requests if r.latency_ms is not None)
        if lat:
            cdf.plot(lat, [(i + 1) / len(lat) for i in range(len(lat))], label=c["name"])
    cdf.axvline(50, color="grey", ls=":", lw=1)
    cdf.set_xscale("log")
    cdf.set_xlabel("keystroke -> suggestion, client-observed (ms, log)")
    cdf.set_ylabel("share of answered requests")
    cdf.set_title("latency CDF")
    cdf.grid(alpha=0.3)
    cdf.legend()
    first = configs[0]
    offset, points = 0.0, {}
    for res in first["results"]:
        for r in res.requests:
            kind = r.server.kind if r.server else "unmatched"
            if r.outcome in ("cancelled", "stale"):
                kind = r.outcome
            y = r.latency_ms if r.latency_ms is not None else None
            if y is None:
                continue
            points.setdefault(kind, ([], []))
            points[kind][0].append((offset + r.t_sent) / 1000)
            points[kind][1].append(max(y, 0.05))
        offset += res.duration_ms
    for kind, (xs, ys) in sorted(points.items()):
        timeline.scatter(xs, ys, s=6, label=kind)
    timeline.axhline(50, color="grey", ls=":", lw=1)
    timeline.set_yscale("log")
    timeline.set_xlabel(f"replay time (s), configuration {first['name']!r}")
    timeline.set_ylabel("latency (ms, log)")
    timeline.set_title("per keystroke")
    timeline.grid(alpha=0.3)
    timeline.legend(markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
