"""heap.freeze_loaded_objects: what is alive at load is exempt from collections; what was frozen
by an earlier load and is garbage now (a reloaded engine's cycles) is freed."""

import gc
import weakref

from completer.engines.heap import freeze_loaded_objects


class Cycle:
    def __init__(self):
        self.me = self


def test_frozen_objects_are_skipped_and_freed_at_the_next_load():
    try:
        kept = Cycle()
        freeze_loaded_objects()
        assert gc.get_freeze_count() > 0
        gone = weakref.ref(kept)
        del kept
        gc.collect()
        assert gone() is not None  # frozen: no collection looks at it
        freeze_loaded_objects()  # the next load unfreezes, collects, freezes again
        assert gone() is None
    finally:
        gc.unfreeze()
