"""The asyncio half of the proxy: accept, connect upstream, copy bytes, watch both directions.

Everything protocol-specific is decided by the observer (``registry.make_observer``); this module
only moves bytes and, when asked (``intercept_tls``), swaps both streams to TLS at the moment the
server accepts STARTTLS/STLS (RFC 3207 §4, RFC 2595 §4, RFC 3501 §6.2.1).

Bytes read from one side are written to the other *before* they are parsed, unchanged, so the
proxy adds no latency for parsing and never reframes the traffic (with ``intercept_tls``, each
chunk is parsed first: the relay must see STARTTLS accepted before the client sees the answer).  Each side's end of stream is
passed on as a half-close, so both peers see exactly the bytes the other sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from mailtrace._compat import start_tls
from mailtrace.netaddr import host_port
from mailtrace.knowledge import because
from mailtrace.proxy.registry import IMPLICIT_TLS_PORTS, UNKNOWN, protocol_by_greeting, protocol_by_port
from mailtrace.proxy.trace import INJECTION_RULE, Tracer
from mailtrace.tcp import RelayQuickAck
from mailtrace.transcript.event import Event, Kind, Note, Side
from mailtrace.transcript.recorder import Recorder

READ_CHUNK = 64 * 1024
CONNECT_TIMEOUT = 10.0  # seconds to reach the upstream server
GREETING_TIMEOUT = 5.0  # seconds to wait for a greeting when the protocol must be guessed from it
HANDSHAKE_TIMEOUT = 15.0  # seconds for a TLS handshake (either side)
LINGER_TIMEOUT = 5.0  # seconds the other side may stay open after one side closed (then: close it)


@dataclass(frozen=True)
class ProxyConfig:
    upstream_host: str
    upstream_port: int
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    protocol: str | None = None  # None: guess from the port, then from the greeting
    intercept_tls: bool = False
    upstream_tls: bool | None = None  # implicit TLS upstream; None: by port (465/993/995...)
    upstream_ca: str | None = None  # verify the upstream against this CA (default: no verification)
    lab_dir: Path = Path("mailtrace-lab")
    show_secrets: bool = False
    lang: str = "en"  # language of the proxy's own messages (TLS marks, decoded credentials)

    @property
    def implicit_tls(self) -> bool:
        if self.upstream_tls is not None:
            return self.upstream_tls
        return self.upstream_port in IMPLICIT_TLS_PORTS


def _addr(sockname) -> str:
    if not sockname:
        return "?"
    return host_port(sockname[0], sockname[1])


class Proxy:
    """``await start()``, then ``port``; every client gets its own ``ProxySession``."""

    def __init__(self, config: ProxyConfig, recorder: Recorder | None = None, annotator=None) -> None:
        """Events go to ``recorder`` (parsed in this process), or to ``annotator``
        (``mailtrace.proxy.annotator.Annotator``: parsed in a child process, off the relay's path;
        not with ``intercept_tls``, which must know at once when the server accepts STARTTLS)."""
        self.config = config
        self.recorder = recorder
        self.annotator = annotator if not config.intercept_tls else None
        if self.recorder is None and self.annotator is None:
            raise ValueError("the proxy needs a recorder (or an annotator without intercept_tls)")
        self.server: asyncio.base_events.Server | None = None
        self.tasks: set[asyncio.Task] = set()
        self.client_tls: ssl.SSLContext | None = None  # what the proxy presents to clients
        self.upstream_tls: ssl.SSLContext | None = None  # how the proxy talks TLS upstream

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        cfg = self.config
        if cfg.intercept_tls:
            from mailtrace.tls import intercept_context

            self.client_tls = intercept_context(cfg.lab_dir, cfg.upstream_host)
        if cfg.intercept_tls or cfg.implicit_tls:
            if cfg.upstream_ca:
                self.upstream_tls = ssl.create_default_context(cafile=cfg.upstream_ca)
            else:  # lab upstreams use self-made certificates: no verification (say so in the banner)
                self.upstream_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                self.upstream_tls.check_hostname = False
                self.upstream_tls.verify_mode = ssl.CERT_NONE
        if self.annotator is not None:
            await self.annotator.attach()
        listen_ssl = self.client_tls if (cfg.implicit_tls and cfg.intercept_tls) else None
        self.server = await asyncio.start_server(self._handle, cfg.listen_host, cfg.listen_port, ssl=listen_ssl,
                                                 limit=READ_CHUNK, backlog=512,
                                                 ssl_handshake_timeout=HANDSHAKE_TIMEOUT if listen_ssl else None)

    def open_tracer(self, protocol: str, client: str, server: str):
        """The Tracer of a new session: here, or its stand-in that forwards to the annotator."""
        if self.annotator is not None:
            return self.annotator.open(protocol, client, server)
        session = self.recorder.session(protocol, client=client, server=server, mode="proxy")
        return Tracer(session, protocol, show_secrets=self.config.show_secrets, intercept=self.config.intercept_tls,
                      lang=self.config.lang)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            await ProxySession(self, reader, writer).run()
        except asyncio.CancelledError:
            # stop() cancels live sessions; each has recorded its close by now.  Ending normally
            # keeps Python 3.11's start_server callback from logging the cancelled task as an error.
            pass
        finally:
            if task is not None:
                self.tasks.discard(task)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            tasks = list(self.tasks)
            for task in tasks:
                task.cancel()
            if tasks:  # let each session record its close
                await asyncio.wait(tasks, timeout=5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
        if self.annotator is not None:
            await self.annotator.flush()


class ProxySession:
    """One client, one upstream connection, one observer, one transcript session."""

    def __init__(self, proxy: Proxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.cfg = proxy.config
        self.c_reader, self.c_writer = reader, writer
        self.u_reader: asyncio.StreamReader | None = None
        self.u_writer: asyncio.StreamWriter | None = None
        self.tracer: Tracer | None = None
        self.gate: asyncio.Event | None = None  # intercept: client reads wait for the TLS swap
        self.octets = {Side.CLIENT: 0, Side.SERVER: 0}
        self.closed_first: Side | None = None
        self.reason = ""
        self.acks: dict[Side, RelayQuickAck] = {}  # per leg, by the side it reads from (tcp.py)

    # -- set-up -------------------------------------------------------------------------
    async def run(self) -> None:
        cfg = self.cfg
        client = _addr(self.c_writer.get_extra_info("peername"))
        upstream = f"{cfg.upstream_host}:{cfg.upstream_port}"
        implicit = cfg.implicit_tls
        try:
            self.u_reader, self.u_writer = await asyncio.wait_for(
                asyncio.open_connection(cfg.upstream_host, cfg.upstream_port, limit=READ_CHUNK,
                                        ssl=self.proxy.upstream_tls if (implicit and cfg.intercept_tls) else None,
                                        server_hostname=cfg.upstream_host if (implicit and cfg.intercept_tls) else None),
                CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            protocol = cfg.protocol or protocol_by_port(cfg.upstream_port) or UNKNOWN
            tracer = self.proxy.open_tracer(protocol, client, upstream)
            why = str(exc) or type(exc).__name__
            tracer.finish(Side.NONE, f"upstream {upstream} unreachable ({why}); the client was disconnected")
            await self._close_writer(self.c_writer)
            return
        first = b""
        protocol = cfg.protocol or protocol_by_port(cfg.upstream_port)
        if protocol is None:
            with contextlib.suppress(asyncio.TimeoutError, OSError):
                first = await asyncio.wait_for(self.u_reader.read(READ_CHUNK), GREETING_TIMEOUT)
            protocol = protocol_by_greeting(first) or UNKNOWN
        self.tracer = self.proxy.open_tracer(protocol, client, upstream)
        if implicit:
            self.tracer.implicit_tls(cfg.intercept_tls)
        try:
            if first:
                self.c_writer.write(first)
                await self._pass(Side.SERVER, first)
            # each leg acknowledges what it reads at once when its sender may be waiting for that ACK,
            # else lets the answer carry it (mailtrace/tcp.py: no 40 ms stall, no ACK packet per chunk)
            loop = asyncio.get_running_loop()
            self.acks = {Side.CLIENT: RelayQuickAck(self.c_writer, loop, client=True),
                         Side.SERVER: RelayQuickAck(self.u_writer, loop, client=False)}
            if not cfg.intercept_tls:
                await self._splice(loop)
                return
            pumps = [asyncio.ensure_future(self._pump(side)) for side in (Side.CLIENT, Side.SERVER)]
            try:
                done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                if pending:
                    done, pending = await asyncio.wait(pending, timeout=LINGER_TIMEOUT)
                if pending:
                    self.reason = because("linger", self.reason, seconds=f"{LINGER_TIMEOUT:g}")
            finally:
                for task in pumps:
                    task.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            for ack in self.acks.values():
                ack.close()
            self._finish()
            await self._close_writer(self.c_writer)
            await self._close_writer(self.u_writer)

    # -- relaying -----------------------------------------------------------------------
    async def _splice(self, loop: asyncio.AbstractEventLoop) -> None:
        """Relay without intercepting TLS: each transport gets a ``_Leg`` protocol that writes
        what it receives to the other transport from inside the loop's read callback (no
        stream buffer, no task switch per chunk: half the latency a stream-based relay adds),
        then hands the bytes to the tracer.  Returns when both directions ended, or one ended
        and the other lingered ``LINGER_TIMEOUT`` seconds; cancelled when the proxy stops."""
        ended = {side: loop.create_future() for side in (Side.CLIENT, Side.SERVER)}
        pairs = ((Side.CLIENT, self.c_reader, self.c_writer.transport, self.u_writer.transport),
                 (Side.SERVER, self.u_reader, self.u_writer.transport, self.c_writer.transport))
        legs = []
        for side, reader, transport, peer in pairs:
            leg = _Leg(self, side, transport, peer, ended[side])
            leg.old = transport.get_protocol()
            transport.set_protocol(leg)
            legs.append((leg, reader, transport))
        try:
            for leg, reader, transport in legs:  # what the streams read before the switch goes first
                buffered = bytes(reader._buffer)
                reader._buffer.clear()
                if getattr(reader, "_paused", False):
                    reader._paused = False
                    transport.resume_reading()
                if buffered:
                    leg.data_received(buffered)
                if reader.at_eof() or reader.exception() is not None or transport.is_closing():
                    leg.ended(reader.exception())
            done, pending = await asyncio.wait(ended.values(), return_when=asyncio.FIRST_COMPLETED)
            if pending:
                done, pending = await asyncio.wait(pending, timeout=LINGER_TIMEOUT)
            if pending:
                self.reason = because("linger", self.reason, seconds=f"{LINGER_TIMEOUT:g}")
        finally:
            for leg, _, _ in legs:
                leg.active = False  # nothing more reaches the tracer once the session is finished

    async def _pump(self, side: Side) -> None:
        """With --intercept-tls: one direction, read through the streams (which ``start_tls``
        swaps to TLS), parsed before it is passed on: the relay must see the server accept
        STARTTLS before the client sees the answer."""
        mine, theirs = (self.acks[side], self.acks[Side.SERVER if side is Side.CLIENT else Side.CLIENT])
        while True:
            if side is Side.CLIENT and self.gate is not None:
                await self.gate.wait()
            reader = self.c_reader if side is Side.CLIENT else self.u_reader
            other = self.u_writer if side is Side.CLIENT else self.c_writer
            try:
                data = await reader.read(READ_CHUNK)
            except (ConnectionError, OSError, ssl.SSLError) as exc:
                self.reason = self.reason or because("client-lost" if side is Side.CLIENT else "server-lost", error=exc)
                data = b""
            if not data:
                self._eof(side)
                with contextlib.suppress(OSError, RuntimeError, AttributeError):
                    if other.can_write_eof():
                        other.write_eof()
                    else:
                        other.close()
                return
            mine.read(data)
            swap = await self._pass(side, data)
            if swap:
                # The server accepted STARTTLS.  Stop reading the client BEFORE it sees the 220:
                # what it sends next is its TLS ClientHello, which must reach the TLS layer, not
                # the plaintext buffer (where _intercept would drop it as injected plaintext).
                with contextlib.suppress(AttributeError, RuntimeError):
                    self.c_writer.transport.pause_reading()
            other.write(data)
            theirs.answered()
            with contextlib.suppress(ConnectionError):
                await other.drain()
            if swap:
                await self._intercept()

    def _eof(self, side: Side) -> None:
        if self.closed_first is None:
            self.closed_first = side
            self.reason = self.reason or because("client-closed" if side is Side.CLIENT else "server-closed")

    async def _pass(self, side: Side, data: bytes) -> bool:
        """Account and parse ``data``; True when the proxy must swap to TLS now (intercept)."""
        self.octets[side] += len(data)
        tracer = self.tracer
        swap = tracer.feed(side, data)
        if self.cfg.intercept_tls:
            if side is Side.CLIENT and tracer.starttls_pending and self.gate is None:
                self.gate = asyncio.Event()  # hold the client's next bytes until the answer
            elif side is Side.SERVER and self.gate is not None and not tracer.starttls_pending and not swap:
                self.gate.set()  # STARTTLS refused: carry on in plaintext
                self.gate = None
        return swap

    async def _intercept(self) -> None:
        """The server accepted STARTTLS: TLS with the client (lab CA certificate), then upstream."""
        leftover = bytes(getattr(self.c_reader, "_buffer", b""))
        if leftover:  # plaintext already sent after STARTTLS: never let it count as encrypted
            self.c_reader._buffer.clear()
            self.tracer.session.record(Event(side=Side.CLIENT, kind=Kind.VIOLATION, raw=leftover,
                                      notes=(Note(INJECTION_RULE, f"{len(leftover)} octets of plaintext dropped"),)))
        try:
            await asyncio.wait_for(start_tls(self.c_writer, self.proxy.client_tls), HANDSHAKE_TIMEOUT)
        except (ssl.SSLError, OSError, asyncio.TimeoutError, ConnectionError) as exc:
            await self._abort(f"TLS handshake with the client failed ({exc or type(exc).__name__})")
            return
        try:
            await asyncio.wait_for(start_tls(self.u_writer, self.proxy.upstream_tls, server_hostname=self.cfg.upstream_host),
                                   HANDSHAKE_TIMEOUT)
        except (ssl.SSLError, OSError, asyncio.TimeoutError, ConnectionError) as exc:
            await self._abort(f"TLS handshake with the server failed ({exc or type(exc).__name__})")
            return
        self.tracer.tls_started()
        if self.gate is not None:
            self.gate.set()
            self.gate = None

    async def _abort(self, reason: str) -> None:
        self.reason = reason
        self.tracer.parsing = False
        self.closed_first = self.closed_first or Side.NONE
        for w in (self.c_writer, self.u_writer):
            with contextlib.suppress(Exception):
                w.transport.abort()
        if self.gate is not None:
            self.gate.set()

    def _finish(self) -> None:
        if self.tracer is not None:
            self.tracer.finish(self.closed_first or Side.NONE, self.reason or because("proxy-stopped"))

    @staticmethod
    async def _close_writer(writer: asyncio.StreamWriter | None) -> None:
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)


class _Leg(asyncio.Protocol):
    """The protocol of one transport of a spliced session (``ProxySession._splice``): the bytes
    it receives go to ``peer`` first, then to the session's tracer."""

    def __init__(self, session: ProxySession, side: Side, transport, peer, ended: asyncio.Future) -> None:
        self.session = session
        self.side = side
        self.transport = transport
        self.peer = peer
        self.done = ended
        self.old = None  # the stream protocol it replaced: told of the connection's end (wait_closed)
        self.active = True
        self.mine = session.acks[side]
        self.theirs = session.acks[Side.SERVER if side is Side.CLIENT else Side.CLIENT]
        self.octets = session.octets
        self.tracer = session.tracer

    def data_received(self, data: bytes) -> None:
        self.peer.write(data)  # the bytes first, then the bookkeeping: recording never delays a round trip
        self.theirs.answered()
        self.mine.read(data)
        if self.active:
            self.octets[self.side] += len(data)
            self.tracer.feed(self.side, data)

    def eof_received(self) -> bool:
        self.ended(None)
        return True  # keep the transport open: the other direction may go on (a half-close)

    def ended(self, exc: BaseException | None) -> None:
        """This side sent its last byte (EOF, or the connection was lost): pass the end on."""
        if self.done.done():
            return
        session = self.session
        if exc is not None:
            session.reason = session.reason or because("client-lost" if self.side is Side.CLIENT else "server-lost",
                                                       error=exc)
        if self.active:
            session._eof(self.side)
        with contextlib.suppress(OSError, RuntimeError, AttributeError):
            if not self.peer.is_closing() and self.peer.can_write_eof():
                self.peer.write_eof()
            else:
                self.peer.close()
        self.done.set_result(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.ended(exc)
        if self.old is not None:
            self.old.connection_lost(exc)

    def pause_writing(self) -> None:  # our transport's buffer is full: stop reading what fills it
        with contextlib.suppress(RuntimeError, AttributeError):
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        with contextlib.suppress(RuntimeError, AttributeError):
            self.peer.resume_reading()
