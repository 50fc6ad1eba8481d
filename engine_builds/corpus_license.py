"""License checks for the corpus builder: which licenses we accept, how a declared license string or
expression is read, and how a license text (a LICENSE/COPYING file, a Debian copyright file) is
recognised.

We accept only MIT, BSD-2-Clause, BSD-3-Clause, Apache-2.0, PSF-2.0, ISC, Unlicense and 0BSD, and a
dual license when one of its options is among them. Everything else (GPL family, MPL, EPL, public
domain dedications without a license, zlib, BSL, unknown) is refused: the models are shipped under
Apache-2.0 with attribution, so every training file must carry a license that allows that plainly.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

ALLOWED = frozenset({"MIT", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0", "PSF-2.0", "ISC", "Unlicense", "0BSD"})

# Lower-cased spellings seen in PyPI metadata, package.json and Debian DEP-5 files -> SPDX id.
_ALIASES = {
    "mit": "MIT", "mit license": "MIT", "expat": "MIT", "mit/x11": "MIT", "x11": "MIT", "the mit license": "MIT",
    "mit-0": "MIT",
    "bsd-2-clause": "BSD-2-Clause", "bsd-2": "BSD-2-Clause", "bsd 2-clause": "BSD-2-Clause",
    "simplified bsd": "BSD-2-Clause", "freebsd": "BSD-2-Clause", "bsd-2-clause-freebsd": "BSD-2-Clause",
    "bsd-3-clause": "BSD-3-Clause", "bsd-3": "BSD-3-Clause", "bsd 3-clause": "BSD-3-Clause", "new bsd": "BSD-3-Clause",
    "modified bsd": "BSD-3-Clause", "bsd-3-clause-clear": "BSD-3-Clause", "3-clause bsd": "BSD-3-Clause",
    "new bsd license": "BSD-3-Clause", "bsd 3-clause license": "BSD-3-Clause", "revised bsd": "BSD-3-Clause",
    "apache-2.0": "Apache-2.0", "apache 2.0": "Apache-2.0", "apache-2": "Apache-2.0", "apache2": "Apache-2.0",
    "apache license 2.0": "Apache-2.0", "apache license, version 2.0": "Apache-2.0", "asl 2.0": "Apache-2.0",
    "apache software license": "Apache-2.0", "apache license version 2.0": "Apache-2.0", "apache 2": "Apache-2.0",
    "apache-2.0 with llvm-exception": None, "apache": None,
    "psf-2.0": "PSF-2.0", "psf": "PSF-2.0", "python software foundation license": "PSF-2.0", "python-2.0": "PSF-2.0",
    "isc": "ISC", "isc license": "ISC", "iscl": "ISC", "isc license (iscl)": "ISC",
    "unlicense": "Unlicense", "the unlicense": "Unlicense", "the unlicense (unlicense)": "Unlicense",
    "0bsd": "0BSD", "bsd-zero-clause": "0BSD",
}
# Substrings that name a license we refuse; anything unrecognised is refused too.
_REFUSED_WORDS = ("gpl", "mpl", "mozilla", "epl", "eclipse", "cddl", "public-domain", "public domain", "zlib",
                  "bsl", "boost", "cc-by", "cc0", "wtfpl", "artistic", "ofl", "unknown", "proprietary", "commercial")


def normalize(name: str) -> str | None:
    """SPDX id of one license name if it is one we accept, else None."""
    key = name.strip().strip("()").strip().lower()
    key = re.sub(r"\s+", " ", key)
    if key in _ALIASES:
        return _ALIASES[key]
    for spdx in ALLOWED:  # exact SPDX ids, any case
        if key == spdx.lower():
            return spdx
    # Maven/PyPI long forms: "The Apache Software License, Version 2.0", "Apache License - Version 2.0"
    if re.fullmatch(r"(the )?apache( software)? license[ ,-]*(version )?2(\.0)?", key):
        return "Apache-2.0"
    if re.fullmatch(r"(the )?mit( license)?( \(mit\))?", key):
        return "MIT"
    return None


def alternatives(expr: str) -> list[list[str]]:
    """An SPDX-like expression as OR-alternatives of AND-terms: 'MIT OR Apache-2.0' -> [['MIT'], ['Apache-2.0']].
    Also reads Debian's 'Expat or Apache-2.0' and Cargo's 'MIT/Apache-2.0'. Parentheses are
    flattened, which is exact for the flat expressions packages use and conservative otherwise (an AND
    anywhere in an alternative keeps every term in it)."""
    # Trove classifiers repeat the name in parentheses: "ISC License (ISCL)", "The Unlicense (Unlicense)".
    text = re.sub(r"(?<=[a-z])\s*\((iscl|unlicense|mit|bsd|psf|0bsd)\)", "", expr, flags=re.IGNORECASE)
    text = text.replace("(", " ").replace(")", " ")
    ors = re.split(r"\s+or\s+|\s*/\s*|\s*\|\s*", text, flags=re.IGNORECASE)
    out = []
    for alt in ors:
        terms = [t.strip() for t in re.split(r"\s+and\s+|\s*&\s*", alt, flags=re.IGNORECASE) if t.strip()]
        if terms:
            out.append(terms)
    return out


def accepted(expr: str) -> str | None:
    """The first option of a license expression whose terms are all accepted, as SPDX ('MIT AND ISC'),
    or None when no option is (GPL-only, MPL, unknown...)."""
    if not expr or not expr.strip():
        return None
    for alt in alternatives(expr):
        ids = [normalize(t) for t in alt]
        if all(ids):
            return " AND ".join(dict.fromkeys(ids))
    return None


def refused_words(expr: str) -> list[str]:
    low = expr.lower()
    return [w for w in _REFUSED_WORDS if w in low]


# ---- recognising license texts --------------------------------------------------------------------

def _squash(text: str) -> str:
    """Blanks and comment markers (C, Python, Lua's --) squashed to one space: a license phrase broken
    across comment lines reads whole."""
    return re.sub(r"(?:[\s*#/;>]|--)+", " ", text).lower()


# (SPDX id, every phrase must occur) checked on whitespace-squashed lower-case text.
_TEXT_MARKERS: list[tuple[str, tuple[str, ...]]] = [
    ("Apache-2.0", ("apache license", "version 2.0")),
    ("Apache-2.0", ("licensed under the apache license, version 2.0",)),
    ("Apache-2.0", ("common-licenses/apache-2.0",)),
    ("MIT", ("permission is hereby granted, free of charge", "the above copyright notice and this permission notice")),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms", "neither the name")),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms", "names of its contributors may")),
    ("BSD-2-Clause", ("redistribution and use in source and binary forms",)),
    ("PSF-2.0", ("python software foundation license version 2",)),
    ("PSF-2.0", ("psf license agreement",)),
    ("Unlicense", ("this is free and unencumbered software released into the public domain",)),
    ("ISC", (("permission to use, copy, modify, and/or distribute this software for any purpose with or without fee "
             "is hereby granted, provided that the above copyright notice"),)),
    ("ISC", (("permission to use, copy, modify, and distribute this software for any purpose with or without fee "
             "is hereby granted, provided that the above copyright notice"),)),
    ("0BSD", (("permission to use, copy, modify, and/or distribute this software for any purpose with or without fee "
              "is hereby granted. the software is provided"),)),
]
_REFUSED_TEXT = [
    ("GPL", "gnu general public license"),
    ("LGPL", "gnu lesser general public license"),
    ("LGPL", "gnu library general public license"),
    ("AGPL", "gnu affero general public license"),
    ("MPL", "mozilla public license"),
    ("EPL", "eclipse public license"),
    ("BSL-1.0", "boost software license"),
    ("CDDL", "common development and distribution license"),
]


def classify_text(text: str) -> tuple[set[str], set[str]]:
    """(accepted SPDX ids, refused license names) whose texts appear in a license file."""
    squashed = _squash(text)
    found, refused = set(), set()
    for spdx, phrases in _TEXT_MARKERS:
        if spdx == "BSD-2-Clause" and "BSD-3-Clause" in found:
            continue  # the 3-clause text contains the 2-clause one
        if all(p in squashed for p in phrases):
            found.add(spdx)
    for name, phrase in _REFUSED_TEXT:
        if phrase in squashed:
            refused.add(name)
    return found, refused


LICENSE_FILE_RE = re.compile(r"(^|/)(licen[cs]e|copying|copyright|notice|unlicense)([-_.][^/]*)?$", re.IGNORECASE)


def is_license_file(rel_path: str) -> bool:
    return bool(LICENSE_FILE_RE.search(rel_path))


# ---- per-file license headers ---------------------------------------------------------------------

_SPDX_TAG = re.compile(r"SPDX-License-Identifier:\s*([^\n*]+)")


def header_verdict(text: str) -> str | None:
    """Why a single file must be dropped because of its own license header (a GPL file inside an MIT
    project), or None. Only the first 3,000 characters are read: headers live there."""
    head = text[:3000]
    m = _SPDX_TAG.search(head)
    if m:
        expr = m.group(1).strip().rstrip("*/ -").strip()
        if accepted(expr) is None:
            return f"license-header:{expr[:40]}"
        return None
    _, refused = classify_text(head)
    refused |= {m.group(1).upper() for m in _REFUSED_STATEMENT.finditer(head)}
    if refused:
        # "...under the Eclipse Public License v1.0 and Apache License v2.0 ... You may elect to
        # redistribute this code under either of these licenses": a dual license with an accepted option.
        # The GNU notices' own "either version 2 ... or (at your option) any later version" is a choice
        # between GPL versions, not of a permissive license: it does not count.
        if _ACCEPTED_NAME.search(head) and _CHOICE.search(_GPL_VERSION_CHOICE.sub(" ", head)):
            return None
        return "license-header:" + "+".join(sorted(refused))
    return None


_ACCEPTED_NAME = re.compile(r"apache license|mit license|bsd license|\bmit\b", re.IGNORECASE)
_CHOICE = re.compile(r"\beither\b|\belect\b|dual[- ]licen|at your option|\bor the (apache|mit)", re.IGNORECASE)
_GPL_VERSION_CHOICE = re.compile(r"either\W+version\W+[\d.]+[\s\S]{0,80}?at\W+your\W+option\W+any\W+later\W+version",
                                 re.IGNORECASE)
# A copyleft license named by its short name: "this file is licensed under the LGPL", "a port of X,
# licensed as (LGPL)".
_REFUSED_STATEMENT = re.compile(r"licen[cs]ed\W+(?:under|as)\W+(?:the\W+)?(?:terms\W+of\W+the\W+)?(?:gnu\W+)?"
                                r"(a?gpl|lgpl|mpl|epl|cddl)\b", re.IGNORECASE)


# ---- Debian machine-readable copyright (DEP-5) ----------------------------------------------------

@dataclass
class Dep5:
    """Files paragraphs in order; the last matching paragraph decides a file's license (DEP-5 rule)."""
    paragraphs: list[tuple[list[str], str]] = field(default_factory=list)  # (Files globs, License expression)
    texts: dict[str, str] = field(default_factory=dict)  # license short name -> its full text, where given

    def license_of(self, rel_path: str) -> str | None:
        verdict = None
        for globs, lic in self.paragraphs:
            if any(_dep5_match(g, rel_path) for g in globs):
                verdict = lic
        return verdict

    @property
    def main(self) -> str | None:
        return self.license_of("\x00main")  # only the '*' paragraph matches this name


def _dep5_match(glob: str, path: str) -> bool:
    if glob == "*":
        return True
    if path == "\x00main":
        return False
    # DEP-5: '*' matches any characters including '/', '?' one character; patterns are relative to the root.
    return fnmatch.fnmatchcase(path, glob) or fnmatch.fnmatchcase(path, glob.rstrip("/") + "/*")


def parse_dep5(text: str) -> Dep5 | None:
    """Parse a Debian copyright file; None when it is not in the machine-readable (DEP-5) format."""
    if "Format:" not in text[:500] or "copyright-format" not in text[:500]:
        return None
    dep5 = Dep5()
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, val = line.partition(":")
                key = key.strip().lower()
                fields[key] = val.strip()
        if "license" in fields:
            name, _, body = fields["license"].partition("\n")
            if body.strip():
                dep5.texts[name.strip()] = body
            if "files" in fields:
                dep5.paragraphs.append((fields["files"].split(), name.strip()))
    return dep5 if dep5.paragraphs else None


def dep5_accepted(dep5: Dep5, name: str) -> str | None:
    """Accepted SPDX for a DEP-5 license short name. Packagers also use their own names ('Go',
    'BSD-C3', 'BSD-3-Clause~Google', 'MIT-1'); such a name is accepted when the license text the file
    gives for it is recognised as exactly one accepted license and no refused one."""
    got = accepted(name)
    if got or refused_words(name):
        return got
    text = dep5.texts.get(name)
    if not text:
        return None
    found, refused = classify_text(text)
    return next(iter(found)) if len(found) == 1 and not refused else None


def dep5_file_license(dep5: Dep5, rel_path: str) -> str | None:
    """Accepted SPDX of one source file under a DEP-5 file, or None if its paragraph's license is refused."""
    name = dep5.license_of(rel_path)
    return dep5_accepted(dep5, name) if name else None
