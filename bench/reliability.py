"""Soak, load and fault benches for the real server processes (issue 24). Not timed tests: each
prints the machine, the date, the settings and the same fields every run, a short table last, and
with --json OUT writes every number.

    python bench/reliability.py soak   [--minutes 60] [--sessions PATH...] [--json OUT]
    python bench/reliability.py load   [--windows 1,2,4,8] [--seconds 30] [--http-seconds 20] [--json OUT]
    python bench/reliability.py faults [--only FAULT,...] [--json OUT]
    python bench/reliability.py all    [--minutes 60] [--json OUT]   (the three, one after another)
        (faults: sigstop, sigkill, restart, disk-full, model-dir, raise-inproc, raise-daemon,
         raise-consumer)

soak: one `completer serve --stdio` (default flags, as an editor starts it) replays the typing
sessions of bench/sessions in a loop for --minutes (the whole run takes --minutes plus the start-up
and the last session, under a minute), sampling the server's RSS, threads and open file
descriptors from /proc every --sample-s. It reports the memory slope after warm-up (least squares, MB
per hour; warm-up ends after --warmup-minutes and once the background compile has finished) and
latency percentiles per window (10 minutes, shorter for short runs), for all answers and for the
model's answers (the server's request log is read after every session, so its 5,000-record bound
never hides a request).

load: N editor windows (N in --windows), each its own `completer serve --stdio --engine connect`
sharing one `completer engine` daemon, each typing a different Python session (its own document
URI) in a loop for --seconds at the same time; then `completer serve-openai` under --http-clients
streaming clients, first alone, then beside --slow-readers clients that send a streaming request and
stop reading. Per client: p50/p95, errors, and the starvation check (every client got answers; the
slowest client's p50 within --starve-factor of the fastest).

faults: one window typing a Python session (a character every 1/--cps s, a typo and its backspace
now and then) while the fault happens, then the client's documents compared with the server's by
sha256 (completer/stats {"documents": true}). A probe request is sent just before the fault, so the
fault lands while it runs ("in flight": the server's own record says the engine was away):
  sigstop       the engine daemon (--engine auto) SIGSTOPped for --stop-s, then SIGCONT
  sigkill       the daemon SIGKILLed (the server starts a new one)
  restart       the daemon SIGTERMed and a new `completer engine` started on its socket, as a user would
  disk-full     `serve --record DIR` on a 64 KB tmpfs that fills up (root; else a read-only DIR, said so)
  model-dir     `--model` a copy of the model that is deleted mid-session, then a configuration
                change that reloads the engine (it fails), then the directory back: recovered on a retry
  raise-inproc  the engine raises inside --raise-rate of its generations (after their first token)
  raise-daemon  the same inside a `completer engine` daemon
  raise-consumer  the code iterating the engine's stream raises after the first token, leaving the
                engine's generator suspended (the engine is free again only if its stream is closed)
The raising engine is the real engine behind a wrapper (`_faulty` below: `load_engine` patched in a
launcher, the rest of the server or daemon unchanged).

Load and faults serve eagerly (`--compile off` in --server-flags): compiling takes both cores for
1.5-2 minutes after every start and does not change how faults are handled; pass
--server-flags "" for the defaults. The soak uses the defaults (the compile happens in its warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from completer.lines import replace_range, to_client_units, to_codepoints
from completer.replay.driver import ReplayOptions, _attach_server_records, replay_session
from completer.replay.editor_client import (
    STARTUP_TIMEOUT_S,
    EditorClient,
    _plain,
    first_item,
    item_text,
    private_log,
)
from completer.replay.metrics import percentile
from completer.replay.session import Session, iter_paths, read_session

SESSIONS = ROOT / "bench" / "sessions"
FAULTS = ("sigstop", "sigkill", "restart", "disk-full", "model-dir", "raise-inproc", "raise-daemon",
          "raise-consumer")
EAGER = "--compile off"


# -- shared ----------------------------------------------------------------------------------------

def completer_cmd() -> list[str]:
    """The console script an editor runs (`completer`), else `python -m completer`."""
    script = Path(sys.executable).with_name("completer")
    return [str(script)] if script.exists() else [sys.executable, "-m", "completer"]


def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"cpu": cpu, "cores": os.cpu_count(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
            "nice": os.nice(0),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(), "torch": version("torch"), "completer": version("completer"),
            "commit": git("rev-parse", "--short", "HEAD"), "uncommitted_changes": bool(git("status",
                                                                                           "--porcelain")),
            "kernel": platform.release()}


def pct(values, p: float) -> float | None:
    data = sorted(v for v in values if v is not None)
    return round(percentile(data, p), 2) if data else None


def latency_summary(values) -> dict:
    data = [v for v in values if v is not None]
    return {"n": len(data), "p50": pct(data, 50), "p95": pct(data, 95), "p99": pct(data, 99)}


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 3:
        return None
    mt = sum(t for t, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((t - mt) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    return round(sum((t - mt) * (y - my) for t, y in points) / sxx * 3600, 3)


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.1f}{unit}" if abs(value) >= 10 else f"{value:.2f}{unit}"
    return f"{value}{unit}"


def table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_fields(title: str, fields: dict) -> None:
    print(f"\n{title}")
    for key, value in fields.items():
        print(f"  {key:<34} {value if isinstance(value, str) else json.dumps(value)}")


def proc_info(pid: int) -> dict | None:
    """RSS, peak RSS, threads and open file descriptors of a process, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if fields.get("State", "").strip().startswith("Z"):
        return None
    kb = lambda key: int(fields.get(key, "0 kB").split()[0])
    return {"rss_mb": round(kb("VmRSS") / 1024, 2), "hwm_mb": round(kb("VmHWM") / 1024, 2),
            "threads": int(fields.get("Threads", "0")), "fds": fds}


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def alive(pid: int | None) -> bool:
    return pid is not None and proc_info(pid) is not None


def signal_pid(pid: int | None, sig: int) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class Sampler:
    """Samples one process (and the sum over it and its descendants) every `interval` seconds."""

    def __init__(self, pid: int, interval: float, t0: float):
        self.pid, self.interval, self.t0 = pid, interval, t0
        self.samples: list[dict] = []

    def sample(self) -> dict | None:
        own = proc_info(self.pid)
        if own is None:
            return None
        kids = [k for k in map(proc_info, descendants(self.pid)) if k]
        s = {"t_s": round(time.monotonic() - self.t0, 2), **own,
             "tree_rss_mb": round(own["rss_mb"] + sum(k["rss_mb"] for k in kids), 2), "children": len(kids)}
        self.samples.append(s)
        return s

    async def run(self) -> None:
        while self.sample() is not None:
            await asyncio.sleep(self.interval)


class BenchClient(EditorClient):
    """EditorClient that keeps every completer/status notification (with its arrival time)."""

    def __init__(self, *args, **kwargs):
        self.status_log: list[dict] = []
        self._status: dict = {}
        super().__init__(*args, **kwargs)

    @property
    def status(self) -> dict:
        return self._status

    @status.setter
    def status(self, value: dict) -> None:
        self._status = value
        if value:
            self.status_log.append({"t": time.monotonic(), **value})

    @property
    def pid(self) -> int:
        return self.client._server.pid

    async def raw_stats(self, **params) -> dict:
        return _plain(await self.client.protocol.send_request_async("completer/stats", params or None))

    async def compare_documents(self, expected: dict[str, str]) -> dict:
        """The server's documents against the client's copies, by sha256."""
        docs = {d["uri"]: d for d in (await self.raw_stats(documents=True)).get("documents") or []}
        lost = []
        for uri, text in expected.items():
            want = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
            have = docs.get(uri)
            if have is None or have["sha256"] != want:
                lost.append({"uri": uri, "client_chars": len(text), "client_sha256": want[:16],
                             "server_chars": have and have["chars"],
                             "server_sha256": have and have["sha256"][:16]})
        return {"documents": len(expected), "server_documents": len(docs), "ok": not lost, "mismatched": lost}


def with_uri(session: Session, uri: str) -> Session:
    """The session typed into another document (windows must not share a document URI: the engine
    keeps its cache slots per URI)."""
    s = copy.deepcopy(session)
    for ev in s.events:
        if "uri" in ev:
            ev["uri"] = uri
    return s


def python_sessions(paths: list[str]) -> list[Session]:
    sessions = [read_session(p) for p in iter_paths(paths)]
    py = [s for s in sessions if s.of_kind("open") and s.of_kind("open")[0]["language_id"] == "python"]
    return py or sessions


def replay_requests(res, t_offset_s: float) -> list[dict]:
    out = []
    for r in res.requests:
        out.append({"t_s": round(t_offset_s + r.t_sent / 1000, 3), "outcome": r.outcome,
                    "latency_ms": None if r.latency_ms is None else round(r.latency_ms, 3),
                    # "model": the model computed this answer (not a reuse, nor a language it does not serve)
                    "kind": r.server and ("model" if r.server.kind == "engine" and r.server.work
                                          and r.server.work.prompt_tokens else r.server.kind),
                    "server_ms": round(r.server.ms, 3) if r.server else None,
                    "finish_reason": r.server.finish_reason if r.server else None})
    return out


async def replay_once(client: BenchClient, session: Session, options: ReplayOptions, prev_requests: int):
    """One session replayed, with the server's records of its requests attached (read now, so the
    request log's bound never drops one). Returns (result, the server's request counter)."""
    res = await replay_session(client, session, options)
    # Only this session's records (and a margin): the whole log each time would make the server build
    # megabytes of JSON per session, which is the bench's doing, not an editor's.
    stats = await client.stats(requests=len(res.requests) + 64)
    total = stats["counters"]["requests"]
    records = stats.get("requests") or []
    new = max(0, total - prev_requests)
    _attach_server_records([res], records[-new:] if new else [])
    return res, total, stats


def answered(requests: list[dict]) -> list[dict]:
    return [r for r in requests if r["outcome"] in ("answered", "empty") and r["latency_ms"] is not None]


def write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=1, default=str))
        print(f"\nwrote {path}", file=sys.stderr)


# -- soak ------------------------------------------------------------------------------------------

def interleaved(sessions: list[Session]) -> list[Session]:
    """Languages taking turns (python, javascript, go, python, ...), so every window of a soak has
    sessions the model serves (the embedded model serves Python only)."""
    groups: dict[str, list[Session]] = {}
    for s in sessions:
        groups.setdefault(s.of_kind("open")[0]["language_id"] if s.of_kind("open") else "", []).append(s)
    out = []
    while any(groups.values()):
        for group in groups.values():
            if group:
                out.append(group.pop(0))
    return out


async def run_soak(args) -> dict:
    sessions = interleaved([read_session(p) for p in iter_paths(args.sessions)])
    cmd = completer_cmd() + ["serve", "--stdio", *shlex.split(args.server_flags)]
    log = private_log("soak-server")
    client = BenchClient(cmd, "file:///soak", "", log_path=log)
    t_launch = time.monotonic()
    await client.start(open_document=False)
    await client.wait_ready(timeout=STARTUP_TIMEOUT_S)
    t0 = time.monotonic()
    sampler = Sampler(client.pid, args.sample_s, t0)
    sampler_task = asyncio.create_task(sampler.run())
    options = ReplayOptions(speed=args.speed, max_pause_ms=args.max_pause_ms)
    requests: list[dict] = []
    iterations: list[dict] = []
    prev = (await client.stats())["counters"]["requests"]
    end = t0 + args.minutes * 60
    i = 0
    stats: dict = {}
    try:
        while time.monotonic() < end:
            session = sessions[i % len(sessions)]
            t_s = time.monotonic() - t0
            seeded = dataclasses.replace(options, seed=i // len(sessions))
            res, prev, stats = await replay_once(client, session, seeded, prev)
            requests += replay_requests(res, t_s)
            c = stats["counters"]
            iterations.append({"i": i, "session": session.name, "t_s": round(t_s, 1),
                               "requests": len(res.requests), "text_ok": res.text_ok,
                               "server_requests": c["requests"], "errors": c.get("errors"),
                               "unavailable": c.get("unavailable"),
                               "rss_mb": (sampler.samples or [{}])[-1].get("rss_mb")})
            if args.progress:
                print(f"  {t_s / 60:5.1f} min  {session.name:<22} {len(res.requests):4d} requests  "
                      f"rss {iterations[-1]['rss_mb']} MB", file=sys.stderr, flush=True)
            i += 1
            await asyncio.sleep(0.2)
    finally:
        sampler_task.cancel()
        last = sampler.sample()
        await client.stop()
    duration_s = time.monotonic() - t0

    # Warm-up: --warmup-minutes, and until the background compile has finished.
    compile_done = next((s["t"] - t0 for s in client.status_log
                         if str(s.get("compile", "")).startswith(("compiled", "failed"))), None)
    compile_states = sorted({str(s.get("compile")) for s in client.status_log})
    compiling = any(str(s.get("compile")) == "compiling" for s in client.status_log)
    warmup_s = args.warmup_minutes * 60 if args.warmup_minutes is not None else min(600.0,
                                                                                    args.minutes * 60 / 5)
    if compiling:
        warmup_s = max(warmup_s, compile_done if compile_done is not None else duration_s)
    after = [s for s in sampler.samples if s["t_s"] >= warmup_s]
    memory = {
        "samples": len(sampler.samples), "samples_after_warmup": len(after), "warmup_s": round(warmup_s, 1),
        "compile_finished_s": None if compile_done is None else round(compile_done, 1),
        "rss_mb_at_ready": sampler.samples[0]["rss_mb"] if sampler.samples else None,
        "rss_mb_after_warmup_first": after[0]["rss_mb"] if after else None,
        "rss_mb_last": after[-1]["rss_mb"] if after else None,
        "rss_mb_max": max((s["rss_mb"] for s in sampler.samples), default=None),
        "rss_slope_mb_per_h": slope_per_hour([(s["t_s"], s["rss_mb"]) for s in after]),
        "tree_rss_slope_mb_per_h": slope_per_hour([(s["t_s"], s["tree_rss_mb"]) for s in after]),
        "fds_min_max_after_warmup": [min((s["fds"] for s in after), default=None),
                                     max((s["fds"] for s in after), default=None)],
        "fds_slope_per_h": slope_per_hour([(s["t_s"], s["fds"]) for s in after]),
        "threads_min_max_after_warmup": [min((s["threads"] for s in after), default=None),
                                         max((s["threads"] for s in after), default=None)],
    }
    window_s = args.window_minutes * 60 if args.window_minutes else (600.0 if args.minutes >= 30 else
                                                                      max(60.0, args.minutes * 60 / 5))
    windows = []
    for w in range(int(max(duration_s, 1) // window_s) + 1):
        lo, hi = w * window_s, (w + 1) * window_s
        reqs = [r for r in requests if lo <= r["t_s"] < hi]
        if not reqs:
            continue
        ans = answered(reqs)
        model = [r for r in ans if r["kind"] == "model"]
        in_window = [s for s in sampler.samples if lo <= s["t_s"] < hi]
        windows.append({
            "window": w, "from_min": round(lo / 60, 1), "to_min": round(min(hi, duration_s) / 60, 1),
            "after_warmup": lo >= warmup_s, "partial": min(hi, duration_s) - lo < window_s / 2,
            "requests": len(reqs), "answers": len(ans),
            "with_text": sum(r["outcome"] == "answered" for r in reqs),
            "cancelled": sum(r["outcome"] in ("cancelled", "stale") for r in reqs),
            "errors": sum(r["outcome"] == "error" or r["kind"] in ("error", "unavailable") for r in reqs),
            "all": latency_summary(r["latency_ms"] for r in ans),
            "model": latency_summary(r["latency_ms"] for r in model),
            "model_server_p50_ms": pct([r["server_ms"] for r in model], 50),
            "rss_mb_end": in_window[-1]["rss_mb"] if in_window else None,
            "fds_end": in_window[-1]["fds"] if in_window else None,
        })
    steady = [w for w in windows if w["after_warmup"] and not w["partial"] and w["model"]["n"]]
    drift = None
    if len(steady) >= 2 and steady[0]["model"]["p50"]:
        drift = round(steady[-1]["model"]["p50"] / steady[0]["model"]["p50"], 2)
    c = stats.get("counters", {})
    return {
        "bench": "soak", "machine": machine(),
        "settings": {"minutes": args.minutes, "server_cmd": shlex.join(cmd), "sessions": len(sessions),
                     "speed": args.speed, "max_pause_ms": args.max_pause_ms, "sample_s": args.sample_s,
                     "window_s": window_s},
        "startup_s": round(t0 - t_launch, 1), "duration_s": round(duration_s,
                                                                  1), "iterations": len(iterations),
        "requests": len(requests), "texts_ok": all(it["text_ok"] is not False for it in iterations),
        "server_counters": c, "compile_states": compile_states, "memory": memory,
        "last_sample": last or (sampler.samples[-1] if sampler.samples else None),
        "model_p50_drift_last_over_first_steady_window": drift,
        "windows": windows, "iteration_log": iterations, "samples": sampler.samples, "requests_log": requests,
        "server_log": log,
    }


def report_soak(r: dict) -> None:
    print_fields("machine", r["machine"])
    print_fields("settings", r["settings"])
    m = r["memory"]
    print_fields("soak", {
        "startup s": r["startup_s"], "duration s": r["duration_s"], "session replays": r["iterations"],
        "requests": r["requests"], "texts ok": r["texts_ok"],
        "server errors / unavailable": [r["server_counters"].get("errors"),
                                        r["server_counters"].get("unavailable")],
        "compile finished s": m["compile_finished_s"], "warm-up s": m["warmup_s"],
        "RSS MB ready / after warm-up / last / max": [m["rss_mb_at_ready"], m["rss_mb_after_warmup_first"],
                                                     m["rss_mb_last"], m["rss_mb_max"]],
        "RSS slope MB/h (after warm-up)": m["rss_slope_mb_per_h"],
        "RSS slope incl. children MB/h": m["tree_rss_slope_mb_per_h"],
        "fds min/max after warm-up": m["fds_min_max_after_warmup"], "fds slope /h": m["fds_slope_per_h"],
        "threads min/max after warm-up": m["threads_min_max_after_warmup"],
        "model p50 drift (last/first full window)": r["model_p50_drift_last_over_first_steady_window"],
    })
    print("\nper window (latency: client-observed ms; model = answers the model computed)")
    print(table(["minutes", "warm", "requests", "all p50", "p95", "p99", "model n", "model p50", "p95", "p99",
                 "errors", "RSS MB", "fds"],
                [[f"{w['from_min']}-{w['to_min']}", "" if w["after_warmup"] else "warm-up", w["requests"],
                  w["all"]["p50"], w["all"]["p95"], w["all"]["p99"], w["model"]["n"], w["model"]["p50"],
                  w["model"]["p95"], w["model"]["p99"], w["errors"], w["rss_mb_end"], w["fds_end"]]
                 for w in r["windows"]]))


# -- load ------------------------------------------------------------------------------------------

async def wait_for_socket(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"the engine daemon exited ({proc.returncode})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no daemon socket at {path} after {timeout:.0f} s")
        await asyncio.sleep(0.1)


def client_summary(name: str, requests: list[dict], extra: dict | None = None) -> dict:
    ans = answered(requests)
    model = [r for r in ans if r["kind"] == "model"]
    return {"client": name, "requests": len(requests), "answers": len(ans),
            "with_text": sum(r["outcome"] == "answered" for r in requests),
            "cancelled": sum(r["outcome"] in ("cancelled", "stale") for r in requests),
            "errors": sum(r["outcome"] == "error" or r["kind"] in ("error", "unavailable") for r in requests),
            "all": latency_summary(r["latency_ms"] for r in ans),
            "model": latency_summary(r["latency_ms"] for r in model), **(extra or {})}


def starvation(clients: list[dict], key: str, factor: float) -> dict:
    p50s = [c[key]["p50"] for c in clients if c[key]["p50"] is not None]
    got = all(c["with_text"] > 0 for c in clients)
    ratio = round(max(p50s) / min(p50s), 2) if p50s and min(p50s) > 0 else None
    return {"every_client_got_answers": got, "slowest_over_fastest_p50": ratio, "factor": factor,
            "ok": got and len(p50s) == len(clients) and ratio is not None and ratio <= factor}


async def load_windows(args, sock: Path, n: int, sessions: list[Session], daemon_pid: int) -> dict:
    clients = []
    for i in range(n):
        cmd = completer_cmd() + ["serve", "--stdio", "--engine", "connect", "--engine-socket", str(sock),
                                 *shlex.split(args.server_flags)]
        clients.append(BenchClient(cmd, f"file:///load/w{i}", "", log_path=private_log(f"load-w{i}")))
    t_start = time.monotonic()
    await asyncio.gather(*(c.start(open_document=False) for c in clients))
    await asyncio.gather(*(c.wait_ready(timeout=300) for c in clients))
    startup_s = time.monotonic() - t_start
    options = ReplayOptions(speed=args.speed, max_pause_ms=args.max_pause_ms)
    t0 = time.monotonic()
    end = t0 + args.seconds

    async def window(i: int, client: BenchClient) -> dict:
        base = sessions[i % len(sessions)]
        session = with_uri(base, f"file:///load/w{i}/{Path(base.of_kind('plan')[0]['uri']).name}")
        requests: list[dict] = []
        prev = (await client.stats())["counters"]["requests"]
        k, texts_ok = 0, True
        while time.monotonic() < end:
            t_s = time.monotonic() - t0
            res, prev, _ = await replay_once(client, session, dataclasses.replace(options, seed=k), prev)
            requests += replay_requests(res, t_s)
            texts_ok &= res.text_ok is not False
            k += 1
        docs = await client.compare_documents({})
        return client_summary(f"w{i} {base.name}", requests,
                              {"replays": k, "texts_ok": texts_ok,
                               "server_documents_left_open": docs["server_documents"]})

    try:
        per_client = await asyncio.gather(*(window(i, c) for i, c in enumerate(clients)))
        daemon = proc_info(daemon_pid)
    finally:
        await asyncio.gather(*(c.stop() for c in clients))
    return {"windows": n, "startup_s": round(startup_s, 1), "seconds": round(time.monotonic() - t0, 1),
            "clients": per_client, "starvation": starvation(per_client, "model", args.starve_factor),
            "daemon_after": daemon}


def http_stream(port: int, body: dict, timeout: float = 90.0) -> dict:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            resp.read()
            return {"status": resp.status, "ms": (time.perf_counter() - t0) * 1000}
        first, chars, done, error = None, 0, False, None
        while line := resp.readline():
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            payload = line[6:]
            if payload == b"[DONE]":
                done = True
                continue
            obj = json.loads(payload)
            if "error" in obj:
                error = obj["error"].get("message")
                continue
            text = obj["choices"][0]["text"] if obj.get("choices") else ""
            if text and first is None:
                first = time.perf_counter()
            chars += len(text)
        return {"status": 200, "ms": (time.perf_counter() - t0) * 1000,
                "ttft_ms": None if first is None else (first - t0) * 1000, "chars": chars, "done": done,
                "error": error}
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return {"status": 0, "ms": (time.perf_counter() - t0) * 1000, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()


def slow_reader(port: int, body: dict, stall_s: float, read_first: bool = False) -> dict:
    """A streaming request whose client reads nothing for `stall_s` (a 4 KB receive buffer), then
    reads what is left: did the stream finish, or did the server cut it? read_first: the control,
    the same requests at the same rate, read at once (and then the pause)."""
    t0 = time.monotonic()
    data = json.dumps(body).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
        if not read_first:
            time.sleep(stall_s)
        sock.settimeout(40)
        got = b""
        ended = "timeout"
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except OSError as exc:
                ended = f"reset ({exc.__class__.__name__})"
                break
            if not chunk:
                ended = "server closed"
                break
            got += chunk
            if got.endswith(b"0\r\n\r\n") and b"[DONE]" in got:
                ended = "finished"
                break
        status = got.split(b"\r\n", 1)[0].decode(errors="replace")
        if read_first:
            time.sleep(max(0.0, stall_s - (time.monotonic() - t0)))
        return {"stall_s": stall_s, "status": status, "bytes": len(got), "done": b"[DONE]" in got,
                "finish_reasons": sorted({m.decode() for m in re.findall(rb'"finish_reason": "(\w+)"', got)}),
                "ended": ended, "total_s": round(time.monotonic() - t0, 2)}
    finally:
        sock.close()


def http_phase(port: int, prompts: list[str], n_clients: int, n_slow: int, seconds: float, stall_s: float,
               max_tokens: int, read_first: bool = False, phase: int = 0) -> dict:
    """n_clients streaming clients asking max_tokens, beside n_slow clients asking 1024 tokens every
    stall_s that read nothing for stall_s (read_first: read at once, the control for what the long
    requests themselves cost). Each phase cuts its prompts at other places, so no phase finds the
    previous one's prompts in the engine's prefix cache."""
    end = time.monotonic() + seconds
    results: list[list[dict]] = [[] for _ in range(n_clients)]
    slow: list[list[dict]] = [[] for _ in range(n_slow)]

    def client(i: int) -> None:
        k = phase * 200
        prompt = prompts[i % len(prompts)]
        while time.monotonic() < end:
            cut = len(prompt) - (k * 7) % max(1, min(len(prompt) - 200, 600))  # a different prefix each time
            results[i].append(http_stream(port, {"prompt": prompt[max(0, cut - 1500):cut],
                                                 "max_tokens": max_tokens,
                                                 "temperature": 0, "stream": True}))
            k += 1

    def reader(j: int) -> None:
        k = 0
        while time.monotonic() < end:
            slow[j].append(slow_reader(port, {"prompt": prompts[j % len(prompts)][-1500:], "max_tokens": 1024,
                                              "temperature": 1.0, "seed": k, "stream": True}, stall_s,
                                      read_first))
            k += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n_clients)]
    threads += [threading.Thread(target=reader, args=(j,), daemon=True) for j in range(n_slow)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + stall_s + 120)
    per_client = []
    for i, rs in enumerate(results):
        ok = [r for r in rs if r["status"] == 200 and not r.get("error")]
        per_client.append({"client": f"h{i}", "requests": len(rs), "ok": len(ok),
                           "with_text": sum(r.get("chars", 0) > 0 for r in ok),
                           "busy_429": sum(r["status"] == 429 for r in rs),
                           "errors": sum(r["status"] not in (200, 429) or bool(r.get("error")) for r in rs),
                           "all": latency_summary(r["ms"] for r in ok),
                           "ttft": latency_summary(r.get("ttft_ms") for r in ok)})
    return {"clients": per_client, "slow_readers": [x for s in slow for x in s],
            "all": latency_summary(r["ms"] for rs in results for r in rs if r["status"] == 200)}


async def run_load(args) -> dict:
    sessions = python_sessions(args.sessions)
    tmp = Path(tempfile.mkdtemp(prefix="completer-load-"))
    sock = tmp / "engine.sock"
    engine_flags = shlex.split(args.engine_flags)
    daemon_log = private_log("load-daemon")
    out: dict = {"bench": "load", "machine": machine(),
                 "settings": {"windows": args.windows, "seconds": args.seconds,
                              "server_flags": args.server_flags,
                              "engine_flags": args.engine_flags,
                              "engine_cmd": "", "sessions": [s.name for s in sessions], "speed": args.speed,
                              "http_clients": args.http_clients, "slow_readers": args.slow_readers,
                              "http_seconds": args.http_seconds, "stall_s": args.stall_s,
                              "starve_factor": args.starve_factor}}
    if args.windows:
        cmd = completer_cmd() + ["engine", "--socket", str(sock), "--idle-exit-s", "600", *engine_flags]
        out["settings"]["engine_cmd"] = shlex.join(cmd)
        with open(daemon_log, "ab") as log:
            daemon = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            t = time.monotonic()
            await wait_for_socket(sock, daemon, STARTUP_TIMEOUT_S)
            out["daemon_startup_s"] = round(time.monotonic() - t, 1)
            out["daemon_at_start"] = proc_info(daemon.pid)
            out["window_runs"] = []
            for n in args.windows:
                print(f"load: {n} window(s) for {args.seconds:.0f} s", file=sys.stderr, flush=True)
                out["window_runs"].append(await load_windows(args, sock, n, sessions, daemon.pid))
            out["daemon_at_end"] = proc_info(daemon.pid)
        finally:
            stop_process(daemon)
    if args.http_clients:
        cmd = completer_cmd() + ["serve-openai", "--port", "0", *engine_flags]
        out["settings"]["openai_cmd"] = shlex.join(cmd)
        openai_log = private_log("load-openai")
        with open(openai_log, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                    text=True)
        try:
            line = proc.stdout.readline()
            if " on http" not in line:
                raise RuntimeError(f"serve-openai did not start: {line!r} (log {openai_log})")
            port = int(line.rsplit(":", 1)[1].split("/")[0])
            prompts = []
            for s in sessions:
                opened, plan = s.of_kind("open")[0], s.of_kind("plan")[0]
                lines = opened["text"].splitlines(keepends=True)
                prompts.append("".join(lines[:plan["line"]]) + plan["text"])
            print(f"load: serve-openai, {args.http_clients} clients for {args.http_seconds:.0f} s, then with "
                  f"{args.slow_readers} slow readers", file=sys.stderr, flush=True)
            base = await asyncio.to_thread(http_phase, port, prompts, args.http_clients, 0, args.http_seconds,
                                           args.stall_s, args.http_max_tokens, False, 0)
            loaded = await asyncio.to_thread(http_phase, port, prompts, args.http_clients, args.slow_readers,
                                             args.http_seconds, args.stall_s, args.http_max_tokens, False, 1)
            control = await asyncio.to_thread(http_phase, port, prompts, args.http_clients, args.slow_readers,
                                              args.http_seconds, args.stall_s, args.http_max_tokens, True, 2)
            health = http_stream_health(port)
            out["openai"] = {"alone": base, "with_slow_readers": loaded,
                             "with_long_requests_read_at_once": control,
                             "starvation": starvation([{**c, "model": c["all"]} for c in loaded["clients"]],
                                                      "model",
                                                      args.starve_factor),
                             "p50_with_over_without_slow_readers": (
                                 round(loaded["all"]["p50"] / base["all"]["p50"], 2)
                                 if base["all"]["p50"] and loaded["all"]["p50"] else None),
                             "p50_slow_readers_over_same_requests_read_at_once": (
                                 round(loaded["all"]["p50"] / control["all"]["p50"], 2)
                                 if control["all"]["p50"] and loaded["all"]["p50"] else None),
                             "health_after": health, "server": proc_info(proc.pid)}
        finally:
            stop_process(proc)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def http_stream_health(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def report_load(r: dict) -> None:
    print_fields("machine", r["machine"])
    print_fields("settings", r["settings"])
    rows = []
    for run in r.get("window_runs", []):
        st = run["starvation"]
        print_fields(f"{run['windows']} window(s) on one daemon", {
            "start-up s": run["startup_s"], "seconds": run["seconds"],
            "every client got answers": st["every_client_got_answers"],
            "slowest/fastest model p50": st["slowest_over_fastest_p50"], "no client starves": st["ok"],
            "daemon RSS MB / threads / fds after": [(run["daemon_after"] or {}).get(k)
                                                    for k in ("rss_mb", "threads", "fds")],
        })
        for c in run["clients"]:
            rows.append([f"N={run['windows']}", c["client"], c["requests"], c["with_text"], c["errors"],
                         c["all"]["p50"], c["all"]["p95"], c["model"]["n"], c["model"]["p50"],
                         c["model"]["p95"], c["texts_ok"]])
    o = r.get("openai")
    if o:
        phases = ("alone", "with_slow_readers", "with_long_requests_read_at_once")
        slow = o["with_slow_readers"]["slow_readers"]
        print_fields("serve-openai", {
            "p50 ms alone / slow readers / control": [o[p]["all"]["p50"] for p in phases],
            "p95 ms alone / slow readers / control": [o[p]["all"]["p95"] for p in phases],
            "p50 slow readers / control": o["p50_slow_readers_over_same_requests_read_at_once"],
            "no client starves (with slow readers)": o["starvation"]["ok"],
            "slowest/fastest p50": o["starvation"]["slowest_over_fastest_p50"],
            "slow readers: runs / finished / cut": [len(slow),
                                                    sum(s["done"] for s in slow),
                                                    sum(not s["done"] for s in slow)],
            "slow reader endings": sorted({s["ended"] for s in slow}),
            "health after": o["health_after"],
        })
        for phase in phases:
            for c in o[phase]["clients"]:
                rows.append([f"http {phase.replace('_requests_read_at_once', ' read at once')}",
                             c["client"], c["requests"], c["with_text"], c["errors"] + c["busy_429"],
                             c["all"]["p50"], c["all"]["p95"], "", c["ttft"]["p50"], c["ttft"]["p95"], ""])
    print("\nper client (ms, client-observed; model = answers the model computed; "
          "http: total and first-token)")
    print(table(["run", "client", "requests", "with text", "errors", "p50", "p95", "model n", "model p50",
                 "p95",
                 "texts ok"], rows))


# -- faults ----------------------------------------------------------------------------------------

class Typist:
    """Types a session's text into an EditorClient's document, one request per key (the previous one
    cancelled), a typo and its backspace now and then; records every request."""

    def __init__(self, client: BenchClient, session: Session, cps: float, t0: float):
        plan = session.of_kind("plan")[0]
        self.c, self.cps, self.t0 = client, cps, t0
        self.line = plan["line"]
        self.col = to_codepoints(client.lines[self.line], plan["character"], session.encoding)
        self.source = plan["text"] or "x = 1\n"
        self.pos = 0
        self.keys = 0
        self.typo = False
        self.pending: tuple[int, asyncio.Future, dict] | None = None
        self.records: list[dict] = []
        self.phase = "start"

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _backspace(self) -> None:
        c = self.c
        start = types.Position(line=self.line, character=to_client_units(c.lines[self.line], self.col - 1,
                                                                         "utf-16"))
        end = types.Position(line=self.line, character=to_client_units(c.lines[self.line], self.col,
                                                                       "utf-16"))
        c.lines = replace_range(c.lines, (self.line, self.col - 1), (self.line, self.col), "")
        c.version += 1
        self.col -= 1
        c.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=c.uri, version=c.version),
            content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start=start, end=end),
                                                                    text="")]))

    def key(self, ch: str | None = None) -> None:
        self.keys += 1
        if ch is not None:
            self.line, self.col = self.c.insert(self.line, self.col, ch)
            self.typo = ch != "\n"
        elif self.typo:
            self._backspace()
            self.typo = False
        elif self.keys % 13 == 0:
            self.line, self.col = self.c.insert(self.line, self.col, "q")
            self.typo = True
        else:
            ch = self.source[self.pos % len(self.source)]
            self.pos += 1
            self.line, self.col = self.c.insert(self.line, self.col, ch)

    def request(self) -> dict:
        self.cancel_pending()
        msg_id, fut = self.c.send_inline_request(self.line, self.col)
        rec = {"t_s": round(self.now(), 3), "phase": self.phase, "version": self.c.version, "line": self.line,
               "character": to_client_units(self.c.lines[self.line], self.col,
                                            "utf-16"), "outcome": "pending",
               "latency_ms": None, "text": "", "kind": None}
        sent = time.perf_counter()

        def done(f: asyncio.Future) -> None:
            if f.cancelled():
                rec["outcome"] = "cancelled"
                return
            exc = f.exception()
            if exc is not None:
                if rec["outcome"] != "cancelled":
                    cancelled = isinstance(exc, JsonRpcException) and "ancel" in str(exc)
                    rec["outcome"] = "cancelled" if cancelled else "error"
                    rec["error"] = str(exc)[:200]
                return
            text = item_text(first_item(f.result())) if first_item(f.result()) else ""
            if rec["outcome"] == "cancelled":
                rec["outcome"] = "stale" if text else "cancelled"
                return
            rec["latency_ms"] = round((time.perf_counter() - sent) * 1000, 2)
            rec["text"] = text
            rec["outcome"] = "answered" if text else "empty"
        fut.add_done_callback(done)
        self.pending = (msg_id, fut, rec)
        self.records.append(rec)
        return rec

    def cancel_pending(self) -> None:
        if self.pending is None:
            return
        msg_id, fut, rec = self.pending
        self.pending = None
        if not fut.done():
            rec["outcome"] = "cancelled"
            self.c.client.cancel_request(types.CancelParams(id=msg_id))

    async def type_for(self, seconds: float, until=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.key()
            self.request()
            await asyncio.sleep(1 / self.cps)
            if until is not None and await until():
                return

    async def probe(self, action, wait_s: float = 45.0, delay_s: float = 0.003) -> dict:
        """Pause (so no debounce), type one key, ask, and run `action` while the request runs; wait
        for its answer without typing (what the user sees)."""
        await asyncio.sleep(1.0)
        self.key("q")
        rec = self.request()
        fut = self.pending[1]
        rec["probe"] = True
        await asyncio.sleep(delay_s)
        t_action = time.monotonic()
        rec["t_action_s"] = round(t_action - self.t0, 3)
        action()
        try:
            await asyncio.wait_for(asyncio.shield(fut), wait_s)
        except (asyncio.TimeoutError, Exception):
            pass
        if not fut.done():
            rec["outcome"] = "no answer"
        rec["answered_after_fault_ms"] = round((time.monotonic() - t_action) * 1000,
                                               1) if fut.done() else None
        self.pending = None
        return rec

    async def attach_kinds(self) -> None:
        """The server's record of each request (who answered; unavailable/error), by version and position."""
        log = (await self.c.stats(requests=True)).get("requests") or []
        by_key: dict[tuple, dict] = {}
        for r in log:
            by_key.setdefault((r["version"], r["line"], r["character"]), r)
        for rec in self.records:
            r = by_key.get((rec["version"], rec["line"], rec["character"]))
            if r is not None:
                rec.update(kind=r["kind"], server_ms=r["ms"], finish_reason=r.get("finish_reason"))

    async def recovered_since(self, t_s: float, outage_first: bool = True) -> float | None:
        """Seconds from t_s to the first model answer after the outage it caused (the first request
        after t_s that the server answered "unavailable" or "error"; 0.0 if no request saw one), or
        with outage_first=False simply the first model answer after t_s."""
        await self.attach_kinds()
        after = [r for r in self.records if r["t_s"] >= t_s]
        outage = next((i for i, r in enumerate(after) if r["kind"] in ("unavailable", "error")), None) \
            if outage_first else 0
        if outage is None:
            return 0.0 if any(r["kind"] == "engine" for r in after) else None
        first = next((r for r in after[outage:] if r["kind"] == "engine"), None)
        return None if first is None else round(first["t_s"] - t_s, 2)


def phase_summary(typist: Typist, phase: str) -> dict:
    rs = [r for r in typist.records if r["phase"] == phase]
    kinds: dict[str, int] = {}
    for r in rs:
        kinds[str(r["kind"])] = kinds.get(str(r["kind"]), 0) + 1
    ans = [r for r in rs if r["outcome"] in ("answered", "empty")]
    return {"requests": len(rs), "with_text": sum(r["outcome"] == "answered" for r in rs),
            "empty": sum(r["outcome"] == "empty" for r in rs),
            "cancelled": sum(r["outcome"] == "cancelled" for r in rs),
            "errors": sum(r["outcome"] in ("error", "no answer") for r in rs), "server_kinds": kinds,
            "latency": latency_summary(r["latency_ms"] for r in ans)}


def statuses_since(client: BenchClient, t: float, until: float | None = None) -> list[dict]:
    out = []
    for s in client.status_log:
        if s["t"] >= t and (until is None or s["t"] < until):
            item = {"after_s": round(s["t"] - t, 2), "state": s.get("state"),
                    "message": s.get("message") or ""}
            if not out or (out[-1]["state"], out[-1]["message"]) != (item["state"], item["message"]):
                out.append(item)
    return out


def probe_view(rec: dict) -> dict:
    return {k: rec.get(k) for k in ("outcome", "latency_ms", "answered_after_fault_ms", "kind",
                                    "finish_reason",
                                    "server_ms", "text")}


class FaultWindow:
    """One editor window (a BenchClient and a Typist) for a fault scenario."""

    def __init__(self, args, cmd: list[str], name: str, session: Session, t0: float):
        self.log = private_log(f"faults-{name}")  # the server's log (--log-file: written as it happens)
        self.stderr = private_log(f"faults-{name}-stderr")
        plan = session.of_kind("plan")[0]
        self.client = BenchClient([*cmd, "--log-file", self.log], plan["uri"],
                                  session.of_kind("open")[0]["text"],
                                  log_path=self.stderr)
        self.session, self.args, self.t0 = session, args, t0
        self.typist: Typist | None = None

    async def __aenter__(self) -> FaultWindow:
        await self.client.start()
        await self.client.wait_ready(timeout=STARTUP_TIMEOUT_S)
        self.typist = Typist(self.client, self.session, self.args.cps, self.t0)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.stop()

    async def documents(self) -> dict:
        return await self.client.compare_documents({self.client.uri: self.client.text})

    async def until_recovered(self, since_t_s: float, timeout: float,
                              outage_first: bool = True) -> float | None:
        """Type until the model answers a request sent after since_t_s (checked every 2 s)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            await self.typist.type_for(2.0)
            rec = await self.typist.recovered_since(since_t_s, outage_first)
            if rec is not None:
                return rec
        return None

    def server_alive(self) -> bool:
        return self.client.client._server.returncode is None and alive(self.client.pid)


async def daemon_pid(window: FaultWindow) -> int | None:
    info = (await window.client.stats()).get("engineInfo") or {}
    return info.get("daemon_pid")


def restart_daemon(pid: int, sock: Path, engine_flags: list[str], result: dict) -> None:
    """What a user does to restart the daemon: SIGTERM, wait for it to go, start `completer engine`."""
    signal_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    engine = completer_cmd() + ["engine", "--socket", str(sock), "--idle-exit-s", "60", *engine_flags]
    with open(private_log("faults-restarted-daemon"), "ab") as log:
        proc = subprocess.Popen(engine, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    result["restarted_pid"] = proc.pid


async def fault_daemon(args, tmp: Path, session: Session, wanted: list[str]) -> list[dict]:
    """sigstop, sigkill, restart: one window on a daemon it started itself (--engine auto)."""
    sock = tmp / "engine.sock"
    flags = ["--engine", "auto", "--engine-socket", str(sock), "--engine-idle-exit-s", "60",
             *serve_flags_of(args)]
    cmd = completer_cmd() + ["serve", "--stdio", *flags]
    t0 = time.monotonic()
    out = []
    pids: set[int] = set()
    engine_flags = engine_flags_of(args)
    async with FaultWindow(args, cmd, "daemon", session, t0) as w:
        ty = w.typist
        try:
            ty.phase = "warm"
            await ty.type_for(args.warm_s)
            for name in wanted:
                pid = await daemon_pid(w)
                pids.add(pid)
                result: dict = {"fault": name, "daemon_pid": pid, "server_cmd": shlex.join(cmd)}
                t_fault = time.monotonic()
                ty.phase = name
                if name == "sigstop":
                    probe = await ty.probe(lambda pid=pid: signal_pid(pid, signal.SIGSTOP))
                    await ty.type_for(args.stop_s / 2)  # typing on while the daemon stays stopped
                    # The user pauses while it is still stopped: how long until an answer now?
                    result["probe_while_stopped"] = await ty.probe(lambda: None, wait_s=args.stuck_wait_s)
                    await ty.type_for(max(0.0, args.stop_s - (time.monotonic() - t_fault)))
                    ty.phase = name + ":after SIGCONT"
                    signal_pid(pid, signal.SIGCONT)
                    t_cont = time.monotonic()
                    result["stopped_s"] = round(t_cont - t_fault, 1)
                    result["recovered_s"] = await w.until_recovered(t_cont - t0, args.recover_s,
                                                                    outage_first=False)
                    result["recovered_from"] = "SIGCONT"
                    result["while_stopped"] = phase_summary(ty, name)
                elif name == "sigkill":
                    probe = await ty.probe(lambda pid=pid: signal_pid(pid, signal.SIGKILL))
                    result["recovered_s"] = await w.until_recovered(probe["t_action_s"], args.recover_s)
                    result["recovered_from"] = "SIGKILL"
                else:  # restart: the user restarts the daemon by hand

                    def restart(pid=pid, result=result) -> None:  # off the event loop: answers keep coming
                        threading.Thread(target=restart_daemon, args=(pid, sock, engine_flags, result),
                                         daemon=True).start()
                    probe = await ty.probe(restart)
                    result["recovered_s"] = await w.until_recovered(probe["t_action_s"], args.recover_s)
                    result["recovered_from"] = "SIGTERM"
                await ty.attach_kinds()
                if "probe_while_stopped" in result:
                    result["probe_while_stopped"] = probe_view(result["probe_while_stopped"])
                new_pid = await daemon_pid(w)
                pids.add(new_pid)
                result.update({
                    "probe": probe_view(probe), "in_flight": probe.get("kind") == "unavailable",
                    "statuses": statuses_since(w.client, t_fault), "phase": phase_summary(ty, ty.phase),
                    "daemon_pid_after": new_pid, "old_daemon_alive": alive(pid),
                    "documents": await w.documents(), "server_alive": w.server_alive(),
                    "server_log": w.log})
                out.append(result)
                ty.phase = "between"
                await ty.type_for(1.0)
        finally:
            for pid in pids:
                signal_pid(pid, signal.SIGCONT)
    await asyncio.sleep(0.5)
    for pid in pids:  # the daemons our window started (idle exit would take a minute)
        signal_pid(pid, signal.SIGTERM)
    return out


def _mount_tmpfs(path: Path, size_kb: int) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0700", "tmpfs", str(path)],
                       capture_output=True, text=True)
    return r.returncode == 0


async def fault_disk_full(args, tmp: Path, session: Session) -> dict:
    rec_dir = tmp / "recordings"
    rec_dir.mkdir()
    text_bytes = len(session.of_kind("open")[0]["text"].encode())
    mounted = _mount_tmpfs(rec_dir, 64)
    result: dict = {"fault": "disk-full"}
    if mounted:
        free = min(60 * 1024, text_bytes + args.disk_free_kb * 1024)
        filler = rec_dir / "filler"
        try:
            with open(filler, "wb") as f:
                f.write(b"\0" * (64 * 1024 - free))
        except OSError:
            pass
        result["method"] = (f"tmpfs of 64 KB, {free // 1024} KB left free "
                            f"(the document is {text_bytes // 1024} KB)")
    else:
        os.chmod(rec_dir, 0o500)
        result["method"] = ("read-only directory (no tmpfs: not root or mount refused): "
                            "the file cannot be created")
    cmd = completer_cmd() + ["serve", "--stdio", "--record", str(rec_dir), *serve_flags_of(args)]
    result["server_cmd"] = shlex.join(cmd)
    t0 = time.monotonic()
    try:
        async with FaultWindow(args, cmd, "record", session, t0) as w:
            ty = w.typist
            ty.phase = "recording"

            async def failed() -> bool:
                return "recording failed" in Path(w.log).read_text(errors="replace")
            await ty.type_for(args.fill_timeout_s, until=failed)
            t_fail = time.monotonic()
            result["recording_failed_after_s"] = round(t_fail - t0, 1) if await failed() else None
            ty.phase = "after"
            await ty.type_for(args.after_s)
            await ty.attach_kinds()
            result.update({
                "statuses": statuses_since(w.client, t0), "before": phase_summary(ty, "recording"),
                "after": phase_summary(ty, "after"), "documents": await w.documents(),
                "server_alive": w.server_alive(), "server_log": w.log,
                "log_lines": [ln[-160:] for ln in Path(w.log).read_text(errors="replace").splitlines()
                                                   if "record" in ln.lower()][:4]})
            after = [r for r in ty.records if r["phase"] == "after"]
            result["probe"] = probe_view(after[0]) if after else {}
            model_after = next((r for r in after if r["kind"] == "engine"), None)
            result["recovered_s"] = None  # serving never stopped: the first model answer after the failure
            result["model_answer_after_failure_s"] = (round(model_after["t_s"] - (t_fail - t0), 2)
                                                      if model_after else None)
        files = [p for p in rec_dir.iterdir() if p.name.startswith("session-")] if os.access(rec_dir,
                                                                                             os.R_OK) else []
        result["recordings"] = []
        for p in files:
            item = {"file": p.name, "bytes": p.stat().st_size}
            try:
                s = read_session(p)
                item.update(readable=True, events=len(s.events))
            except Exception as exc:  # SessionError: what `completer replay` would say
                item.update(readable=False, error=str(exc)[-200:])
            result["recordings"].append(item)
    finally:
        if mounted:
            subprocess.run(["umount", str(rec_dir)], capture_output=True)
        else:
            os.chmod(rec_dir, 0o700)
    return result


def model_path(name: str) -> Path:
    shipped = ROOT / "completer" / "models" / name
    return shipped if shipped.is_dir() else Path(name).expanduser()


async def fault_model_dir(args, tmp: Path, session: Session) -> dict:
    model = tmp / "model"
    shutil.copytree(model_path(args.model), model)
    cmd = completer_cmd() + ["serve", "--stdio", *shlex.split(args.server_flags), "--model", str(model)]
    result: dict = {"fault": "model-dir", "server_cmd": shlex.join(cmd)}
    t0 = time.monotonic()
    async with FaultWindow(args, cmd, "model-dir", session, t0) as w:
        ty, c = w.typist, w.client

        def configure(settings: dict) -> None:
            c.client.workspace_did_change_configuration(
                types.DidChangeConfigurationParams(settings={"completer": settings}))

        async def wait_state(t: float, states: tuple[str, ...], timeout: float = 60.0) -> dict | None:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                hit = next((s for s in c.status_log if s["t"] >= t and s.get("state") in states), None)
                if hit:
                    return hit
                await ty.type_for(0.3)
            return None
        ty.phase = "warm"
        await ty.type_for(args.warm_s)
        t_delete = time.monotonic()
        ty.phase = "deleted"
        shutil.rmtree(model)
        await ty.type_for(args.after_s)
        t_reload = time.monotonic()
        ty.phase = "reload failed"
        configure({"cacheMb": 48})
        hit = await wait_state(t_reload, ("error",))
        result["reload_error_status_after_s"] = None if hit is None else round(hit["t"] - t_reload, 2)
        await ty.type_for(args.after_s)
        ty.phase = "directory back"
        shutil.copytree(model_path(args.model), model)
        t_back = time.monotonic()
        # No restart and no configuration change: the server tries a failed load again (lsp/server.py,
        # LOAD_RETRY_S doubling up to a minute), on a request.
        result["recovered_s"] = await w.until_recovered(t_back - t0, args.recover_s, outage_first=False)
        await ty.attach_kinds()
        result.update({
            "statuses": statuses_since(c, t_delete), "deleted": phase_summary(ty, "deleted"),
            "reload_failed": phase_summary(ty, "reload failed"),
            "directory_back": phase_summary(ty, "directory back"),
            "documents": await w.documents(), "server_alive": w.server_alive(), "server_log": w.log})
        first_error = next((r for r in ty.records if r["phase"] == "reload failed" and r["kind"] == "error"),
                           None)
        result["probe"] = probe_view(first_error) if first_error else {"outcome": "no error answer"}
    return result


def engine_flags_of(args) -> list[str]:
    """The flags of --server-flags that `completer engine` takes too (--compile), and the model."""
    flags, out = shlex.split(args.server_flags), []
    for i, f in enumerate(flags):
        if f.startswith("--compile="):
            out.append(f)
        elif f == "--compile":
            out += [f] + ([flags[i + 1]] if i + 1 < len(flags) and not flags[i + 1].startswith("--") else [])
    return out + args.model_flags


def serve_flags_of(args) -> list[str]:
    return shlex.split(args.server_flags) + args.model_flags


def faulty_cmd(args, *completer_args: str, where: str = "inside") -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "_faulty", "--raise-rate", str(args.raise_rate),
            "--where", where, "--", *completer_args]


async def fault_raise(args, tmp: Path, session: Session, where: str) -> dict:
    flags = serve_flags_of(args)
    daemon = None
    if where in ("inproc", "consumer"):
        cmd = faulty_cmd(args, "serve", "--stdio", *flags,
                         where="consumer" if where == "consumer" else "inside")
    else:
        sock = tmp / "raising.sock"
        log = open(private_log("faults-raising-daemon"), "ab")
        daemon = subprocess.Popen(faulty_cmd(args, "engine", "--socket", str(sock), "--idle-exit-s", "60",
                                             *engine_flags_of(args)),
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        await wait_for_socket(sock, daemon, STARTUP_TIMEOUT_S)
        cmd = completer_cmd() + ["serve", "--stdio", "--engine", "connect", "--engine-socket", str(sock),
                                 *shlex.split(args.server_flags)]
    inside = {"inproc": "inside the torch engine's generation, in the server",
              "daemon": "inside the torch engine's generation, in the daemon",
              "consumer": "by the code iterating the engine's stream, in the server"}[where]
    result: dict = {"fault": f"raise-{where}", "server_cmd": shlex.join(cmd),
                    "how": f"RuntimeError raised after the first token in {args.raise_rate:.0%} of "
                           f"generations (seeded; prefetches included), {inside}"}
    t0 = time.monotonic()
    try:
        async with FaultWindow(args, cmd, f"raise-{where}", session, t0) as w:
            ty = w.typist
            ty.phase = "raising"
            await ty.type_for(args.raise_s)
            await asyncio.sleep(1.0)
            await ty.attach_kinds()
            rs = [r for r in ty.records if r["phase"] == "raising"]
            first_error = next((r for r in rs if r["kind"] == "error"), None)
            after_error = [r for r in rs
                           if first_error and r["t_s"] > first_error["t_s"] and r["kind"] == "engine"]
            result.update({
                "phase": phase_summary(ty, "raising"), "statuses": statuses_since(w.client, t0),
                "model_answers_after_first_error": len(after_error),
                "answers_in_last_3_s": sum(r["outcome"] in ("answered", "empty") for r in rs
                                           if r["t_s"] > (rs[-1]["t_s"] if rs else 0) - 3),
                "counters": (await w.client.stats())["counters"],
                "documents": await w.documents(), "server_alive": w.server_alive(),
                "daemon_alive": None if daemon is None else daemon.poll() is None, "server_log": w.log})
            result["probe"] = probe_view(first_error) if first_error else {"outcome": "no error seen"}
            result["in_flight"] = first_error is not None
            result["recovered_s"] = round(after_error[0]["t_s"] - first_error["t_s"],
                                          2) if after_error else None
    finally:
        if daemon is not None:
            stop_process(daemon)
    return result


async def run_faults(args) -> dict:
    wanted = [f.strip() for f in args.only.split(",")] if args.only else list(FAULTS)
    bad = [f for f in wanted if f not in FAULTS]
    if bad:
        raise SystemExit(f"unknown fault(s) {bad}; choose from {', '.join(FAULTS)}")
    sessions = python_sessions(args.sessions)
    session = next((s for s in sessions if s.name == args.session), sessions[0])
    tmp = Path(tempfile.mkdtemp(prefix="completer-faults-"))
    out = {"bench": "faults", "machine": machine(),
           "settings": {"faults": wanted, "session": session.name, "server_flags": args.server_flags,
                        "cps": args.cps,
                        "model": args.model, "stop_s": args.stop_s, "raise_rate": args.raise_rate,
                        "recover_s": args.recover_s},
           "faults": []}
    t0 = time.monotonic()
    try:
        daemon_faults = [f for f in wanted if f in ("sigstop", "sigkill", "restart")]
        if daemon_faults:
            print(f"faults: {', '.join(daemon_faults)}", file=sys.stderr, flush=True)
            out["faults"] += await fault_daemon(args, tmp, session, daemon_faults)
        if "disk-full" in wanted:
            print("faults: disk-full", file=sys.stderr, flush=True)
            out["faults"].append(await fault_disk_full(args, tmp, session))
        if "model-dir" in wanted:
            print("faults: model-dir", file=sys.stderr, flush=True)
            out["faults"].append(await fault_model_dir(args, tmp, session))
        for where in ("inproc", "daemon", "consumer"):
            if f"raise-{where}" in wanted:
                print(f"faults: raise-{where}", file=sys.stderr, flush=True)
                out["faults"].append(await fault_raise(args, tmp, session, where))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["duration_s"] = round(time.monotonic() - t0, 1)
    out["text_lost"] = [f["fault"] for f in out["faults"] if not f["documents"]["ok"]]
    out["server_died"] = [f["fault"] for f in out["faults"] if not f["server_alive"]]
    return out


def report_faults(r: dict) -> None:
    print_fields("machine", r["machine"])
    print_fields("settings", r["settings"])
    for f in r["faults"]:
        fields = {"probe (what the user saw)": f.get("probe"), "in flight": f.get("in_flight"),
                  "statuses": [f"+{s['after_s']}s {s['state']}: {s['message']}"
                               for s in f.get("statuses", [])][:6],
                  "recovered s": f.get("recovered_s"), "documents": f["documents"],
                  "server alive": f["server_alive"]}
        for key in ("probe_while_stopped", "stopped_s", "old_daemon_alive", "method", "how",
                    "recording_failed_after_s", "model_answer_after_failure_s", "recordings",
                    "reload_error_status_after_s",
                    "model_answers_after_first_error", "answers_in_last_3_s", "while_stopped", "phase",
                    "after", "deleted", "reload_failed", "directory_back", "daemon_pid", "daemon_pid_after",
                    "restarted_pid"):
            if key in f:
                fields[key] = f[key]
        print_fields(f"fault: {f['fault']}", fields)
    print(f"\nfaults run in {r['duration_s']} s; text lost in: {r['text_lost'] or 'none'}; "
          f"server died in: {r['server_died'] or 'none'}")
    rows = []
    for f in r["faults"]:
        p = f.get("probe") or {}
        status = next((s for s in f.get("statuses", []) if s["state"] == "error"), None)
        rows.append([f["fault"], fmt(f.get("in_flight")), p.get("outcome", "-"),
                     fmt(p.get("answered_after_fault_ms", p.get("latency_ms"))),
                     (status["message"][:48] if status else "-"), fmt(f.get("recovered_s")),
                     "no" if f["documents"]["ok"] else "LOST", fmt(f["server_alive"])])
    print(table(["fault", "in flight", "answer", "answer ms", "error status", "recovered s", "text lost",
                 "server alive"], rows))


# -- the faulty engine (a launcher, for the raise-* faults) -----------------------------------------

class RaisingEngine:
    """A real engine whose generations raise, each with probability `rate` (seeded: the same
    generations raise every run), after their first token.

    inside (the default): the exception is raised inside the torch engine's own generation (its
    `_run_locked`, under the engine's lock), as a failing forward pass would. consumer: it is raised
    by the code iterating the stream, after the first token, leaving the engine's generator suspended
    (what any exception in the pipeline's loop over the deltas does)."""

    def __init__(self, engine, rate: float, where: str = "inside", seed: int = 0):
        import random

        self._engine, self._rate, self._where, self._n = engine, rate, where, 0
        self._rng = random.Random(seed)
        if where == "inside":
            inner = getattr(engine, "_run_locked", None)
            if inner is None:
                raise SystemExit("raise faults need the torch backend (its _run_locked)")

            def run_locked(req, cancel, stats):
                if not self._raises():
                    yield from inner(req, cancel, stats)
                    return
                deltas = inner(req, cancel, stats)
                for delta in deltas:
                    yield delta
                    break
                deltas.close()
                raise RuntimeError(f"injected fault: generation {self._n} raises (bench/reliability.py)")
            engine._run_locked = run_locked

    def _raises(self) -> bool:
        self._n += 1
        return self._rng.random() < self._rate

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def generate(self, request, cancel=None):
        from completer.engines.contract import GenerationStream

        stream = self._engine.generate(request, cancel)
        if self._where == "inside" or not self._raises():
            return stream

        def deltas():
            for delta in stream:
                yield delta
                break
            raise RuntimeError(f"injected fault: generation {self._n} raises in its consumer "
                               "(bench/reliability.py)")

        class ConsumedStream(GenerationStream):
            # The engine's own generator stays suspended after the raise, as it would under a raising
            # consumer; only the stream's owner closing the stream frees the engine.
            def close(self) -> None:
                stream.close()
        return ConsumedStream(deltas(), stream.stats)


def faulty_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reliability.py _faulty")
    parser.add_argument("--raise-rate", type=float, default=0.3)
    parser.add_argument("--where", choices=("inside", "consumer"), default="inside")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    from completer.engines import loading

    real = loading.load_engine

    def load_engine(options=None):
        return RaisingEngine(real(options) if options is not None else real(), args.raise_rate, args.where)
    loading.load_engine = load_engine
    from completer.cli.main import main

    return main(rest)


# -- the command -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="bench", required=True)

    def common(sp, flags: str) -> None:
        sp.add_argument("--json", help="write every number here")
        sp.add_argument("--sessions", nargs="+", default=[str(SESSIONS)], help="session files or directories")
        sp.add_argument("--server-flags", default=flags,
                        help=f"extra `completer serve` flags (default {flags!r})")
        sp.add_argument("--speed", type=float, default=1.0,
                        help="replay speed (2: twice as fast as the sessions)")
        sp.add_argument("--max-pause-ms", type=float, default=None, help="cap every pause of a session")

    s = sub.add_parser("soak", help="one server, the sessions in a loop, memory and latency drift")
    common(s, "")
    s.add_argument("--minutes", type=float, default=60.0)
    s.add_argument("--sample-s", type=float, default=5.0)
    s.add_argument("--warmup-minutes", type=float, default=None,
                   help="default: a fifth of the run, at most 10, and until the background compile finished")
    s.add_argument("--window-minutes", type=float, default=None,
                   help="default 10 (runs under 30 min: a fifth)")
    s.add_argument("--progress", action="store_true", help="a line per replayed session on stderr")

    ld = sub.add_parser("load", help="N windows on one daemon; serve-openai with slow readers")
    common(ld, "")
    ld.add_argument("--windows", default="1,2,4,8", help="comma-separated window counts ('' to skip)")
    ld.add_argument("--seconds", type=float, default=30.0, help="typing per window count")
    ld.add_argument("--engine-flags", default=EAGER,
                    help=f"`completer engine` and serve-openai flags (default {EAGER!r})")
    ld.add_argument("--http-clients", type=int, default=8, help="serve-openai streaming clients (0 to skip)")
    ld.add_argument("--slow-readers", type=int, default=2)
    ld.add_argument("--http-seconds", type=float, default=20.0, help="per phase (alone, with slow readers)")
    ld.add_argument("--http-max-tokens", type=int, default=24)
    ld.add_argument("--stall-s", type=float, default=12.0, help="how long a slow reader reads nothing")
    ld.add_argument("--starve-factor", type=float, default=3.0)

    a = sub.add_parser("all", help="faults, load and soak, one after another, each with its defaults")
    a.add_argument("--json", help="write every number to OUT-faults.json, OUT-load.json, OUT-soak.json")
    a.add_argument("--minutes", type=float, default=60.0, help="the soak's length")

    f = sub.add_parser("faults",
                       help="daemon stopped/killed/restarted, disk full, model gone, engine raising")
    common(f, EAGER)
    f.add_argument("--only", default="",
                   help=f"comma-separated subset of {','.join(FAULTS)} (default: all)")
    f.add_argument("--session", default="utils-block-106",
                   help="the Python session typed (default utils-block-106)")
    f.add_argument("--model", default="embedded", help="model name or directory (model-dir copies it)")
    f.add_argument("--cps", type=float, default=10.0, help="keys per second")
    f.add_argument("--warm-s", type=float, default=3.0)
    f.add_argument("--stop-s", type=float, default=12.0, help="how long the daemon stays SIGSTOPped")
    f.add_argument("--stuck-wait-s", type=float, default=25.0,
                   help="sigstop: how long a request sent while the daemon stays stopped is waited for")
    f.add_argument("--recover-s", type=float, default=45.0, help="how long to type waiting for the model")
    f.add_argument("--after-s", type=float, default=3.0, help="typing after each step")
    f.add_argument("--fill-timeout-s", type=float, default=30.0,
                   help="disk-full: typing until recording fails")
    f.add_argument("--disk-free-kb", type=int, default=8,
                   help="disk-full: room left beside the document's size")
    f.add_argument("--raise-rate", type=float, default=0.3, help="share of generations that raise")
    f.add_argument("--raise-s", type=float, default=8.0)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_faulty"]:
        return faulty_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.bench == "all":
        # The three benches with their defaults, one after another (about 70 minutes with the hour's soak).
        worst = 0
        for bench in ("faults", "load", "soak"):
            sub_argv = [bench]
            if args.json:
                sub_argv += ["--json", f"{args.json.removesuffix('.json')}-{bench}.json"]
            if bench == "soak":
                sub_argv += ["--minutes", str(args.minutes)]
            print(f"\n=== {bench} ===", flush=True)
            worst = max(worst, main(sub_argv))
        return worst
    if args.bench == "soak":
        result = asyncio.run(run_soak(args))
        write_json(args.json, result)
        report_soak(result)
        return 0 if result["texts_ok"] else 1
    if args.bench == "load":
        args.windows = [int(x) for x in args.windows.split(",") if x.strip()]
        result = asyncio.run(run_load(args))
        write_json(args.json, result)
        report_load(result)
        runs_ok = all(r["starvation"]["ok"] for r in result.get("window_runs", []))
        return 0 if runs_ok and (not result.get("openai") or result["openai"]["starvation"]["ok"]) else 1
    args.model_flags = ["--model", str(model_path(args.model))] if args.model != "embedded" else []
    result = asyncio.run(run_faults(args))
    write_json(args.json, result)
    report_faults(result)
    return 0 if not result["text_lost"] and not result["server_died"] else 1


if __name__ == "__main__":
    sys.exit(main())
