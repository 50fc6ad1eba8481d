import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_MODEL = ROOT / "completer" / "models" / "fixture"

# The server subprocesses and the engine under test share 2 cores with pytest: keep torch to one
# thread each so the suite does not oversubscribe the machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def fixture_model_dir() -> Path:
    return FIXTURE_MODEL


def server_command(*extra: str) -> list[str]:
    return [sys.executable, "-m", "completer", "serve", "--stdio", "--model", str(FIXTURE_MODEL), "--device", "cpu",
            *extra]
