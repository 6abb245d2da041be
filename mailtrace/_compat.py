"""What differs between the Python versions mailtrace supports (3.10 and newer).

``tomllib`` joined the standard library in Python 3.11; on 3.10 the ``tomli`` backport (the
same code, a dependency only there, see pyproject.toml) takes its place.  Import it from here:
``from mailtrace._compat import tomllib``.

``subprocess.Popen(process_group=0)`` is 3.11 too: :data:`NEW_PROCESS_GROUP` gives the child a
process group of its own (group id = its pid, so ``os.killpg(proc.pid, ...)`` reaches all of
it) on both, through a new session (setsid) on 3.10.

``asyncio.StreamWriter.start_tls`` is 3.11 as well: call :func:`start_tls` (STARTTLS, STLS,
IMAP STARTTLS upgrade a connection in place).
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by tests/test_py310.py under python3.10
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


__all__ = ["NEW_PROCESS_GROUP", "start_tls", "tomllib"]
