"""One copy of each frozen weight across the graphs Inductor compiles for one engine.

With freezing, every compiled graph (the 1-token step, the verification, the prefill segment) gets
its weights as constants, repacked into the blocked layout of Inductor's C++ GEMM template. Each
graph makes its own copy, although the packed values and layouts come out identical: three copies of
the embedded model (3 x 12.6 MB) do not fit in this CPU's L3 cache with the K/V cache beside them.
Each switch from one graph to another then reloads weights from memory for several steps: part of
why speculation was slower than plain decoding on ordinary code.

`shared_frozen_constants()` interns constants while graphs are lowered: a constant equal to one
seen before (same dtype, shape, strides and values) is replaced by that earlier tensor, so the graphs
read one copy. Sharing is safe because Inductor never writes to a constant (mutated buffers stay graph
inputs under freezing). MKL-DNN opaque tensors are left alone: their packed format is not part of
what can be compared.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading

import torch

log = logging.getLogger(__name__)

_lock = threading.Lock()
_users = 0  # compiles inside the context right now; the patch stays while any is
_original = None
_seen: dict[tuple, list[torch.Tensor]] = {}  # (dtype, device, shape, strides) -> distinct constants


@dataclasses.dataclass(eq=False)  # identity: _open removes this very one
class Sharing:
    """What interning saved while one context was open."""
    reused: int = 0  # constants that became a reference to an equal earlier one (autotuning's included)
    reused_bytes: int = 0


_open: list[Sharing] = []  # one per open context


def intern(data: torch.Tensor) -> torch.Tensor:
    """The first tensor seen (while a context is open) equal to `data`, or `data` itself."""
    if not _users or not isinstance(data, torch.Tensor) or data.layout != torch.strided or data.is_mkldnn:
        return data
    from torch.utils._python_dispatch import _disable_current_modes

    key = (data.dtype, data.device, tuple(data.shape), tuple(data.stride()))
    with _lock, _disable_current_modes():  # lowering runs under a fake-tensor mode; compare real values
        candidates = _seen.setdefault(key, [])
        for seen in candidates:
            if seen is data or torch.equal(seen, data):
                if seen is not data:
                    for sharing in _open:
                        sharing.reused += 1
                        sharing.reused_bytes += data.numel() * data.element_size()
                return seen
        candidates.append(data)
    return data


@contextlib.contextmanager
def shared_frozen_constants():
    """Intern the constants of every graph lowered inside the context (process-wide while it is
    open: any other compile in the meantime shares equal constants too, which is equally safe).
    Yields a Sharing that counts what was shared."""
    global _users, _original
    sharing = Sharing()
    try:
        from torch._inductor.graph import GraphLowering
        GraphLowering.allocate_non_dup_const_name  # noqa: B018 - the hook this relies on
    except (ImportError, AttributeError):  # another torch: compile anyway, with a copy per graph
        log.debug("this torch has no constant hook; compiled graphs keep their own weights")
        yield sharing
        return

    with _lock:
        if _users == 0:
            _original = GraphLowering.allocate_non_dup_const_name
            original = _original

            def allocate_interned(self, name, data):
                return original(self, name, intern(data))
            GraphLowering.allocate_non_dup_const_name = allocate_interned
        _users += 1
        _open.append(sharing)
    try:
        yield sharing
    finally:
        with _lock:
            _open.remove(sharing)
            _users -= 1
            if _users == 0:
                GraphLowering.allocate_non_dup_const_name = _original
                _original = None
                # Autotuning packs weights for choices it then drops: let those go.
                _seen.clear()
