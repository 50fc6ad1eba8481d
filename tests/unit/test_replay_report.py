"""The replay's summary per language (completer/replay/report.py), on session results made by hand."""

from completer.replay.records import SessionResult
from completer.replay.report import by_language_lines, summarize


def result(language: str, accepted: int, final: int, accepts: int, shown: int) -> SessionResult:
    return SessionResult("s", "synthetic", accepted_chars=accepted, final_chars=final, accepts=accepts, shown=shown,
                         language=language)


def test_each_languages_share_and_acceptance_are_its_own_sessions_sums():
    summary = summarize([result("c", 10, 100, 1, 4), result("go", 30, 60, 3, 3), result("c", 20, 100, 1, 6)])
    assert summary["by_language"] == {
        "c": {"sessions": 2, "shown": 10, "accepted_share": 0.15, "acceptance_rate": 0.2},
        "go": {"sessions": 1, "shown": 3, "accepted_share": 0.5, "acceptance_rate": 1.0}}
    assert summary["accepted_share"] == 0.231 and summary["acceptance_rate"] == 0.385  # all sessions together
    line = by_language_lines([{"name": "base", "summary": summary}])[-1]
    assert line == "base, % of text from suggestions / % of shown accepted: c 15.0/20.0, go 50.0/100.0"


def test_one_language_gets_no_breakdown():
    assert "by_language" not in summarize([result("python", 1, 10, 1, 1), result("python", 2, 10, 0, 2)])
    assert by_language_lines([{"name": "base", "summary": {}}]) == []
