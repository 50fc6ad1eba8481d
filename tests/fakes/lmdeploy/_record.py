"""What the fake saw, for tests to assert API use: (call name, details) in call order."""

from __future__ import annotations

from typing import Any

CALLS: list[tuple[str, dict[str, Any]]] = []


def record(name: str, **details: Any) -> None:
    CALLS.append((name, details))


def calls(name: str) -> list[dict[str, Any]]:
    return [details for call, details in CALLS if call == name]

