"""Turn user-facing options (backend, model name or dir, device) into a ready engine."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .config import UnsupportedModelError
from .engine import BackendUnavailableError, Engine, create_engine
from .fim import UnknownFimTemplateError
from .heap import freeze_loaded_objects
from .models import resolve_model

log = logging.getLogger(__name__)

# Failures a user can fix (wrong path, missing backend): reported in one line, not a traceback.
EXPECTED_ERRORS = (FileNotFoundError, UnsupportedModelError, BackendUnavailableError, UnknownFimTemplateError,
                   ValueError, RuntimeError)


def read_backend_options(path: str | None) -> dict | None:
    """`--backend-options FILE`: a YAML (if PyYAML is installed) or JSON mapping of extra keyword
    arguments for the backend's own engine (trtllm: LLM(...); lmdeploy: the engine config)."""
    if not path:
        return None
    text = Path(path).read_text(encoding="utf-8")
    try:
        import yaml
    except ImportError:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"--backend-options {path}: not JSON ({exc}); install PyYAML for YAML files") from None
    else:
        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"--backend-options {path}: expected a mapping of option names to values")
    return data


def load_engine(backend: str = "torch", model: str | None = None, device: str = "auto", dtype: str = "auto",
                threads: int | None = None, cache_mb: float | None = None, edit_reuse: bool | None = None,
                compile: bool | str | None = None, draft_model: str | None = None, server_url: str | None = None,
                served_model: str | None = None, affinity_header: str | None = None, server_stop_ids: bool = False,
                server_extra: str | None = None, speculation: str | None = None, lmdeploy_engine: str | None = None,
                backend_options: str | None = None) -> Engine:
    """An engine from the command line's options; options another backend would take are refused
    rather than ignored."""
    model_dir = resolve_model(model)
    if backend != "torch" and compile in ("auto", "off", False):
        compile = None  # the servers' default (auto), meaningless for other backends
    options: dict = {}
    given = {"threads": threads, "cache_mb": cache_mb, "edit_reuse": edit_reuse, "compile": compile or None,
             "draft_model": draft_model, "server_url": server_url, "served_model": served_model,
             "affinity_header": affinity_header, "server_stop_ids": server_stop_ids or None,
             "server_extra": server_extra, "speculation": speculation, "lmdeploy_engine": lmdeploy_engine,
             "backend_options": backend_options}
    accepted = {
        "torch": {"threads": "num_threads", "cache_mb": "cache_mb", "edit_reuse": "edit_reuse", "compile": "compile",
                  "draft_model": "draft_model"},
        "trtllm": {"draft_model": "draft_model", "speculation": "speculation", "backend_options": "backend_options"},
        "lmdeploy": {"draft_model": "draft_model", "speculation": "speculation", "lmdeploy_engine": "engine",
                     "backend_options": "backend_options"},
        "openai": {"server_url": "server_url", "served_model": "served_model", "affinity_header": "affinity_header",
                   "server_stop_ids": "send_stop_ids", "server_extra": "extra_body"},
    }.get(backend, {})
    for key, value in given.items():
        if value is None:
            continue
        if key not in accepted:
            raise ValueError(f"--{key.replace('_', '-')} does not apply to the {backend} backend")
        options[accepted[key]] = value
    if backend == "trtllm" and draft_model and speculation is None:
        options["speculation"] = "draft"  # a draft model given means draft-target speculation
    if "backend_options" in options:
        options["backend_options"] = read_backend_options(options["backend_options"])
    if "extra_body" in options:
        try:
            options["extra_body"] = json.loads(options["extra_body"])
        except ValueError as exc:
            raise ValueError(f"--server-extra: not JSON ({exc})") from None
        if not isinstance(options["extra_body"], dict):
            raise ValueError("--server-extra: expected a JSON object")
    engine = create_engine(backend, model_dir, device=device, dtype=dtype, **options)
    freeze_loaded_objects()  # the model and its graphs stay for the process's life (heap.py)
    log.info("engine ready: %s", engine.describe())
    return engine
