"""The event loop the servers and the proxy run on: uvloop when it is installed, else asyncio's.

uvloop (a well-kept drop-in event loop on libuv) moves bytes between sockets with less
Python work per read and write; nothing else changes.  ``pip install mailtrace[fast]``
installs it; ``MAILTRACE_LOOP=asyncio`` keeps the standard loop (to compare, or to debug).
The garbage collector is tuned for a long-running server first (``tune_collector``).
"""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any, Callable, Coroutine

from mailtrace import _compat


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when uvloop is installed and not turned off; None: asyncio's."""
    if os.environ.get("MAILTRACE_LOOP", "") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


#: Allocations of container objects between two collections of the youngest generation
#: (Python's default: 700).  A lab session allocates thousands (events, replies, lists of
#: pieces) that are freed by reference counting long before any collection; each collection
#: still walked the ones alive at the time (queued for the log writer), and every tenth the
#: middle generation too: ~12% of the CPU of an IMAP session at 100 clients, 5-7% with this
#: (tests/bench/profile_lab.py; a cycle is still collected, only later).
YOUNG_THRESHOLD = 10_000


def tune_collector() -> None:
    """For a long-running server process, once its start-up is done: what was built so far (the
    modules, the knowledge tables, the listeners' settings) stays for the whole run, so it is
    moved out of the collector's sight (``gc.freeze``), and the youngest generation is collected
    less often.  The collector stays on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run(main)`` on the loop of :func:`loop_factory`, with :func:`tune_collector`."""
    tune_collector()
    return _compat.run(main, loop_factory())
