"""The SMTP server core (RFC 5321): a sans-I/O state machine fed bytes, returning outputs.

Theory of operation
-------------------
``SmtpServerConnection`` is fed whatever bytes arrive (``receive``) and returns a list of
outputs (``mailtrace.protocols.base``): transcript ``Event``s, ``Send``s, ``StartTLS``,
``Close`` and, at the final dot, a ``Pending`` delivery job: the 250 is sent only once the
store has fsync'd the message (RFC 5321 §6.1: "the SMTP server ... MUST NOT lose the message").

Each command line is parsed (``syntax.parse_command``), checked against ``spec.COMMANDS``
(500 unknown, 502 not implemented, 503 wrong state) and handed to its handler
(``commands.HANDLERS``), which answers with a ``Reply``.  Every reply the core sends then
moves the state through ``spec.TRANSITIONS`` (state, verb, outcome of the reply) and nothing
else does: the observer follows the same rows on the replies it sees.

Transcript convention: every command line is one COMMAND event; every *line* of a reply is
one REPLY event (a multi-line EHLO reply gives several events, each with its own raw line);
the message body is ONE DATA event with verb "DATA" whose raw is the body exactly as sent,
stuffed dots and the final ".\\r\\n" included (cut short with ``size`` when over the size
limit); each AUTH response line is one DATA event with verb "AUTH", always redacted.  The
``state`` of a command and of its reply is the state after the reply.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterator

from mailtrace.knowledge import because
from mailtrace.protocols.base import Close, Output, Pending, Send, StartTLS
from mailtrace.protocols.lines import Line, LineReader
from mailtrace.protocols.smtp import commands
from mailtrace.protocols.smtp.commands import Session
from mailtrace.protocols.smtp.data import DataReader
from mailtrace.protocols.smtp.delivery import SPOOL_THRESHOLD, Envelope, SpooledMessage, in_memory_job
from mailtrace.protocols.smtp.spec import (
    COMMANDS, END_OF_DATA, GREETING, MAX_COMMAND_LINE, NOT_IMPLEMENTED, PIPELINING_GROUP, PROTOCOL,
    TRANSCRIPT_KEEP, TRANSITIONS, Outcome, Reply, SmtpConfig, State, Store, line_limit, outcome, starts_tls,
    wire_lines,
)
from mailtrace.protocols.smtp.syntax import Command, Redaction, command_args, injected_commands, line_notes, \
    order_notes, parse_command, reply_response_code
from mailtrace.transcript.event import Event, Kind, MessageRef, Note, Side
from mailtrace.transcript.links import Action

_ERROR_CODES = ("500", "501", "502", "503", "504")  # the client's mistakes, counted towards MAX_BAD_COMMANDS


class SmtpServerConnection:
    """One SMTP server connection (the ``ServerCore`` interface of ``protocols.base``).

    ``clock`` gives the time for the Received: header and queue ids (the shell passes
    ``time.time``; a core never reads the clock itself); ``queue_ids`` numbers the messages
    (one counter per server, shared by its connections)."""

    def __init__(self, config: SmtpConfig, store: Store, *, clock: Callable[[], float],
                 queue_ids: Iterator[int] | None = None, client_address: str = "", tls: bool = False,
                 secure_channel: bool = True) -> None:
        self.config = config
        self.session = Session(config, store, client_address=client_address, tls=tls, secure_channel=secure_channel)
        self.clock = clock
        self.queue_ids = queue_ids if queue_ids is not None else itertools.count(1)
        self.idle_timeout_seconds = config.idle_timeout
        self.ended = False  # the client went away (eof): nothing more is read
        self._reader = LineReader(MAX_COMMAND_LINE)
        self._redaction = Redaction()
        self._out: list[Output] = []
        self._wbuf = bytearray()
        self._pending = False
        self._early = False  # bytes of the next command arrived before our last reply
        self._prev_verb: str | None = None  # the verb answered last (None: only the greeting)
        self._verb = ""  # the command being answered
        self._errors = 0
        self._new_data()

    @property
    def state(self) -> State:
        return self.session.state

    @property
    def user(self) -> str:
        return self.session.user

    # --- the ServerCore interface ------------------------------------------------------------
    def start(self) -> list[Output]:
        early = self._reader.buffered > 0
        self._reply(Reply("220", f"{self.config.hostname} ESMTP {self.config.implementation} lab server ready"), GREETING)
        self._early = early
        return self._process()

    def receive(self, data: bytes) -> list[Output]:
        if self.state is State.CLOSED or self.ended:
            return []
        self._reader.feed(data)
        if self._pending or self.state is State.GREETING:
            return []
        return self._process()

    def eof(self) -> list[Output]:
        self._abandon_data("the client closed the connection before the final dot")
        self.ended = True
        return self._take()

    def idle_timeout(self) -> list[Output]:
        if self.state is State.CLOSED or self._pending:
            return []
        self._close(Reply("421", f"{self.config.hostname} Error: timeout exceeded, closing connection", "4.4.2"),
                    "idle timeout")
        return self._take()

    def busy(self, why: str) -> list[Output]:
        """Instead of the greeting, when the server takes no more connections (too many in
        total or from this address).  RFC 5321 §4.2.2: "421 <domain> Service not available,
        closing transmission channel"; 4.3.2 "System not accepting network messages" (RFC 3463)."""
        self._close(Reply("421", f"{self.config.hostname} Service not available: {why}, try again later", "4.3.2"),
                    why)
        return self._take()

    def shutdown(self) -> list[Output]:
        """The lab is stopping (Ctrl-C). RFC 5321 §4.2.2: 421 "may be a reply to any command if
        the service knows it must shut down"; a message cut short is not delivered."""
        if self.state is State.CLOSED or self._pending:
            return []
        self._abandon_data("the server shut down before the final dot")
        self._close(Reply("421", f"{self.config.hostname} Service not available, closing transmission channel",
                          "4.3.2"), "server shutting down")
        return self._take()

    def tls_started(self) -> list[Output]:
        # the 220 to STARTTLS already took the state back to GREETED (spec.TRANSITIONS)
        self.session.tls = self.session.secure_channel = True
        self.session.forget_client()
        return self._process()

    def notify(self) -> list[Output]:
        return []

    # --- output helpers ----------------------------------------------------------------------
    def _take(self) -> list[Output]:
        self._flush()
        out, self._out = self._out, []
        return out

    def _flush(self) -> None:
        if self._wbuf:
            self._out.append(Send(bytes(self._wbuf)))
            self._wbuf.clear()

    def _control(self, output: Output) -> None:
        self._flush()
        self._out.append(output)

    def _reply(self, reply: Reply, verb: str, step: str | None = None, *, user: str = "",
               messages: tuple[MessageRef, ...] = ()) -> State:
        """Send ``reply`` to ``verb`` and move to the state ``spec.TRANSITIONS`` gives for it
        (``step``: the table's verb when it differs, "." for the reply after the message;
        ``user``: who it logged in; ``messages``: what it stored).  Returns that state (the one
        the command's own event shows)."""
        state = TRANSITIONS.next_state(self.state, verb if step is None else step, outcome(reply))
        for i, raw in enumerate(wire_lines(reply)):
            self._out.append(Event(side=Side.SERVER, kind=Kind.REPLY, raw=raw, code=reply.status, verb=verb,
                                   state=state.value, protocol=PROTOCOL, response_code=reply_response_code(verb, i, raw),
                                   user=user, messages=messages))
            self._wbuf += raw
        self.session.state = state
        self._reader.limit = line_limit(state)
        if reply.status in _ERROR_CODES:
            self._errors += 1
            if self._errors >= self.config.max_bad_commands and state is not State.CLOSED:
                self._close(Reply("421", f"{self.config.hostname} Error: too many errors, closing connection",
                                  "4.7.0"), "too many errors", verb="")  # (answers no command: the
                # last one had its reply; an observer of the wire, proxy/pcap, sees it the same way)
        return state

    def _close(self, reply: Reply, reason: str | dict[str, str], verb: str | None = None) -> State:
        state = self._reply(reply, self._verb if verb is None else verb, step=self._verb)
        self._control(Close(reason))
        return state

    # --- input processing --------------------------------------------------------------------
    def _process(self) -> list[Output]:
        reader = self._reader
        while not self._pending and self.state is not State.CLOSED:
            if self.state is State.DATA:
                if not self._data_chunk():
                    break
                continue
            line = reader.next_line()
            if line is None:
                break
            early = self._early
            self._early = False
            if self.state is State.AUTH:
                self._auth_line(line)
            else:
                self._command(line, early)
            if reader.buffered and not self._pending:
                self._early = True
                if self.state is State.DATA:
                    self._data_early = True
        return self._take()

    def _order_notes(self, early: bool) -> list[Note]:
        if not early:
            return []
        return order_notes(self._prev_verb, pipelining=self.session.esmtp)

    def _command(self, line: Line, early: bool) -> None:
        session = self.session
        cmd = parse_command(line, self._reader.limit)
        cmd.notes += self._order_notes(early)
        verb = cmd.verb
        self._verb = verb
        at = len(self._out)  # the command event goes before the reply
        if not early:  # a new pipelined group starts (RFC 2920 §3.1)
            session.rcpt_in_group = False
        spec = COMMANDS.get(verb)
        session.attempts.command(verb)
        reply = self._dispatch(cmd, spec is not None)
        if line.too_long and spec is None:
            verb = ""
        if verb == "RCPT":
            session.rcpt_in_group = True
        self._prev_verb = verb
        redacted = self._redaction.command(line.raw, known=spec is not None)
        bye = outcome(reply) is Outcome.BYE
        state = (self._close(reply, because("client-quit")) if bye
                 else self._reply(reply, verb, user=commands.logged_in(session, reply)))
        if state is State.AUTH:  # a 334 (RFC 4954 §4): the next lines are SASL responses
            self._redaction.challenged()
        self._out.insert(at, Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=line.raw, verb=verb, state=state.value,
                                   notes=tuple(cmd.notes), size=line.size if line.too_long else -1,
                                   redacted=redacted, protocol=PROTOCOL, args=command_args(verb, cmd.arg, cmd.path),
                                   # sent before the previous reply (RFC 2920): the timeline counts no round trip
                                   pipelined=early))
        if starts_tls(verb, outcome(reply)):
            if self._reader.buffered:  # RFC 3207 §4.2: plaintext sent before the handshake is discarded
                self._out += injected_commands(self._reader.clear(), self.state.value)
            self._control(StartTLS())

    def _dispatch(self, cmd: Command, known: bool) -> Reply:
        """The reply to one command line: §4.2.4's errors, or its handler's answer."""
        if cmd.line.too_long:
            return Reply("500", "Error: line too long", "5.5.2")
        if not known:
            if cmd.verb in NOT_IMPLEMENTED:
                return Reply("502", "Error: command not implemented", "5.5.1")
            return Reply("500", "Error: command not recognized", "5.5.2")
        if self.state not in COMMANDS[cmd.verb].states:
            return commands.wrong_state(self.session, cmd)
        return commands.HANDLERS[cmd.verb](self.session, cmd)

    # --- AUTH (RFC 4954 §4) ------------------------------------------------------------------
    def _auth_line(self, line: Line) -> None:
        self._out.append(Event(side=Side.CLIENT, kind=Kind.DATA, raw=line.raw, verb="AUTH",
                               redacted=Redaction.RESPONSE, state=self.state.value,
                               notes=tuple(line_notes(line, self._reader.limit)), protocol=PROTOCOL))
        reply = commands.auth_response(self.session, line.content)
        self._reply(reply, "AUTH", user=commands.logged_in(self.session, reply))

    # --- the message (DATA) ------------------------------------------------------------------
    def _new_data(self) -> None:
        self._data = DataReader(self.config.max_message_size, TRANSCRIPT_KEEP)
        self._data_early = False  # the message came before the 354 reply
        self._spooled: SpooledMessage | None = None  # a large message, written to tmp/ as it comes

    def _abandon_data(self, why: str) -> None:
        """A message cut short: record what came, deliver nothing."""
        if self.state is not State.DATA or self._pending:
            return
        self._data.add(self._reader.clear())
        self._out.append(self._data.event(incomplete=why))
        self._discard_spooled()
        self._new_data()
        self.session.new_transaction()

    def _data_chunk(self) -> bool:
        """Consume DATA bytes from the reader's buffer; False when more input is needed."""
        data = self._data
        used, finished = data.consume(self._reader.buffer)
        if used:
            self._reader.consumed(used)
        if self._spooled is not None and data.oversize:  # it will get 552: its files go now
            self._discard_spooled()
        elif self._spooled is None and len(data.body) > SPOOL_THRESHOLD and hasattr(self.session.store, "spool"):
            # too big to hold in memory: each recipient's copy goes to tmp/ as it arrives
            self._spooled = SpooledMessage(self.session.store, self._envelope(), bytes(data.body))
            data.spill(self._spooled.take)
        if finished:
            self._end_of_data()
        elif self._spooled is not None and self._spooled.due:
            # the writing is the shell's (a worker thread); no more input is read until it is done
            self._pending = True
            self._control(Pending(job=self._spooled.write_job(), resume=self._written))
        return finished

    def _written(self, _result: None) -> list[Output]:
        self._pending = False
        return self._process()

    def _discard_spooled(self) -> None:
        """The spooled message will not be delivered: the shell removes its files (nothing waits)."""
        if self._spooled is not None:
            self._control(Pending(job=self._spooled.discard_job(), resume=lambda _result: []))
            self._spooled = None

    def _envelope(self) -> Envelope:
        """The trace facts of the message being received (§4.4), queue id and time included."""
        session, transaction = self.session, self.session.transaction
        now = self.clock()
        # RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA) and RFC 6531 §4.3 (UTF8SMTP, UTF8SMTPS, ...)
        with_ = (("UTF8SMTP" if transaction.smtputf8 else "ESMTP") if session.esmtp else "SMTP") \
            + ("S" if session.tls else "") + ("A" if session.user else "")
        return Envelope(sender=transaction.sender or "", recipients=tuple(transaction.recipients), helo=session.helo,
                        client=session.client_address, hostname=self.config.hostname,
                        software=self.config.implementation, with_=with_, queue_id=f"{int(now):x}.{next(self.queue_ids)}",
                        when=now)

    def _end_of_data(self) -> None:
        data, session = self._data, self.session
        transaction = session.transaction
        notes = data.notes(transaction.body_8bitmime, transaction.smtputf8)
        if self._data_early:
            notes.append(Note(PIPELINING_GROUP, "DATA → 354"))
        self._out.append(data.event(notes))
        self._prev_verb = END_OF_DATA
        self._reader.limit = MAX_COMMAND_LINE  # what follows the dot are commands (held until the reply)
        spooled = self._spooled
        if data.oversize:
            self._new_data()
            session.new_transaction()
            self._reply(Reply("552", "Error: message size exceeds fixed maximum message size", "5.3.4"), "DATA",
                        END_OF_DATA)
            return
        envelope = spooled.envelope if spooled is not None else self._envelope()
        job = spooled.job() if spooled is not None else in_memory_job(session.store, envelope, data.message())
        self._new_data()
        session.new_transaction()
        self._pending = True
        self._control(Pending(job=job, resume=lambda results: self._delivered(results, envelope.queue_id)))

    def _delivered(self, results: list, queue_id: str) -> list[Output]:
        self._pending = False
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            self._reply(Reply("451", f"Error: local error in processing ({type(failed[0]).__name__})", "4.3.0"),
                        "DATA", END_OF_DATA)
        else:
            # which messages this 250 put in which mailboxes (the web view's "life of a message")
            refs = tuple(MessageRef(Action.DELIVERED, user, "INBOX",
                                    getattr(info, "uid", 0), getattr(info, "key", "")) for user, info in results)
            self._reply(Reply("250", f"OK: queued as {queue_id}", "2.0.0"), "DATA", END_OF_DATA, messages=refs)
        if self._reader.buffered:
            self._early = True
        return self._process()
