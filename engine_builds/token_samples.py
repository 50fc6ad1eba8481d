"""Training samples in exactly the serving layout (Contract 1), cut from the cached token shards.

The same samples as fim_samples.SampleBuilder (the same mix, budgets, loss classes and packing; see
its docstring for the layout), but cut from corpus_shards' memory-mapped token ids instead of
re-tokenising text, so a trainer is never data bound: one core cuts millions of tokens per second.

Why slicing ids equals tokenising the pieces separately (what layout_ids does). The tokenizer's
pre-tokenizer isolates newline runs (`(?:\\r?\\n)+`) and blank runs, and BPE never merges across a
pre-token. A line start that follows a *complete* newline run (the token before it ends with "\\n",
the token after it does not start a newline) is therefore a boundary of every tokenisation of the
text around it, and so is a line's end (just before its newline run):
encode(text[:p]) + encode(text[p:]) == encode(text) for such p. Windows above the cursor line (whole
lines), suffix windows that start at a line end, multi-line spans and plain chunks are all cut there,
so they are slices of the document's ids, token for token what `layout_ids` produces from the same
text. (Blank lines inside a newline run are not line starts here; cursors never sit on them.)

Mid-line cursors. The FIM middle is the cursor line's left part and the span tokenised together
(encode(left + span), as in the text path): the serving side heals the cursor (backs up its last
token and constrains generation to re-type it), so the model continues from a boundary of exactly
that joint tokenisation. The cursor column is therefore invisible in a sample; it only decides where
a span that ends *before the rest of the line* ends. Those samples (20% of FIM samples) decode the
cursor line from its ids (exact: it starts and ends on pre-token boundaries) and re-encode the two
short pieces exactly, middle = encode(body[:end]) and suffix head = encode(body[end:]); everything
else stays a slice. So no sample is approximated, at the cost of two short encodes on those samples.

Not done here: syntax-aware windows (SampleMix.syntax) need each document's tree; this path cuts line
windows only. Context chunks are whole lines of a sibling file of the same package (any language).
Documents whose text contained a literal sentinel string keep whatever ids the shard has for it.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from completer.completion.fim import FimTemplate
from completer.tokenizer import Tokenizer
from engine_builds.corpus_shards import Shard
from engine_builds.fim_samples import CONTEXT, NONE, TARGET, SampleMix, pick_cursor

LANGUAGES = ("python", "javascript", "typescript", "go", "rust", "java", "c", "cpp", "lua")


def shard_languages(tokens_dir: Path, split: str) -> list[str]:
    return sorted(p.name[len(split) + 1:-len(".u16")] for p in Path(tokens_dir).glob(f"{split}-*.u16"))


class TokenCorpus:
    """The documents of one split (all or some languages) as one weighted, package-indexed list."""

    def __init__(self, tokens_dir: Path, split: str, languages: list[str] | None = None, max_docs: int = 0):
        self.split = split
        self.languages = [lang for lang in shard_languages(tokens_dir, split) if not languages or lang in languages]
        if not self.languages:
            raise FileNotFoundError(f"no {split}-*.u16 token shards in {tokens_dir}"
                                    + (f" for {', '.join(languages)}" if languages else ""))
        self.shards = [Shard(Path(tokens_dir), split, lang) for lang in self.languages]
        shard_of, index, lengths, self.paths, self.langs, self.packages = [], [], [], [], [], []
        self.by_package: dict[str, list[int]] = {}
        for s, shard in enumerate(self.shards):
            n = len(shard) if not max_docs else min(len(shard), max_docs)
            sizes = np.diff(shard.offsets[:n + 1].astype(np.int64))
            for i in range(n):
                g = len(shard_of)
                shard_of.append(s)
                index.append(i)
                lengths.append(int(sizes[i]))
                doc = shard.docs[i]
                self.paths.append(doc["path"])
                self.langs.append(self.languages[s])
                package = doc.get("package") or doc.get("project") or ""
                self.packages.append(package)
                self.by_package.setdefault(package, []).append(g)
        self.shard_of = np.asarray(shard_of, dtype=np.int32)
        self.index = np.asarray(index, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.cum = np.cumsum(self.lengths, dtype=np.float64)  # documents drawn by token count
        self.n_tokens = int(self.lengths.sum())
        if self.n_tokens == 0:
            raise ValueError(f"{tokens_dir}: the {split} shards hold no tokens")

    def __len__(self) -> int:
        return len(self.paths)

    def doc(self, g: int) -> np.ndarray:
        return self.shards[self.shard_of[g]].doc(int(self.index[g]))

    def pick(self, rng: random.Random) -> int:
        return min(int(np.searchsorted(self.cum, rng.random() * self.n_tokens, side="right")), len(self.paths) - 1)


class TokenSampleBuilder:
    """fim_samples.SampleBuilder's samples, cut in token space. sample() and row() return numpy arrays
    (ids int32, loss classes uint8)."""

    def __init__(self, tok: Tokenizer, tpl: FimTemplate, corpus: TokenCorpus, mix: SampleMix | None = None):
        self.tok, self.tpl, self.corpus, self.mix = tok, tpl, corpus, mix or SampleMix()
        tb = tok.token_bytes
        self.nl_end = np.array([b.endswith(b"\n") for b in tb], dtype=bool)
        self.nl_start = np.array([b[:1] in (b"\n", b"\r") for b in tb], dtype=bool)
        self.nl_only = np.array([bool(b) and not b.strip(b"\r\n") for b in tb], dtype=bool)
        self.blank = np.array([bool(b) and not b.strip(b" \t") for b in tb], dtype=bool)
        self.special = np.zeros(len(tb), dtype=bool)
        self.special[list(tok.special_ids)] = True
        self.eot = tok.id_of("<|endoftext|>")
        self.pad = tok.id_of("<|fim_pad|>")
        self._paths: dict[tuple[int, bool], np.ndarray] = {}
        self._nl_fix: dict[bytes, np.ndarray] = {}

    # -- helpers ---------------------------------------------------------------------------------

    def line_starts(self, ids: np.ndarray) -> np.ndarray:
        """Token positions where a line starts after a complete newline run, with 0 first and len(ids)
        last: line k is ids[B[k]:B[k+1]] (its body, then its newline run)."""
        n = len(ids)
        if n == 0:
            return np.zeros(1, dtype=np.int64)
        inner = np.flatnonzero(self.nl_end[ids[:-1]] & ~self.nl_start[ids[1:]]) + 1
        return np.concatenate(([0], inner, [n])).astype(np.int64)

    def body_end(self, ids: np.ndarray, start: int, end: int) -> int:
        while end > start and self.nl_only[ids[end - 1]]:
            end -= 1
        return end

    def _enc(self, text: str) -> np.ndarray:
        return np.asarray(self.tok.encode(text), dtype=np.int32)

    def path_ids(self, rng: random.Random, g: int) -> np.ndarray:
        """`path\\n` encoded: the file's name half the time, its path in the project otherwise."""
        short = rng.random() < 0.5
        hit = self._paths.get((g, short))
        if hit is None:
            path = self.corpus.paths[g]
            hit = self._paths[(g, short)] = self._enc((path.rsplit("/", 1)[-1] if short else path) + "\n")
        return hit

    def _newline_fix(self, run: np.ndarray) -> np.ndarray:
        """A chunk's trailing newline run plus the "\\n" layout_ids appends after a chunk, encoded together."""
        key = bytes(run.astype(np.uint16).tobytes())
        hit = self._nl_fix.get(key)
        if hit is None:
            hit = self._nl_fix[key] = self._enc(self.tok.decode(run.tolist()) + "\n")
        return hit

    # -- one sample: a list of (ids, loss class) segments ------------------------------------------

    def plain(self, rng: random.Random, g: int, budget: int, trace: dict | None = None) -> list:
        ids = self.corpus.doc(g)
        starts = self.line_starts(ids)
        start = int(starts[rng.randrange(len(starts) - 1)]) if rng.random() < 0.7 and len(starts) > 1 else 0
        header = self.path_ids(rng, g)
        body = ids[start:start + max(0, budget - len(header) - 2)]
        segs = [(np.array([self.tpl.file_sep_id], dtype=np.int32), NONE), (header, NONE), (body, TARGET)]
        if start + len(body) >= len(ids):
            segs.append((np.array([self.eot], dtype=np.int32), TARGET))
        if trace is not None:
            trace.clear()
            trace.update(kind="plain", doc=g, start=start, end=start + len(body), path=self.tok.decode(header.tolist())[:-1])
        return segs

    def fim(self, rng: random.Random, g: int, budget: int, trace: dict | None = None) -> list | None:
        mix, tpl = self.mix, self.tpl
        ids = self.corpus.doc(g)
        starts = self.line_starts(ids)
        n_lines = len(starts) - 1
        if n_lines < 1:
            return None
        k = rng.randrange(n_lines)
        ls = int(starts[k])
        be = self.body_end(ids, ls, int(starts[k + 1]))
        if not (~self.blank[ids[ls:be]]).any() and rng.random() < 0.8:  # blank cursor lines are rarely interesting
            return None
        suffix_head = np.zeros(0, dtype=np.int32)
        suffix_from = be
        mid_end_char = None  # a span that ends inside the line: its end, in characters of the line's body
        r = rng.random()
        if r < mix.multiline:
            last = min(n_lines - 1, k + rng.randint(1, 7))
            suffix_from = self.body_end(ids, int(starts[last]), int(starts[last + 1]))
            middle = ids[ls:suffix_from]
        elif r < mix.multiline + mix.midline_end:
            body = self.tok.decode(ids[ls:be].tolist())
            col = pick_cursor(rng, body, self.mix)
            if col < len(body):
                end = rng.randint(col + 1, len(body))
                middle, suffix_head = self._enc(body[:end]), self._enc(body[end:])
                mid_end_char = end
            else:
                middle = ids[ls:be]
        else:
            middle = ids[ls:be]
        n_mid = len(middle) + 1
        room = budget - n_mid - 16
        if room < 32:
            return None
        above_budget = int(room * rng.uniform(0.4, 0.85))
        below_budget = room - above_budget
        lo = ls - above_budget
        a = 0 if lo <= 0 else int(starts[np.searchsorted(starts, lo, side="left")])
        above = ids[a:ls]
        exact = True  # False where a window had to be cut inside a line (long lines, tiny budgets)
        cut = suffix_from
        if len(suffix_head) >= below_budget:
            suffix = suffix_head[:below_budget]
            exact = len(suffix_head) == below_budget
        else:
            hi = suffix_from + below_budget - len(suffix_head)
            if hi >= len(ids):
                cut = len(ids)
            else:
                cut = int(starts[np.searchsorted(starts, hi, side="right") - 1])
                if cut <= suffix_from:
                    cut, exact = hi, False  # no whole line fits: cut inside it, as the text path does
            suffix = np.concatenate((suffix_head, ids[suffix_from:cut])) if len(suffix_head) else ids[suffix_from:cut]
        context: list = []
        ctx_trace = None
        siblings = self.corpus.by_package.get(self.corpus.packages[g], ())
        if len(siblings) > 1 and rng.random() < mix.context:
            j = g
            while j == g:
                j = siblings[rng.randrange(len(siblings))]
            context, ctx_trace = self._context_chunk(rng, j, int(room * 0.25))
        path = self.path_ids(rng, g)
        spm = rng.random() < mix.spm
        if spm:  # suffix first, as fim_samples cuts it (no file header, no context)
            head = [(np.array([tpl.suffix_id], dtype=np.int32), NONE), (suffix, CONTEXT),
                    (np.array([tpl.prefix_id], dtype=np.int32), NONE), (above, CONTEXT),
                    (np.array([tpl.middle_id], dtype=np.int32), NONE)]
            context, ctx_trace = [], None
        else:
            head = self._layout(path, above, suffix, context)
            if context and sum(len(x) for x, _ in head) + n_mid > budget:
                context, ctx_trace = [], None
                head = self._layout(path, above, suffix, [])
        if sum(len(x) for x, _ in head) + n_mid > budget:
            return None
        if trace is not None:
            trace.clear()
            trace.update(kind="fim", doc=g, above_start=a, line_start=ls, body_end=be, suffix_from=suffix_from,
                         suffix_cut=cut, mid_end_char=mid_end_char, exact=exact, spm=spm,
                         path=self.tok.decode(path.tolist())[:-1], context=ctx_trace)
        return [*head, (np.asarray(middle, dtype=np.int32), TARGET), (np.array([self.eot], dtype=np.int32), TARGET)]

    def _layout(self, path: np.ndarray, above: np.ndarray, suffix: np.ndarray, context: list) -> list:
        """layout_ids' order and sentinels, with the windows and context chunks as given."""
        tpl = self.tpl

        def one(i):
            return np.array([i], dtype=np.int32), NONE

        head = [] if tpl.bos_id is None else [one(tpl.bos_id)]
        if tpl.file_sep_id is not None:
            head += [*context, one(tpl.file_sep_id), (path, CONTEXT)]
        if tpl.suffix_first:
            return head + [one(tpl.suffix_id), (suffix, CONTEXT), one(tpl.prefix_id), (above, CONTEXT)]
        return head + [one(tpl.prefix_id), (above, CONTEXT), one(tpl.suffix_id), (suffix, CONTEXT), one(tpl.middle_id)]

    def _context_chunk(self, rng: random.Random, j: int, limit: int) -> tuple[list, dict | None]:
        """<|file_sep|>path\\nCHUNK\\n for 8-40 whole lines of sibling j (at most `limit` tokens)."""
        if self.tpl.file_sep_id is None:
            return [], None
        other = self.corpus.doc(j)
        starts = self.line_starts(other)
        s = rng.randrange(len(starts) - 1) if len(starts) > 1 else 0
        n = rng.randint(8, 40)
        c0 = int(starts[s])
        c1 = int(starts[min(s + n, len(starts) - 1)])
        if c1 - c0 > limit:
            c1 = int(starts[np.searchsorted(starts, c0 + limit, side="right") - 1])
        while c0 < c1 and self.nl_only[other[c0]]:  # a document that starts with blank lines
            c0 += 1
        if c1 <= c0:
            return [], None
        core_end = self.body_end(other, c0, c1)
        fix = self._newline_fix(other[core_end:c1])
        path = self.corpus.paths[j]
        hit = self._paths.get((j, None))
        if hit is None:
            hit = self._paths[(j, None)] = self._enc(path + "\n")
        chunk = [(np.array([self.tpl.file_sep_id], dtype=np.int32), NONE), (hit, CONTEXT),
                 (other[c0:core_end], CONTEXT), (fix, CONTEXT)]
        return chunk, {"doc": j, "start": c0, "end": c1, "path": path}

    def sample_segments(self, rng: random.Random, budget: int, trace: dict | None = None) -> list:
        while True:
            g = self.corpus.pick(rng)
            if rng.random() < self.mix.plain:
                return self.plain(rng, g, budget, trace)
            got = self.fim(rng, g, budget, trace)
            if got is not None:
                return got

    def _join(self, segs: list) -> tuple[np.ndarray, np.ndarray]:
        ids = np.concatenate([np.asarray(s, dtype=np.int32) for s, _ in segs])
        classes = np.repeat(np.array([c for _, c in segs], dtype=np.uint8), [len(s) for s, _ in segs])
        classes[self.special[ids]] = NONE  # sentinels and padding carry no loss...
        classes[ids == self.eot] = TARGET  # ...except the end of a middle (or of a file): a target
        return ids, classes

    def sample(self, rng: random.Random, budget: int, trace: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self._join(self.sample_segments(rng, budget, trace))

    def row(self, rng: random.Random, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples packed into `length` tokens, padded with <|fim_pad|> (no loss)."""
        segs: list = []
        used = 0
        while length - used >= 128:
            remaining = length - used
            budget = remaining if rng.random() < 0.5 else rng.randint(128, remaining)
            s = self.sample_segments(rng, budget)
            segs += s
            used += sum(len(x) for x, _ in s)
        if used < length:
            segs.append((np.full(length - used, self.pad, dtype=np.int32), NONE))
        ids, classes = self._join(segs)
        return ids[:length], classes[:length]
