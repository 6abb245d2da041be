"""Bounded waits on a condition, instead of sleeping and hoping (the charter: conditions instead
of sleeps).

    from waiting import wait_until
    records = wait_until(lambda: closed_records(log), what="the session's close in the log")

The condition is polled every ``interval`` seconds until it returns something truthy, which is
returned; after ``timeout`` seconds the test fails with ``what`` in the message.  The timeout is
only a safety net for a broken server: on a healthy machine the wait ends as soon as the
condition holds, and a busy machine only makes it end later.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 10.0, *, interval: float = 0.01,
               what: str = "the condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def read_line(sock) -> bytes:
    """Read from a blocking socket until a CRLF (or the peer's close): one reply line of a
    server, without reading past it when one byte at a time is asked (``chunk=1``)."""
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data
