"""Where models live: a directory path, or the name of a model shipped inside the package."""

from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).parents[1] / "models"  # completer/models
# Preference order for the default: the trained embedded model, else the test fixture.
DEFAULT_ORDER = ("embedded", "fixture")
# What we know of a model beyond its weights: its languages, reranker and gate (completion/rerank.py)
# and the draft that goes with it (engines/torch/drafter.py).
MODEL_NOTES_FILE = "completer.json"


def shipped_models() -> dict[str, Path]:
    if not SHIPPED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(SHIPPED_DIR.iterdir()) if (p / "config.json").exists()}


def default_model_name() -> str | None:
    shipped = shipped_models()
    return next((n for n in DEFAULT_ORDER if n in shipped), None)


def resolve_model(spec: str | None) -> Path:
    """`None` -> the default shipped model; a shipped name; or a model directory path."""
    shipped = shipped_models()
    if spec is None:
        name = default_model_name()
        if name is None:
            raise FileNotFoundError(f"no model shipped in {SHIPPED_DIR}; pass --model DIR")
        return shipped[name]
    if spec in shipped:
        return shipped[spec]
    path = Path(spec).expanduser()
    if not path.is_dir():
        known = ", ".join(shipped) or "none"
        raise FileNotFoundError(f"model {spec!r} is neither a directory nor a shipped model (shipped: {known})")
    return path.resolve()  # the compiled engine's builder and cache entries outlive the working directory
