"""The command line's options as typed values: which compile mode each command gives the torch
engine, and flags that say the options again (replay, demo, the daemon) parse back to the same
options (strings only, no engine loaded)."""

import dataclasses

import pytest

from completer.cli.main import build_parser, cmd_demo
from completer.cli.options import completion_settings, engine_options, serve_flags, server_engine_options
from completer.engines.options import EngineOptions


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_servers_compile_in_the_background_by_default(monkeypatch):
    monkeypatch.delenv("COMPLETER_COMPILE", raising=False)
    for argv in (["serve", "--stdio"], ["engine"], ["serve-openai"]):
        assert server_engine_options(parse(*argv)).compile == "auto", argv
    assert server_engine_options(parse("serve", "--stdio", "--compile")).compile == "on"
    assert server_engine_options(parse("serve", "--stdio", "--compile", "off")).compile == "off"
    monkeypatch.setenv("COMPLETER_COMPILE", "off")
    assert server_engine_options(parse("serve", "--stdio")).compile == "off"


def test_other_backends_get_no_compile_option(monkeypatch):
    monkeypatch.delenv("COMPLETER_COMPILE", raising=False)
    assert server_engine_options(parse("serve", "--stdio", "--backend", "openai")).compile is None
    assert "--compile" not in serve_flags(parse("replay", "s.msgpack", "--backend", "openai"))


def test_replay_and_demo_measure_the_compiled_steady_state(monkeypatch):
    monkeypatch.delenv("COMPLETER_COMPILE", raising=False)
    flags = serve_flags(parse("replay", "s.msgpack"))
    assert flags[flags.index("--compile") + 1] == "on"
    flags = serve_flags(parse("replay", "s.msgpack", "--compile", "off"))
    assert flags[flags.index("--compile") + 1] == "off"
    monkeypatch.setenv("COMPLETER_COMPILE", "off")
    flags = serve_flags(parse("demo"))
    assert flags[flags.index("--compile") + 1] == "off"


@pytest.mark.parametrize("options", [
    EngineOptions(),
    EngineOptions(compile="auto", threads=1, cache_mb=8.0, edit_reuse=False, draft_model="embedded-draft"),
    EngineOptions(edit_reuse=True, model="/models/x", device="cpu", dtype="bfloat16"),
    EngineOptions(backend="openai", server_url="http://127.0.0.1:8000/v1", served_model="m", affinity_header="",
                  server_stop_ids=True, server_extra='{"a": 1}'),
    EngineOptions(backend="trtllm", speculation="draft", draft_model="d", backend_options="o.yaml"),
    EngineOptions(backend="lmdeploy", lmdeploy_engine="pytorch", speculation="none"),
])
def test_engine_flags_parse_back_to_the_same_options(options):
    """What a server passes to the daemon it starts (and replay to the server) means the same there."""
    for command in (["engine"], ["serve", "--stdio"]):
        assert engine_options(parse(*command, *options.to_flags())) == options
    assert options.key() == dataclasses.replace(options).key()


def test_server_flags_carry_settings_and_switches(monkeypatch):
    monkeypatch.delenv("COMPLETER_COMPILE", raising=False)
    argv = ["replay", "s.msgpack", "--max-tokens", "12", "--line-max-tokens", "7", "--no-speculative", "--no-syntax", "--no-reuse",
            "--no-debounce", "--fim-template", "qwen", "--threads", "1"]
    flags = serve_flags(parse(*argv))
    served = parse("serve", "--stdio", *flags)
    assert completion_settings(served) == completion_settings(parse(*argv))
    assert completion_settings(served).line_max_tokens == 7
    assert served.no_reuse and served.no_debounce and not served.no_context
    assert engine_options(served) == engine_options(parse(*argv), compile_default="on")


def test_an_option_for_another_backend_is_refused():
    from completer.engines.loading import backend_arguments

    with pytest.raises(ValueError, match="--server-url does not apply to the torch backend"):
        backend_arguments(EngineOptions(server_url="http://x"))
    assert backend_arguments(EngineOptions(edit_reuse=False, threads=2)) == {"edit_reuse": False, "num_threads": 2}


def test_demo_says_why_it_starts_slowly_only_when_it_compiles_first(monkeypatch, capsys):
    monkeypatch.delenv("COMPLETER_COMPILE", raising=False)
    assert cmd_demo(parse("demo", "/no/such/file.py")) == 2  # stops at the missing file, after announcing
    assert "compiles its decode step" in capsys.readouterr().out
    assert cmd_demo(parse("demo", "/no/such/file.py", "--compile", "off")) == 2
    assert "compiles its decode step" not in capsys.readouterr().out


def test_only_the_server_answers_a_cold_key_from_a_short_prompt_by_default():
    from lsp.options import COLD_PROMPT_TOKENS, ServerOptions, apply_client_settings

    assert completion_settings(parse("serve", "--stdio"), cold_default=COLD_PROMPT_TOKENS).cold_prompt_tokens \
        == COLD_PROMPT_TOKENS
    assert completion_settings(parse("complete", "f.py", "--line", "1", "--character", "0")).cold_prompt_tokens is None
    off = parse("serve", "--stdio", "--cold-prompt-tokens", "0")
    assert completion_settings(off, cold_default=COLD_PROMPT_TOKENS).cold_prompt_tokens is None
    # replay passes it on only when given, so the server's own default is what a replay measures
    assert "--cold-prompt-tokens" not in serve_flags(parse("replay", "s.msgpack"))
    flags = serve_flags(parse("replay", "s.msgpack", "--cold-prompt-tokens", "256"))
    assert completion_settings(parse("serve", "--stdio", *flags)).cold_prompt_tokens == 256
    # an editor's setting: 0 turns it off, a negative or non-integer value is ignored
    assert apply_client_settings(ServerOptions(), {"coldPromptTokens": 0}).settings.cold_prompt_tokens == 0
    assert apply_client_settings(ServerOptions(), {"coldPromptTokens": 200}).settings.cold_prompt_tokens == 200
    for bad in (-1, 2.5, "256"):
        assert apply_client_settings(ServerOptions(), {"coldPromptTokens": bad}).settings == ServerOptions().settings


def test_the_prompt_budget_from_the_command_line_or_the_editor():
    from lsp.options import ServerOptions, apply_client_settings

    assert completion_settings(parse("serve", "--stdio")).prompt_tokens is None  # the default budget
    assert completion_settings(parse("serve", "--stdio", "--prompt-tokens", "512")).prompt_budget == 512
    with pytest.raises(SystemExit):
        completion_settings(parse("serve", "--stdio", "--prompt-tokens", "100"))
    assert "--prompt-tokens" not in serve_flags(parse("replay", "s.msgpack"))
    flags = serve_flags(parse("replay", "s.msgpack", "--prompt-tokens", "1024"))
    assert completion_settings(parse("serve", "--stdio", *flags)).prompt_tokens == 1024
    assert apply_client_settings(ServerOptions(), {"promptTokens": 2048}).settings.prompt_tokens == 2048
    for bad in (100, 10**6, 512.5, "512"):
        assert apply_client_settings(ServerOptions(), {"promptTokens": bad}).settings == ServerOptions().settings


def test_a_new_prompt_budget_chooses_the_open_documents_context_chunks_again():
    # The chunks of other files take a share of the budget, so they were sized for the old one.
    from lsp.server import create_server

    server = create_server()
    server.store.open("file:///w/a.py", "python", 1, "x = 1\n")
    changed = []
    server.change_hooks = [lambda ls, uri, opened=False: changed.append(uri)]
    server.apply_client_settings({"promptTokens": 512})
    assert server.settings.prompt_budget == 512 and changed == ["file:///w/a.py"]
    server.apply_client_settings({"promptTokens": 512, "maxTokens": 32})  # the same budget: nothing to do
    assert changed == ["file:///w/a.py"]
