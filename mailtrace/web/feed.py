"""The web view's transcript sink: sessions kept in memory and told to watching browsers.

``WebFeed`` is a normal transcript sink (``handle(event)``, ``close()``).  For each event it
appends to its session and updates the session's summary (protocol, client, user, state,
mistakes): a list append and a few attribute writes, so a lab nobody watches pays almost
nothing.  Browsers subscribe to the live channel (server-sent events); only then does the
feed schedule, at most every ``PUSH_INTERVAL``, one message per changed session, so a
benchmark's thousands of events a second become a few updates a second per browser.

The feed also indexes the message references of ``transcript.links`` (which session
delivered, read, flagged, moved or deleted which stored message): the "life of a message".
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Callable

from mailtrace import knowledge
from mailtrace.transcript.event import Event, Kind, Peer, Reason
from mailtrace.transcript.links import Action, MessageRef

MAX_SESSIONS = 2000  # the oldest closed sessions are forgotten past this (memory bound)
MAX_EVENTS = 20000  # events kept per session (a long IMAP session); later ones are counted only
MAX_READING = 64  # FETCH/TOP command lines remembered per session until their reply (pipelining bound)
MAX_BYTES = 256 * 1024 * 1024  # octets of kept events in all; past it the oldest closed sessions lose theirs
PUSH_INTERVAL = 0.2  # seconds: updates to browsers are batched at most this often


@dataclass
class SessionSummary:
    id: str
    protocol: str
    client: str = ""
    server: str = ""
    mode: str = ""
    started: float = 0.0  # wall clock (epoch seconds)
    user: str = ""  # the authenticated user, once a login succeeded
    state: str = ""
    closed: bool = False
    close: Reason | None = None  # the CLOSE event's reason: said in each reader's language
    violations: int = 0
    events: int = 0
    dropped: int = 0  # events not kept (memory bounds): the downloads and ladder miss them
    duration: float = 0.0
    touched_users: set[str] = field(default_factory=set)  # users whose mailbox the session changed/read

    def owners(self) -> set[str]:
        """Who may see this session: its logged-in user; for a session without login (SMTP
        delivery), the users it delivered to (it is part of their messages' life)."""
        return {self.user} if self.user else set(self.touched_users)

    def to_json(self, lang: str = "en") -> dict:
        reason = knowledge.close_reason(self.close, lang)
        return {"id": self.id, "protocol": self.protocol, "client": self.client, "server": self.server,
                "mode": self.mode, "started": self.started, "user": self.user, "state": self.state,
                "closed": self.closed, "close_reason": reason, "violations": self.violations,
                "events": self.events, "dropped": self.dropped, "duration": round(self.duration, 6)}


@dataclass(frozen=True)
class LifeEntry:
    session: str
    seq: int
    t: float
    protocol: str
    verb: str
    ref: MessageRef
    how: str = ""  # for a read: what was taken from the message (``web.reading`` label key)

    @property
    def label(self) -> str:
        """The ``ui.action_KEY`` of knowledge/web.toml that names this step."""
        return self.how or self.ref.action.value


class WebFeed:
    """A transcript sink that keeps sessions for the web view and wakes its live channel."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionSummary] = {}
        self.events: dict[str, list[Event]] = {}
        self.life: dict[tuple[str, str, int], list[LifeEntry]] = {}  # (user, mailbox, uid) -> entries
        self._reading: dict[str, dict[str, str | None]] = {}  # session -> {tag: what its FETCH/TOP reads}
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[list[dict]], None]] = []
        self._dirty: set[str] = set()
        self._scheduled = False
        self._bytes = 0
        self.loop: asyncio.AbstractEventLoop | None = None  # set by the web server when it starts

    # -- the sink ------------------------------------------------------------------------------
    def handle(self, event: Event) -> None:
        sid = event.session
        summary = self.sessions.get(sid)
        if summary is None:
            summary = self._open(event)
        summary.events += 1
        summary.duration = event.t
        kept = self.events[sid]
        self._bytes += len(event.raw)
        if self._bytes > MAX_BYTES:
            self._evict()
        if len(kept) < MAX_EVENTS and self._bytes <= MAX_BYTES:
            kept.append(event)
        else:
            self._bytes -= len(event.raw)
            summary.dropped += 1
        if event.state:
            summary.state = event.state
        if event.notes:  # informative notes (POP3 dropped without QUIT, RFC 1939 §6) are no mistake
            summary.violations += len(knowledge.mistakes(event))
        if event.kind is Kind.COMMAND and event.verb in ("FETCH", "UID FETCH", "TOP"):
            self._note_reading(event)
        if event.user or event.messages:
            self._facts(summary, event)
        if event.kind is Kind.CLOSE:
            self._reading.pop(sid, None)
            summary.closed = True
            summary.close = event.reason
        if self._subscribers:
            with self._lock:  # the recorder may call from another thread than the loop's
                self._dirty.add(sid)
                schedule, self._scheduled = not self._scheduled, True
            if schedule:
                self._schedule()

    def close(self) -> None:
        pass

    def _open(self, event: Event) -> SessionSummary:
        peer = event.peer if event.kind is Kind.OPEN and event.peer is not None else Peer()
        summary = SessionSummary(event.session, event.protocol, client=peer.client,
                                 server=peer.server, mode=peer.mode, started=peer.started)
        with self._lock:
            self.sessions[event.session] = summary
            self.events[event.session] = []
            if len(self.sessions) > MAX_SESSIONS:
                self._forget_oldest()
        return summary

    def _forget_oldest(self) -> None:
        for sid, old in list(self.sessions.items())[: len(self.sessions) - MAX_SESSIONS]:
            if old.closed:
                del self.sessions[sid]
                self._bytes -= sum(len(e.raw) for e in self.events.pop(sid, ()))

    def _evict(self) -> None:
        """Over the memory budget: the oldest closed sessions give up their events (kept: their summary)."""
        with self._lock:
            for sid, old in list(self.sessions.items()):
                if self._bytes <= MAX_BYTES * 3 // 4:
                    break
                events = self.events.get(sid)
                if old.closed and events:
                    self._bytes -= sum(len(e.raw) for e in events)
                    old.dropped += len(events)
                    self.events[sid] = []

    def _note_reading(self, event: Event) -> None:
        """Remember what a FETCH or TOP asks for, until the reply that says which messages it read."""
        from mailtrace.web import reading

        pending = self._reading.setdefault(event.session, {})
        if len(pending) >= MAX_READING:
            pending.pop(next(iter(pending)))
        if event.verb == "TOP":
            pending[""] = reading.pop3_top(event.raw)  # POP3 answers one command at a time, in order
        else:
            pending[event.tag] = reading.imap_fetch(event.raw, event.verb)

    def _facts(self, summary: SessionSummary, event: Event) -> None:
        if event.user and event.kind is Kind.REPLY:
            summary.user = event.user
        refs = list(event.messages)
        how = ""
        if any(ref.action is Action.READ for ref in refs):
            how = self._reading.get(event.session, {}).pop(event.tag if event.protocol == "imap" else "", "") \
                if event.verb in ("FETCH", "UID FETCH", "TOP") else ""
            if how is None:  # FLAGS, UID...: the message was described, not read (RFC 3501 §6.4.5)
                refs = [ref for ref in refs if ref.action is not Action.READ]
        for ref in refs:
            summary.touched_users.add(ref.user)
            entry = LifeEntry(event.session, event.seq, event.t, event.protocol, event.verb, ref,
                              how if ref.action is Action.READ else "")
            with self._lock:
                self.life.setdefault((ref.user, ref.mailbox, ref.uid), []).append(entry)
        # a copy or move: the new message inherits the life of the one it was made from
        sources = [r for r in refs if r.action in (Action.COPIED, Action.MOVED)]
        arrived = [r for r in refs if r.action is Action.ARRIVED]
        if sources and len(sources) == len(arrived):
            with self._lock:
                for src, dst in zip(sources, arrived):
                    past = self.life.get((src.user, src.mailbox, src.uid), [])
                    key = (dst.user, dst.mailbox, dst.uid)
                    self.life[key] = past + self.life.get(key, [])

    # -- the live channel ----------------------------------------------------------------------
    def subscribe(self, callback: Callable[[list[dict]], None]) -> Callable[[], None]:
        """Call ``callback(summaries)`` (on the loop) with the sessions that changed; returns unsubscribe."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _schedule(self) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            self._scheduled = False
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.call_later(PUSH_INTERVAL, self._push)
        else:  # recorded from another thread (the grader, a future off-loop pipeline)
            loop.call_soon_threadsafe(loop.call_later, PUSH_INTERVAL, self._push)

    def _push(self) -> None:
        with self._lock:
            self._scheduled = False
            dirty, self._dirty = self._dirty, set()
        # "_owners" (who may see it) and "_close" (the close reason as data, said in each
        # viewer's language by the stream) are for the server, not for the page
        updates = [self.sessions[sid].to_json() | {"_owners": sorted(self.sessions[sid].owners()),
                                                   "_close": self.sessions[sid].close}
                   for sid in dirty if sid in self.sessions]
        for callback in list(self._subscribers):
            callback(updates)

    # -- queries -------------------------------------------------------------------------------
    def session_events(self, sid: str) -> list[Event]:
        return list(self.events.get(sid, ()))

    def life_of(self, user: str, mailbox: str, uid: int) -> list[LifeEntry]:
        with self._lock:
            return list(self.life.get((user, mailbox, uid), ()))
