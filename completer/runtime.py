"""Turn user-facing options (backend, model name or dir, device) into a ready engine."""

from __future__ import annotations

import logging

from .config import UnsupportedModelError
from .engine import BackendUnavailableError, Engine, create_engine
from .fim import UnknownFimTemplateError
from .models import resolve_model

log = logging.getLogger(__name__)

# Failures a user can fix (wrong path, missing backend): reported in one line, not a traceback.
EXPECTED_ERRORS = (FileNotFoundError, UnsupportedModelError, BackendUnavailableError, UnknownFimTemplateError,
                   ValueError, RuntimeError)


def load_engine(backend: str = "torch", model: str | None = None, device: str = "auto", dtype: str = "auto",
                threads: int | None = None, cache_mb: float | None = None, edit_reuse: bool | None = None,
                compile: bool = False, draft_model: str | None = None) -> Engine:
    model_dir = resolve_model(model)
    options: dict = {}
    if backend == "torch":
        if threads:
            options["num_threads"] = threads
        if cache_mb is not None:
            options["cache_mb"] = cache_mb
        if edit_reuse is not None:
            options["edit_reuse"] = edit_reuse
        if compile:
            options["compile"] = True
        if draft_model:
            options["draft_model"] = draft_model
    engine = create_engine(backend, model_dir, device=device, dtype=dtype, **options)
    log.info("engine ready: %s", engine.describe())
    return engine
