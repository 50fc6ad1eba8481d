"""Which compile mode each command gives the torch engine (strings only, no engine loaded)."""

from completer.cli import _serve_flags, _server_engine_options, build_parser, cmd_demo
from completer.remote_engine import engine_flags


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_servers_compile_in_the_background_by_default(monkeypatch):
    monkeypatch.delenv("COMPLETER_COMPILE", raising=False)
    for argv in (["serve", "--stdio"], ["engine"], ["serve-openai"]):
        assert _server_engine_options(parse(*argv))["compile"] == "auto", argv
    assert _server_engine_options(parse("serve", "--stdio", "--compile"))["compile"] == "on"
    assert _server_engine_options(parse("serve", "--stdio", "--compile", "off"))["compile"] == "off"
    monkeypatch.setenv("COMPLETER_COMPILE", "off")
    assert _server_engine_options(parse("serve", "--stdio"))["compile"] == "off"


def test_other_backends_get_no_compile_option(monkeypatch):
    monkeypatch.delenv("COMPLETER_COMPILE", raising=False)
    options = _server_engine_options(parse("serve", "--stdio", "--backend", "openai"))
    assert options["compile"] is None
    assert "--compile" not in _serve_flags(parse("replay", "s.msgpack", "--backend", "openai"))


def test_replay_and_demo_measure_the_compiled_steady_state(monkeypatch):
    monkeypatch.delenv("COMPLETER_COMPILE", raising=False)
    flags = _serve_flags(parse("replay", "s.msgpack"))
    assert flags[flags.index("--compile") + 1] == "on"
    flags = _serve_flags(parse("replay", "s.msgpack", "--compile", "off"))
    assert flags[flags.index("--compile") + 1] == "off"
    monkeypatch.setenv("COMPLETER_COMPILE", "off")
    flags = _serve_flags(parse("demo"))
    assert flags[flags.index("--compile") + 1] == "off"


def test_the_daemon_gets_the_same_mode():
    assert engine_flags({"compile": "auto"})[-2:] == ["--compile", "auto"]
    assert engine_flags({"compile": True})[-2:] == ["--compile", "on"]
    assert "--compile" not in engine_flags({"compile": None})


def test_demo_says_why_it_starts_slowly_only_when_it_compiles_first(monkeypatch, capsys):
    monkeypatch.delenv("COMPLETER_COMPILE", raising=False)
    assert cmd_demo(parse("demo", "/no/such/file.py")) == 2  # stops at the missing file, after announcing
    assert "compiles its decode step" in capsys.readouterr().out
    assert cmd_demo(parse("demo", "/no/such/file.py", "--compile", "off")) == 2
    assert "compiles its decode step" not in capsys.readouterr().out
