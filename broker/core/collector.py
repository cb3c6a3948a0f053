"""The cyclic garbage collector kept out of the way of work that makes objects by the
million, all meant to live on."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_collection() -> Iterator[None]:
    """The cyclic collector off while a set loads: it makes objects by the million that
    all live on, and each full pass walks all of them (100,000 contracts: 10 of 26 s).
    Reference counting still frees what dies meanwhile. What is there afterwards is
    frozen (moved where the collector never looks): else the first full pass after the
    load walks them all, ~3 s over 100,000 contracts, holding the event loop too. A set
    has no reference cycles, so the one it replaces is freed all the same."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()
