"""`completer doctor`: what is installed, what can run here, and whether the default setup serves."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

from completer.engines.options import EngineOptions

REQUIRED = ["pygls", "lsprotocol", "tree-sitter", "rapidfuzz", "msgpack", "safetensors", "tokenizers", "torch"]
GRAMMARS = ["python", "javascript", "typescript", "go", "rust", "java", "c", "cpp", "lua"]


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu() -> dict:
    info = {"machine": platform.machine(), "cores": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["features"] = sorted(f for f in flags if f in {"avx2", "avx512f", "avx512_bf16", "amx_bf16",
                                                                     "amx_tile", "fma"})
                break
    except OSError:
        pass
    try:
        import torch

        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["torch_threads"] = torch.get_num_threads()
    except Exception:
        pass
    return info


def _gpu() -> dict:
    try:
        import torch
    except Exception as exc:
        return {"available": False, "reason": f"torch unavailable: {exc}"}
    if not torch.cuda.is_available():
        build = "CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build, no device visible"
        return {"available": False, "reason": build}
    return {"available": True, "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
            "cuda": torch.version.cuda}


def _openai_status(url: str | None) -> dict:
    if not url:
        return {"can_run": False, "why": "needs --server-url of an OpenAI-compatible /v1/completions server"}
    import http.client
    import json as _json

    from completer.engines.contract import BackendUnavailableError
    from completer.engines.openai_compat import api_key_from_env, get

    try:
        status, body = get(url, "/models", 3.0, api_key_from_env())
    except BackendUnavailableError as exc:  # not an http(s) URL
        return {"can_run": False, "why": str(exc)}
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return {"can_run": False, "why": f"{url} does not answer: {exc}"}
    if status != 200:
        return {"can_run": False, "why": f"{url}/models answered HTTP {status}"}
    try:
        names = [m.get("id") for m in _json.loads(body).get("data", [])]
    except (ValueError, AttributeError):
        names = []
    return {"can_run": True, "why": f"{url} serves {', '.join(map(str, names)) or 'a model'}"}


def _compile_cache() -> dict:
    """Where torch.compile's caches go (Inductor's shared objects and pickles are loaded back)."""
    from completer.engines.private_cache import cache_root, compile_cache_dirs, private_dir

    dirs = compile_cache_dirs()
    try:
        if any(d["source"] == "private" for d in dirs.values()):
            private_dir(cache_root())
        state = "ok"
    except PermissionError as exc:
        state = str(exc)
    return {**dirs, "state": state}


def _compiled_engine(info: dict) -> dict:
    """The compiled-engine cache (engines/torch/aot.py): this engine's entry and what the cache holds."""
    from completer.engines.torch import aot
    from completer.engines.torch.engine import dtype_name

    root = aot.engines_root()
    entries = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")] if root.is_dir() else []
    out = {"root": str(root), "entries": len(entries),
           "mb": round(sum(f.stat().st_size for p in entries for f in p.iterdir()) / 2**20, 1)}
    if info.get("device") != "cpu" or "max_seq" not in info:
        return {**out, "state": "not used (only the torch backend on CPU loads compiled packages)"}
    entry = aot.Entry.for_model(info["model_dir"], dtype_name(info["dtype"]), info["max_seq"], info["threads"])
    out.update(key=entry.key, path=str(entry.path), state=entry.state())
    if out["state"] == "ready":
        manifest = entry.manifest()
        out.update(built_at=manifest.get("built_at"), build_s=manifest.get("build_s"))
    return out


def _backends(gpu: dict, server_url: str | None = None) -> dict:
    out = {"torch": {"can_run": True, "why": "CPU" + (" and CUDA" if gpu.get("available") else "")}}
    hints = {"trtllm": "tensorrt-llm 1.2.1 comes from NVIDIA's package index or its NGC image, not PyPI",
             "lmdeploy": "pip install lmdeploy==0.18.0 on a CUDA machine"}
    for name, module in (("trtllm", "tensorrt_llm"), ("lmdeploy", "lmdeploy")):
        installed = importlib.util.find_spec(module) is not None
        reasons = [] if installed else [f"{module} not installed ({hints[name]})"]
        if not gpu.get("available"):
            reasons.append("needs an NVIDIA GPU")
        out[name] = {"can_run": not reasons, "why": "; ".join(reasons) or f"{module} installed, GPU {gpu.get('name')}"}
    out["openai"] = _openai_status(server_url)
    return out


def collect(options: EngineOptions) -> tuple[dict, list[str]]:
    problems: list[str] = []
    report: dict = {"completer": importlib.metadata.version("completer") if _version("completer") else "source tree",
                    "python": sys.version.split()[0], "platform": platform.platform()}
    packages = {}
    for dist in REQUIRED:
        v = _version(dist)
        packages[dist] = v
        if v is None:
            problems.append(f"required package {dist} is not installed")
    grammars = {}
    for lang in GRAMMARS:
        v = _version(f"tree-sitter-{lang}")
        grammars[lang] = v
        if v is None:
            problems.append(f"grammar wheel tree-sitter-{lang} is not installed")
    packages["transformers (tests only)"] = _version("transformers")
    report["packages"], report["grammars"] = packages, grammars
    report["cpu"] = _cpu()
    report["compile_cache"] = _compile_cache()
    report["gpu"] = gpu = _gpu()
    report["backends"] = _backends(gpu, options.server_url)
    chosen = options.backend
    if not report["backends"][chosen]["can_run"]:
        problems.append(f"backend {chosen!r} cannot run: {report['backends'][chosen]['why']}")

    model: dict = {"requested": options.model or "(default)"}
    try:
        from completer.completion.pipeline import Completer, CompletionRequest
        from completer.engines.loading import load_engine
        from completer.engines.model_dirs import resolve_model, shipped_models

        model["shipped"] = sorted(shipped_models())
        model["dir"] = str(resolve_model(options.model))
        if not problems:
            t0 = time.perf_counter()
            engine = load_engine(options)
            model["engine"] = engine.describe()
            report["compiled_engine"] = _compiled_engine(model["engine"])
            completer = Completer(engine)
            model["fim_template"] = completer.template.name
            notes = completer.notes
            model["languages"] = sorted(notes.languages) if notes.languages is not None else "any"
            model["reranker"] = ({"thresholds": (notes.gate or notes.reranker).thresholds, "gate": notes.gate is not None,
                                  "scores": engine.can_score} if notes.reranker else None)
            lines = ["def add(a, b):\n", "    return "]
            result = completer.complete(CompletionRequest(lines, 1, 11, path="doctor.py"))
            model["test_completion"] = {"text": result.text, "ms": round(result.timings.total_ms, 1)}
            model["ready_s"] = round(time.perf_counter() - t0, 2)
    except Exception as exc:
        problems.append(f"model: {type(exc).__name__}: {exc}")
    report["model"] = model
    return report, problems


def run_doctor(options: EngineOptions, as_json: bool = False) -> int:
    report, problems = collect(options)
    report["ok"] = not problems
    report["problems"] = problems
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return 0 if not problems else 1
    print(f"completer {report['completer']}  python {report['python']}  {report['platform']}")
    print("packages:  " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in report["packages"].items()))
    print("grammars:  " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in report["grammars"].items()))
    cpu = report["cpu"]
    print(f"cpu:       {cpu.get('model', '?')}, {cpu.get('cores')} cores, torch {cpu.get('torch_cpu_capability', '?')}, "
          f"{cpu.get('torch_threads', '?')} threads, features {' '.join(cpu.get('features', [])) or 'unknown'}")
    cc = report["compile_cache"]
    where = "private, 0700" if cc["inductor"]["source"] == "private" else f"from {cc['inductor']['source']}"
    print(f"compile:   cache {cc['inductor']['path']} ({where})" + ("" if cc["state"] == "ok" else f": {cc['state']}"))
    ce = report.get("compiled_engine")
    if ce:
        state = ce["state"]
        if state == "ready":
            state = f"ready ({ce['key']}, built {ce['built_at']} in {ce['build_s']} s)"
        elif state == "absent":
            state = ("absent: the first server start builds it in the background, serving eager meanwhile "
                     "(or now: completer engine --warm)")
        print(f"compiled:  {state}; cache {ce['root']}: {ce['entries']} entries, {ce['mb']} MB")
    gpu = report["gpu"]
    print(f"gpu:       {gpu['name'] + ' x' + str(gpu['count']) if gpu['available'] else 'none (' + gpu['reason'] + ')'}")
    for name, b in report["backends"].items():
        print(f"backend:   {name:9s} {'yes' if b['can_run'] else 'no '}  {b['why']}")
    m = report["model"]
    print(f"model:     {m.get('dir', m['requested'])}  (shipped: {', '.join(m.get('shipped', [])) or 'none'})")
    if "engine" in m:
        e = m["engine"]
        what = (f"{e['architecture']} {e['parameters']:,} parameters" if "architecture" in e
                else f"{e['backend']} {e.get('served_model') or ''}".rstrip())
        print(f"engine:    {what} on {e['device']} {e['dtype']}, FIM {m['fim_template']}, loaded in {e['load_ms']:.0f} ms")
        languages = m["languages"] if isinstance(m["languages"], str) else ", ".join(m["languages"])
        rerank = m["reranker"]
        print(f"suggests:  {languages}; " + ("copies reranked, shown above probability "
              + ", ".join(f"{k} {v:g}" for k, v in rerank["thresholds"].items())
              + ("" if rerank["scores"] else " (not on this backend: it cannot score)") if rerank
              else "the model's own text, ungated (no reranker in its completer.json)"))
        draft = e.get("draft")
        if draft:
            need = "never pays here" if draft["pays_from"] is None else f"pays from {100 * draft['pays_from']:.0f}%"
            state = ("used" if draft["used"] else "loaded, not used") + (" (named by --draft-model)" if draft["given"] else "")
            print(f"drafts:    n-gram lookup; draft model {draft['model']} {state}: drafting k = 1..{len(draft['cost']) - 1} "
                  f"costs {' / '.join(f'{c:g}' for c in draft['cost'][1:])} target steps, {need}, "
                  f"measured acceptance {100 * draft['acceptance']:.0f}%")
        print(f"check:     one completion in {m['test_completion']['ms']} ms: {m['test_completion']['text']!r}")
    if problems:
        print("\nthe default setup cannot serve:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print("\nok: `completer serve --stdio` can serve completions here")
    return 0
