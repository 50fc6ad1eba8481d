"""engine_builds/adopt_gpu_run.py: what the GPU run brought back, unpacked and checked; the choice of
target by the quality-vs-latency rule; the install into the package. The stages that run fit_reranker,
bench/quality.py and the replay are those tools' own (tested there); here they are given as state."""

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from engine_builds import adopt_gpu_run as adopt
from tests.conftest import FIXTURE_MODEL, ROOT


def model_dir(tmp: Path, name: str) -> Path:
    d = tmp / "built" / name
    shutil.copytree(FIXTURE_MODEL, d)
    (d / "train_log.json").write_text(json.dumps({"name": name}))
    return d


def returned_dir(tmp: Path, split: dict[str, int] | None = None) -> Path:
    """What gpu_train.sh leaves in $OUT: NAME.tar per model (or NAME.tar.partK), logs.tar, results.json."""
    out = tmp / "returned"
    out.mkdir()
    for name in ("draft", "target-s", "target-m"):
        tar_path = out / f"{name}.tar"
        with tarfile.open(tar_path, "w") as t:
            t.add(model_dir(tmp, name), arcname=name)
        parts = (split or {}).get(name)
        if parts:
            data = tar_path.read_bytes()
            size = len(data) // parts + 1
            for k in range(parts):
                (out / f"{name}.tar.part{k}").write_bytes(data[k * size:(k + 1) * size])
            tar_path.unlink()
    (out / "results.json").write_text(json.dumps({"models": {
        "target-s": {"train": {"tokens": 5_000_000, "best_val_target_loss": 2.1},
                     "eval": {"suites": {"e2-python": {"all": {"em": 12.0, "es": 40.0, "n": 150}}}}}}}))
    return out


def options(tmp: Path, **kw) -> adopt.Options:
    base = {"run": tmp / "run", "returned": tmp / "returned", "pack": tmp / "no-pack", "fit_cases": None,
            "quality_cases": 3, "e4_cases": None, "acceptance_cases": 2, "sessions": [], "max_pause_ms": 1000,
            "workspace": 0, "targets": None}
    return adopt.Options(**{**base, **kw})


def test_unpack_joins_parts_and_checks_each_model_in_the_engine(tmp_path):
    returned_dir(tmp_path, split={"target-m": 3})
    opts = options(tmp_path)
    got = adopt.stage_unpack(opts, {})
    assert got["draft"] == "draft" and sorted(got["targets"]) == ["target-m", "target-s"]
    m = got["models"]["target-m"]
    assert m["parameters"] > 0 and m["role"] == "target" and isinstance(m["decoded"], str)
    assert (opts.run / "models" / "target-m" / "model.safetensors").read_bytes() == \
        (FIXTURE_MODEL / "model.safetensors").read_bytes()
    assert got["models"]["target-s"]["gpu_eval"]["e2-python"]["em"] == 12.0
    assert got["models"]["target-s"]["gpu_train"]["tokens"] == 5_000_000
    assert got["shipped_parameters"] > 0


def test_unpack_refuses_a_missing_part_and_a_tar_that_escapes_its_directory(tmp_path):
    out = returned_dir(tmp_path, split={"target-m": 3})
    (out / "target-m.tar.part1").unlink()
    with pytest.raises(SystemExit, match="one is missing"):
        adopt.stage_unpack(options(tmp_path), {})
    (out / "target-m.tar.part0").unlink()
    (out / "target-m.tar.part2").unlink()
    evil = tmp_path / "evil.txt"
    evil.write_text("x")
    with tarfile.open(out / "target-m.tar", "w") as t:
        t.add(model_dir(tmp_path, "m2"), arcname="target-m")
        t.add(evil, arcname="target-m/../../escaped.txt")
    with pytest.raises(SystemExit, match="not a file under target-m"):
        adopt.stage_unpack(options(tmp_path), {})
    assert not (tmp_path / "escaped.txt").exists()


def test_unpack_refuses_models_with_different_tokenizers(tmp_path):
    out = returned_dir(tmp_path)
    d = model_dir(tmp_path, "other")
    tok = json.loads((d / "tokenizer.json").read_text())
    tok["added_tokens"][0]["content"] = "<|changed|>"
    (d / "tokenizer.json").write_text(json.dumps(tok))
    with tarfile.open(out / "target-s.tar", "w") as t:
        t.add(d, arcname="target-s")
    with pytest.raises(SystemExit, match="do not share one tokenizer"):
        adopt.stage_unpack(options(tmp_path), {})


def row(name, e2, e3, p50, p95, params=1):
    return {"name": name, "e2_e3_em": (e2 + e3) / 2, "parameters": params,
            "within_budget": adopt.within_budget({"latency_p50_ms": p50, "latency_p95_ms": p95}, options(Path(".")))}


def test_choose_the_best_target_within_the_latency_budget_that_beats_the_shipped_one():
    shipped = row("shipped", 20, 18, 2, 35)
    fast_good = row("target-s", 22, 19, 3, 40, params=3)
    slow_best = row("target-l", 30, 28, 12, 90, params=15)
    assert adopt.choose([shipped, fast_good, slow_best]) == "target-s"  # the best one is over budget
    assert adopt.choose([shipped, row("target-m", 24, 21, 4, 49, 6), fast_good]) == "target-m"
    assert adopt.choose([shipped, row("a", 24, 21, 4, 49, 6), row("b", 24, 21, 4, 45, 3)]) == "b"  # tie: smaller
    assert adopt.choose([shipped, row("target-s", 19, 18, 3, 40)]) is None  # not better than what ships
    assert adopt.choose([shipped, slow_best]) is None


def test_within_budget_needs_both_percentiles_and_a_clean_replay():
    opts = options(Path("."))
    assert adopt.within_budget({"latency_p50_ms": 10, "latency_p95_ms": 50}, opts)
    assert not adopt.within_budget({"latency_p50_ms": 10.1, "latency_p95_ms": 20}, opts)
    assert not adopt.within_budget({"latency_p50_ms": 1, "latency_p95_ms": 50.5}, opts)
    assert not adopt.within_budget({"latency_p50_ms": 1, "latency_p95_ms": 5, "errors": 2}, opts)
    assert not adopt.within_budget({"latency_p50_ms": 1, "latency_p95_ms": 5, "texts_ok": False}, opts)
    assert not adopt.within_budget(None, opts)


def test_fit_follows_the_shipped_recipe_and_thresholds():
    notes = json.loads((ROOT / "completer" / "models" / "embedded" / "completer.json").read_text())
    argv = adopt.fit_argv(Path("m"), notes, None)
    recipe = notes["reranker_fit"]
    assert argv[argv.index("--cases") + 1] == str(recipe["cases_per_corpus"])
    corpora = argv[argv.index("--corpus") + 1:argv.index("--split")]
    assert corpora == recipe["corpora"]
    languages = argv[argv.index("--languages") + 1:argv.index("--threshold")]
    assert languages == notes["languages"]
    # every threshold the shipped gate has comes back out of the fit: the common one, then the others
    thresholds = dict(notes["gate"]["thresholds"])
    given = {"mid_line": float(argv[argv.index("--threshold") + 1])}
    if "--thresholds" in argv:
        given.update({k: float(v) for k, v in (x.split("=") for x in argv[argv.index("--thresholds") + 1:])})
    assert {k: given.get(k, given["mid_line"]) for k in thresholds} == thresholds
    assert adopt.fit_argv(Path("m"), notes, 5)[argv.index("--cases") + 1] == "5"


def test_pick_writes_the_table_and_install_puts_the_pick_in_place(tmp_path, monkeypatch):
    returned_dir(tmp_path)
    opts = options(tmp_path)
    state = {"unpack": adopt.stage_unpack(opts, {})}
    for name in state["unpack"]["targets"]:
        (opts.run / "models" / name / "completer.json").write_text(json.dumps(
            {"languages": ["python"], "draft": {"model": "../draft", "acceptance": 0.6}}))
    def arm(em):
        return {"e2": {"all": {"em": em, "es": 50.0}, "indent": {"em": em / 2}},
                "e3": {"all": {"em": em - 1, "es": 45.0}}, "e4-go": {"all": {"em": 20.0, "es": 40.0}}}

    quality = {"embedded + copies, reranked": arm(20.0), "target-s + copies, reranked": arm(23.0),
               "target-m + copies, reranked": arm(26.0), "target-s (model only)": arm(10.0)}
    (opts.run / "quality.json").write_text(json.dumps(quality))
    state.update(fit={n: {"cases": 3} for n in state["unpack"]["targets"]},
                 pair={n: {"model": "../draft", "acceptance": 0.6} for n in state["unpack"]["targets"]},
                 quality={"json": str(opts.run / "quality.json"), "measured": ["target-s"]},
                 replay={"shipped": {"latency_p50_ms": 2.0, "latency_p95_ms": 33.0, "accepted_share": 0.42,
                                     "acceptance_rate": 0.31},
                         "target-s": {"latency_p50_ms": 3.0, "latency_p95_ms": 44.0, "accepted_share": 0.45,
                                      "acceptance_rate": 0.33},
                         "target-m": {"latency_p50_ms": 4.0, "latency_p95_ms": 61.0}})
    picked = adopt.stage_pick(opts, state)
    assert picked["pick"] == "target-s"  # target-m is better but over the p95 budget
    table = (opts.run / "table.md").read_text()
    assert "| **target-s** |" in table and "23.0 / 50.0" in table and "3.0 / 44.0" in table
    assert "Picked: target-s" in table
    state["pick"] = picked

    shipped = tmp_path / "shipped"
    for name in ("embedded", "embedded-draft"):
        shutil.copytree(FIXTURE_MODEL, shipped / name)
    (shipped / "embedded" / "old-only.json").write_text("{}")
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "pack.json").write_text(json.dumps({"train_tokens_total": 9, "corpus_sources": [
        {"name": "attrs", "kind": "pypi", "version": "23.2.0", "split": "e3", "license": "MIT", "license_how": "x"}]}))
    ran = []
    monkeypatch.setattr(adopt, "SHIPPED", shipped)
    monkeypatch.setattr(adopt, "run_logged", lambda run, name, argv: ran.append(argv) or "")
    with pytest.raises(SystemExit, match="pack.json not found"):  # refused before the package is touched
        adopt.install(options(tmp_path, pack=tmp_path / "no-pack"), state, None)
    assert (shipped / "embedded" / "old-only.json").exists() and not (opts.run / "before").exists()
    adopt.install(options(tmp_path, pack=pack), state, None)
    assert (shipped / "embedded" / "train_log.json").read_text() == json.dumps({"name": "target-s"})
    assert (shipped / "embedded-draft" / "train_log.json").read_text() == json.dumps({"name": "draft"})
    assert not (shipped / "embedded" / "old-only.json").exists()  # nothing of the old target lingers
    assert json.loads((shipped / "embedded" / "completer.json").read_text())["draft"] == \
        {"model": "embedded-draft", "acceptance": 0.6}
    data = json.loads((shipped / "embedded" / "training_data.json").read_text())
    assert data["sources"] == [{"name": "attrs", "kind": "pypi", "version": "23.2.0", "split": "e3",
                                "license": "MIT"}]
    assert (opts.run / "before" / "embedded" / "old-only.json").exists()  # the shipped ones kept
    assert ran and ran[0][ran[0].index("seen") + 1:][:2] == ["--out", "bench/heldout_seen.json"]
    with pytest.raises(SystemExit, match="not one of the run's targets"):
        adopt.install(options(tmp_path, pack=pack), state, "target-x")


def test_fit_records_that_the_thresholds_are_the_shipped_gates(tmp_path, monkeypatch):
    returned_dir(tmp_path)
    opts = options(tmp_path, targets=["target-m"])
    state = {"unpack": adopt.stage_unpack(opts, {})}
    ran = []

    def fit_reranker(run, name, argv):  # what fit_reranker leaves behind: the model's completer.json
        ran.append(name)
        model = Path(argv[argv.index("--model") + 1])
        (model / "completer.json").write_text(json.dumps({"reranker_fit": {"cases_per_corpus": 1000}}))
        return ""

    monkeypatch.setattr(adopt, "run_logged", fit_reranker)
    done = adopt.stage_fit(opts, state)
    assert ran == ["fit-target-m"] and set(done) == {"target-m"}  # --targets: the others are left alone
    notes = json.loads((opts.run / "models" / "target-m" / "completer.json").read_text())
    assert notes["thresholds_chosen"].startswith("copied from the target this one may replace")
    assert adopt.stage_fit(opts, {**state, "fit": done}) == done and ran == ["fit-target-m"]  # done before
