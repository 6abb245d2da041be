"""What differs between the Python versions mailtrace supports (3.10 and newer).

``tomllib`` joined the standard library in Python 3.11; on 3.10 the ``tomli`` backport (the
same code, a dependency only there, see pyproject.toml) takes its place.  Import it from here:
``from mailtrace._compat import tomllib``.

``subprocess.Popen(process_group=0)`` is 3.11 too: :data:`NEW_PROCESS_GROUP` gives the child a
process group of its own (group id = its pid, so ``os.killpg(proc.pid, ...)`` reaches all of
it) on both, through a new session (setsid) on 3.10.

``asyncio.StreamWriter.start_tls`` is 3.11 as well: call :func:`start_tls` (STARTTLS, STLS,
IMAP STARTTLS upgrade a connection in place).  So are ``asyncio.timeout`` (use
:func:`timeout`, which raises the builtin ``TimeoutError`` on both, as 3.11 does) and
``asyncio.Runner`` with a ``loop_factory`` (use :func:`run`).
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised under python3.10 by tests/integration/test_wheel.py
    import tomli as tomllib

#: Popen keywords: the child leads a new process group
NEW_PROCESS_GROUP: dict = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}



async def start_tls(writer, sslcontext, *, server_hostname: str | None = None) -> None:
    """Upgrade an asyncio stream connection to TLS in place (``StreamWriter.start_tls``)."""
    if sys.version_info >= (3, 11):
        await writer.start_tls(sslcontext, server_hostname=server_hostname)
        return
    # Python 3.10: what 3.11's StreamWriter.start_tls does, on 3.10's (fixed) stream internals
    import asyncio

    protocol = writer._protocol
    server_side = protocol._client_connected_cb is not None
    await writer.drain()
    transport = await asyncio.get_running_loop().start_tls(writer.transport, protocol, sslcontext,
                                                           server_side=server_side, server_hostname=server_hostname)
    writer._transport = transport
    protocol._stream_writer = writer
    protocol._transport = transport
    protocol._over_ssl = True


def timeout(delay: float | None):
    """``async with timeout(delay):`` -- ``asyncio.timeout`` (3.11); None: no limit."""
    if sys.version_info >= (3, 11):
        import asyncio

        return asyncio.timeout(delay)
    return _Timeout310(delay)


class _Timeout310:
    """3.10: cancel the task when the delay expires, and turn that cancellation into TimeoutError."""

    def __init__(self, delay: float | None) -> None:
        self._delay = delay
        self._handle = None
        self._expired = False

    async def __aenter__(self) -> "_Timeout310":
        if self._delay is not None:
            import asyncio

            task = asyncio.current_task()

            def expire() -> None:
                self._expired = True
                task.cancel()

            self._handle = asyncio.get_running_loop().call_later(max(self._delay, 0), expire)
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        import asyncio

        if self._handle is not None:
            self._handle.cancel()
        if self._expired and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
        return False


def run(main, loop_factory=None):
    """``asyncio.Runner(loop_factory=...).run(main)``: run ``main`` on a new loop, then close it."""
    import asyncio

    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main)
    if loop_factory is None:
        return asyncio.run(main)
    loop = loop_factory()  # 3.10: what asyncio.run does, on the given loop
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


__all__ = ["NEW_PROCESS_GROUP", "run", "start_tls", "timeout", "tomllib"]
