"""Git's ignore rules (completer/gitignore.py): the patterns of gitignore(5) on strings, then the whole
decision checked against git itself (`git check-ignore`) on a real repository, with hand-picked and
seeded random patterns, nested .gitignore files, info/exclude and the user's global excludes file."""

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from completer import gitignore
from completer.gitignore import IgnoreRules, parse_rule


def matches(pattern: str, path: str, is_dir: bool = False) -> bool:
    rule = parse_rule(pattern)
    return rule is not None and rule.matches(path, is_dir)


@pytest.mark.parametrize("pattern, path, is_dir, expected", [
    ("*.html", "a/b/index.html", False, True),  # no slash: any level, by the last component
    ("/*.c", "cat-file.c", False, True),  # a leading slash anchors
    ("/*.c", "mozilla-sha1/sha1.c", False, False),
    ("doc/frotz", "doc/frotz", True, True),  # a slash in the middle anchors too
    ("doc/frotz", "a/doc/frotz", True, False),
    ("frotz/", "a/frotz", True, True),  # a trailing slash: directories only
    ("frotz/", "a/frotz", False, False),
    ("docs/*.md", "docs/a.md", False, True),
    ("docs/*.md", "docs/sub/b.md", False, False),  # "*" never crosses a slash
    ("**/foo", "foo", False, True),  # leading "**/": any directory, none included
    ("**/foo", "x/y/foo", False, True),
    ("abc/**", "abc/x/y", False, True),  # trailing "/**": everything inside
    ("abc/**", "abc", True, False),
    ("a/**/b", "a/b", False, True),  # "/**/": zero or more directories
    ("a/**/b", "a/x/y/b", False, True),
    ("a**b", "aXYb", False, True),  # not between slashes: an ordinary "*"
    ("a**b", "a/b", False, False),
    ("foo[0-9].py", "foo1.py", False, True),
    ("foo[0-9].py", "foo12.py", False, False),
    ("[!q]z", "az", False, True),
    ("[!q]z", "qz", False, False),
    ("[]]y", "]y", False, True),
    ("[[:digit:]]x", "1x", False, True),
    ("e[[:bogus:]]f", "ebf", False, False),  # an unknown class fails the pattern, as in git
    ("a[/]b", "a/b", False, False),  # brackets never match a slash
    ("m?n", "m/n", False, False),
    ("\\#hash", "#hash", False, True),
    ("\\!bang", "!bang", False, True),
    ("sp\\ ", "sp ", False, True),  # an escaped trailing space stays
    ("trail   ", "trail", False, True),  # unescaped ones go
    ("tab\t", "tab", False, False),  # tabs stay (git trims spaces only)
    ("crlf.txt\r", "crlf.txt", False, True),
])
def test_patterns_follow_gitignore5(pattern, path, is_dir, expected):
    assert matches(pattern, path, is_dir) is expected


@pytest.mark.parametrize("pattern, path, expected", [
    ("*.LOG", "app.log", True),  # letters compared lowered
    ("Build/", "build", True),
    ("*.log", "APP.LOG", True),
    ("[A-C]x", "bx", True),  # a range takes the lowercase of its capitals
    ("[[:upper:]]x", "bx", True),
    ("[A]x", "ax", False),  # a lone character in brackets stays as written: git's quirk, kept
    ("[a]x", "Ax", True),
    ("\\Ax", "ax", False),  # so does an escaped one
])
def test_patterns_under_core_ignore_case(pattern, path, expected):
    rule = parse_rule(pattern, ignore_case=True)
    assert rule.matches(path, is_dir=True) is expected


def test_many_wildcards_against_long_names_take_no_time():
    """A regex backtracks for seconds on these (the first) or for ever (the others); the table takes
    milliseconds. A repository's .gitignore must not hang the server. No timing is asserted here:
    a hang would stop the test."""
    long_name = "a" * 2000
    for pattern in ("*a*a*b", "*a*a*a*a*a*a*a*a*b", "**/a/**/a/**/a/**/b"):
        rule = parse_rule(pattern)
        assert rule.regex is None and not rule.matches(long_name if "/" not in pattern else "a/" * 300, False)
    assert parse_rule("*a*a*b").matches("xaya" * 500 + "b", False)
    assert parse_rule("**/a/**/a/**/b").matches("x/a/y/a/z/b", False)
    assert parse_rule("x" + " " * 1_000_000).matches("x", False)  # trailing spaces were trimmed one at a time
    assert parse_rule("x\\" + " " * 1_000_000).matches("x ", False)


@pytest.mark.parametrize("line", ["", "   ", "# a comment", "/", "!", "[unclosed"])
def test_lines_that_match_nothing(line):
    rule = parse_rule(line)
    assert rule is None or not any(rule.matches(p, d) for p in ("a", "[unclosed", "x/y") for d in (False, True))


def test_negation_inside_an_ignored_directory_does_not_re_include(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "keep.txt").write_text("x")
    (tmp_path / "logs").mkdir()
    (tmp_path / ".gitignore").write_text("build/\n!build/keep.txt\nlogs/*\n!logs/keep.txt\n")
    rules = IgnoreRules(tmp_path)
    assert rules.ignored(Path("build/keep.txt"))  # the directory is ignored: nothing inside comes back
    assert not rules.ignored(Path("logs/keep.txt"))  # only its contents were: this one comes back
    assert rules.ignored(Path("logs/other.txt"))


def test_a_workspace_inside_a_repository_gets_the_rules_above_it(tmp_path):
    (tmp_path / ".git" / "info").mkdir(parents=True)
    (tmp_path / ".git" / "info" / "exclude").write_text("*.local\n")
    (tmp_path / ".gitignore").write_text("secrets/\n")
    workspace = tmp_path / "services" / "api"
    (workspace / "secrets").mkdir(parents=True)
    rules = IgnoreRules(workspace)
    assert rules.top == tmp_path.resolve()
    assert rules.ignored(Path("secrets/prod.yaml"))
    assert rules.ignored(Path("settings.local"))
    assert not rules.ignored(Path("main.py"))


# ---------------------------------------------------------------- against git itself

NAMES = ("a", "b", "ab", "x.c", "x.h", "build", "#n", "!e")
DIR_NAMES = ("a", "b", "build", "sub")


def tree(root: Path, rng: random.Random) -> list[str]:
    """A small tree of directories, then files (a name already taken by a directory stays one);
    returns every path in it, relative to root."""
    directories = [Path(top, mid) for top in DIR_NAMES for mid in ("", *rng.sample(DIR_NAMES, 2))]
    for directory in directories:
        (root / directory).mkdir(parents=True, exist_ok=True)
    paths = [d.as_posix() for d in directories]
    for directory in [Path(), *directories]:
        for name in (NAMES if directory == Path() else rng.sample(NAMES, 4)):
            if not (root / directory / name).exists():
                (root / directory / name).write_text("x")
            paths.append((directory / name).as_posix())
    return sorted(set(paths))


def random_pattern(rng: random.Random) -> str:
    segments = [rng.choice(["a", "b", "ab", "*", "**", "?", "a*", "*.c", "x.?", "[ab]", "[!a]", "build",
                            "sub", "[a-b]*", "\\#n", "\\!e", "*b"]) for _ in range(rng.choice([1, 1, 2, 3]))]
    pattern = "/".join(segments)
    if rng.random() < 0.2:
        pattern = "/" + pattern
    if rng.random() < 0.25:
        pattern += "/"
    if rng.random() < 0.25:
        pattern = "!" + pattern
    return pattern


def git_ignored(root: Path, paths: list[str], env: dict) -> set[str]:
    done = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], check=False, cwd=root, env=env,
                          input="\n".join(paths) + "\n", capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, 1), done.stderr
    return set(done.stdout.splitlines())


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to compare with")
@pytest.mark.parametrize("seed, ignore_case", [*((seed, False) for seed in range(12)), (12, True), (13, True),
                                               (14, True)])
@pytest.mark.parametrize("matcher", ["regex", "table"])
def test_the_same_paths_as_git_check_ignore(tmp_path, monkeypatch, seed, ignore_case, matcher):
    """ignore_case: core.ignoreCase set (macOS and Windows repositories have it), the patterns in
    mixed case. matcher "table": every pattern matched by the table, not only those with many
    wildcards."""
    if matcher == "table":
        monkeypatch.setattr(gitignore, "REGEX_MAX_WILDCARDS", -1)
    rng = random.Random(seed)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[core]\n\texcludesFile = ~/global-ignore\n")
    (home / "global-ignore").write_text(random_pattern(rng) + "\n")
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "PATH": "/usr/bin:/bin",
           "GIT_CONFIG_NOSYSTEM": "1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, env=env, check=True)
    if ignore_case:
        subprocess.run(["git", "config", "core.ignoreCase", "true"], cwd=root, env=env, check=True)

    def patterns(n):
        drawn = (random_pattern(rng) for _ in range(n))
        return "\n".join(p.upper() if ignore_case and rng.random() < 0.5 else p for p in drawn) + "\n"

    paths = tree(root, rng)
    (root / ".git" / "info" / "exclude").write_text(patterns(2))
    (root / ".gitignore").write_text(patterns(6))
    for directory in rng.sample(DIR_NAMES, 2):
        (root / directory / ".gitignore").write_text(patterns(3))
    expected = git_ignored(root, paths, env)
    rules = IgnoreRules(root)
    assert rules.ignore_case is ignore_case
    ours = {p for p in paths if rules.ignored(Path(p))}
    ignore_files = {f: (root / f).read_text() for f in (".gitignore", ".git/info/exclude")}
    assert ours == expected, (ignore_files, sorted(ours ^ expected))


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to compare with")
def test_the_hand_picked_rules_as_git_check_ignore(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".gitignore").write_text("**/secrets.yaml\na/**/b.txt\nbuild/\n!build/keep.txt\ndocs/*.md\n"
                                     "\\#hash\ntrailing.txt   \nfoo[0-9].py\n/rooted/\n")
    files = ["secrets.yaml", "x/secrets.yaml", "a/b.txt", "a/c/d/b.txt", "build/keep.txt", "build/y.py",
             "docs/a.md", "docs/sub/b.md", "#hash", "trailing.txt", "foo1.py", "foo12.py", "rooted/z.py",
             "sub/rooted/z.py"]
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text("x")
    expected = git_ignored(root, files, None)
    rules = IgnoreRules(root)
    assert {f for f in files if rules.ignored(Path(f))} == expected
    assert len(expected) == 11  # the example is not vacuous


def test_benches_can_leave_the_users_git_settings_out(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg" / "git").mkdir(parents=True)
    (tmp_path / "xdg" / "git" / "ignore").write_text("*.draft\n")  # the default global excludes file
    root = tmp_path / "repo"
    root.mkdir()
    assert IgnoreRules(root).ignored(Path("notes.draft"))
    assert not IgnoreRules(root, user_config=False).ignored(Path("notes.draft"))
