"""The sans-I/O POP3 server core: bytes in, events and bytes out (RFC 1939, RFC 2449, RFC 2595).

Theory of operation.  The shell (``mailtrace.servers.base``) feeds whatever bytes arrive to
:meth:`Pop3ServerConnection.receive`; the core cuts them into CRLF lines, looks the keyword up
with ``spec.read_command`` (the same reading the observer makes: ``spec.COMMANDS`` says in
which states a command is allowed and what arguments it takes; ``HANDLERS`` below says what it
does) and returns outputs: an ``Event`` per command and per status line, one ``DATA`` event per
multi-line body, and the bytes to ``Send``.  The state changes in one place only: every status
line is looked up in ``spec.TRANSITIONS`` as it is sent (``_answer``), as the observer looks up
the status lines it sees.

RFC 1939 §4: "the POP3 server then acquires an exclusive-access lock on the maildrop [...]
If the lock is successfully acquired, the POP3 server responds with a positive status
indicator."  The core takes ``store.lock_maildrop(user)`` at login, freezes the list of
messages (message numbers 1..n stay valid for the whole session), and only at QUIT (§6,
the UPDATE state) calls ``mailbox.expunge`` for the messages marked deleted.  A connection
that drops, or an autologout (§3: "the session does NOT enter the UPDATE state"), releases
the lock and deletes nothing.

Every call on the store (the password check, locking and scanning the maildrop, reading a
message for RETR and TOP, the unlinks at QUIT, releasing the lock) is a ``Pending`` job: the
shell runs it in a worker thread (``mailtrace.servers.storejobs``) and the core goes on with
its result, so a slow disk or a lock held by another program never stops other sessions.
The one exception reads no file: a message the store already holds in memory
(``maildrop.in_memory``) is sent at once.

Sizes (§11): "if the POP3 server host internally represents end-of-line as a single
character, then the POP3 server simply counts each occurrence of this character in a message
as two octets.  Note that lines in the message which start with the termination octet need
not (and must not) be counted twice".  So LIST and STAT report the size of the message in
CRLF wire form (what ``Mailbox.read`` returns, and what the client keeps once it has removed
the byte-stuffing), as Dovecot does.  If a stored message does not end in CRLF, RETR adds one
before the terminating ".CRLF" (as Dovecot does); that CRLF is framing, not counted.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from mailtrace.knowledge import because
from mailtrace.protocols.base import Close, Output, Pending, Send, StartTLS
from mailtrace.protocols.lines import Line, LineReader
from mailtrace.protocols.pop3.maildrop import (
    Message,
    Refused,
    apop_login,
    in_memory,
    login,
    message_facts,
    read_ahead,
    read_messages,
    release,
    messages_left,
    remove_deleted,
)
from mailtrace.protocols.pop3.spec import (
    CAPABILITIES,
    ERR,
    MAX_COMMAND_LINE,
    OK,
    PROTOCOL,
    Pop3Config,
    Redaction,
    Reply,
    State,
    after_reply,
    byte_stuff,
    marked_after,
    no_quit,
    outcome,
    read_command,
    too_long,
    top_of,
    uidl_of,
    user_pass,
    wire,
)
from mailtrace.transcript.event import Event, Kind, Note, Side
from mailtrace.transcript.links import Action, MessageRef


@dataclass
class _Session:
    """What TRANSACTION holds: the user, the lock, the mailbox and its frozen listing."""

    user: str
    lock: Any
    mailbox: Any
    uidvalidity: int
    messages: list[Message] = field(default_factory=list)
    read_ahead: dict[int, bytes | None] = field(default_factory=dict)  # uid -> message, see maildrop.read_ahead


class Pop3ServerConnection:
    """One POP3 session (the ``ServerCore`` interface of ``mailtrace.protocols.base``).

    ``store`` is a ``mailtrace.store.maildir.MaildirStore`` (or anything with the same
    ``check_password``/``password``/``lock_maildrop``/``mailbox`` methods), only ever called
    from ``Pending`` jobs; ``timestamp`` is the APOP challenge for the greeting
    (``spec.make_timestamp``); ``tls`` says whether the connection is already encrypted
    (implicit TLS, port 995 style).
    """

    def __init__(self, store: Any, timestamp: str, config: Pop3Config = Pop3Config(), *, tls: bool = False,
                 secure_channel: bool = True) -> None:
        self.secure_channel = secure_channel  # loopback: plaintext passwords acceptable
        self.store = store
        self.timestamp = timestamp
        self.config = config
        self.idle_timeout_seconds = config.idle_timeout
        self.state = State.AUTHORIZATION
        self.tls = tls
        self.closed = False
        self.quit = False  # QUIT was received
        self._notes: list[Note] = []  # notes a handler adds to the command being answered
        self.bad_commands = 0
        self.user: str | None = None  # set by a successful USER, waiting for PASS
        self.marked = 0  # messages marked deleted in this session (spec.marked_after)
        self.utf8 = False  # UTF8 was accepted (RFC 6856 §2.1): messages go as they are
        self.session: _Session | None = None
        self._lines = LineReader(MAX_COMMAND_LINE)
        self._redaction = Redaction()
        self._finalizer: weakref.finalize | None = None
        self._pending: Pending | None = None  # store work running in the shell's thread

    # --- the ServerCore interface ------------------------------------------------------------
    def start(self) -> list[Output]:
        return self._answer("", Reply(OK, f"{self.config.implementation} ready {self.timestamp}"))

    def busy(self, why: str) -> list[Output]:
        """Instead of the greeting, when the server takes no more connections: a negative
        greeting with the SYS/TEMP response code (RFC 3206 §4: a temporary problem, "the
        client may try again later"), as Dovecot answers an overloaded login process."""
        out = self._answer("", Reply(ERR, f"{why}, try again later", code="SYS/TEMP"))
        self.closed = True
        return out + [Close(why)]

    def receive(self, data: bytes) -> list[Output]:
        if self.closed:
            return []
        self._lines.feed(data)
        out: list[Output] = []
        while not self.closed and self._pending is None:  # input waits while store work runs
            line = self._lines.next_line()
            if line is None:
                break
            out += self._too_long(line) if line.too_long else self._line(line)
            if self._after(out):
                break
        return out

    def _after(self, out: list[Output]) -> bool:
        """What follows a command's outputs; True: stop reading lines for now."""
        last = out[-1]
        if isinstance(last, StartTLS):
            out[-1:-1] = self._discard("after-stls")  # RFC 2595 §4: never act on pre-TLS leftovers
            return True
        if isinstance(last, Close) and self.quit:
            out[-1:-1] = self._discard("after-quit")
        return isinstance(last, Pending)

    def _slowly(self, job: Callable[[], Any], then: Callable[[Any], list[Output]]) -> list[Output]:
        """Store work (it may wait on the disk or on a lock) runs in the shell's worker thread:
        ``job()`` there, then ``then(result)`` here for the reply; lines pipelined meanwhile
        wait in the buffer."""
        def resume(result: Any) -> list[Output]:
            self._pending = None
            out = then(result)
            if self._after(out):
                return out
            return out + self.receive(b"")

        self._pending = Pending(job, resume)
        return [self._pending]

    def eof(self) -> list[Output]:
        out: list[Output] = []
        if self.session is not None and not self.closed:
            out.append(no_quit(self.state, self.marked))
        return out + self._end()

    def idle_timeout(self) -> list[Output]:
        # RFC 1939 §3: close "without removing any messages or sending any response".
        return self._end() + [Close(because("autologout", seconds=f"{self.config.idle_timeout:g}"))]

    def tls_started(self) -> list[Output]:
        # RFC 2595 §4: the session stays in AUTHORIZATION; nothing said before counts.
        self.tls = True
        self.user = None
        return []

    def notify(self) -> list[Output]:
        return []  # the maildrop listing is frozen for the session (RFC 1939 §4)

    # --- framing ---------------------------------------------------------------------------
    def _too_long(self, line: Line) -> list[Output]:
        event = Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=line.raw, size=line.size, state=self.state.value,
                      notes=(too_long(line.size),), redacted=self._redaction.of(line.raw, False), protocol=PROTOCOL)
        return [event] + self._error("", "line too long", ran=False)

    def _discard(self, rule: str) -> list[Output]:
        """Bytes pipelined after QUIT or STLS are never executed."""
        data = self._lines.clear()
        if not data:
            return []
        return [Event(side=Side.CLIENT, kind=Kind.VIOLATION, raw=data[:MAX_COMMAND_LINE], size=len(data),
                      state=self.state.value, notes=(Note(rule, f"{len(data)} octets discarded"),))]

    # --- dispatch ----------------------------------------------------------------------------
    def _line(self, line: Line) -> list[Output]:
        # the observer reads every client line the same way
        command = read_command(line.raw, self.state, bare_lf=line.bare_lf)
        notes = command.notes
        raw = line.raw
        event = dict(side=Side.CLIENT, kind=Kind.COMMAND, raw=raw, verb=command.verb, state=self.state.value,
                     redacted=self._redaction.of(raw, command.spec is not None), protocol=PROTOCOL, args=command.typed)
        if not command.runs:
            return [Event(**event, notes=notes)] + self._error(command.verb, command.refusal, ran=False)
        self._notes = []
        out = HANDLERS[command.verb](self, list(command.args))  # may add notes (pass-without-user)
        return [Event(**event, notes=notes + tuple(self._notes))] + out

    # --- replies: the only place the state changes -------------------------------------------
    def _answer(self, verb: str, reply: Reply, ran: bool = True, user: str = "",
                messages: tuple[MessageRef, ...] = ()) -> list[Output]:
        """Send ``reply`` to ``verb``; the new state is ``spec.TRANSITIONS``' (``ran``: the
        command was run, not refused as unknown, in the wrong state or malformed)."""
        if verb:
            self.state = after_reply(self.state, verb, outcome(reply), ran)
            self.marked = marked_after(verb, outcome(reply), self.marked)
        raw = wire(reply)
        return [Event(side=Side.SERVER, kind=Kind.REPLY, raw=raw, code=reply.status, verb=verb, state=self.state.value,
                      response_code=reply.code, user=user, messages=messages, protocol=PROTOCOL), Send(raw)]

    def _ok(self, verb: str, text: str, user: str = "", messages: tuple[MessageRef, ...] = ()) -> list[Output]:
        """+OK; ``user``: who logged in, ``messages``: the stored messages it reports on (transcript.links)."""
        self.bad_commands = 0  # MAX_BAD_COMMANDS counts bad commands in a row
        return self._answer(verb, Reply(OK, text), user=user, messages=messages)

    def _error(self, verb: str, text: str, code: str = "", count: bool = True, ran: bool = True) -> list[Output]:
        if count:
            self.bad_commands += 1
        if not count or self.bad_commands < self.config.max_bad_commands:
            return self._answer(verb, Reply(ERR, text, code=code), ran)
        # RFC 1939 §4 lets the server close after a negative reply: one -ERR, then hang up.
        out = self._answer(verb, Reply(ERR, f"{text} (too many bad commands, closing)", code=code), ran)
        out.append(Event(side=Side.CLIENT, kind=Kind.VIOLATION, state=self.state.value,
                         notes=(Note("too-many-errors", f"{self.bad_commands} bad commands"),)))
        return out + self._end() + [Close(because("too-many-errors"))]

    def _multiline(self, verb: str, first: str, body: bytes, messages: tuple[MessageRef, ...] = ()) -> list[Output]:
        """A +OK status line and its body (already stuffed, ending in ".CRLF"): two events and two
        ``Send``s, which the shell writes together (one system call, and no copy of the body)."""
        status, sent = self._ok(verb, first, messages=messages)
        body_event = Event(side=Side.SERVER, kind=Kind.DATA, raw=body, verb=verb, state=self.state.value,
                           protocol=PROTOCOL)
        return [status, body_event, sent, Send(body)]

    def _end(self) -> list[Output]:
        """Stop reading; a maildrop lock still held is released by a store job (nothing deleted)."""
        self.closed = True
        session, self.session = self.session, None
        if session is None:
            return []
        if self._finalizer is not None:
            self._finalizer.detach()
        return [Pending(lambda: release(session.lock), lambda _: [])]

    # --- AUTHORIZATION (RFC 1939 §4, §7) -----------------------------------------------------
    def _plaintext_refused(self, verb: str) -> list[Output] | None:
        if self.config.tls_required_for_auth and not self.tls and not self.secure_channel:
            return self._error(verb, "plaintext authentication disallowed on a non-secure connection: STLS first",
                               "AUTH", count=False)
        return None

    def _user(self, args: list) -> list[Output]:
        refused = self._plaintext_refused("USER")
        if refused:
            return refused
        # Every name gets +OK: answering -ERR here would tell strangers which users exist.
        self.user = args[0]
        return self._ok("USER", f"send PASS for {args[0]}")

    def _pass(self, args: list) -> list[Output]:
        refused = self._plaintext_refused("PASS")
        if refused:
            self.user = None
            return refused
        user, self.user = self.user, None
        _, notes = user_pass("PASS", user is not None)
        if notes:
            self._notes += notes
            return self._error("PASS", "send USER first")
        store, password = self.store, args[0]
        return self._slowly(lambda: login(store, user, password), lambda result: self._logged_in("PASS", result))

    def _apop(self, args: list) -> list[Output]:
        name, digest = args
        self.user = None
        store, timestamp = self.store, self.timestamp
        return self._slowly(lambda: apop_login(store, name, timestamp, digest),
                            lambda result: self._logged_in("APOP", result))

    def _logged_in(self, verb: str, result: Refused | tuple) -> list[Output]:
        if isinstance(result, Refused):  # a wrong password or a maildrop in use count as bad commands
            return self._error(verb, result.text, result.code, count=result.code in ("AUTH", "IN-USE"))
        user, lock, mailbox, messages = result
        uidvalidity = getattr(mailbox, "uidvalidity", 0) if mailbox is not None else 0
        self.session = _Session(user, lock, mailbox, uidvalidity, messages)
        self._finalizer = weakref.finalize(self, release, lock)  # a lost core never keeps the lock
        count, octets = self._drop_listing()
        return self._ok(verb, f"{user}'s maildrop has {count} messages ({octets} octets)", user=user)

    def _quit(self, args: list) -> list[Output]:
        self.quit = True
        session = self.session
        if session is None:  # from AUTHORIZATION: no UPDATE state (RFC 1939 §6)
            out = self._ok("QUIT", f"{self.config.hostname} POP3 server signing off")
            return out + self._end() + [Close(because("quit"))]
        doomed = [m.uid for m in session.messages if m.deleted]
        left = len(session.messages) - len(doomed)

        def job() -> tuple[int, int, int]:  # §6: "Whether the removal was successful or not, the
            try:  # server then releases any exclusive-access lock on the maildrop"
                failed, gone = remove_deleted(session.mailbox, doomed)
                return failed, gone, messages_left(session.mailbox, left) if doomed else left
            finally:
                release(session.lock)

        return self._slowly(job, lambda result: self._updated(session, *result))

    def _updated(self, session: _Session, failed: int, gone: int, left: int) -> list[Output]:
        if failed:
            out = self._error("QUIT", f"some deleted messages not removed ({failed})", "SYS/TEMP", count=False)
        else:
            already = f"; {gone} of the deleted were already removed by another program" if gone else ""
            removed = tuple(r for m in session.messages if m.deleted for r in self._ref(Action.DELETED, m))
            out = self._ok("QUIT", f"{self.config.hostname} POP3 server signing off ({left} messages left{already})",
                           messages=removed)
        self.session = None  # the job released the lock
        if self._finalizer is not None:
            self._finalizer.detach()
        return out + self._end() + [Close(because("quit"))]

    def _capa(self, args: list) -> list[Output]:
        caps = list(CAPABILITIES)
        if self.config.tls_required_for_auth and not self.tls and not self.secure_channel:
            caps.remove("USER")  # RFC 2449 §6.2: USER/PASS are not available (until STLS)
        if self.config.tls_available and not self.tls and self.state is State.AUTHORIZATION:
            caps.append("STLS")
        caps.append(f"IMPLEMENTATION {self.config.implementation.replace(' ', '-')}")
        body = "".join(f"{c}\r\n" for c in caps).encode() + b".\r\n"
        return self._multiline("CAPA", "Capability list follows", body)

    def _utf8(self, args: list) -> list[Output]:
        """RFC 6856 §2.1: UTF-8 mode; messages with UTF-8 headers (RFC 6532) are then sent as is."""
        self.utf8 = True
        return self._ok("UTF8", "UTF-8 mode enabled")

    def _stls(self, args: list) -> list[Output]:
        if self.utf8:  # RFC 6856 §2.1: "Clients MUST NOT issue the STLS command after issuing UTF8"
            return self._error("STLS", "STLS is not allowed after UTF8 (RFC 6856 §2.1)")
        if self.tls:
            return self._error("STLS", "already using TLS")
        if not self.config.tls_available:
            return self._error("STLS", "TLS is not available on this server", "SYS/PERM")
        self.user = None
        return self._ok("STLS", "Begin TLS negotiation now") + [StartTLS()]

    # --- TRANSACTION (RFC 1939 §5, §7) -------------------------------------------------------
    def _drop_listing(self) -> tuple[int, int]:
        live = [m for m in self.session.messages if not m.deleted]
        return len(live), sum(m.size for m in live)

    def _find(self, verb: str, number: int) -> tuple[Message | None, list[Output]]:
        messages = self.session.messages
        if not 1 <= number <= len(messages):
            return None, self._error(verb, f"no such message, only {len(messages)} messages in maildrop")
        message = messages[number - 1]
        if message.deleted:
            return None, self._error(verb, f"message {number} already deleted")
        return message, []

    def _stat(self, args: list) -> list[Output]:
        count, octets = self._drop_listing()
        return self._ok("STAT", f"{count} {octets}")

    def _listing(self, verb: str, args: list, value: Callable[[Message], str]) -> list[Output]:
        if args:
            message, error = self._find(verb, args[0])
            return error or self._ok(verb, f"{args[0]} {value(message)}")
        lines = [f"{n} {value(m)}\r\n" for n, m in enumerate(self.session.messages, 1) if not m.deleted]
        count, octets = self._drop_listing()
        first = f"{count} messages ({octets} octets)" if verb == "LIST" else "unique-id listing follows"
        return self._multiline(verb, first, "".join(lines).encode() + b".\r\n")

    def _list(self, args: list) -> list[Output]:
        return self._listing("LIST", args, lambda m: str(m.size))

    def _uidl(self, args: list) -> list[Output]:
        validity = self.session.uidvalidity
        return self._listing("UIDL", args, lambda m: uidl_of(m.uid, validity))

    def _ref(self, action: Action, message: Message) -> tuple[MessageRef, ...]:
        box = self.session.mailbox
        return (MessageRef(action, self.session.user, getattr(box, "name", "INBOX"), message.uid),)

    def _retr(self, args: list) -> list[Output]:
        return self._send_message("RETR", args[0], lambda data: data, lambda data: f"{len(data)} octets")

    def _top(self, args: list) -> list[Output]:
        lines = args[1]
        return self._send_message("TOP", args[0], lambda data: top_of(data, lines), lambda data: "top of message follows")

    def _send_message(self, verb: str, number: int, part: Callable[[bytes], bytes],
                      first: Callable[[bytes], str]) -> list[Output]:
        """RETR and TOP: the message is read from the store by a job (with the next ones, read
        ahead: ``maildrop.READ_AHEAD_MESSAGES``), then sent byte-stuffed."""
        message, error = self._find(verb, number)
        if error:
            return error

        def sent(data: bytes | None) -> list[Output]:
            if data is None:
                return self._error(verb, "message was removed by another session", "SYS/TEMP", count=False)
            dots, utf8_header = message_facts(session.mailbox, message, data)
            if refused := self._not_utf8(verb, utf8_header):
                return refused
            return self._multiline(verb, first(data), byte_stuff(part(data), dots),  # (a part's lines are the message's)
                                   self._ref(Action.READ, message))

        session = self.session
        if message.uid in session.read_ahead:  # read by an earlier job: no store call
            return sent(session.read_ahead.pop(message.uid))
        data = in_memory(session.mailbox, message.uid)
        if data is not None:  # in the store's memory already: no job either
            return sent(data)

        def read(found: dict[int, bytes | None]) -> list[Output]:
            session.read_ahead = found
            return sent(found.pop(message.uid))

        uids = read_ahead(session.messages[number - 1:])
        return self._slowly(lambda: read_messages(session.mailbox, uids), read)

    def _not_utf8(self, verb: str, utf8_header: bool) -> list[Output]:
        """RFC 6856 §2.1: a message with UTF-8 headers is not sent as is to a client that did
        not send UTF8; the lab fails the request with -ERR [UTF8] (§5) rather than send a
        surrogate, so the student sees why.  The client may send UTF8 (in AUTHORIZATION) next time."""
        if self.utf8 or not utf8_header:
            return []
        return self._error(verb, "this message has UTF-8 header fields: send UTF8 before logging in (RFC 6856)",
                           "UTF8", count=False)

    def _dele(self, args: list) -> list[Output]:
        message, error = self._find("DELE", args[0])
        if error:
            return error
        message.deleted = True
        return self._ok("DELE", f"message {args[0]} deleted")

    def _noop(self, args: list) -> list[Output]:
        return self._ok("NOOP", "")

    def _rset(self, args: list) -> list[Output]:
        for message in self.session.messages:
            message.deleted = False
        count, octets = self._drop_listing()
        return self._ok("RSET", f"maildrop has {count} messages ({octets} octets)")


#: What each command does; ``spec.COMMANDS`` says where it is allowed and what it takes.
HANDLERS: Mapping[str, Callable[[Pop3ServerConnection, list], list[Output]]] = MappingProxyType({
    "USER": Pop3ServerConnection._user,
    "PASS": Pop3ServerConnection._pass,
    "APOP": Pop3ServerConnection._apop,
    "QUIT": Pop3ServerConnection._quit,
    "CAPA": Pop3ServerConnection._capa,
    "STLS": Pop3ServerConnection._stls,
    "UTF8": Pop3ServerConnection._utf8,
    "STAT": Pop3ServerConnection._stat,
    "LIST": Pop3ServerConnection._list,
    "RETR": Pop3ServerConnection._retr,
    "DELE": Pop3ServerConnection._dele,
    "NOOP": Pop3ServerConnection._noop,
    "RSET": Pop3ServerConnection._rset,
    "TOP": Pop3ServerConnection._top,
    "UIDL": Pop3ServerConnection._uidl,
})
