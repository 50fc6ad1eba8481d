"""Options -> a ready engine: the backend factory and the one place that turns user-facing options
(backend, model name or directory, device, ...) into a backend's constructor arguments."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from .contract import BackendUnavailableError, Engine
from .heap import freeze_loaded_objects
from .model_dirs import resolve_model
from .options import BACKENDS, EngineOptions

log = logging.getLogger(__name__)

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


# Which EngineOptions field each backend takes, under the name its constructor uses. An option given
# for a backend that does not take it is refused rather than ignored.
ACCEPTED = {
    "torch": {"threads": "num_threads", "cache_mb": "cache_mb", "edit_reuse": "edit_reuse", "compile": "compile",
              "draft_model": "draft_model"},
    "trtllm": {"draft_model": "draft_model", "speculation": "speculation", "backend_options": "backend_options"},
    "lmdeploy": {"draft_model": "draft_model", "speculation": "speculation", "lmdeploy_engine": "engine",
                 "backend_options": "backend_options"},
    "openai": {"server_url": "server_url", "served_model": "served_model", "affinity_header": "affinity_header",
               "server_stop_ids": "send_stop_ids", "server_extra": "extra_body"},
}
# Fields every backend takes (passed as they are) or that are about which model (resolved here).
COMMON = ("backend", "model", "device", "dtype")


def backend_arguments(options: EngineOptions) -> dict:
    """The constructor keyword arguments of `options.backend` (besides model_dir, device and dtype)."""
    if options.backend != "torch" and options.compile in ("auto", "off"):
        options = options.replace(compile=None)  # the servers' default, meaningless for other backends
    if options.draft_model in ("auto", "none", "off") and options.backend != "torch":
        options = options.replace(draft_model=None)  # no draft is these backends' default
    accepted = ACCEPTED[options.backend]
    kwargs: dict = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if f.name in COMMON or value is None or (f.name == "server_stop_ids" and not value):
            continue
        if f.name not in accepted:
            raise ValueError(f"--{f.name.replace('_', '-')} does not apply to the {options.backend} backend")
        kwargs[accepted[f.name]] = value
    if options.backend == "trtllm" and options.draft_model and options.speculation is None:
        kwargs["speculation"] = "draft"  # a draft model given means draft-target speculation
    if "backend_options" in kwargs:
        kwargs["backend_options"] = read_backend_options(kwargs["backend_options"])
    if "extra_body" in kwargs:
        try:
            kwargs["extra_body"] = json.loads(kwargs["extra_body"])
        except ValueError as exc:
            raise ValueError(f"--server-extra: not JSON ({exc})") from None
        if not isinstance(kwargs["extra_body"], dict):
            raise ValueError("--server-extra: expected a JSON object")
    return kwargs


def load_engine(options: EngineOptions = EngineOptions()) -> Engine:
    """A ready engine for `options`."""
    engine = create_engine(options.backend, resolve_model(options.model), device=options.device,
                           dtype=options.dtype, **backend_arguments(options))
    freeze_loaded_objects()  # the model and its graphs stay for the process's life (heap.py)
    log.info("engine ready: %s", engine.describe())
    return engine


def create_engine(backend: str, model_dir, *, device: str = "auto", dtype: str = "auto", **options) -> Engine:
    """Backend factory. Backends that cannot run here raise BackendUnavailableError with the reason."""
    if backend == "torch":
        from completer.engines.torch.engine import TorchEngine

        return TorchEngine(model_dir, device=device, dtype=dtype, **options)
    if backend == "trtllm":
        from .trtllm import TrtllmEngine

        return TrtllmEngine(model_dir, device=device, dtype=dtype, **options)
    if backend == "lmdeploy":
        from .lmdeploy import LmdeployEngine

        return LmdeployEngine(model_dir, device=device, dtype=dtype, **options)
    if backend == "openai":
        from .openai_compat import OpenAIEngine

        return OpenAIEngine(model_dir, device=device, dtype=dtype, **options)
    raise BackendUnavailableError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
