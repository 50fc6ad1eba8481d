"""Compiled engines ahead of time, cached on disk: AOTInductor packages of the CPU engine's forward.

torch.compile on CPU rebuilt its graphs at every start (1-2 minutes on 2 cores): with frozen weights
and packed matrices, Inductor's caches refuse the graphs ("mkldnn tensors unpickleable"). An
AOTInductor package is a shared object plus its constants, loaded in ~40 ms and never recompiled:
every shape a request can make is inside its dynamic range, so no request can trigger a compile.

Three packages per model, one per kind of call the engine makes (TorchEngine._forward), each
forward(idx [1, T], start [] long) -> logits:

    decode_step      T = 1                          1 logit    a decoding step
    verify_draft     2 <= T <= COMPILED_SCORE_MAX   T logits   draft verification, candidate scores
    prefill_segment  2 <= T <= COMPILED_SEGMENT_MAX 1 logit    a prompt's new tokens

The start position is a tensor (AOTInductor takes tensors only) read with .item() inside the graph,
so K/V slicing keeps the exact cache length. The K/V buffers are the engine's own: the packages keep
no copy (load_constants with user_managed), so the prefix cache and the slot's moves see what the
compiled steps write. Weights are frozen into each package.

An entry is built once per key (the model's files, dtype, cache length, threads, torch version, CPU
features and this code) into a private directory ($XDG_CACHE_HOME/completer/engines/KEY, 0700), by a
separate process (this module's `build` command, isolated and niced) so that building never holds
the serving process's interpreter lock; a server without the entry serves eager meanwhile. The
manifest, written last, lists each file's size, modification time and sha256: a missing, partial
or corrupt entry is rebuilt, never loaded (a file whose size and time are unchanged is not hashed
again), and a loaded one must match the eager model on a probe forward. A new build removes the
entries it supersedes (same model directory and settings, another key).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from completer.engines.private_cache import cache_root, private_dir

from .model import Transformer, load_model

FORMAT = 1  # bump when the packages' layout or calling convention changes
# Widest verification call compiled: candidate suggestions are scored in one call each too
# (engine.score), so past the drafts' widths.
COMPILED_SCORE_MAX = 32
# Longest prefill segment compiled: eager costs ~7 ms a forward in per-op overhead alone; longer
# prompts prefill eager, where the BLAS with every core handles large products well.
COMPILED_SEGMENT_MAX = 256
# kind -> (min T, max T, logits: 1 or "all")
KINDS: dict[str, tuple[int, int, int | str]] = {
    "decode_step": (1, 1, 1),
    "verify_draft": (2, COMPILED_SCORE_MAX, "all"),
    "prefill_segment": (2, COMPILED_SEGMENT_MAX, 1),
}
BUILD_TIMEOUT_S = 30 * 60
# Max |logit difference| between a loaded package and the eager model: absolute in fp32; relative
# to the largest logit in 16-bit types, whose fused kernels round differently from eager ones (bf16
# keeps ~3 significant digits). A wrong or foreign package differs by the logits' own size.
PROBE_TOLERANCE = 1e-3
PROBE_RELATIVE_16BIT = 0.05


def widths(kind: str, max_seq: int) -> tuple[int, int]:
    """The token counts a kind's package takes. Never the whole cache: tracing assumes a call is
    shorter than it (a call that long fits nowhere but at position 0 and runs eager)."""
    lo, hi, _ = KINDS[kind]
    return lo, min(hi, max_seq - 1)


class StaleEntry(Exception):
    """A cache entry that cannot be used as it is (missing, partial, corrupt or another key's)."""


def engines_root() -> Path:
    return cache_root() / "engines"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def key_fields(model_dir: Path, dtype: str, max_seq: int, threads: int) -> dict:
    """Everything a package depends on. The model's files by content; the code that traces the graph
    (this module and model.py) by content too, so an upgrade never loads an older graph."""
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("model*.safetensors")) + [model_dir / "config.json"]
    here = Path(__file__).resolve().parent
    return {
        "format": FORMAT,
        "model": {f.name: _sha256_file(f) for f in files if f.exists()},
        "code": hashlib.sha256(b"".join((here / n).read_bytes() for n in ("aot.py", "model.py"))).hexdigest(),
        "dtype": dtype, "max_seq": max_seq, "threads": threads,
        "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def entry_key(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Entry:
    """Where one key's packages live (created only by build)."""
    key: str
    fields: dict
    path: Path

    @classmethod
    def for_model(cls, model_dir: Path, dtype: str, max_seq: int, threads: int) -> Entry:
        fields = key_fields(model_dir, dtype, max_seq, threads)
        key = entry_key(fields)
        return cls(key, fields, engines_root() / key)

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> dict:
        """The manifest, checked against this key and the files on disk; StaleEntry if it does not hold."""
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise StaleEntry(f"no readable manifest in {self.path}: {exc}") from None
        if manifest.get("key") != self.key or manifest.get("fields") != self.fields:
            raise StaleEntry(f"{self.path} was built for another key")
        for kind in KINDS:
            info = manifest.get("files", {}).get(kind)
            path = self.path / f"{kind}.pt2"
            if not info or not path.is_file() or path.stat().st_size != info.get("bytes"):
                raise StaleEntry(f"{path} is missing or has the wrong size")
            # Hashing every start costs ~0.1 s per 80 MB: a file untouched since its hash was checked
            # (same size, same modification time) is not hashed again; any write changes its mtime.
            if path.stat().st_mtime_ns != info.get("mtime_ns") and _sha256_file(path) != info.get("sha256"):
                raise StaleEntry(f"{path} does not match its manifest (corrupt)")
        return manifest

    def state(self) -> str:
        """ready, absent or stale: <why> (what `completer doctor` shows)."""
        if not self.path.exists():
            return "absent"
        try:
            self.manifest()
        except StaleEntry as exc:
            return f"stale: {exc}"
        return "ready"

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# -- building (in its own process) -------------------------------------------------------------


class _Call(torch.nn.Module):
    """forward(idx [1, T], start []) -> logits [1, n, vocab] of one kind of engine call."""

    def __init__(self, model: Transformer, all_logits: bool):
        super().__init__()
        self.model, self.all_logits = model, all_logits

    def forward(self, idx: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        start_pos = start.item()
        torch._check(start_pos >= 0)
        torch._check(start_pos + idx.shape[1] <= self.model.max_seq)
        return self.model(idx, start_pos=start_pos, num_logits=None if self.all_logits else 1)


def serving_model(model_dir: Path, dtype: torch.dtype, max_seq: int) -> Transformer:
    """The model as the compiled CPU engine serves it: fused projections, fp32 decode weights (no
    low-precision copies), K/V for max_seq positions. TorchEngine prepares its model the same way when
    compiled on CPU (decode_dtype "none"); the probe at load checks that the two agree."""
    model = load_model(model_dir, device="cpu", dtype=dtype)
    model.prepare_for_inference(None)
    model.setup_cache(max_seq)
    return model


def build_packages(model: Transformer, out: Path, tune: bool = True) -> dict[str, dict]:
    """Export and compile each kind of call into out/KIND.pt2; {kind: {"sha256", "bytes", "seconds"}}.
    tune: let Inductor time its C++ GEMM template against the BLAS call per matrix shape (the
    default; off, `--no-tune`, a build is quicker and the steps somewhat slower)."""
    import torch._inductor.config as inductor_config
    from torch.export import Dim

    files = {}
    for kind, (_, _, logits) in KINDS.items():
        t0 = time.perf_counter()
        lo, hi = widths(kind, model.max_seq)
        example = torch.zeros((1, max(lo, min(hi, 8))), dtype=torch.long)
        dims = {"idx": None if lo == hi else {1: Dim(f"t_{kind}", min=lo, max=hi)}, "start": None}
        with torch.inference_mode():
            program = torch.export.export(_Call(model, logits == "all"), (example, torch.tensor(0)),
                                          dynamic_shapes=dims, strict=False)
        path = out / f"{kind}.pt2"
        with inductor_config.patch(freezing=True, max_autotune=tune, max_autotune_gemm_backends="CPP,ATEN"):
            torch._inductor.aoti_compile_and_package(program, package_path=str(path))
        files[kind] = {"sha256": _sha256_file(path), "bytes": path.stat().st_size,
                       "mtime_ns": path.stat().st_mtime_ns, "seconds": round(time.perf_counter() - t0, 1)}
    return files


def build_entry(entry: Entry, model_dir: Path, dtype: str, max_seq: int, threads: int, tune: bool = True) -> None:
    """Build `entry` unless a complete one is there; one builder per key at a time (a lock file), the
    result moved into place whole (a temporary directory renamed), the manifest inside it last."""
    from completer.engines.private_cache import use_private_compile_caches

    use_private_compile_caches()  # Inductor's scratch files: never /tmp/torchinductor_<user>
    root = private_dir(engines_root())
    fd = os.open(root / f"{entry.key}.lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if entry.state() == "ready":
            return
        entry.remove()
        torch.set_num_threads(threads)  # Inductor writes the thread count into the kernels
        t0 = time.perf_counter()
        model = serving_model(model_dir, getattr(torch, dtype), max_seq)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.key}-", dir=root))
        try:
            files = build_packages(model, tmp, tune)
            manifest = {"key": entry.key, "fields": entry.fields, "files": files, "tuned": tune,
                        "model_dir": str(Path(model_dir).resolve()), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "build_s": round(time.perf_counter() - t0, 1)}
            with open(tmp / "manifest.json", "w") as f:
                json.dump(manifest, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, entry.path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        prune(root, entry, model_dir)


SETTINGS = ("dtype", "max_seq", "threads")


def prune(root: Path, kept: Entry, model_dir: Path) -> list[Path]:
    """Remove what `kept` supersedes: entries built for the same model directory and settings under
    another key (older weights, code or torch), builds abandoned long ago, and the lock and log files
    of entries that are gone. Returns the entries and builds that went."""
    gone = []
    for path in root.iterdir():
        if path.suffix in (".lock", ".log") and not (root / path.stem).exists():
            _remove_leftover(path)  # what a refused entry left
            continue
        if path == kept.path or not path.is_dir():
            continue
        if path.name.startswith("."):  # a builder's temporary directory
            if time.time() - path.stat().st_mtime > BUILD_TIMEOUT_S:
                gone.append(path)
            continue
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError):
            continue  # not ours to judge (being written, or not an entry)
        fields = manifest.get("fields", {})
        if (manifest.get("model_dir") == str(Path(model_dir).resolve())
                and all(fields.get(k) == kept.fields[k] for k in SETTINGS)):
            gone.append(path)
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
        (root / f"{path.name}.lock").unlink(missing_ok=True)
        (root / f"{path.name}.log").unlink(missing_ok=True)
    return gone


def _remove_leftover(path: Path) -> None:
    """A lock or log file without its entry, unless a build may still be using it: written within
    BUILD_TIMEOUT_S, or (a lock) held by a builder."""
    try:
        if time.time() - path.stat().st_mtime <= BUILD_TIMEOUT_S:
            return
        if path.suffix == ".lock":
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError while a builder holds it
                path.unlink()
        else:
            path.unlink()
    except OSError:
        pass


def build_command(model_dir: Path, dtype: str, max_seq: int, threads: int, tune: bool = True) -> list[str]:
    """The builder's command line: this interpreter, isolated (-I: nothing imported from the
    editor's working directory or PYTHONPATH), importing the same completer package as this process.
    It runs in the cache directory, so a relative model path is made absolute here."""
    package_parent = str(Path(__file__).resolve().parents[3])
    code = (f"import sys; sys.path.insert(0, {package_parent!r}); "
            "from completer.engines.torch.aot import main; sys.exit(main())")
    return [sys.executable, "-I", "-c", code, "build", "--model", str(Path(model_dir).resolve()), "--dtype", dtype,
            "--max-seq", str(max_seq), "--threads", str(threads), *([] if tune else ["--no-tune"])]


def build_in_subprocess(entry: Entry, model_dir: Path, dtype: str, max_seq: int, threads: int,
                        tune: bool = True, nice: int = 10, timeout_s: float = BUILD_TIMEOUT_S) -> None:
    """Run the builder and wait (the caller's thread, not its interpreter lock). RuntimeError with the
    end of the builder's log if it fails."""
    private_dir(engines_root())
    log_path = engines_root() / f"{entry.key}.log"
    cmd = build_command(model_dir, dtype, max_seq, threads, tune) + ["--nice", str(nice)]
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=str(engines_root()))
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = f"killed after {timeout_s:.0f} s"
    if rc != 0 or entry.state() != "ready":
        tail = log_path.read_text(errors="replace")[-800:] if log_path.exists() else ""
        raise RuntimeError(f"building the compiled engine failed ({rc}); {log_path}: ...{tail.strip()[-400:]}")


# -- loading (in the serving process) ----------------------------------------------------------


class AotStep:
    """The engine's step(idx [1, T], start_pos=, num_logits=) -> logits [1, num_logits, vocab] over
    the three packages; a call none of them takes (it never happens in the engine, which checks
    widths first) runs the eager model."""

    def __init__(self, model: Transformer, entry: Entry):
        entry.manifest()  # StaleEntry unless complete and intact
        self.model, self.entry = model, entry
        caches = {name: buf for name, buf in model.named_buffers() if ".kv_cache." in name}
        self.runners = {}
        for kind in KINDS:
            runner = torch._C._aoti.AOTIModelPackageLoader(str(entry.path / f"{kind}.pt2"), "model", True, 1, -1)
            # The package's K/V constants point at the engine's own buffers (no copy).
            wanted = {fqn: caches[fqn.removeprefix("model.")] for fqn in runner.get_constant_fqns()
                      if fqn.removeprefix("model.") in caches}
            if len(wanted) != len(caches):
                raise StaleEntry(f"{entry.path / kind}.pt2 does not have this model's {len(caches)} K/V buffers")
            runner.load_constants(wanted, False, False, True, False)
            self.runners[kind] = runner
        self.segment_max = widths("prefill_segment", model.max_seq)[1]
        self.verify_max = widths("verify_draft", model.max_seq)[1]

    def widths(self) -> dict[str, tuple[int, int]]:
        return {kind: widths(kind, self.model.max_seq) for kind in self.runners}

    def __call__(self, idx: torch.Tensor, start_pos: int, num_logits: int) -> torch.Tensor:
        t = idx.shape[1]
        if t == 1 and num_logits == 1:
            kind = "decode_step"
        elif num_logits == 1 and t <= self.segment_max:
            kind = "prefill_segment"
        elif num_logits == t and t <= self.verify_max:
            kind = "verify_draft"
        else:
            return self.model(idx, start_pos=start_pos, num_logits=num_logits)
        return self.runners[kind].boxed_run([idx, torch.tensor(start_pos)])[0]

    def probe(self, start_pos: int) -> float:
        """Max |logit difference| against the eager model for each kind, written at start_pos.. up to
        the cache's end (the caller's scratch positions), over what the weights' precision allows:
        above 1 means the package does not hold."""
        worst, tokens = 0.0, self.model.max_seq - start_pos
        compute_dtype = self.model.kv_caches()[0].k.dtype
        if tokens < 2:
            raise ValueError("the probe needs at least 2 scratch positions")
        with torch.inference_mode():
            ids = torch.arange(1, tokens + 1, dtype=torch.long)[None] % self.model.config.vocab_size
            for t, n in ((1, 1), (tokens, 1), (tokens, tokens)):
                got = self(ids[:, :t], start_pos, n)
                want = self.model(ids[:, :t], start_pos=start_pos, num_logits=n)
                allowed = PROBE_TOLERANCE
                if compute_dtype != torch.float32:  # the logits come out in fp32 either way
                    allowed = max(allowed, PROBE_RELATIVE_16BIT * want.float().abs().max().item())
                worst = max(worst, (got.float() - want.float()).abs().max().item() / allowed)
        return worst


def load_step(model: Transformer, entry: Entry, probe_at: int) -> AotStep:
    """The packages of `entry` over `model`'s K/V, checked against the eager model at probe_at
    (positions the caller treats as scratch). StaleEntry (and the entry removed) if they do not hold."""
    try:
        step = AotStep(model, entry)
        diff = step.probe(probe_at)
    except StaleEntry:
        entry.remove()
        raise
    except RuntimeError as exc:  # a package the runtime refuses
        entry.remove()
        raise StaleEntry(f"{entry.path}: {exc}") from None
    if not diff <= 1.0:
        entry.remove()
        raise StaleEntry(f"{entry.path}: logits differ from the eager model's by {diff:.2g} times what "
                         f"the weights' precision allows")
    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="completer.engines.torch.aot")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build one model's compiled engine into the cache")
    b.add_argument("--model", required=True)
    b.add_argument("--dtype", default="float32")
    b.add_argument("--max-seq", type=int, required=True)
    b.add_argument("--threads", type=int, required=True)
    b.add_argument("--no-tune", action="store_true")
    b.add_argument("--nice", type=int, default=0)
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    model_dir = Path(args.model)
    entry = Entry.for_model(model_dir, args.dtype, args.max_seq, args.threads)
    t0 = time.perf_counter()
    build_entry(entry, model_dir, args.dtype, args.max_seq, args.threads, tune=not args.no_tune)
    print(f"compiled engine {entry.key} ready in {entry.path} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
