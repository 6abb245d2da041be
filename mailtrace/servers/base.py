"""The thin asyncio shell that runs a sans-I/O server core on a TCP socket.

All protocol decisions live in the core (``mailtrace.protocols``); this module only moves
bytes: read from the socket, feed the core, carry out its outputs (record, send, start TLS,
run slow jobs in a thread, close).  The same shell runs SMTP, POP3 and IMAP.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from mailtrace._compat import start_tls
from mailtrace.knowledge import because
from mailtrace.protocols.base import Close, Pending, Send, ServerCore, StartTLS
from mailtrace.servers.bodywrite import write_body
from mailtrace.servers.idle import IdleTimer
from mailtrace.servers.storejobs import run_store_job
from mailtrace.servers.lab import session_user
from mailtrace.tcp import QuickAck
from mailtrace.transcript.event import Event, Kind, Side, Tls
from mailtrace.transcript.recorder import Recorder, SessionRecorder

if TYPE_CHECKING:
    from mailtrace.servers.limits import ConnectionLimiter

READ_CHUNK = 64 * 1024
# Fairness: one connection must never hold the event loop.  A chunk read from a socket is fed
# to the core a slice at a time, and after TURN_SECONDS of work a connection yields to the
# others (a client that pipelines 100,000 commands in one write only slows itself down).
# The slice adapts: small while the input is dense in commands (many outputs per slice),
# large while it is bulk data (a DATA body, an APPEND literal: few outputs per slice).
# Replies wait for the socket to drain (backpressure), and no more input is read until they
# have been written: a client that sends without reading is stalled by TCP itself.
MIN_SLICE, MAX_SLICE = 128, 64 * 1024
OUTPUTS_PER_SLICE = 24  # more than this from one slice: halve the slice; under a sixth: double it
TURN_SECONDS = 0.001
OUTPUTS_PER_CHECK = 64  # outputs carried out between two looks at the clock
BUSY_REPLY_SECONDS = 5  # a refused client that does not read its busy reply is dropped anyway
BIG_PIECES = 512  # octets per piece on average above which a batch is written without joining it


@dataclass(frozen=True)
class ListenerConfig:
    protocol: str  # "smtp", "pop3", "imap"
    host: str = "127.0.0.1"
    port: int = 0  # 0: an ephemeral port (tests)
    implicit_tls: bool = False  # TLS from the first byte (465, 993, 995 style)


class Connection:
    """One client connection: a core, its session recorder, and the stream pair."""

    def __init__(self, core: ServerCore, session: SessionRecorder, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, tls_context: ssl.SSLContext | None,
                 session_users: dict | None = None) -> None:
        self.core = core
        self.session_users = session_users  # session id -> lab user, for per-user transcripts
        self.session = session
        self.reader = reader
        self.writer = writer
        self.tls_context = tls_context
        self.closing = False
        self._lock = asyncio.Lock()  # outputs of input and of notify() never interleave
        self._turn_started = 0.0
        self._slice = 1024
        self._loop = asyncio.get_running_loop()
        self.tls_switched = False  # set when a StartTLS was carried out (run() drops the rest)
        self.writes = 0  # socket writes so far (run() asks whether a read was answered)
        self._write_error = ""  # why the last write failed (the client reset the connection)

    def _turn_over(self) -> bool:
        return self._loop.time() - self._turn_started >= TURN_SECONDS

    async def _yield_turn(self) -> None:
        """Let the other connections run (this one has worked for TURN_SECONDS)."""
        await asyncio.sleep(0)
        self._turn_started = self._loop.time()

    async def _take_turns(self) -> None:
        """Yield to the other connections once this one has worked for TURN_SECONDS."""
        if self._turn_over():
            await self._yield_turn()

    async def carry_out(self, outputs: list) -> None:
        """Carry out a core's outputs in order.

        Replies are batched: the ``Send``s of one turn go out in one write (one system call
        for a pipelined burst of commands), written before anything that waits (a store job,
        a TLS switch, a close, a turn given to the other connections) and at the end."""
        queue = list(outputs)
        queue.reverse()  # popped from the end: O(1) per output
        tls_ahead = any(isinstance(o, StartTLS) for o in queue)
        unsent: list[bytes] = []
        record = self.session.record
        done = 0
        while queue:
            out = queue.pop()
            done += 1
            if done % OUTPUTS_PER_CHECK == 0 and not tls_ahead and self._turn_over():
                if unsent:  # a long answer (a FETCH of thousands of messages) goes out in parts,
                    await self._write(unsent)  # and the other connections get their turn
                    unsent = []
                    if self._client_lost():
                        return
                await self._yield_turn()
            if isinstance(out, Event):
                record(out)
                continue
            if isinstance(out, Send):
                if not self.closing:
                    unsent.append(out.data)
                continue
            if unsent:
                await self._write(unsent)
                unsent = []
                if self._client_lost():
                    return
            if isinstance(out, Pending):
                result = await run_store_job(out.job)  # off the loop (servers/storejobs.py)
                queue.extend(reversed(out.resume(result)))
            elif isinstance(out, StartTLS):
                tls_ahead = False
                self.tls_switched = True
                await self._start_tls()
                queue.extend(reversed(self.core.tls_started() if not self.closing else []))
            elif isinstance(out, Close):
                self.closing = True
                self.session.close(Side.SERVER, out.reason)
            if not tls_ahead and self._turn_over():  # never yield between the reply to STARTTLS and
                await self._yield_turn()  # the switch: the ClientHello must not reach the plaintext reader
        if unsent:
            await self._write(unsent)
            self._client_lost()

    def _client_lost(self) -> bool:
        """True once the client is gone (it reset the connection, a write failed): the rest of
        what it sent is not acted on, and no reply it will never read is recorded as sent (40
        pipelined FETCHes of a client that hung up were otherwise all read and logged)."""
        if self.closing or not self.writer.transport.is_closing():
            return False
        self.closing = True
        # (no error text known: the errno's name, the same in every language)
        self.session.close(Side.CLIENT, because("client-lost", error=self._write_error or "ECONNRESET"))
        return True

    async def _write(self, pieces: list[bytes]) -> None:
        """Write ``pieces`` in one write, then wait while the socket's buffer is full
        (backpressure: a client that does not read stalls only itself)."""
        transport = self.writer.transport
        if transport.is_closing():  # the client is gone (a reset): the reader sees the end
            return
        octets = sum(map(len, pieces))
        if write_body(transport, pieces, octets):  # a message body: written with the interpreter lock released
            pass
        elif len(pieces) == 1:
            transport.write(pieces[0])
        elif octets > BIG_PIECES * len(pieces):  # message bodies (a FETCH): one
            transport.writelines(pieces)  # writev, no copy (a 256 KB join was a fresh mmap, page faults)
        else:  # short replies (a pipelined burst): one copy is cheaper than an iovec each
            transport.write(b"".join(pieces))
        self.writes += 1
        if transport.get_write_buffer_size():  # (usually 0: the kernel took it all at once)
            try:
                await self.writer.drain()
            except (ConnectionError, RuntimeError) as exc:  # (uvloop: RuntimeError once closed)
                self._write_error = str(exc) or type(exc).__name__

    async def _start_tls(self) -> None:
        if self.tls_context is None:
            self.closing = True
            self.session.close(Side.SERVER, because("no-certificate"))
            return
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()
        try:
            await start_tls(self.writer, self.tls_context)
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            self.closing = True
            self.session.close(Side.CLIENT, because("tls-failed", error=exc))
            return
        self.session.record(Event(side=Side.NONE, kind=Kind.TLS, tls=Tls(how="starttls")))

    async def feed(self, outputs_fn: Callable[[], list], flush: bool = True) -> None:
        async with self._lock:
            if not self.closing:
                await self.carry_out(outputs_fn())
            if self.session_users is not None and self.session.id not in self.session_users:
                user = session_user(self.core)
                if user:
                    self.session_users[self.session.id] = user
            if flush:
                self.session.recorder.flush()  # one flush of the log files per chunk of input

    def notify(self) -> None:
        """Thread-safe: tell the core that something changed elsewhere (new mail...)."""
        loop = self._loop
        loop.call_soon_threadsafe(lambda: loop.create_task(self._notify()))

    async def _notify(self) -> None:
        await self.feed(self.core.notify)

    def _sized(self, outputs: list) -> list:
        """Adapt the input slice to how many outputs the last one made (see MIN_SLICE)."""
        if len(outputs) > OUTPUTS_PER_SLICE:
            self._slice = max(MIN_SLICE, self._slice // 2)
        elif len(outputs) < OUTPUTS_PER_SLICE // 6:
            self._slice = min(MAX_SLICE, self._slice * 2)
        return outputs

    async def refuse(self, why: str) -> None:
        """Answer with the core's busy greeting (``busy(why)``) and close."""
        try:
            await self.feed(lambda: self.core.busy(why))
        finally:
            self.session.close(Side.SERVER, why)
            self.writer.close()

    async def run(self) -> None:
        quick_ack = QuickAck(self.writer)  # no 40 ms stall on commands sent in two writes
        idle = IdleTimer(self._loop, asyncio.current_task())
        try:
            await self.feed(self.core.start)
            while not self.closing:
                timeout = self.core.idle_timeout_seconds
                try:
                    if timeout:
                        idle.start(timeout)
                    data = await self.reader.read(READ_CHUNK)
                except asyncio.CancelledError:
                    if not idle.expired():  # not the idle timeout: the lab is stopping
                        raise
                    await self.feed(self.core.idle_timeout)
                    continue
                except (ConnectionError, OSError, ssl.SSLError):
                    data = b""
                finally:
                    idle.stop()
                if not data:
                    await self.feed(self.core.eof)
                    self.session.close(Side.CLIENT, because("client-closed"))
                    break
                pos = 0
                writes = self.writes
                self.tls_switched = False
                while pos < len(data):
                    piece = data[pos:pos + self._slice]
                    pos += len(piece)
                    await self.feed(lambda: self._sized(self.core.receive(piece)), flush=pos >= len(data))
                    if self.tls_switched and pos < len(data):
                        # RFC 3207 §5: plaintext sent after STARTTLS is never acted on
                        self.session.violation("starttls-injection",
                                               f"{len(data) - pos} octets after STARTTLS in plaintext, discarded")
                        break
                    await self._take_turns()
                if self.writes == writes:  # no reply carried our ACK: acknowledge at once (tcp.py)
                    quick_ack.rearm()
        except Exception as exc:  # a bug in a core costs this connection only, and is said
            self.closing = True
            report_internal_error(self.session, exc)
        finally:
            idle.close()
            self.session.close(Side.NONE)
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


def report_internal_error(session: SessionRecorder, exc: Exception) -> None:
    """An unexpected exception in a core: one line on stderr (no traceback) and the close reason."""
    what = f"{type(exc).__name__}: {exc}".replace("\r", " ").replace("\n", " ")
    with contextlib.suppress(Exception):
        print(f"mailtrace: {session.protocol} session {session.id}: internal error: {what}",
              file=sys.stderr, flush=True)
    session.close(Side.SERVER, because("internal-error", what=what))


CoreFactory = Callable[["ConnectionContext"], ServerCore]


@dataclass
class ConnectionContext:
    """What a core factory may want to know about a new connection."""

    client: str  # "127.0.0.1:51234"
    server: str  # "127.0.0.1:2525"
    tls: bool  # already encrypted (implicit TLS)
    connection: Connection | None = None  # set once the connection exists (for notify())


class Listener:
    """A TCP listener that runs one core per connection. ``await start()``, then ``port``."""

    def __init__(self, config: ListenerConfig, core_factory: CoreFactory, recorder: Recorder,
                 tls_context: ssl.SSLContext | None = None, limiter: "ConnectionLimiter | None" = None,
                 session_users: dict | None = None) -> None:
        self.config = config
        self.session_users = session_users
        self.limiter = limiter  # shared by all the lab's listeners (servers.limits)
        self.core_factory = core_factory
        self.recorder = recorder
        self.tls_context = tls_context
        self.server: asyncio.base_events.Server | None = None
        self.connections: set[asyncio.Task] = set()
        self.live: dict[asyncio.Task, Connection] = {}  # the connections whose core is running

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        ssl_ctx = self.tls_context if self.config.implicit_tls else None
        self.server = await asyncio.start_server(self._handle, self.config.host, self.config.port, ssl=ssl_ctx,
                                                 limit=READ_CHUNK, backlog=512)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        refused = self.limiter.admit(str(peer[0])) if self.limiter is not None else None
        try:
            await self.serve(reader, writer, refused)
        finally:
            if refused is None and self.limiter is not None:
                self.limiter.release(str(peer[0]))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refused: str | None,
                    session_id: str | None = None) -> None:
        """Run one connection, admitted (``refused`` None) or answered busy and closed.  A lab
        worker (servers/workers.py) calls this with the admission and session id of its parent."""
        peer = writer.get_extra_info("peername") or ("?", 0)
        local = writer.get_extra_info("sockname") or ("?", 0)
        ctx = ConnectionContext(client=f"{peer[0]}:{peer[1]}", server=f"{local[0]}:{local[1]}",
                                tls=self.config.implicit_tls)
        session = self.recorder.session(self.config.protocol, client=ctx.client, server=ctx.server,
                                        session_id=session_id)
        if self.config.implicit_tls:
            session.record(Event(side=Side.NONE, kind=Kind.TLS, tls=Tls(how="implicit")))
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
        try:
            core = self.core_factory(ctx)
            conn = Connection(core, session, reader, writer, self.tls_context, self.session_users)
            ctx.connection = conn
            if refused is not None:  # the protocol's own busy greeting, then close
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(conn.refuse(refused), BUSY_REPLY_SECONDS)
                return
            if task is not None:
                self.live[task] = conn
            await conn.run()
        except asyncio.CancelledError:  # stop() cancelled us: end quietly (no "Task was cancelled" log)
            session.close(Side.SERVER, because("server-stopping"))
            writer.close()
        except Exception as exc:  # a bug in a core must cost one connection, never the server
            report_internal_error(session, exc)
            writer.close()
        finally:
            if self.session_users is not None:
                session.close(Side.NONE)  # (recorded with its user) before the user is forgotten
                self.session_users.pop(session.id, None)
            if task is not None:
                self.connections.discard(task)
                self.live.pop(task, None)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

        # Tell connected clients why they are being dropped (SMTP 421, IMAP * BYE), if the
        # core knows how (an optional ``shutdown()``); never wait long for a slow client.
        async def say_goodbye(conn: Connection) -> None:
            shutdown = getattr(conn.core, "shutdown", None)
            if shutdown is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.feed(shutdown), 1)

        if self.live:
            await asyncio.gather(*(say_goodbye(c) for c in list(self.live.values())))
        tasks = list(self.connections)
        for task in tasks:
            task.cancel()
        if tasks:  # let them end their cancellation (else "Task was destroyed but it is pending!")
            await asyncio.wait(tasks, timeout=2)
        if self.server is not None:  # (a lab worker's listener has none: its parent accepts)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
