"""The scripted server: a real protocol core behind a fault layer, on 127.0.0.1 port 0.

Theory of operation: the grader needs one thing the lab shell (``mailtrace.servers.base``) does
not give: *when* the client's bytes arrived relative to the server's reply.  A student whose
client treats one ``recv()`` as one reply sends its next command while the reply is still coming
(RFC 5321 §4.2: "an SMTP client [...] MUST wait for the reply"; RFC 1939 §3 and RFC 3501 §2.2.2
say the same of their replies).  So this shell reads and writes concurrently: a reader task
feeds the core the moment bytes arrive, a writer task carries out the fault layer's actions
(segments, delays, closes) in order, and each client event is stamped with how it arrived:

``Event.arrived`` = ``"after-reply"`` (fine), ``"before-reply"`` (nothing of the reply owed
had been sent: before the greeting, or without waiting), ``"mid-line"`` (part of a reply line
had been sent: one recv() taken for a whole reply), ``"mid-reply"`` (whole lines of a
multi-line reply had been sent, not its last line) or ``"same-segment"`` (sent in one go with
the previous command, before its reply).

Everything is recorded through the shared ``Recorder`` (the grader gives it a ``MemorySink``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Callable

from mailtrace.knowledge import because
from mailtrace.grading.faults import FaultLayer, Hangup, Record, ServerScript, Sleep, Wait, Write, mark
from mailtrace.transcript.event import Event, Side
from mailtrace.transcript.recorder import Recorder

READ_CHUNK = 65536
#: a pause between segments is stretched by at most this many times itself, and this many
#: seconds: a client that keeps the machine busy (a fork bomb) must not stall the grading
MAX_PAUSE_FACTOR = 3.0
MAX_PAUSE_EXTENSION = 1.0
#: a wait shorter than this is not worth another sleep
MIN_PAUSE_EXTENSION = 0.005


async def pause_in_client_time(seconds: float, client_pids: Callable[[], list[int]]) -> None:
    """Sleep ``seconds`` of the client program's own time.

    A reply cut into segments catches a client that reads a reply with one recv(): it gets the
    first segment only.  On a loaded machine the client, woken by the first segment, may wait
    for a CPU longer than the pause; its one recv() then gets two segments and the defect goes
    unseen, so one submission would score differently on a busy machine.  The pause is therefore
    stretched by the time the client's processes were kept from running during it (runnable but
    waiting, from their schedstat: see sandbox.cpu_use), within the bounds above."""
    from mailtrace.grading.sandbox import cpu_use

    def look() -> tuple[list[int], tuple[float, float, bool]]:
        pids = client_pids()
        return pids, cpu_use(pids)

    # The whole pause, measurements included, ends by this deadline: on a busy grader a look at
    # /proc in a thread (a hop there and back, each needing the interpreter lock) can itself
    # take longer than the pause, and ten such looks made one 86 KB RETR last the run's 8 s.
    start = time.monotonic()
    deadline = start + seconds + min(MAX_PAUSE_FACTOR * seconds, MAX_PAUSE_EXTENSION)
    first = asyncio.get_running_loop().run_in_executor(None, look)  # /proc reads: off the loop
    await asyncio.sleep(seconds)
    try:
        pids, (ran, waited_before, _) = await asyncio.wait_for(first, max(deadline - time.monotonic(), 0.001))
    except asyncio.TimeoutError:
        return
    if not pids:  # no program (yet): wall-clock time
        return
    given, then = 0.0, start
    while (left := deadline - time.monotonic()) > MIN_PAUSE_EXTENSION:
        ran_then = ran
        try:
            ran, waited, runnable = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(None, cpu_use, pids), left)
        except asyncio.TimeoutError:
            return
        now = time.monotonic()
        owed = waited - waited_before - given  # waits that ended during the pause, not made up yet
        if owed < MIN_PAUSE_EXTENSION and runnable and ran - ran_then < (now - then) / 2:
            owed = seconds  # waiting for a CPU right now (schedstat counts a wait when it ends)
        if owed < MIN_PAUSE_EXTENSION:
            return
        owed = min(owed, deadline - now)
        given, then = given + owed, now
        await asyncio.sleep(max(0.0, owed))


class _Conn:
    def __init__(self, layer: FaultLayer, session, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 client_pids: Callable[[], list[int]] = list):
        self.layer = layer
        self.client_pids = client_pids
        self.session = session
        self.reader = reader
        self.writer = writer
        self.queue: asyncio.Queue = asyncio.Queue()
        self.busy = 0  # actions queued or being carried out
        self.unit_sent = b""  # bytes of the reply being written so far
        self.pending_mark: str | None = None
        self.carry: str | None = None
        self.emitted = False
        self.closed = False

    # -- writer --------------------------------------------------------------------------------
    def enqueue(self, actions: list) -> None:
        for action in actions:
            if isinstance(action, Record) and action.event.side is Side.CLIENT:
                self._record_client(action.event)
                continue
            self.busy += 1
            self.queue.put_nowait(action)

    async def write_loop(self) -> None:
        while True:
            action = await self.queue.get()
            try:
                if isinstance(action, Record):
                    self.session.record(action.event)
                elif isinstance(action, Sleep) and action.client_time:
                    await pause_in_client_time(action.seconds, self.client_pids)
                elif isinstance(action, Sleep):
                    await asyncio.sleep(action.seconds)
                elif isinstance(action, ClientClosed):
                    self.session.close(Side.CLIENT, action.reason)
                elif isinstance(action, Write):
                    # a transport the peer already reset would log "socket.send() raised exception."
                    if not self.closed and not self.writer.transport.is_closing():
                        self.unit_sent += action.data
                        self.writer.write(action.data)
                        with contextlib.suppress(ConnectionError):
                            await self.writer.drain()
                    if action.unit_end:
                        self.unit_sent = b""
                elif isinstance(action, Hangup):
                    self._hangup(action.reason)
                elif isinstance(action, Wait):
                    result = await asyncio.to_thread(action.pending.job)
                    self.enqueue_front(self.layer.resume(action, result))
            finally:
                self.busy -= 1

    def enqueue_front(self, actions: list) -> None:
        rest = []
        while not self.queue.empty():
            rest.append(self.queue.get_nowait())
        self.busy -= len(rest)
        self.enqueue(actions)
        for item in rest:
            self.busy += 1
            self.queue.put_nowait(item)

    def _hangup(self, reason) -> None:
        if self.closed:
            return
        self.closed = True
        self.session.close(Side.SERVER, reason)
        self.writer.close()

    # -- reader --------------------------------------------------------------------------------
    def _arrival(self) -> str:
        if self.busy <= 0:
            return "after-reply"
        if not self.unit_sent:
            return "before-reply"
        return "mid-reply" if self.unit_sent.endswith(b"\n") else "mid-line"

    def _record_client(self, event: Event) -> None:
        how = self.pending_mark or "after-reply"
        self.pending_mark = "same-segment"  # until the next chunk arrives
        self.emitted = True
        # (how much of the reply line had been written when a command came mid-line is not
        # kept: it depends on timing, and one seed must give one report)
        self.session.record(mark(event, arrived=how))

    async def read_loop(self) -> None:
        while not self.closed:
            try:
                data = await self.reader.read(READ_CHUNK)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                if not self.closed:
                    self.enqueue(self.layer.eof())
                    # recorded in turn, after the replies already due (the order must not depend on
                    # whether the writer had sent them when the close was read: same seed, same report)
                    self.enqueue([ClientClosed(because("client-closed")), Hangup(because("client-closed"))])
                    self.closed = True
                return
            # the first byte of a client event decides how it arrived (a line may come in pieces)
            if self.carry is None:
                self.carry = self._arrival()
            self.pending_mark, self.emitted = self.carry, False
            self.enqueue(self.layer.receive(data))
            if self.emitted:
                self.carry = None


class ClientClosed:
    """The client's close, recorded in the write queue's order."""

    def __init__(self, reason) -> None:
        self.reason = reason  # free text or knowledge.because(KEY)


class ScriptedServer:
    """One listening socket, one event loop thread; ``start()`` returns the port."""

    def __init__(self, protocol: str, core_factory: Callable[[], object], script: ServerScript,
                 recorder: Recorder) -> None:
        self.protocol = protocol
        self.core_factory = core_factory
        self.script = script
        self.recorder = recorder
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=f"scripted-{protocol}")
        self.tasks: set[asyncio.Task] = set()
        self.errors: list[str] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        #: the client program's processes, set by the grader once it started the program: the
        #: pauses between the segments of a cut reply are measured in its own time
        self.client_pids: Callable[[], list[int]] | None = None

    def start(self, sock: socket.socket | None = None) -> int:
        """Listen on ``sock`` (a bound listening socket: one opened in a run's network namespace
        belongs to that namespace) or on a new one on 127.0.0.1; returns the port."""
        self.thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(sock), self.loop)
        self.port = fut.result(10)
        return self.port

    async def _start(self, sock: socket.socket | None) -> int:
        if sock is not None:
            self._server = await asyncio.start_server(self._handle, sock=sock, limit=READ_CHUNK)
        else:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=READ_CHUNK)
        return self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.tasks.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = writer.get_extra_info("peername") or ("?", 0)
        local = writer.get_extra_info("sockname") or ("?", 0)
        # the client's port is the kernel's choice: left out, so one seed gives one transcript
        session = self.recorder.session(self.protocol, client=f"{peer[0]}",
                                        server=f"{local[0]}:{local[1]}", mode="grade")
        conn = None
        writer_task = None
        try:
            layer = FaultLayer(self.core_factory(), self.script, self.protocol)
            conn = _Conn(layer, session, reader, writer,
                         client_pids=lambda: self.client_pids() if self.client_pids else [])
            writer_task = asyncio.create_task(conn.write_loop())
            conn.enqueue(layer.start())
            await conn.read_loop()
            while conn.busy > 0 and not writer_task.done():
                await asyncio.sleep(0.005)
        except asyncio.CancelledError:
            # stop(): the run is over (a reply may still have been waiting out a scripted pause);
            # ending quietly keeps asyncio from printing the cancellation to the grader's stderr
            pass
        except Exception as exc:  # a bug must cost one connection, never the grader
            self.errors.append(f"{type(exc).__name__}: {exc}")
            session.close(Side.SERVER, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if writer_task is not None:
                writer_task.cancel()
            session.close(Side.NONE)
            writer.close()
            self.tasks.discard(task)

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.sleep(0)

        if self.thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        with contextlib.suppress(Exception):
            self.loop.close()
