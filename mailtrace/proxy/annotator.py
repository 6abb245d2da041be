"""Parsing off the relay's path: the observers, the recorder and the sinks in a child process.

Parsing and annotating a line costs tens of microseconds of Python; done between two relayed
chunks it would add that to every round trip.  With an ``Annotator`` the relay only appends each
chunk, with its side and time, to a list (well under a microsecond); every few milliseconds
the list is pickled and written to a pipe at once (never blocking: the asyncio pipe transport
buffers); a child process (forked, so the sinks are created there) runs the very same
``Tracer`` per session.  The transcript is identical: the times are taken in the relay, when the
bytes were read.

Not used with ``--intercept-tls``, where the relay must know at once that the server accepted
STARTTLS to swap both sides to TLS.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import pickle
import signal
import struct
import sys
import time
from typing import Callable

from mailtrace.proxy.trace import Tracer
from mailtrace.transcript.event import Side
from mailtrace.transcript.recorder import Recorder, SessionRecorder

FRAME = struct.Struct("!I")  # length prefix of one pickled batch (a list of messages)
ANNOTATOR_NICE = 5  # scheduling priority of the child, below the relay's


class RemoteTracer:
    """Stands in for a ``Tracer`` in the relay: every call becomes a message to the child."""

    starttls_pending = False  # only the inline Tracer tracks it (intercept mode)

    def __init__(self, annotator: "Annotator", key: int) -> None:
        self._annotator = annotator
        self._key = key
        self._t0 = time.monotonic()
        self._parsing = True

    def _t(self) -> float:
        return time.monotonic() - self._t0

    def _send(self, name: str, *args) -> None:
        self._annotator.send((name, self._key, *args))

    @property
    def parsing(self) -> bool:
        return self._parsing

    @parsing.setter
    def parsing(self, value: bool) -> None:
        self._parsing = value
        self._send("set_parsing", value)

    def feed(self, side: Side, data: bytes, t: float | None = None) -> bool:
        self._send("feed", side.value, data, self._t() if t is None else t)  # a str pickles faster than an Enum
        return False

    def implicit_tls(self, intercepted: bool, t: float | None = None) -> None:
        self._send("implicit_tls", intercepted, self._t() if t is None else t)

    def finish(self, side: Side, reason: str, t: float | None = None) -> None:
        self._send("finish", side.value, reason, self._t() if t is None else t)


def _set_parsing(tracer: Tracer, value: bool) -> None:
    tracer.parsing = value


def _feed(tracer: Tracer, side: str, data: bytes, t: float) -> None:
    tracer.feed(Side(side), data, t)


def _finish(tracer: Tracer, side: str, reason: str, t: float) -> None:
    tracer.finish(Side(side), reason, t)


# message name -> what the child does with the session's Tracer
HANDLERS: dict[str, Callable] = {
    "feed": _feed,
    "implicit_tls": Tracer.implicit_tls,
    "set_parsing": _set_parsing,
    "finish": _finish,
}


class _OpenClock:
    """The clock of a session recorded in the child.  The relay times every event itself, from
    the moment it opened the session; the child learns of that moment later.  So the ``open``
    event is stamped 0 (the relay's origin, never after the greeting), and what the child has to
    time on its own (the final "proxy stopped") counts from the relay's wall-clock start."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        if self.calls <= 2:  # SessionRecorder reads it for its origin, then for the open event
            return self.started
        return time.time()


def _child(read_fd: int, write_fd: int, make_sinks: Callable[[], list], show_secrets: bool, lang: str) -> None:
    os.close(write_fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the parent, which closes the pipe
    try:  # the relay and its peers come first when the CPU is busy; annotations may lag a little
        os.nice(ANNOTATOR_NICE)
    except OSError:
        pass
    recorder = Recorder(make_sinks())
    numbers = itertools.count(1)  # session ids as Recorder.session numbers them ("smtp-1", ...)
    tracers: dict[int, Tracer] = {}
    with os.fdopen(read_fd, "rb", buffering=1 << 16) as f:
        while True:
            head = f.read(FRAME.size)
            if len(head) < FRAME.size:
                break
            size = FRAME.unpack(head)[0]
            body = f.read(size)
            if len(body) < size:
                break  # the relay was killed mid-batch
            for name, key, *args in pickle.loads(body):  # one batch: the messages of a few milliseconds
                try:
                    if name == "open":
                        protocol, client, server, started = args
                        session = SessionRecorder(recorder, f"{protocol}-{next(numbers)}", protocol, client=client,
                                                  server=server, mode="proxy", started=started, clock=_OpenClock(started))
                        tracers[key] = Tracer(session, protocol, show_secrets=show_secrets, lang=lang)
                    elif key in tracers:
                        HANDLERS[name](tracers[key], *args)
                        if name == "finish":
                            del tracers[key]
                except Exception as exc:  # a parsing bug must never stop the annotations of other sessions
                    print(f"mailtrace annotator: {type(exc).__name__}: {exc}", file=sys.stderr)
    for tracer in tracers.values():
        tracer.finish(Side.NONE, "proxy stopped")
    recorder.close()


BATCH_DELAY = 0.005  # seconds a relayed chunk may wait before it goes to the annotating child


class Annotator:
    """Start it before the event loop (it forks); ``attach()`` inside the loop; ``flush()`` and
    ``close()`` at the end."""

    def __init__(self, make_sinks: Callable[[], list], show_secrets: bool = False, lang: str = "en") -> None:
        self.make_sinks = make_sinks
        self.show_secrets = show_secrets
        self.lang = lang
        self._keys = itertools.count(1)
        self._transport: asyncio.WriteTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batch: list[tuple] = []  # messages not yet written to the pipe (all of them before attach())
        self.process = None
        self._write_fd = -1

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        ctx = multiprocessing.get_context("fork")
        self.process = ctx.Process(target=_child, args=(read_fd, write_fd, self.make_sinks, self.show_secrets, self.lang),
                                   name="mailtrace-annotator")
        self.process.start()
        os.close(read_fd)
        self._write_fd = write_fd

    async def attach(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        pipe = os.fdopen(self._write_fd, "wb", buffering=0)
        self._write_fd = -1  # owned by the pipe (and its transport) from now on
        self._transport, _ = await loop.connect_write_pipe(asyncio.Protocol, pipe)
        self._write_batch()

    def send(self, message: tuple) -> None:
        # The relay's whole share of the work per chunk: a tuple appended to a list.  Pickling and
        # the pipe write happen once per BATCH_DELAY for every message of that time (the live view
        # lags by a few milliseconds at most).
        if not self._batch and self._transport is not None:
            self._loop.call_later(BATCH_DELAY, self._write_batch)
        self._batch.append(message)

    def _write_batch(self) -> None:
        if self._transport is not None and self._batch:
            body = pickle.dumps(self._batch, protocol=pickle.HIGHEST_PROTOCOL)
            self._transport.write(FRAME.pack(len(body)) + body)
            self._batch = []

    def open(self, protocol: str, client: str, server: str) -> RemoteTracer:
        key = next(self._keys)
        self.send(("open", key, protocol, client, server, time.time()))
        return RemoteTracer(self, key)

    async def flush(self) -> None:
        """Wait until everything sent is in the pipe, then close it (the child finishes)."""
        transport = self._transport
        if transport is None:
            return
        self._write_batch()
        for _ in range(500):
            if not transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.01)
        transport.close()
        self._transport = None

    def close(self, timeout: float = 10) -> None:
        if self._transport is not None:
            try:
                self._transport.close()
            except RuntimeError:  # its event loop is already closed: close the pipe so the child sees EOF
                pipe = self._transport.get_extra_info("pipe")
                if pipe is not None:
                    pipe.close()
            self._transport = None
        elif self._write_fd >= 0:  # never attached to a loop
            os.close(self._write_fd)
        self._write_fd = -1
        if self.process is not None:
            self.process.join(timeout)
            if self.process.is_alive():
                self.process.terminate()
