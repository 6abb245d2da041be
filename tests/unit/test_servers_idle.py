"""mailtrace/servers/idle.py: the one idle timer of a connection's reads.

A read that stays silent past its deadline is cancelled and ``expired()`` says so; a read that
got input in time is left alone, however many reads came before; a cancellation from elsewhere
(the lab stopping) is never taken for a timeout.  (The 421 a client then gets is tested with a
real server in tests/integration/test_smtp_server.py::test_idle_timeout_421.)"""

from __future__ import annotations

import asyncio

import pytest

from mailtrace.servers.idle import IdleTimer


def run(coro):
    """Run ``coro``; a timer that never fires fails the test (after a minute) instead of hanging it."""
    async def bounded():
        return await asyncio.wait_for(coro, 60)

    return asyncio.run(bounded())


async def silent_read(idle: IdleTimer, timeout: float) -> bool:
    """A read from a client that sends nothing, under ``idle`` set to ``timeout``: was it
    cancelled as expired?"""
    idle.start(timeout)
    try:
        await asyncio.get_running_loop().create_future()  # never answered
    except asyncio.CancelledError:
        return idle.expired()
    finally:
        idle.close()
    return False


def test_a_silent_read_is_cancelled_and_expired_says_so():
    async def main() -> bool:
        return await silent_read(IdleTimer(asyncio.get_running_loop(), asyncio.current_task()), 0.01)

    assert run(main()) is True


def test_reads_answered_in_time_are_never_cancelled():
    async def main() -> int:
        loop = asyncio.get_running_loop()
        idle = IdleTimer(loop, asyncio.current_task())
        done = 0
        for _ in range(50):  # each "read" gets its input at once: the deadline only moves
            idle.start(30)
            data = loop.create_future()
            loop.call_soon(data.set_result, b"NOOP\r\n")
            await data
            idle.stop()
            done += 1
        idle.close()
        return done

    assert run(main()) == 50


def test_a_cancellation_from_elsewhere_is_not_a_timeout():
    async def reader(started: asyncio.Event) -> str:
        idle = IdleTimer(asyncio.get_running_loop(), asyncio.current_task())
        idle.start(3600)
        started.set()
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            if idle.expired():
                return "timeout"
            raise
        finally:
            idle.close()
        return "read"

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(reader(started))
        await started.wait()
        task.cancel()  # what Listener.stop() does to every connection
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


def test_a_shorter_timeout_takes_effect_at_once():
    """The core may shorten its timeout between two reads: the timer set for the longer one
    must not make the shorter one wait."""
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        idle = IdleTimer(loop, asyncio.current_task())
        idle.start(3600)
        idle.stop()
        return await silent_read(idle, 0.01)

    assert run(main()) is True
