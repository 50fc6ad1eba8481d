import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_MODEL = ROOT / "completer" / "models" / "fixture"

# The server subprocesses and the engine under test share 2 cores with pytest: keep torch to one
# thread each so the suite does not oversubscribe the machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Servers started by tests (directly, by Neovim or by VS Code) serve eager: a background compile
# would take both cores for tens of seconds per server. The default itself has its own tests.
os.environ.setdefault("COMPLETER_COMPILE", "off")


@pytest.fixture(scope="session")
def fixture_model_dir() -> Path:
    return FIXTURE_MODEL


@pytest.fixture(scope="session")
def compile_cache_home(tmp_path_factory) -> Path:
    """One $XDG_CACHE_HOME for the tests that build the compiled engine (each under its own key):
    Inductor's kernel and autotuning caches in it make the second build of the session about a
    minute quicker on 2 cores."""
    return tmp_path_factory.mktemp("xdg-compile")


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(*extra: str) -> list[str]:
    return [sys.executable, "-m", "completer", "serve", "--stdio", "--model", str(FIXTURE_MODEL), "--device", "cpu",
            *extra]


def until(condition, timeout: float = 10.0) -> None:
    """Waits for a server's thread to get somewhere (a fixed sleep flakes on a loaded machine)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def bench_module(name: str):
    """bench/NAME.py imported as a module (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_bench", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def workspace_client(server_cmd: list[str]):
    """A module-scoped pytest-lsp `client` fixture: `server_cmd` initialized with the module's
    `workspace` fixture as its root, as an editor opens a folder. Assign it to `client` in the module."""
    import pytest_lsp
    from lsprotocol import types
    from pytest_lsp import ClientServerConfig, LanguageClient

    @pytest_lsp.fixture(config=ClientServerConfig(server_command=server_cmd), scope="module")
    async def client(lsp_client: LanguageClient, workspace: Path):
        lsp_client.initialize_result = await lsp_client.initialize_session(types.InitializeParams(
            capabilities=pytest_lsp.client_capabilities("visual-studio-code"), root_uri=workspace.as_uri()))
        yield
        await lsp_client.shutdown_session()

    return client


def open_document(client, uri: str, text: str, language_id: str = "python") -> None:
    """textDocument/didOpen of `text` at `uri`, version 1."""
    from lsprotocol import types

    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id=language_id, version=1, text=text)))


def invoked_at(uri: str, line: int, character: int):
    """inlineCompletion params at a position, invoked (as by a keyboard shortcut)."""
    from lsprotocol import types

    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))


class OpenAIServer:
    """`completer serve-openai` on a free local port, for as long as the `with` block runs."""

    def __init__(self, *extra: str, model: Path = FIXTURE_MODEL, port: int = 0, env: dict | None = None):
        self.cmd = [sys.executable, "-m", "completer", "serve-openai", "--port", str(port), "--model", str(model),
                    "--device", "cpu", *extra]
        self.env = {**os.environ, **(env or {})}
        self.url = ""

    def __enter__(self) -> "OpenAIServer":
        import subprocess

        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env=self.env)
        line = self.proc.stdout.readline()  # "completer serve-openai: 'NAME' on http://HOST:PORT/v1"
        if " on http" not in line:
            self.proc.kill()
            raise RuntimeError(f"serve-openai did not start: {line!r}")
        self.url = line.rsplit(" on ", 1)[1].strip()
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
