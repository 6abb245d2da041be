"""The sans-I/O IMAP4rev1 server core: bytes in, outputs (events, bytes to send) out.

Theory of operation.  RFC 3501 §2.2.1: "The client command begins an operation.  Each client
command is prefixed with an identifier (typically a short alphanumeric string, e.g., A0001,
A0002, etc.) called a 'tag'. ... In two cases, a line from the client does not represent a
complete command.  In one case, a command argument is quoted with an octet count; in the
other case, the command arguments require server feedback (see the AUTHENTICATE command)."
So the framing (``protocols.lines.LineReader``) reads lines, and when a line ends with ``{n}``
it reads exactly n octets of literal (after sending the "+" continuation request for a
synchronizing literal, §7.5) and then the rest of the command.  A complete command is
tokenized (``lexer``), checked against ``spec.COMMANDS`` for the connection ``State`` and run
by its handler (``dispatch.HANDLERS``).  The state changes only when a tagged completion is
looked up in ``spec.TRANSITIONS`` (``status()``), as the observer does with the replies it sees.

Store work that may wait (a directory rescan under the uidlist lock, an fsync'd COPY) is
handed to the shell as a ``Pending`` job (``run_slowly``): it runs in a worker thread and the
connection reads no further input until it is resumed.

§2.2.2: "Data transmitted by the server to the client and status responses that do not
indicate command completion are prefixed with the token '*', and are called untagged
responses."  Changes made by other sessions are reported as untagged EXISTS / EXPUNGE /
FETCH at the end of commands (§5.2) and, during IDLE, as soon as ``notify()`` is called; never
EXPUNGE during FETCH, STORE or SEARCH (§7.4.1).
"""

from __future__ import annotations

import enum
from typing import Callable

from mailtrace.protocols import credentials
from mailtrace.protocols.base import Close, Output, Pending, Send, StartTLS
from mailtrace.knowledge import because
from mailtrace.protocols.imap import mutf7, spec, wire
from mailtrace.protocols.imap.commandline import CommandReader, after_logout
from mailtrace.protocols.imap.parser import Cursor, set_text
from mailtrace.protocols.imap.spec import (
    CAPABILITIES, FORCE_SYNC, LITERAL_PREVIEW, MAX_COMMAND_LINE, NO_EXPUNGE, REDACTED, ImapConfig, Reply, State,
)
from mailtrace.protocols.lines import LineReader, Literal
from mailtrace.store.model import StoreError
from mailtrace.transcript.event import Event, Kind, Note, Side
from mailtrace.transcript.links import MessageRef


class Mode(enum.Enum):
    COMMAND = "command"  # reading command lines
    LITERAL = "literal"  # reading the n octets of a literal
    IDLE = "idle"  # RFC 2177: waiting for DONE


class LazySpool:
    """The spool (``store.spool``) of a large APPEND literal, its file in tmp/ created by the
    first store job that writes to it: the open() is disk work too, and leaves the event loop
    with the writes.  ``write``/``finish`` run in store jobs; ``discard`` on the loop."""

    def __init__(self, make: Callable[[], object]) -> None:
        self._make = make
        self.spool = None  # the store's Spool, once the first job made it
        self.failed: Exception | None = None  # set by the caller when a write failed (disk full...)
        self._discarded = False

    def _open(self):
        if self.spool is None:
            if self._discarded:
                raise OSError("the spooled literal was discarded")
            try:
                spool = self._make()
            except StoreError as exc:
                raise OSError(str(exc)) from exc
            self.spool = spool
            if self._discarded:  # the client went away while the file was being made
                spool.discard()
                raise OSError("the spooled literal was discarded")
        return self.spool

    def write(self, data: bytes) -> None:
        self._open().write(data)

    def finish(self) -> bytes:
        return self._open().finish()

    def discard(self) -> None:
        self._discarded = True
        if self.spool is not None:
            self.spool.discard()

    @property
    def received(self) -> int:
        return self.spool.received if self.spool is not None else 0

    @property
    def path(self):
        return self.spool.path if self.spool is not None else None


class Command:
    """A complete, tokenized client command."""

    def __init__(self, tag: str, name: str, args: Cursor, uid: bool) -> None:
        self.tag = tag
        self.name = name  # "FETCH", or "UID FETCH" for the UID forms
        self.args = args
        self.uid = uid


class ImapServerConnection:
    """One IMAP server connection.  ``store`` is a ``MaildirStore`` (or a fake with its API)."""

    def __init__(self, config: ImapConfig, store, *, clock: Callable[[], float], tls: bool = False,
                 secure_channel: bool = True, on_change: Callable[[], None] | None = None) -> None:
        """``clock`` gives the time (APPEND's default INTERNALDATE, RFC 3501 §6.3.11; the shell
        passes ``time.time``: a core never reads the clock itself); ``tls``: the connection is
        already encrypted (implicit TLS); ``secure_channel``: loopback or TLS, where a
        plaintext password may be sent even when ``config.tls_required_for_auth``."""
        self.config = config
        self.store = store
        self.clock = clock
        self.idle_timeout_seconds = config.idle_timeout
        self.secure_channel = secure_channel or tls
        self.tls_active = tls
        self.on_change = on_change
        self.state = State.NOT_AUTHENTICATED
        self.user: str | None = None
        self.view = None  # a mailboxview.MailboxView in the selected state
        self.touched: list[MessageRef] = []  # messages the running command read/changed (told in done())
        self.utf8 = False  # ENABLE UTF8=ACCEPT was sent (RFC 6855 §3)
        self.condstore = False  # a CONDSTORE enabling command was sent (RFC 7162 §3.1)
        self.qresync = False  # ENABLE QRESYNC was sent (RFC 7162 §3.2.3)
        self.mode = Mode.COMMAND
        self.closed = False
        self._reader = LineReader(MAX_COMMAND_LINE)
        self._skipping = False  # a too-long line was answered BAD before its end came
        self.bad_commands = 0  # BAD completions in a row (spec.MAX_BAD_COMMANDS)
        self._job = None  # a Pending (slow store work) not finished yet: input waits
        self._out: list[Output] = []
        # The command being read (used by dispatch.py): its lines and literals so far, their
        # octets, its (tag, verb); the tags seen (tag-reuse check).
        self.parts: list[bytes] = []
        self.size = 0
        self.current: tuple[str, str] | None = None
        self.commands = CommandReader()  # tags seen, a SASL response may follow (commandline.py)
        self._literal_is_secret = False
        self._spool = None  # the store.spool.Spool of the literal being read, if spooled
        self._preview = bytearray()
        self.spools: list = []  # spools of the current command (discarded unless delivered)
        self.pending: Callable[[bytes], None] | None = None  # SASL or IDLE continuation handler

    # -- ServerCore interface -------------------------------------------------------------
    def start(self) -> list[Output]:
        self._out = []
        self.status("*", "OK", f"{self.config.hostname} {self.config.implementation} ready",
                    code="CAPABILITY " + " ".join(self.capabilities()))
        return self._take()

    def receive(self, data: bytes) -> list[Output]:
        self._out = []
        if self.closed:
            if data:
                self.record(Side.CLIENT, Kind.COMMAND, data, notes=(after_logout(),))
            return self._take()
        self._reader.feed(data)
        self._process()
        return self._take()

    def eof(self) -> list[Output]:
        self._out = []
        literal_left = self._reader.literal_left
        data = self._reader.clear()
        if self.mode is Mode.LITERAL and (data or self.parts):
            self.record(Side.CLIENT, Kind.LITERAL, data, command=self._verb(),
                        notes=(Note("literal-length-mismatch", f"{literal_left + len(data)} octets announced, "
                                                              f"{len(data)} arrived before the connection closed"),))
        elif data:
            self.record(Side.CLIENT, Kind.COMMAND, data, notes=(Note("incomplete-command"),))
        self.closed = True  # (a store job still running answers nothing)
        self._finish()
        return self._take()

    def idle_timeout(self) -> list[Output]:
        self._out = []
        self.status("*", "BYE", "autologout: idle for too long")
        self.close(because("autologout-imap"))
        return self._take()

    def busy(self, why: str) -> list[Output]:
        """Instead of the greeting, when the server takes no more connections.  RFC 3501
        §7.1.5: the BYE response is sent "as one of three possible greetings at connection
        startup, indicating that the server is not willing to accept a connection from this
        client.  The server closes the connection immediately."  UNAVAILABLE (RFC 5530 §3):
        a temporary failure."""
        self._out = []
        self.status("*", "BYE", f"{why}, try again later", code="UNAVAILABLE")
        self.close(why)
        return self._take()

    def shutdown(self) -> list[Output]:
        """The lab is stopping (Ctrl-C): RFC 3501 §7.1.5, BYE is sent "as a panic shutdown
        announcement.  The server closes the connection immediately."
        """
        self._out = []
        if self.closed:
            return []
        self.status("*", "BYE", "server shutting down")
        self.close(because("server-shutting-down"))
        return self._take()

    def tls_started(self) -> list[Output]:
        self.tls_active = True
        self.secure_channel = True
        return []

    def notify(self) -> list[Output]:
        """Another session changed the selected mailbox: push updates during IDLE (RFC 2177)."""
        self._out = []
        if self.mode is Mode.IDLE and self.view is not None and not self.closed and self._job is None:
            self.sync_view(allow_expunge=True, force=False, then=lambda: None)
        return self._take()

    # -- helpers for the command handlers ----------------------------------------------------
    @property
    def login_disabled(self) -> bool:
        """RFC 3501 §6.2.3: without TLS "a server implementation MUST implement a configuration
        in which it advertises the LOGINDISABLED capability and does NOT permit the LOGIN command"."""
        return self.config.tls_required_for_auth and not self.secure_channel

    def capabilities(self, state: State | None = None) -> list[str]:
        """What the server offers in ``state`` (now, or the state a reply is moving to: the
        CAPABILITY code of LOGIN's OK lists what the authenticated state offers, no STARTTLS)."""
        state = self.state if state is None else state
        caps = list(CAPABILITIES)
        if self.login_disabled:  # and no AUTH=PLAIN either: it sends the same password
            caps = [c for c in caps if not c.startswith("AUTH=")] + ["LOGINDISABLED"]
        if self.config.tls_available and not self.tls_active and state is State.NOT_AUTHENTICATED:
            caps.insert(1, "STARTTLS")
        return caps

    def respond(self, data: bytes, *, tag: str, code: str = "", verb: str = "", **facts) -> None:
        """Send one response (CRLF included; literals allowed) and record each line and literal;
        ``facts``: typed Event fields of its first line (``response_code``, ``messages``, ``user``)."""
        self._out.append(Send(data))
        for kind, piece in wire.split_lines(data):
            if kind == "literal":
                self.record(Side.SERVER, Kind.LITERAL, piece, tag=tag, command=verb or code)
            else:
                self.record(Side.SERVER, Kind.REPLY, piece, verb=verb, code=code, tag=tag, **facts)
                code, facts = "", {}  # a FETCH continued after a literal is not a new status

    def respond_pieces(self, pieces: list[tuple[str, bytes]], *, tag: str, verb: str) -> None:
        """Send a response already cut into lines and literals (FETCH): no second framing pass."""
        for kind, piece in pieces:
            if kind == "line" and piece.count(b"\n") > 1:  # a literal inside (8-bit ENVELOPE text)
                self.respond(piece, tag=tag, verb=verb)
                continue
            self._out.append(Send(piece))
            if kind == "literal":
                self.record(Side.SERVER, Kind.LITERAL, piece, tag=tag, command=verb)
            else:
                self.record(Side.SERVER, Kind.REPLY, piece, verb=verb, tag=tag)

    def mailbox_name(self, name: str) -> bytes:
        """A stored (modified UTF-7) mailbox name as sent to this client: in UTF-8 once it
        sent ENABLE UTF8=ACCEPT (RFC 6855 §3), else in modified UTF-7 (RFC 3501 §5.1.3), also
        when another program stored the name in UTF-8 ("Entwürfe" goes as "Entw&APw-rfe"):
        RFC 6855 §3, "The IMAP server MUST NOT send UTF-8 in quoted-strings to the client
        unless the client has indicated support for that syntax"."""
        if self.utf8:
            text = mutf7.decode(name)
            if text.isprintable():
                return wire.quote(text)
        elif not name.isascii():
            name = mutf7.encode(name)
        return wire.astring(name)

    def report_expunged(self, gone: list[tuple[int, int]]) -> None:
        """Tell the client that messages (sequence number, UID; highest number first) are gone:
        "* n EXPUNGE" each (RFC 3501 §7.4.1), or after ENABLE QRESYNC one "* VANISHED uid-set"
        (RFC 7162 §3.2.10.2: "MUST use the VANISHED response ... instead of the EXPUNGE")."""
        if not gone:
            return
        if self.qresync:
            self.untagged(b"VANISHED " + set_text(uid for _, uid in gone).encode(), "VANISHED")
            return
        for seq, _ in gone:
            self.untagged(b"%d EXPUNGE" % seq, "EXPUNGE")

    def untagged(self, text: bytes, verb: str) -> None:
        self.respond(b"* " + text + b"\r\n", tag="*", verb=verb)

    def untagged_status(self, status: str, text: str, code: str = "") -> None:
        self.status("*", status, text, code=code)

    def status(self, tag: str, status: str, text: str, *, code: str = "", verb: str = "",
               messages: tuple[MessageRef, ...] = (), user: str = "") -> None:
        """Send a status response (RFC 3501 §7.1): untagged (``tag`` "*"), or the tagged
        completion of ``verb``, which moves the connection along ``spec.TRANSITIONS``."""
        reply = Reply(status, text, code=code, tag=tag)
        if tag != "*":
            target = spec.TRANSITIONS.next_state(self.state, verb, spec.outcome(reply))
            if target is not State.SELECTED and self.view is not None:
                self.view.release()  # §3.2: out of the selected state, the mailbox is closed
                self.view = None
            self.state = target
        self.respond(spec.wire(reply), tag=tag, code=status, verb=verb,
                     response_code=spec.response_code(reply) if code else "", messages=messages, user=user)
        if status == "BAD":
            self._count_bad_command()
        elif tag != "*":
            self.bad_commands = 0  # an OK or NO: the client speaks IMAP after all

    def _count_bad_command(self) -> None:
        """spec.MAX_BAD_COMMANDS BADs in a row: an untagged BYE (RFC 3501 §7.1.5, "the server is
        about to close the connection") and the connection is closed."""
        self.bad_commands += 1
        if self.bad_commands < self.config.max_bad_commands or self.closed:
            return
        self.record(Side.CLIENT, Kind.VIOLATION, b"",
                    notes=(Note("too-many-errors", f"{self.bad_commands} bad commands in a row"),))
        self.status("*", "BYE", "too many bad commands, closing")
        self.close(because("too-many-errors"))

    def done(self, cmd: Command, status: str, text: str, code: str = "", user: str = "") -> None:
        """The tagged completion result (RFC 3501 §7.1), after the untagged news of changes
        made by other sessions (§5.2) when the connection stays in the selected state (not
        after LOGOUT's BYE, §6.1.3: the client has stopped tracking the mailbox)."""
        target = spec.TRANSITIONS.next_state(self.state, cmd.name, spec.outcome(Reply(status, tag=cmd.tag)))

        def complete() -> None:
            # which stored messages this command read or changed, who logged in (transcript.links)
            messages, self.touched = tuple(self.touched), []
            self.status(cmd.tag, status, text, code=code, verb=cmd.name, messages=messages, user=user)

        if self.view is not None and self.mode is Mode.COMMAND and target is State.SELECTED:
            self.sync_view(allow_expunge=cmd.name not in NO_EXPUNGE, force=cmd.name in FORCE_SYNC, then=complete)
        else:
            complete()

    def sync_view(self, *, allow_expunge: bool, force: bool, then: Callable[[], None]) -> None:
        """The untagged updates for changes made elsewhere (RFC 3501 §5.2), then ``then()``.
        Looking at the mailbox on disk (the uidlist lock may wait for another program) is a
        ``Pending`` job; nothing to look at (no change signalled, not forced): at once."""
        view = self.view
        if view is None or not (view.dirty or force):
            then()
            return
        view.dirty = False  # a change signalled while the job runs is looked at next time

        def apply(current) -> None:
            if self.view is view and not isinstance(current, Exception):  # (gone: told at the next command)
                view.update(self, current, allow_expunge=allow_expunge)
            then()

        self.run_slowly(view.look, apply)

    def continuation(self, text: str, verb: str) -> None:
        """A command continuation request (RFC 3501 §7.5) for the command ``verb``."""
        self.respond(spec.wire(Reply("+", text)), tag="+", code="+", verb=verb)

    def run_slowly(self, job: Callable[[], object], then: Callable[[object], None]) -> None:
        """Run ``job`` (store work that may wait: an fsync'd Maildir write, the uidlist lock) in
        the shell's worker thread, then ``then(result)``; input that arrives meanwhile waits in
        the buffer (ServerCore contract, protocols/base.py).  If the connection was closed
        meanwhile (the lab shutting down), the job's work stays done and nothing is answered."""
        def resume(result: object) -> list[Output]:
            self._job = None
            self._out = []
            if self.closed:
                return []
            then(result)
            self._process()
            return self._take()

        self._job = Pending(job, resume)
        self._out.append(self._job)

    def discard_input(self) -> bytes:
        """Drop (and return) what the client sent beyond the current command."""
        return self._reader.clear()

    def start_tls(self) -> None:
        self._out.append(StartTLS())

    def logout(self) -> None:
        rest = self.discard_input()  # pipelined after LOGOUT: never run (RFC 3501 §6.1.3)
        if rest.strip():
            self.record(Side.CLIENT, Kind.COMMAND, rest[:200], size=len(rest), notes=(after_logout(),))
        self.close(because("logout"))

    def watch(self, user: str, mailbox: str) -> Callable[[], None]:
        def changed() -> None:
            if self.view is not None:
                self.view.dirty = True
            if self.on_change is not None:
                self.on_change()
        return self.store.watch(user, mailbox, changed)

    # -- internals ----------------------------------------------------------------------
    def _take(self) -> list[Output]:
        """The outputs so far.  The shell writes the ``Send``s of one turn in one write
        (servers/base.py ``Connection.carry_out``: a FETCH of 100 messages is one write, not 100),
        without joining message bodies into one new buffer (a copy of the whole answer)."""
        out, self._out = self._out, []
        return out

    def emit(self, output: Output) -> None:
        self._out.append(output)

    def close(self, reason: str | dict[str, str]) -> None:
        self.closed = True
        self._finish()  # stop watching the mailbox
        self._out.append(Close(reason))

    def _finish(self) -> None:
        self.discard_spools()
        if self.view is not None:
            self.view.release()
            self.view = None

    def _verb(self) -> str:
        return self.current[1] if self.current else ""

    def record(self, side: Side, kind: Kind, raw: bytes, *, verb: str = "", code: str = "", tag: str = "",
               notes: tuple[Note, ...] = (), redacted: bytes | None = None, size: int = -1, **facts) -> None:
        """One event; ``facts``: its typed fields (``args``, ``command``, ``continued``, ...)."""
        self._out.append(Event(side=side, kind=kind, raw=raw, protocol="imap", verb=verb, code=code, tag=tag,
                               state=self.state.value, notes=notes, redacted=redacted, size=size, **facts))

    def _process(self) -> None:
        from mailtrace.protocols.imap import dispatch

        reader = self._reader
        while not self.closed and self._job is None:
            piece = reader.next_piece()
            if piece is None:
                if reader.overflowing and not self._skipping:  # answered now, not when it ends
                    self._too_long(reader.peek(), reader.buffered)
                    self._skipping = True
                return
            if isinstance(piece, Literal):
                self._literal(piece)
                continue
            if piece.too_long:
                if not self._skipping:
                    self._too_long(piece.raw, piece.size)
                self._skipping = False  # (the rest of a line already answered is skipped)
                continue
            if self.pending is not None:
                handler, self.pending = self.pending, None
                handler(piece.raw)
                continue
            dispatch.command_line(self, piece.raw)

    def _too_long(self, raw: bytes, size: int) -> None:
        """A line over MAX_COMMAND_LINE octets: the framer kept its start only; it is answered BAD
        and the commands after it are read as usual."""
        # raw keeps only the first 200 octets; size says how many there were
        self._out.append(Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=raw[:200], size=size, protocol="imap",
                               state=self.state.value, notes=(Note("line-too-long", f"over {MAX_COMMAND_LINE} octets"),),
                               redacted=credentials.imap(raw[:200])))
        self.parts.clear()
        self.current = None
        self.mode = Mode.COMMAND
        self.status("*", "BAD", f"line longer than {MAX_COMMAND_LINE} octets, discarded")

    def _literal(self, piece: Literal) -> None:
        """Octets of the literal being read: the whole of it, or a part of a spooled one."""
        tag = self.current[0] if self.current else ""
        if self._spool is None:
            self.parts.append(piece.raw)
            self.mode = Mode.COMMAND
            self.record(Side.CLIENT, Kind.LITERAL, piece.raw, tag=tag,
                        redacted=REDACTED if self._literal_is_secret else None, command=self._verb())
            return
        if len(self._preview) < LITERAL_PREVIEW:
            self._preview += piece.raw[:LITERAL_PREVIEW - len(self._preview)]
        spool, data, last = self._spool, piece.raw, not piece.left

        def write() -> bytes | None:  # a store job: the disk write leaves the event loop
            if data and spool.failed is None:
                try:
                    spool.write(data)
                except OSError as exc:  # disk full...: the command fails when it runs, not the session
                    spool.failed = exc
            if not last:
                return None
            try:
                return spool.finish() if spool.failed is None else b""
            except OSError as exc:
                spool.failed = exc
                return b""

        # input waits meanwhile, so at most one chunk of the literal is ever held in memory
        self.run_slowly(write, lambda token: self._spooled(tag, spool, token) if last else None)

    def _spooled(self, tag: str, spool, token: bytes) -> None:
        """The last octets of a spooled literal are on disk: the command goes on with its token."""
        self._spool = None
        size = spool.received
        # the command's parts carry the token instead of the octets: "{n}" becomes "{len(token)}"
        self.parts[-1] = wire.with_literal_size(self.parts[-1], len(token))
        self.parts.append(token)
        self.mode = Mode.COMMAND
        self.record(Side.CLIENT, Kind.LITERAL, bytes(self._preview), tag=tag,
                    size=size, command=self._verb(), spooled=True)
        self._preview = bytearray()

    # used by dispatch
    def begin_literal(self, size: int, secret: bool, spool=None) -> None:
        self.mode = Mode.LITERAL
        self._reader.expect_literal(size, chunks=spool is not None)
        self._literal_is_secret = secret
        self._spool = spool
        if spool is not None:
            self.spools.append(spool)

    def discard_spools(self) -> None:
        """Remove the spooled literals of the last command that no delivery took."""
        for spool in self.spools:
            spool.discard()
        self.spools.clear()

