"""The event loop the servers and the proxy run on: uvloop when it is installed, else asyncio's.

uvloop (a well-kept drop-in event loop on libuv) moves bytes between sockets with less
Python work per read and write; nothing else changes.  ``pip install mailtrace[fast]``
installs it; ``MAILTRACE_LOOP=asyncio`` keeps the standard loop (to compare, or to debug).
"""

from __future__ import annotations

import asyncio
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


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run(main)`` on the loop of :func:`loop_factory`."""
    return _compat.run(main, loop_factory())
