"""The SMTP server core (RFC 5321): a sans-I/O state machine fed bytes, returning outputs.

Theory of operation
-------------------
    "An SMTP session is initiated when a client opens a connection to a server and the
    server responds with an opening message. ... Once the server has sent the greeting
    (welcoming) message and the client has received it, the client normally sends the EHLO
    command to the server ... SMTP transactions start with a MAIL command ... followed by one
    or more RCPT commands ... then a DATA command initiates transfer of the mail data and is
    terminated by the "end of mail" data indicator, which also confirms the transaction."
                                                                    (RFC 5321 §3.1, §3.3)

The lecture groups this into three phases: *handshake* (greeting, HELO/EHLO, STARTTLS,
AUTH), *message transfer* (MAIL, RCPT, DATA) and *closing* (QUIT).  Each ``State`` below maps
to one of them in ``knowledge/smtp.toml`` (``states.<state>.phase``).

``SmtpServerConnection`` is fed whatever bytes arrive (``receive``) and returns a list of
outputs (``mailtrace.protocols.base``): transcript ``Event``s, ``Send``s, ``StartTLS``,
``Close`` and, at the final dot, a ``Pending`` delivery job: the 250 is sent only once the
store has fsync'd the message (RFC 5321 §6.1: "the SMTP server ... MUST NOT lose the message").
Commands are dispatched through the ``COMMANDS`` table (verb -> allowed states + handler).

Transcript convention: every command line is one COMMAND event; every *line* of a reply is
one REPLY event (a multi-line EHLO reply gives several events, each with its own raw line);
the message body is ONE DATA event with verb "DATA" whose raw is the body exactly as sent,
stuffed dots and the final ".\\r\\n" included (cut short with ``size`` when over the size
limit); each AUTH response line is one DATA event with verb "AUTH", always redacted.
The observer (``smtp_observer.SmtpObserver``) produces the same events from both sides.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import time
from typing import Callable

from mailtrace.knowledge import because
from mailtrace.protocols import credentials
from mailtrace.protocols.base import Close, Output, Pending, Send, StartTLS
from mailtrace.protocols.lines import Line, LineReader
from mailtrace.protocols.smtp_commands import (
    CODES, COMMANDS, DATA_VERBS, DOCUMENTED_CODES, ENHANCED_CODES, KNOWN_COMMANDS, REPLY_CODES, SEQUENCE_ERRORS, SPECIAL_SEQUENCE,
    VIOLATIONS,
)
from mailtrace.protocols.smtp_states import (
    IDLE_TIMEOUT, MAX_AUTH_LINE, MAX_MESSAGE_SIZE, MAX_RECIPIENTS, MUST_END_GROUP, NOT_IMPLEMENTED,
    PROTOCOL, TRANSCRIPT_KEEP, DATA_READ_LIMIT, SmtpConfig, Spec, State, Store,
)
from mailtrace.protocols.smtp_syntax import (
    BARE_CR, BARE_LF, BEFORE_GREETING, EIGHT_BIT, EIGHT_BIT_HEADER, LINE_TOO_LONG, MAX_COMMAND_LINE,
    MAX_TEXT_LINE, NO_PIPELINING, PIPELINING_GROUP, Reply, ehlo_keyword, split_command,
)
from mailtrace.protocols.smtp_syntax import command_args  # typed MAIL/RCPT arguments for the transcript
from mailtrace.protocols.smtp_data import DataReader
from mailtrace.protocols.utf8mail import eight_bit_parts
from mailtrace.protocols.smtp_observer import SmtpObserver, injected_commands
from mailtrace.protocols.smtp_trace import trace_headers, with_header_break
from mailtrace.transcript.event import Event, Kind, Note, Side
from mailtrace.transcript.links import Action, MessageRef, to_info, user_info

_ids = itertools.count(1)


class SmtpServerConnection:
    """One SMTP server connection (the ``ServerCore`` interface of ``protocols.base``)."""

    def __init__(self, config: SmtpConfig, store: Store, *, client_address: str = "", tls: bool = False,
                 secure_channel: bool = True, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.client_address = client_address  # "127.0.0.1:51234" (for Received:)
        self.tls = tls  # encrypted from the first byte (implicit TLS) or after STARTTLS
        self.secure_channel = secure_channel  # loopback or TLS: plaintext AUTH acceptable
        self.clock = clock
        self.idle_timeout_seconds = config.idle_timeout
        self.state = State.GREETING
        self.helo = ""  # the name the client gave in HELO/EHLO
        self.esmtp = False  # EHLO (not HELO): extensions and PIPELINING in effect
        self.user = ""  # authenticated user (AUTH)
        self.introduced = False  # a HELO/EHLO was accepted in this connection
        self.mail_commands = 0  # MAIL commands received in this connection (accepted or not)
        self.rcpt_in_group = False  # an RCPT came in the pipelined group of the current command
        self.errors = 0
        self._reader = LineReader(MAX_COMMAND_LINE)
        self._out: list[Output] = []
        self._wbuf = bytearray()
        self._pending = False
        self._early = False  # bytes of the next command arrived before our last reply
        self._prev_verb = ""
        self._verb = ""  # the command being answered
        self._reset_transaction()
        self._auth: tuple[str, list[str]] | None = None  # (mechanism, responses so far)
        self._maybe_sasl = False  # the last line was an AUTH the client may answer anyway
        self._auth_prior = State.READY  # the state AUTH was given in

    # --- the ServerCore interface ------------------------------------------------------------
    def start(self) -> list[Output]:
        early = self._reader.buffered > 0
        self._set(State.GREETED)
        self._reply(Reply(220, f"{self.config.hostname} ESMTP {self.config.software} lab server ready"), "")
        self._early = early
        if early:
            self._prev_verb = "<greeting>"
        return self._process()

    def receive(self, data: bytes) -> list[Output]:
        if self.state is State.CLOSED:
            return []
        self._reader.feed(data)
        if self._pending or self.state is State.GREETING:
            return []
        return self._process()

    def eof(self) -> list[Output]:
        self._abandon_data("the client closed the connection before the final dot")
        self._set(State.CLOSED)
        return self._take()

    def _abandon_data(self, why: str) -> None:
        """A message cut short: record what came, deliver nothing."""
        if self.state is not State.DATA:
            return
        data = self._data
        data.add(self._reader.clear())
        self._event(Event(side=Side.CLIENT, kind=Kind.DATA, raw=data.raw, verb="DATA", state=self.state.value,
                          size=data.wire_size if data.oversize else -1, protocol=PROTOCOL,
                          info={"incomplete": why}))
        self._reset_transaction()

    def idle_timeout(self) -> list[Output]:
        if self.state is State.CLOSED or self._pending:
            return []
        self._close(Reply(421, f"{self.config.hostname} Error: timeout exceeded, closing connection", "4.4.2"),
                      "idle timeout")
        return self._take()

    def busy(self, why: str) -> list[Output]:
        """Instead of the greeting, when the server takes no more connections (too many in
        total or from this address).  RFC 5321 §3.1: "a 421 response ... if [the server] is
        unable to provide service"; 4.3.2 "System not accepting network messages" (RFC 3463)."""
        self._close(Reply(421, f"{self.config.hostname} Service not available: {why}, try again later", "4.3.2"),
                    why)
        return self._take()

    def shutdown(self) -> list[Output]:
        """The lab is stopping (Ctrl-C). RFC 5321 §3.8: 421 "may be a reply to any command if
        the service knows it must shut down"; a message cut short is not delivered."""
        if self.state is State.CLOSED or self._pending:
            return []
        self._abandon_data("the server shut down before the final dot")
        self._close(Reply(421, f"{self.config.hostname} Service not available, closing transmission channel",
                          "4.3.2"), "server shutting down")
        return self._take()

    def tls_started(self) -> list[Output]:
        # RFC 3207 §4.2: "the server MUST discard any knowledge obtained from the client"
        self.tls = True
        self.secure_channel = True
        self.helo, self.esmtp, self.user = "", False, ""
        self._reset_transaction()
        self._set(State.GREETED)
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

    def _event(self, event: Event) -> None:
        self._out.append(event)

    def _set(self, state: State) -> None:
        self.state = state

    def _reply(self, reply: Reply, verb: str, info: dict[str, str] | None = None) -> None:
        state = self.state.value
        for i, raw in enumerate(reply.lines()):
            keyword = ehlo_keyword(raw) if verb == "EHLO" and i else ""  # explained line by line
            facts = {"code": keyword} if keyword else dict(info or {})
            self._out.append(Event(side=Side.SERVER, kind=Kind.REPLY, raw=raw, code=str(reply.code), verb=verb,
                                   state=state, protocol=PROTOCOL, info=facts))
            self._wbuf += raw
        if reply.code in (500, 501, 502, 503, 504):
            self.errors += 1
            if self.errors >= self.config.max_errors and self.state is not State.CLOSED:
                self._close(Reply(421, f"{self.config.hostname} Error: too many errors, closing connection",
                                  "4.7.0"), "too many errors")

    def _close(self, reply: Reply, reason: str) -> None:
        self._set(State.CLOSED)
        self._reply(reply, self._verb)
        self._control(Close(reason))

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

    def _line_notes(self, line: Line, early: bool) -> list[Note]:
        notes = []
        if line.bare_lf:
            notes.append(Note(BARE_LF))
        if line.bare_cr:
            notes.append(Note(BARE_CR))
        if line.too_long:
            notes.append(Note(LINE_TOO_LONG, f"{line.size} > {self._reader.limit}"))
        if early:
            prev = self._prev_verb
            if prev == "<greeting>":
                notes.append(Note(BEFORE_GREETING))
            elif prev in MUST_END_GROUP:
                notes.append(Note(PIPELINING_GROUP, f"{prev} →"))
            elif not self.esmtp:
                notes.append(Note(NO_PIPELINING, f"{prev} →"))
        return notes

    def _command(self, line: Line, early: bool) -> None:
        verb, arg = split_command(line.content)
        self._verb = verb
        self._notes = self._line_notes(line, early)
        reply: Reply | None
        at = len(self._out)  # the command event goes before anything the handler emits
        if not early:  # a new pipelined group starts (RFC 2920 §3.1)
            self.rcpt_in_group = False
        spec = COMMANDS.get(verb)
        if verb == "MAIL":
            self.mail_commands += 1
        if line.too_long:
            verb = verb if spec else ""
            reply = Reply(500, "Error: line too long", "5.5.2")
        elif spec is None:
            reply = (Reply(502, "Error: command not implemented", "5.5.1") if verb in NOT_IMPLEMENTED
                     else Reply(500, "Error: command not recognized", "5.5.2"))
        elif self.state not in spec.states:
            special = SPECIAL_SEQUENCE.get((verb, self.state))
            reply = special(self, arg) if special else _out_of_sequence(verb, self.state)
        else:
            reply = spec.handler(self, arg)
        if verb == "RCPT":
            self.rcpt_in_group = True
        self._prev_verb = verb
        redacted = credentials.smtp(line.raw)  # read leniently: AUTH<TAB>PLAIN, a cut line...
        if redacted is None and self._maybe_sasl and spec is None:
            redacted = credentials.masked_line(line.raw)  # a SASL response after a refused AUTH
        # until a command the server knows, lines after a refused AUTH may be SASL responses
        self._maybe_sasl = ((credentials.starts_sasl(line.raw) or (self._maybe_sasl and spec is None))
                            and not (reply is not None and reply.code == 334))
        self._out.insert(at, Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=line.raw, verb=verb,
                                   state=self.state.value, notes=tuple(self._notes),
                                   size=line.size if line.too_long else -1, redacted=redacted, protocol=PROTOCOL,
                                   args=command_args(verb, arg),
                                   # sent before the previous reply (RFC 2920): the timeline counts no round trip
                                   info={"pipelined": "yes"} if early else {}))
        if reply is not None:
            if self.state is State.CLOSED:
                self._reply(reply, verb)
                self._control(Close(because("client-quit")))
            else:
                self._reply(reply, verb)
        if verb == "STARTTLS" and self.state is State.GREETED and not self.tls and reply and reply.code == 220:
            if self._reader.buffered:  # RFC 3207 §5: plaintext injected after STARTTLS is dropped
                self._out += injected_commands(self._reader.clear(), self.state.value)
            self._control(StartTLS())

    # --- transactions ------------------------------------------------------------------------
    def _reset_transaction(self) -> None:
        self.sender: str | None = None
        self.recipients: list[str] = []
        self.rejected = 0  # RCPTs refused in this transaction (DATA then gets 554, §4.1.1.4)
        self.body_8bitmime = False  # MAIL ... BODY=8BITMIME (RFC 6152)
        self.smtputf8 = False  # MAIL ... SMTPUTF8 (RFC 6531 §3.4): UTF-8 addresses and headers
        self._data = DataReader(self.config.max_message_size, TRANSCRIPT_KEEP)
        self._data_early = False  # the message came before the 354 reply

    def enter_data(self) -> None:
        """354 was sent: the message is scanned in bulk by ``_data_chunk``, so the line reader
        must not cut long lines any more (its buffer stays bounded: each chunk is consumed)."""
        self._reader.limit = DATA_READ_LIMIT

    def _data_chunk(self) -> bool:
        """Consume DATA bytes from the reader's buffer; False when more input is needed."""
        used, finished = self._data.consume(self._reader.buffer)
        if used:
            self._reader.consumed(used)
        if finished:
            self._end_of_data()
        return finished

    def _end_of_data(self) -> None:
        self._reader.limit = MAX_COMMAND_LINE
        data = self._data
        notes = [Note(rule) for rule in (BARE_LF, BARE_CR, LINE_TOO_LONG) if rule in data.rules]
        if self._data_early:
            notes.append(Note(PIPELINING_GROUP, "DATA → 354"))
        header_8bit, _ = eight_bit_parts(data.body) if data.eight_bit else (False, False)
        if data.eight_bit and not self.body_8bitmime and not self.smtputf8:
            # SMTPUTF8 allows UTF-8 in the header and the body too (RFC 6532 §3.2: "text =/ UTF8-non-ascii")
            notes.append(Note(EIGHT_BIT))
        if header_8bit and not self.smtputf8:  # 8BITMIME covers the body only (RFC 6532 §3, RFC 6531 §3.2)
            notes.append(Note(EIGHT_BIT_HEADER))
        self._set(State.DONE)
        self._event(Event(side=Side.CLIENT, kind=Kind.DATA, raw=data.raw, verb="DATA", state=State.DATA.value,
                          notes=tuple(notes), size=data.wire_size if data.oversize else -1, protocol=PROTOCOL))
        self._prev_verb = "."
        if data.oversize:
            self._reply(Reply(552, "Error: message size exceeds fixed maximum message size", "5.3.4"), "DATA")
            self._reset_transaction()
            return
        content = with_header_break(data.message())  # a hand-typed message may have no header section
        sender, recipients = self.sender or "", list(self.recipients)
        queue_id = f"{int(self.clock()):x}.{next(_ids)}"
        # RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA) and RFC 6531 §4.3 (UTF8SMTP, UTF8SMTPS, ...)
        with_ = (("UTF8SMTP" if self.smtputf8 else "ESMTP") if self.esmtp else "SMTP") \
            + ("S" if self.tls else "") + ("A" if self.user else "")
        now = self.clock()
        helo, client = self.helo, self.client_address

        def job():
            results = []
            for rcpt in recipients:
                user = rcpt.split("@", 1)[0].lower()
                headers = trace_headers(sender=sender, recipient=rcpt, helo=helo, client=client,
                                        hostname=self.config.hostname, software=self.config.software,
                                        with_=with_, queue_id=queue_id, when=now)
                try:
                    results.append((user, self.store.deliver(user, headers + content)))
                except Exception as exc:  # the store failed: tell the client to retry (451)
                    results.append(exc)
            return results

        self._reset_transaction()
        self._pending = True
        self._control(Pending(job=job, resume=lambda results: self._delivered(results, queue_id)))

    def _delivered(self, results: list, queue_id: str) -> list[Output]:
        self._pending = False
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            self._reply(Reply(451, f"Error: local error in processing ({type(failed[0]).__name__})", "4.3.0"), "DATA")
        else:
            # which messages this 250 put in which mailboxes (the web view's "life of a message")
            refs = [MessageRef(Action.DELIVERED, user, "INBOX",
                               getattr(info, "uid", 0), getattr(info, "key", "")) for user, info in results]
            self._reply(Reply(250, f"OK: queued as {queue_id}", "2.0.0"), "DATA", info=to_info(refs))
        if self._reader.buffered:
            self._early = True
        return self._process()

    # --- AUTH (RFC 4954) ---------------------------------------------------------------------
    def _auth_line(self, line: Line) -> None:
        mechanism, responses = self._auth or ("", [])
        content = line.content
        self._event(Event(side=Side.CLIENT, kind=Kind.DATA, raw=line.raw, verb="AUTH", redacted=b"***\r\n",
                          state=self.state.value, notes=tuple(self._line_notes(line, False)), protocol=PROTOCOL))
        if content == b"*":  # RFC 4954 §4: the client cancels
            self._auth_done(Reply(501, "Authentication cancelled", "5.7.0"))
            return
        try:
            decoded = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            self._auth_done(Reply(501, "Error: cannot decode response", "5.5.2"))
            return
        responses.append(decoded.decode("utf-8", errors="replace"))
        self._auth_step(mechanism, responses)

    def _auth_step(self, mechanism: str, responses: list[str]) -> None:
        if mechanism == "PLAIN":
            if not responses:
                self._auth_challenge(mechanism, responses, "")
                return
            parts = responses[0].split("\0")
            if len(parts) != 3:
                self._auth_done(Reply(501, "Error: malformed PLAIN response", "5.5.2"))
                return
            authzid, authcid, passwd = parts
            if authzid and authzid.lower() != authcid.lower():  # RFC 4616 §2: acting as another user
                self._auth_done(Reply(535, "Authentication credentials invalid (no authorization as another user)",
                                      "5.7.8"))
                return
            self._auth_check(authcid, passwd)
        else:  # LOGIN (draft-murchison-sasl-login): Username: then Password:
            if len(responses) == 0:
                self._auth_challenge(mechanism, responses, "VXNlcm5hbWU6")
            elif len(responses) == 1:
                self._auth_challenge(mechanism, responses, "UGFzc3dvcmQ6")
            else:
                self._auth_check(responses[0], responses[1])

    def _auth_challenge(self, mechanism: str, responses: list[str], challenge: str) -> None:
        self._auth = (mechanism, responses)
        self._set(State.AUTH)
        self._reader.limit = MAX_AUTH_LINE
        self._reply(Reply(334, challenge), "AUTH")

    def _auth_check(self, user: str, password: str) -> None:
        user = user.lower()
        if self.store.has_user(user) and self.store.check_password(user, password):
            self.user = user
            self._auth_done(Reply(235, "Authentication successful", "2.7.0"), user_info(user))
        else:
            self._auth_done(Reply(535, "Authentication credentials invalid", "5.7.8"))

    def _auth_done(self, reply: Reply, info: dict[str, str] | None = None) -> None:
        self._auth = None
        self._reader.limit = MAX_COMMAND_LINE
        self._set(self._auth_prior)  # back where AUTH was given (READY or DONE)
        self._reply(reply, "AUTH", info)


def _out_of_sequence(verb: str, state: State) -> Reply:
    """503 with a message that says what should have come first (§4.1.4)."""
    if state is State.GREETED:
        return Reply(503, "Error: send HELO/EHLO first", "5.5.1")
    return Reply(503, SEQUENCE_ERRORS.get((verb, state)) or SEQUENCE_ERRORS.get((verb, None))
                 or "Error: bad sequence of commands", "5.5.1")


__all__ = ["CODES", "COMMANDS", "REPLY_CODES", "VIOLATIONS", "DATA_VERBS", "DOCUMENTED_CODES", "ENHANCED_CODES",
           "KNOWN_COMMANDS", "State",
           "SmtpConfig", "SmtpServerConnection", "SmtpObserver", "Spec", "Store", "MAX_MESSAGE_SIZE", "MAX_RECIPIENTS",
           "IDLE_TIMEOUT", "MAX_COMMAND_LINE", "MAX_TEXT_LINE"]
