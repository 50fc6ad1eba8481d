"""EngineOptions: what engine to load, made once from command-line flags, initializationOptions or
didChangeConfiguration, and handed as one typed value to the loader, the daemon (as flags, to_flags)
and the OpenAI server. Every field's `None` means "the backend's default"."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass

BACKENDS = ("torch", "trtllm", "lmdeploy", "openai")
# off; on: compile before the first request; background: serve eager at once and switch when the
# compiled step is ready; auto: background on CPU, off on CUDA.
COMPILE_MODES = ("off", "on", "background", "auto")


@dataclass(frozen=True)
class EngineOptions:
    backend: str = "torch"
    model: str | None = None  # a model directory or a shipped model name; None: the embedded model
    device: str = "auto"
    dtype: str = "auto"
    # torch
    threads: int | None = None
    cache_mb: float | None = None
    edit_reuse: bool | None = None
    compile: str | None = None  # one of COMPILE_MODES
    draft_model: str | None = None  # torch, trtllm
    # trtllm / lmdeploy
    speculation: str | None = None
    backend_options: str | None = None  # a YAML or JSON file of the backend's own engine arguments
    lmdeploy_engine: str | None = None
    # openai
    server_url: str | None = None
    served_model: str | None = None
    affinity_header: str | None = None
    server_stop_ids: bool = False
    server_extra: str | None = None  # a JSON object merged into every request body

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r} (choose from {', '.join(BACKENDS)})")
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {self.compile!r} (one of {', '.join(COMPILE_MODES)})")

    def replace(self, **changes) -> "EngineOptions":
        return dataclasses.replace(self, **changes)

    def with_compile_default(self, default: str) -> "EngineOptions":
        """The compile mode for the torch backend when none was given: $COMPLETER_COMPILE, else
        `default`. Other backends have no compile mode."""
        if self.backend != "torch" or self.compile is not None:
            return self
        return self.replace(compile=os.environ.get("COMPLETER_COMPILE") or default)

    def to_flags(self) -> list[str]:
        """The `completer serve` / `completer engine` flags that parse back to these options."""
        flags: list[str] = []
        defaults = EngineOptions()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == getattr(defaults, f.name):
                continue
            if f.name == "edit_reuse":
                flags.append("--no-edit-reuse" if value is False else "--edit-reuse")
            elif f.name == "server_stop_ids":
                flags.append("--server-stop-ids")
            else:
                flags += [f"--{f.name.replace('_', '-')}", str(value)]
        return flags

    def key(self) -> str:
        """A short stable hash: one daemon per engine configuration."""
        data = json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(data.encode()).hexdigest()[:12]
