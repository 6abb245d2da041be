"""The multi-process lab (``mailtrace lab --workers N``): protocol servers on every core.

One Python process runs one thread of Python at a time (the interpreter lock), so a lab in one
process uses one core however many clients it serves.  With ``--workers N`` the lab is

    parent: mailtrace lab                         N workers: python -m mailtrace.servers.workers
    ---------------------------------             -----------------------------------------------
    the listening sockets: accept()
    the connection limiter, session ids  --socket-->  the protocol cores (SMTP, POP3, IMAP) on the
    (least-loaded worker gets it)                      shared Maildir store: Listener.serve()
    the recorder and its sinks: live      <--events--  every event, in batches, in session order
      view, text, --log-dir, web                       (and appended to the --log JSONL file here)
    relays store changes                  <--change--  "alice's INBOX changed" (a delivery)
                                          --change-->  the other workers wake their IMAP IDLE clients

Everything that must be single stays in the parent: what the terminal shows, the text and
per-user logs, the web view, the per-address limits (servers/limits.py) and the session
numbering.  The JSONL log is the exception: its JSON encoding was most of the parent's work, so
the parent writes its header and each worker appends its own events' lines (``AppendedJsonl``).  The accepted socket
itself travels to the worker as SCM_RIGHTS ancillary data (``socket.send_fds``, unix(7)); the
worker runs it on its own event loop (``loop.connect_accepted_socket``, TLS handshake included
for the implicit-TLS ports).  The Maildir store is already safe for several processes: Maildir
delivery is atomic (tmp/, fsync, rename), and the POP3 maildrop lock and the uidlist lock are
``flock`` locks, which exclude other processes as well as other threads.

Two socket pairs per worker:
* control, parent -> worker (SOCK_SEQPACKET: one message per send, the socket riding with it):
  ``("conn", listener index, session id, refused reason or None)`` + the socket,
  ``("changed", user, mailbox)``, ``("stop",)``; the first message is the worker's settings.
* events, worker -> parent (a byte stream of length-prefixed pickles): lists of ``Event``s and
  ``("user", sid, user)`` / ``("done", sid)`` / ``("changed", user, mailbox)`` / ``("bye",)`` /
  ``("seen", {sid: (seq, t)}, tally)``.
The parent gets only the events its sinks need (``events_wanted``): every one when a sink keeps
or writes them all (``--text``, ``--log-dir``, ``--web``); with the live view alone, the events
the view would draw (the first ``live.DETAIL_PER_SECOND`` of each second of the worker) and a
count of the others (``live.DetailBudget``); with ``--quiet``, none.  Events not sent are still
in the JSONL log (the worker writes it), and ``"seen"`` tells the parent how far each session
got (to close it in the log if its worker dies).  Pickling every event, 10 KB message bodies
included, and rebuilding it in the parent for a view that draws 200 a second cost more CPU
than the servers themselves saved by running on every core.
The worker writes events with blocking sends: a parent that falls behind slows the workers
down (backpressure) and no event is ever dropped.

Workers die with the parent: PR_SET_PDEATHSIG (Linux) kills them if it is killed, and an end
of file on the control socket stops them otherwise.  They run in a process group of their own,
so Ctrl-C reaches only the parent, which stops them (SMTP 421, IMAP ``* BYE``, as in one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import operator
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass, field

from mailtrace._compat import NEW_PROCESS_GROUP
from mailtrace.transcript.event import Args, Clause, Event, Kind, MessageRef, Note, Peer, Reason, Side, Tls

HEADER = struct.Struct("!I")  # length of one pickled batch on the events stream
CONTROL_MESSAGE_MAX = 64 * 1024
EVENTS_BUFFER = 4 * 1024 * 1024  # socket buffer of the events stream (bursts without blocking)
READY_SECONDS = 60  # a worker must be serving within this (imports, TLS context, store)
STOP_SECONDS = 5  # a worker that has not said goodbye by then is killed
ACCEPTS_PER_WAKE = 128  # connections taken from a listening socket per readiness callback
# A worker sends its events in batches: one system call and one wake-up of the parent for many
# events (sending each loop turn's events on their own cost the parent as much CPU as the servers).
BATCH_DELAY = 0.005  # seconds: the longest an event waits in the worker
BATCH_ITEMS = 1000  # ... or this many events
# With the live view alone, most events are only counted (live.DetailBudget): the counts, and how
# far each session got, wait longer (a summary line is drawn once a second), so that a busy worker
# wakes the parent a few times a second rather than every BATCH_DELAY.
COUNTS_DELAY = 0.1  # seconds


def settings_of(lab) -> dict:
    """What a worker needs to build the same lab (``worker_lab``), as plain data."""
    return dict(directory=str(lab.directory), users=dict(lab.users), tls=lab.tls_context is not None,
                tls_names=tuple(getattr(lab, "tls_names", ())), lang=lab.lang,
                allow_plaintext_auth=lab.allow_plaintext_auth, per_user=lab.session_users is not None,
                smtp_config=dict(getattr(lab, "smtp_config", None) or {}),
                jsonl_log=(str(lab.jsonl_log[1]), lab.jsonl_log[2]) if lab.jsonl_log else None,
                events=events_wanted(lab))


def events_wanted(lab) -> str:
    """What the parent's sinks need of the workers' events: "all" when one keeps or writes every
    event (the text log, per-user logs, the web view), "view" for the live view alone, "none"
    (``--quiet``).  The JSONL log is no such sink: the workers write it."""
    jsonl = lab.jsonl_log[0] if lab.jsonl_log else None
    if any(sink is not jsonl and sink is not lab.live_sink for sink in lab.recorder.sinks):
        return "all"
    return "view" if lab.live_sink is not None else "none"


def default_workers() -> int:
    """``--workers auto``: one worker per core, at most 4."""
    return max(1, min(os.cpu_count() or 1, 4))


# --- events on the wire between processes ---------------------------------------------------------
# An Event (and each typed fact in it: Args, Note, Peer...) travels as its class and the tuple of its
# fields' values, rebuilt by its own __init__: pickle's default for a dataclass with slots (its
# state read and set through dataclasses.fields()) takes the worker twice as long to write.
def _rebuild(cls: type, values: tuple):
    return cls(**dict(zip(_FIELD_NAMES[cls], values)))


def _reducer(cls: type):
    values = operator.attrgetter(*_FIELD_NAMES[cls])  # (one C call for the whole tuple)
    return lambda obj: (_rebuild, (cls, values(obj)))


_FIELD_NAMES = {cls: tuple(f.name for f in dataclasses.fields(cls))
                for cls in (Event, Args, Note, MessageRef, Peer, Reason, Clause, Tls)}
_REDUCERS = {cls: _reducer(cls) for cls in _FIELD_NAMES}


def dump_batch(items: list) -> bytes:
    """One batch of the events stream: its length, then the pickled list."""
    buffer = io.BytesIO()
    buffer.write(HEADER.pack(0))
    pickler = pickle.Pickler(buffer, pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _REDUCERS
    pickler.dump(items)
    data = buffer.getbuffer()
    HEADER.pack_into(data, 0, len(data) - HEADER.size)
    return bytes(data)


# --- the parent ---------------------------------------------------------------------------------------
@dataclass
class _Worker:
    index: int
    process: subprocess.Popen
    control: socket.socket
    events: socket.socket
    load: int = 0  # connections it serves now
    pending: list = field(default_factory=list)  # control messages the socket could not take yet
    said_bye: bool = False
    reader: asyncio.Task | None = None
    writer: object = None  # the asyncio side of ``events``


@dataclass
class _Open:
    """What the parent keeps of a connection it handed to a worker."""

    worker: _Worker
    address: str  # the client's address, counted by the limiter
    admitted: bool
    protocol: str
    last_seq: int = -1
    last_t: float = 0.0


class WorkerPool:
    """Starts the workers, hands them connections, records their events, relays store changes."""

    def __init__(self, lab, endpoints: list, count: int, settings: dict) -> None:
        self.lab = lab
        self.endpoints = endpoints  # the listeners' ListenerConfig, in order (their index is the key)
        self.count = count
        self.settings = settings  # what a worker needs to build its Lab (see worker_lab())
        self.workers: list[_Worker] = []
        self.open: dict[str, _Open] = {}  # session id -> connection handed over
        self.stopping = False
        self._turn = 0

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            await asyncio.gather(*(self._spawn(i) for i in range(self.count)))
        except BaseException:
            await self.stop()
            raise

    async def _spawn(self, index: int) -> None:
        control, control_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        events, events_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for s in (events, events_child):
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF if s is events_child else socket.SO_RCVBUF,
                             EVENTS_BUFFER)
        args = [sys.executable, "-m", "mailtrace.servers.workers", str(control_child.fileno()),
                str(events_child.fileno()), str(os.getpid())]
        # a process group of its own, so a Ctrl-C in the terminal reaches only the parent
        process = subprocess.Popen(args, pass_fds=(control_child.fileno(), events_child.fileno()),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, **NEW_PROCESS_GROUP)
        control_child.close()
        events_child.close()
        control.setblocking(False)
        worker = _Worker(index, process, control, events)
        self.workers.append(worker)
        settings = dict(self.settings, index=index, count=self.count,
                        listeners=[(c.protocol, c.host, c.port, c.implicit_tls) for c in self.endpoints])
        self._send(worker, ("settings", settings))
        reader, worker.writer = await asyncio.open_unix_connection(sock=events, limit=1 << 20)  # (kept: its
        # garbage collection would close the stream)
        first = await asyncio.wait_for(self._read_batch(reader), READY_SECONDS)
        if first != [("ready",)]:
            raise RuntimeError(f"lab worker {index} did not start (exit status {process.poll()})")
        worker.reader = asyncio.ensure_future(self._read_events(worker, reader))

    @staticmethod
    async def _read_batch(reader: asyncio.StreamReader) -> list | None:
        try:
            (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
            return pickle.loads(await reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    # -- connections ---------------------------------------------------------------------------------
    def hand_over(self, listener_index: int, sock: socket.socket, address: str, refused: str | None) -> None:
        """Give an accepted connection to the least-loaded worker (``refused``: it answers busy)."""
        live = [w for w in self.workers if not w.said_bye and w.process.poll() is None]
        if self.stopping or not live:
            sock.close()
            if refused is None and self.lab.limiter is not None:
                self.lab.limiter.release(address)
            return
        self._turn += 1
        worker = min(live, key=lambda w: (w.load, (w.index - self._turn) % len(self.workers)))
        protocol = self.endpoints[listener_index].protocol
        sid = self.lab.recorder.new_session_id(protocol)
        worker.load += 1
        self.open[sid] = _Open(worker, address, refused is None, protocol)
        self._send(worker, ("conn", listener_index, sid, refused), sock)

    def _send(self, worker: _Worker, message: tuple, sock: socket.socket | None = None) -> None:
        """Send a control message (and a socket) without ever blocking the parent's loop."""
        worker.pending.append((pickle.dumps(message), sock))
        if len(worker.pending) == 1:
            self._flush_control(worker)

    def _flush_control(self, worker: _Worker) -> None:
        while worker.pending:
            data, sock = worker.pending[0]
            try:
                socket.send_fds(worker.control, [data], [sock.fileno()] if sock is not None else [])
            except BlockingIOError:  # its queue is full: again when the socket can take more
                with contextlib.suppress(RuntimeError):
                    self.loop.add_writer(worker.control, self._flush_control, worker)
                return
            except OSError:  # the worker is gone (its reader notices and cleans up)
                for _, s in worker.pending:
                    if s is not None:
                        s.close()
                worker.pending.clear()
                break
            worker.pending.pop(0)
            if sock is not None:
                sock.close()  # the worker has its own descriptor of it now
        with contextlib.suppress(Exception):
            self.loop.remove_writer(worker.control)

    # -- events --------------------------------------------------------------------------------------
    async def _read_events(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            await self._take_events(worker, reader)
        except Exception as exc:  # a bug here must be said, not lost in a task nobody awaits
            print(f"mailtrace: lab worker {worker.index}: cannot read its events: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)
            with contextlib.suppress(Exception):
                worker.process.kill()
        finally:
            self._worker_gone(worker)

    async def _take_events(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        recorder = self.lab.recorder
        while True:
            batch = await self._read_batch(reader)
            if batch is None:
                break
            events = []
            for item in batch:
                if type(item) is Event:
                    events.append(item)
                    continue
                if events:
                    self._record(events)
                    events = []
                self._control_item(worker, item)
            if events:
                self._record(events)
            recorder.flush()

    def _record(self, events: list[Event]) -> None:
        self.lab.recorder.dispatch_many(events)
        opened_get = self.open.get
        for event in events:  # where each session got to (to close it if its worker dies)
            opened = opened_get(event.session)
            if opened is not None:
                opened.last_seq, opened.last_t = event.seq, event.t

    def _control_item(self, worker: _Worker, item: tuple) -> None:
        what = item[0]
        if what == "seen":  # events the worker did not send (they are in the JSONL log)
            _, seen, tally = item
            opened_get = self.open.get
            for sid, (seq, t) in seen.items():
                opened = opened_get(sid)
                if opened is not None and seq > opened.last_seq:
                    opened.last_seq, opened.last_t = seq, t
            if tally is not None and self.lab.live_sink is not None:
                self.lab.live_sink.add_tally(tally)
        elif what == "done":
            self._forget(item[1])
        elif what == "user":
            if self.lab.session_users is not None:
                self.lab.session_users[item[1]] = item[2]
        elif what == "changed":  # a worker's store changed a mailbox: wake the others' watchers
            for other in self.workers:
                if other is not worker and not other.said_bye:
                    self._send(other, item)
            store = self.lab.store
            if store is not None:
                store.notify_watchers(item[1], item[2])  # (the web view's, in this process)
        elif what == "bye":
            worker.said_bye = True

    def _forget(self, sid: str) -> None:
        opened = self.open.pop(sid, None)
        if opened is None:
            return
        opened.worker.load -= 1
        if opened.admitted and self.lab.limiter is not None:
            self.lab.limiter.release(opened.address)
        if self.lab.session_users is not None:
            self.lab.session_users.pop(sid, None)

    def _worker_gone(self, worker: _Worker) -> None:
        """A worker's events ended: close (in the log) the sessions it never closed."""
        if not worker.said_bye and not self.stopping:
            print(f"mailtrace: lab worker {worker.index} ended unexpectedly (exit status {worker.process.poll()}); "
                  "its connections are lost", file=sys.stderr, flush=True)
        lost = {sid: opened for sid, opened in self.open.items() if opened.worker is worker}
        # The parent may not have heard of a session's last events (only counts come, and late):
        # the log the worker wrote says how far each got.
        logged = last_logged(self.lab.jsonl_log[1], set(lost)) if self.lab.jsonl_log is not None and lost else {}
        for sid, opened in lost.items():
            seq, t = max((opened.last_seq, opened.last_t), logged.get(sid, (-1, 0.0)))
            ended = []
            if seq < 0:  # killed before it logged a line of this session: its open, from what we know
                ended.append(Event(side=Side.NONE, kind=Kind.OPEN, protocol=opened.protocol,
                                   peer=Peer(client=opened.address, mode="lab")))
                ended[0].stamp(sid, 0, 0.0, opened.protocol)
                seq, t = 0, 0.0
            close = Event(side=Side.NONE, kind=Kind.CLOSE, reason=Reason(text="the lab worker serving it ended"))
            close.stamp(sid, seq + 1, t, opened.protocol)
            ended.append(close)
            self.lab.recorder.dispatch_many(ended)
            if self.lab.jsonl_log is not None:  # (written by the workers otherwise)
                with contextlib.suppress(OSError):
                    log = AppendedJsonl(str(self.lab.jsonl_log[1]), self.lab.jsonl_log[2])
                    for event in ended:
                        log.handle(event)
                    log.close()
            self._forget(sid)
        worker.said_bye = True
        with contextlib.suppress(Exception):
            self.loop.remove_writer(worker.control)
        worker.control.close()

    # -- stopping ------------------------------------------------------------------------------------
    async def stop(self) -> None:
        """Ask every worker to stop (they say goodbye to their clients), take their last events,
        and make sure none is left running."""
        self.stopping = True
        for worker in self.workers:
            if not worker.said_bye:
                self._send(worker, ("stop",))
        readers = [w.reader for w in self.workers if w.reader is not None]
        if readers:
            await asyncio.wait(readers, timeout=STOP_SECONDS)
        for worker in self.workers:
            if worker.reader is not None and not worker.reader.done():
                worker.reader.cancel()
            if worker.process.poll() is None:
                try:
                    await asyncio.wait_for(asyncio.to_thread(worker.process.wait), 1)
                except asyncio.TimeoutError:
                    worker.process.kill()
                    worker.process.wait()
            with contextlib.suppress(OSError):
                worker.control.close()
            with contextlib.suppress(OSError):
                worker.events.close()


class HandoffListener:
    """A listening socket of the parent: admits each connection (the limiter) and hands it over.

    Offers what ``cli.serve`` needs of a ``servers.base.Listener`` (``config``, ``port``, ``stop``)."""

    def __init__(self, config, index: int, pool: WorkerPool, limiter) -> None:
        self.config = config
        self.index = index
        self.pool = pool
        self.limiter = limiter
        self.sock: socket.socket | None = None

    @property
    def port(self) -> int:
        assert self.sock is not None
        return self.sock.getsockname()[1]

    async def start(self) -> None:
        """Bind and listen (as ``asyncio.start_server`` does: the first address of the host)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.config.host, self.config.port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(512)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.loop = loop

    def accept(self) -> None:
        """Start taking connections (once the workers are ready; until then the backlog holds them)."""
        assert self.sock is not None
        self.loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        assert self.sock is not None
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:  # out of descriptors (EMFILE): pause a second, as asyncio does
                self.loop.call_exception_handler({"message": "accept failed", "exception": exc})
                self.loop.remove_reader(self.sock.fileno())
                self.loop.call_later(1, self._resume)
                return
            address = str(peer[0])
            refused = self.limiter.admit(address) if self.limiter is not None else None
            self.pool.hand_over(self.index, conn, address, refused)

    def _resume(self) -> None:
        if self.sock is not None and not self.pool.stopping:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    async def stop(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None


LOG_TAIL = 8 * 1024 * 1024  # octets at the end of the JSONL log read when a worker dies


def last_logged(path, sessions: set[str], tail: int = LOG_TAIL) -> dict[str, tuple[int, float]]:
    """(seq, t) of the last line of each of ``sessions`` in the last ``tail`` octets of a JSONL log
    (a line cut short by a killed writer is skipped)."""
    import json

    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - tail))
            data = f.read()
    except OSError:
        return {}
    wanted = [b'"session": ' + json.dumps(sid).encode() + b"," for sid in sessions]
    found: dict[str, tuple[int, float]] = {}
    for line in data.splitlines():
        if any(w in line for w in wanted):
            try:
                event = json.loads(line)
                seq, t = int(event["seq"]), float(event["t"])
            except (ValueError, KeyError, TypeError):
                continue
            sid = event.get("session")
            if sid in sessions and seq > found.get(sid, (-1, 0.0))[0]:
                found[sid] = (seq, t)
    return found


# --- a worker -----------------------------------------------------------------------------------------
class ParentLink:
    """The worker's sink towards the parent: events (and control items) queued and sent in
    batches, at most BATCH_DELAY after the first one (a session's events reach the view a moment
    later).  ``wanted`` (``events_wanted``): which events the parent needs."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop, wanted: str = "all") -> None:
        self.sock = sock
        self.loop = loop
        self.items: list = []
        self._timer: asyncio.TimerHandle | None = None
        self._counts_only = False  # the timer was set for counts (COUNTS_DELAY), no event or item waits
        self.seen: dict[str, tuple[int, float]] = {}  # session -> (seq, t) of its last event not sent
        self.budget = None
        if wanted == "view":
            from mailtrace.transcript.live import DetailBudget

            self.budget = DetailBudget()
        if wanted != "all":
            self.handle = self._handle_some  # (the recorder calls it for every event)

    def handle(self, event: Event) -> None:
        self.put(event)

    def _handle_some(self, event: Event) -> None:
        """An event, when the parent needs only some: sent if the live view would draw it."""
        budget = self.budget
        if budget is not None and budget.wanted(event):
            self.put(event)
            return
        self.seen[event.session] = (event.seq, event.t)
        if self._timer is None:
            self._timer = self.loop.call_later(COUNTS_DELAY, self.send)
            self._counts_only = True

    def put(self, item) -> None:
        """An event or a control item, sent with the next batch (within BATCH_DELAY)."""
        items = self.items
        items.append(item)
        if len(items) >= BATCH_ITEMS:
            self.send()
            return
        if self._timer is None or self._counts_only:
            if self._timer is not None:  # (set for counts only: COUNTS_DELAY is too late for this)
                self._timer.cancel()
            self._timer = self.loop.call_later(BATCH_DELAY, self.send)
            self._counts_only = False

    def put_threadsafe(self, item: tuple) -> None:
        """From a store thread (a delivery's change notification)."""
        with contextlib.suppress(RuntimeError):  # (the loop is closed: the worker is ending)
            self.loop.call_soon_threadsafe(self.put, item)

    def send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tally = self.budget.take_tally() if self.budget is not None else None
        if self.seen or tally is not None:
            self.items.append(("seen", self.seen, tally))
            self.seen = {}
        if not self.items:
            return
        items, self.items = self.items, []
        data = dump_batch(items)
        with contextlib.suppress(OSError):  # the parent is gone: the worker is stopping anyway
            self.sock.sendall(data)  # blocking: backpressure

    def flush(self) -> None:
        pass  # sent within BATCH_DELAY (put() scheduled it)

    def close(self) -> None:
        self.send()


class AppendedJsonl:
    """The lab's JSONL log (``--log``), as a worker writes it: the parent wrote the header, each
    worker appends its events' lines with one write(2) per batch on an O_APPEND descriptor, so
    the batches of two workers never mix (a session's lines stay in order: one worker has it)."""

    def __init__(self, path: str, show_secrets: bool) -> None:
        from mailtrace.transcript.jsonl import event_line

        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self.show_secrets = show_secrets
        self.event_line = event_line
        self.lines: list[str] = []

    def handle(self, event: Event) -> None:
        self.lines.append(self.event_line(event, self.show_secrets) + "\n")

    def handle_many(self, events: list[Event]) -> None:
        """``handle`` each of ``events`` (the log writer's runs: BackgroundSink)."""
        line, show = self.event_line, self.show_secrets
        self.lines.append("".join([line(event, show) + "\n" for event in events]))

    def flush(self) -> None:
        if not self.lines:
            return
        data = memoryview("".join(self.lines).encode("utf-8"))
        self.lines = []
        while data:
            data = data[os.write(self.fd, data):]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            os.close(self.fd)


class RelayedUsers(dict):
    """The worker's session -> user table (for --log-dir): each new entry goes to the parent too."""

    def __init__(self, link: ParentLink) -> None:
        super().__init__()
        self.link = link

    def __setitem__(self, sid: str, user: str) -> None:
        super().__setitem__(sid, user)
        self.link.put(("user", sid, user))


def die_with_parent(parent_pid: int) -> None:
    """Linux: be killed (SIGKILL) when the parent dies, whatever kills it."""
    with contextlib.suppress(Exception):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os._exit(1)


def worker_lab(settings: dict, link: ParentLink):
    """The worker's ``Lab``: the parent's settings, the store, and ``link`` as the only sink."""
    import itertools
    from pathlib import Path

    from mailtrace.servers.lab import Lab
    from mailtrace.transcript.recorder import Recorder

    tls_context = None
    if settings["tls"]:
        from mailtrace.tls import server_context

        tls_context = server_context(Path(settings["directory"]), tuple(settings["tls_names"]))
    sinks: list = [link]
    if settings["jsonl_log"]:  # the JSONL log: encoded and written here, on this worker's core
        from mailtrace.transcript.background import BackgroundSink

        sinks.append(BackgroundSink(AppendedJsonl(*settings["jsonl_log"])))
    lab = Lab(directory=Path(settings["directory"]), users=settings["users"], recorder=Recorder(sinks),
              tls_context=tls_context, lang=settings["lang"], allow_plaintext_auth=settings["allow_plaintext_auth"])
    lab.smtp_config = settings.get("smtp_config") or {}
    lab.queue_ids = itertools.count(settings["index"] + 1, settings["count"])  # queue ids unique across workers
    if settings["per_user"]:
        lab.session_users = RelayedUsers(link)
    store = lab.open_store()
    store.on_change = lambda user, mailbox: link.put_threadsafe(("changed", user, mailbox))
    return lab


async def serve_worker(control: socket.socket, events: socket.socket) -> None:
    from mailtrace.servers.base import READ_CHUNK, Listener, ListenerConfig
    from mailtrace.servers.lab import core_factory

    loop = asyncio.get_running_loop()
    data, _, _, _ = socket.recv_fds(control, CONTROL_MESSAGE_MAX, 1)
    _, settings = pickle.loads(data)
    link = ParentLink(events, loop, settings.get("events", "all"))
    lab = worker_lab(settings, link)
    factories: dict[str, object] = {}
    listeners = []
    for protocol, host, port, implicit in settings["listeners"]:
        if protocol not in factories:
            factories[protocol] = core_factory(protocol, lab)
        listeners.append(Listener(ListenerConfig(protocol, host, port, implicit), factories[protocol], lab.recorder,
                                  lab.tls_context, None, lab.session_users))
    tasks: set[asyncio.Task] = set()
    stop = asyncio.Event()

    async def run(listener: Listener, sock: socket.socket, sid: str, refused: str | None) -> None:
        try:
            reader = asyncio.StreamReader(limit=READ_CHUNK, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            tls = lab.tls_context if listener.config.implicit_tls else None
            try:
                transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock, ssl=tls)
            except (OSError, ConnectionError, asyncio.TimeoutError, ValueError) as exc:
                sock.close()  # a failed TLS handshake: no session (as asyncio.start_server does)
                del exc
                return
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            await listener.serve(reader, writer, refused, session_id=sid)
        finally:
            link.put(("done", sid))

    def on_control() -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(control, CONTROL_MESSAGE_MAX, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data:  # the parent is gone
                loop.remove_reader(control.fileno())
                stop.set()
                return
            message = pickle.loads(data)
            if message[0] == "conn":
                _, index, sid, refused = message
                sock = socket.socket(fileno=fds[0])
                if stop.is_set():
                    sock.close()
                    link.put(("done", sid))
                    continue
                task = loop.create_task(run(listeners[index], sock, sid, refused))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif message[0] == "changed":
                lab.store.notify_watchers(message[1], message[2])
            elif message[0] == "stop":
                stop.set()

    control.setblocking(False)
    loop.add_reader(control.fileno(), on_control)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    link.put(("ready",))
    await stop.wait()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(lst.stop() for lst in listeners)), STOP_SECONDS - 1)
    for task in list(tasks):  # (still in a TLS handshake)
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=1)
    lab.recorder.close()  # (the JSONL lines written: the log is complete when the parent hears bye)
    link.put(("bye",))
    link.send()
    with contextlib.suppress(Exception):
        lab.store.close()


def main(argv: list[str]) -> None:
    control_fd, events_fd, parent_pid = (int(a) for a in argv)
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    control = socket.socket(fileno=control_fd)
    events = socket.socket(fileno=events_fd)
    events.setblocking(True)
    from mailtrace.cli.serve import OneLineErrors
    from mailtrace.servers.loop import run

    async def start() -> None:
        asyncio.get_running_loop().set_exception_handler(OneLineErrors())
        await serve_worker(control, events)

    run(start())


if __name__ == "__main__":  # (run under the module's own name, not __main__: pickles name _rebuild by it)
    from mailtrace.servers.workers import main as worker_main

    worker_main(sys.argv[1:])
