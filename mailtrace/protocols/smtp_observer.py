"""The SMTP observer: parses both sides of a conversation it does not take part in.

Theory of operation
-------------------
A proxy or a pcap import hands over the client's bytes and the server's bytes as they come,
cut anywhere.  Client lines are commands; server lines are reply lines (RFC 5321 §4.2.1:
"every line, except the last, begin[s] with the reply code, followed immediately by a
hyphen"), so a reply is complete at its line with a space after the code.  What a client line
*means* depends on the server's last answer, so the observer holds the client's bytes back
whenever the next reply decides it:

* after DATA: 354 makes them the message, read up to "<CRLF>.<CRLF>" (§4.1.1.4) into ONE
  DATA event; any other reply makes them commands again;
* after AUTH: each 334 makes the next line a base64 response (a redacted DATA event, verb
  "AUTH"); 235/5xx end the exchange (RFC 4954 §4);
* after STARTTLS: 220 means TLS starts (RFC 3207 §4); from then on ``encrypted`` is True and
  nothing is parsed until ``tls_started()`` (the proxy intercepting TLS).  Plaintext the client
  sent after STARTTLS, before the 220, is flagged (RFC 3207 §4.2, CVE-2011-0411).

The events are those of the server core (``smtp.SmtpServerConnection``): one per command,
one per reply line, one DATA per message, with the same ``state`` values (tracked from the
server's replies) and the same violation rules, plus ``bad-reply`` for server lines that are
no reply at all.  Commands sent while replies are outstanding are flagged unless the server
advertised PIPELINING (RFC 2920 §3); a command after one that must end a group is flagged
even then.
"""

from __future__ import annotations

from collections import deque

from mailtrace.protocols import credentials
from mailtrace.protocols.lines import Line, LineReader
from mailtrace.protocols.smtp_data import DataReader
from mailtrace.protocols.utf8mail import eight_bit_parts
from mailtrace.protocols.smtp_states import DATA_READ_LIMIT, MUST_END_GROUP, PROTOCOL, State
from mailtrace.protocols.smtp_syntax import (
    BAD_REPLY, BARE_CR, BARE_LF, BEFORE_GREETING, DATA_NO_RECIPIENT, EIGHT_BIT, EIGHT_BIT_HEADER, LEFT_WITHOUT_MAIL,
    LINE_TOO_LONG, MAX_COMMAND_LINE,
    NO_PIPELINING, PIPELINING_GROUP, STARTTLS_INJECTION, PathError, ehlo_keyword, parse_path, parse_reply_line,
    split_command,
)
from mailtrace.protocols.smtp_syntax import command_args  # typed MAIL/RCPT arguments for the transcript
from mailtrace.transcript.event import Event, Kind, Note, Side

MAX_OBSERVED_LINE = 64 * 1024  # longer "lines" are cut (a command may not exceed 512, §4.5.3.1.4)
OBSERVED_DATA_KEEP = 32 * 1024 * 1024  # octets of a message body kept in its DATA event
HOLD_LIMIT = 1024 * 1024  # client octets held while waiting for a reply (a client that never waits)
TLS_HANDSHAKE = 0x16  # first octet of a TLS handshake record (RFC 8446 §5.1)

#: The state a command leads to when the server accepts it (shown on the command's event).
PREDICTED = {"HELO": State.READY, "EHLO": State.READY, "MAIL": State.MAIL, "RCPT": State.RCPT, "DATA": State.DATA,
             "RSET": State.READY, "QUIT": State.CLOSED, "STARTTLS": State.GREETED}

END_OF_DATA = "\n"  # marks the reply after the final dot (no verb can hold a line feed)

# What client bytes are, depending on the server's last answer.
COMMANDS_MODE, DATA_MODE, AUTH_MODE, HOLD_MODE = "commands", "data", "auth", "hold"


class SmtpObserver:
    """The ``Observer`` interface of ``protocols.base`` for SMTP."""

    def __init__(self) -> None:
        self.state = State.GREETING
        self._client = LineReader(MAX_OBSERVED_LINE)
        self._server = LineReader(MAX_OBSERVED_LINE)
        self._mode = COMMANDS_MODE
        self._outstanding: deque[tuple[str, State]] = deque()  # (verb, state before it) awaiting a reply
        self._encrypted = False
        self._greeted = False
        self._esmtp = False
        self._pipelining = False  # the server advertised PIPELINING in its EHLO reply
        self._ehlo_lines: list[bytes] = []
        self._reply_lines = 0  # lines of the reply being read
        self._accepted = 0  # RCPTs accepted in this transaction
        self._body_8bitmime = False
        self._smtputf8 = False  # the last MAIL carried SMTPUTF8 (RFC 6531 §3.4)
        self._introduced = False  # a HELO/EHLO was accepted
        self._mail_commands = 0  # MAIL commands seen (accepted or not)
        self._data = DataReader(OBSERVED_DATA_KEEP, OBSERVED_DATA_KEEP)
        self._events: list[Event] = []
        self._auth_prior = State.READY  # the state an AUTH exchange started in

    @property
    def encrypted(self) -> bool:
        return self._encrypted

    # --- the Observer interface ----------------------------------------------------------
    def feed_client(self, data: bytes) -> list[Event]:
        if self._encrypted or not data:
            return []
        self._client.feed(data)
        if self._mode == HOLD_MODE and self._client.buffered > HOLD_LIMIT:
            # The client does not wait for the reply: read on as if the server had said yes.
            verb = self._outstanding[-1][0] if self._outstanding else ""
            self._mode = DATA_MODE if verb == "DATA" else COMMANDS_MODE
        self._client_input()
        return self._take()

    def feed_server(self, data: bytes) -> list[Event]:
        if self._encrypted or not data:
            return []
        self._server.feed(data)
        while not self._encrypted and (line := self._server.next_line()) is not None:
            self._server_line(line)
        return self._take()

    def tls_started(self) -> list[Event]:
        """Both sides now speak TLS through the proxy: parse on, from a fresh session (RFC 3207 §4.2)."""
        self._encrypted = False
        self._client.clear()
        self._server.clear()
        self._esmtp = self._pipelining = False
        self._mode = COMMANDS_MODE
        self._outstanding.clear()
        self._set(State.GREETED)
        return []

    def close(self) -> list[Event]:
        if self._mode == DATA_MODE:
            data = self._data
            data.add(self._client.clear())
            # as the core does: a message cut short is recorded even when nothing came after the 354
            self._event(Side.CLIENT, Kind.DATA, data.raw, verb="DATA", size=data.wire_size if data.oversize else -1,
                        info={"incomplete": "the connection ended before the final dot"})
        return self._take()

    # --- helpers -------------------------------------------------------------------------
    def _take(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _set(self, state: State) -> None:
        self.state = state

    def _event(self, side: Side, kind: Kind, raw: bytes, **kw) -> None:
        self._events.append(Event(side=side, kind=kind, raw=raw, state=self.state.value, protocol=PROTOCOL, **kw))

    @staticmethod
    def _line_notes(line: Line, limit: int) -> list[Note]:
        notes = []
        if line.bare_lf:
            notes.append(Note(BARE_LF))
        if line.bare_cr:
            notes.append(Note(BARE_CR))
        if line.size > limit:
            notes.append(Note(LINE_TOO_LONG, f"{line.size} > {limit}"))
        return notes

    # --- client side ---------------------------------------------------------------------
    def _client_input(self) -> None:
        while not self._encrypted:
            if self._mode == DATA_MODE:
                used, finished = self._data.consume(self._client.buffer)
                if used:
                    self._client.consumed(used)
                if not finished:
                    return
                self._end_of_data()
                continue
            if self._mode == HOLD_MODE:
                return
            line = self._client.next_line()
            if line is None:
                return
            if self._mode == AUTH_MODE:
                self._event(Side.CLIENT, Kind.DATA, line.raw, verb="AUTH", redacted=b"***\r\n",
                            notes=tuple(self._line_notes(line, MAX_OBSERVED_LINE)))
                self._outstanding.append(("AUTH", self.state))
                self._mode = HOLD_MODE
            else:
                self._command(line)

    def _command(self, line: Line) -> None:
        verb, arg = split_command(line.content)
        notes = self._line_notes(line, MAX_COMMAND_LINE)
        if not self._greeted:
            notes.append(Note(BEFORE_GREETING))
        elif self._outstanding:
            prev = self._outstanding[-1][0]
            if prev in MUST_END_GROUP:
                notes.append(Note(PIPELINING_GROUP, f"{prev} →"))
            elif not self._pipelining:
                notes.append(Note(NO_PIPELINING, f"{prev} →"))
        if verb in ("MAIL", "RCPT"):
            try:
                path = parse_path(arg, "FROM" if verb == "MAIL" else "TO", allow_null=verb == "MAIL")
            except PathError:
                path = None
            if path is not None:
                notes += [Note(rule, detail) for rule, detail in path.notes]
                if verb == "MAIL":
                    self._body_8bitmime = any(k == "BODY" and (v or "").upper() == "8BITMIME" for k, v in path.params)
                    self._smtputf8 = any(k == "SMTPUTF8" for k, _ in path.params)
        if verb == "MAIL":
            self._mail_commands += 1
        if verb == "QUIT" and self._introduced and not self._mail_commands:
            notes.append(Note(LEFT_WITHOUT_MAIL))
        if verb == "DATA" and self._accepted == 0 and all(v != "RCPT" for v, _ in self._outstanding):
            notes.append(Note(DATA_NO_RECIPIENT))
        redacted = credentials.smtp(line.raw)
        prior = self.state
        predicted = PREDICTED.get(verb)
        if predicted is not None and self._greeted and self.state is not State.CLOSED:
            # Show the state the command leads to (as the server core does); undone on a refusal.
            if not (verb == "RSET" and prior is State.GREETED):
                self._set(predicted)
        self._event(Side.CLIENT, Kind.COMMAND, line.raw, verb=verb, notes=tuple(notes), redacted=redacted,
                    size=line.size if line.size > len(line.raw) else -1, args=command_args(verb, arg))
        self._outstanding.append((verb, prior))
        if verb in ("DATA", "AUTH", "STARTTLS"):
            self._mode = HOLD_MODE  # what comes next depends on the reply (354 / 334 / 220)
            if verb == "DATA":
                self._client.limit = DATA_READ_LIMIT  # a held message must not be cut as a long line

    def _end_of_data(self) -> None:
        data = self._data
        notes = [Note(rule) for rule in (BARE_LF, BARE_CR, LINE_TOO_LONG) if rule in data.rules]
        header_8bit, _ = eight_bit_parts(bytes(data.body)) if data.eight_bit else (False, False)
        if data.eight_bit and not self._body_8bitmime and not self._smtputf8:
            # SMTPUTF8 allows UTF-8 in the header and the body too (RFC 6532 §3.2: "text =/ UTF8-non-ascii")
            notes.append(Note(EIGHT_BIT))
        if header_8bit and not self._smtputf8:  # 8BITMIME covers the body only (RFC 6532 §3, RFC 6531 §3.2)
            notes.append(Note(EIGHT_BIT_HEADER))
        self._event(Side.CLIENT, Kind.DATA, data.raw, verb="DATA", notes=tuple(notes),
                    size=data.wire_size if data.oversize else -1)
        self._data = DataReader(OBSERVED_DATA_KEEP, OBSERVED_DATA_KEEP)
        self._client.limit = MAX_OBSERVED_LINE
        self._outstanding.append((END_OF_DATA, State.DATA))  # the reply after the final dot
        self._mode = COMMANDS_MODE

    # --- server side ---------------------------------------------------------------------
    def _server_line(self, line: Line) -> None:
        parsed = parse_reply_line(line.raw)
        pending = self._outstanding[0] if self._outstanding and self._greeted else ("", self.state)
        verb = "DATA" if pending[0] == END_OF_DATA else pending[0]
        if parsed is None:
            notes = [Note(BAD_REPLY, line.content[:40].decode("utf-8", "backslashreplace"))]
            self._event(Side.SERVER, Kind.REPLY, line.raw, verb=verb, notes=tuple(notes))
            return
        code, last = parsed
        info = {}
        if verb == "EHLO":
            if self._ehlo_lines:  # the first line is the greeting, the others are extensions
                keyword = ehlo_keyword(line.raw)
                info = {"code": keyword} if keyword else {}
            self._ehlo_lines.append(line.content[4:].upper())
        if not last:
            self._event(Side.SERVER, Kind.REPLY, line.raw, verb=verb, code=code, info=info,
                        notes=tuple(self._line_notes(line, MAX_OBSERVED_LINE)))
            return
        # The reply is complete: it moves the state before its last line is recorded.
        if not self._greeted:
            self._greeted = True
            self._set(State.GREETED if code == "220" else State.CLOSED)
        elif self._outstanding:
            self._outstanding.popleft()
            self._answered(pending[0], code, pending[1])
        if code == "421":
            self._set(State.CLOSED)
        self._event(Side.SERVER, Kind.REPLY, line.raw, verb=verb, code=code, info=info,
                    notes=tuple(self._line_notes(line, MAX_OBSERVED_LINE)))
        self._client_input()  # held client bytes may now be understood
        if verb == "STARTTLS" and code == "220":
            self._encrypted = True

    def _answered(self, verb: str, code: str, prior: State) -> None:
        ok = code.startswith("2") or code.startswith("3")
        if not ok and verb in PREDICTED and not self._outstanding:
            self._set(prior)  # refused: the prediction made at the command is undone
            if verb == "DATA" and prior in (State.MAIL, State.RCPT):
                # prior was predicted from pipelined RCPTs that may all have been refused
                self._set(State.RCPT if self._accepted else State.MAIL)
        if verb in ("HELO", "EHLO") and ok:
            self._esmtp = verb == "EHLO"
            self._introduced = True
            self._pipelining = any(x.split(b" ")[0] == b"PIPELINING" for x in self._ehlo_lines)
            self._accepted = 0
            self._set(State.READY)
        elif verb == "MAIL" and ok:
            self._accepted = 0
            self._set(State.MAIL)
        elif verb == "RCPT" and ok:
            self._accepted += 1
            self._set(State.RCPT)
        elif verb == "DATA" and self._mode == HOLD_MODE:  # the reply to the DATA command itself
            if code == "354":
                self._set(State.DATA)
                self._mode = DATA_MODE
            else:
                self._mode = COMMANDS_MODE
                self._client.limit = MAX_OBSERVED_LINE
        elif verb == END_OF_DATA:  # the reply after the final dot
            self._accepted = 0
            self._set(State.DONE)
        elif verb == "RSET" and ok:
            self._accepted = 0
            if self.state is not State.GREETED:
                self._set(State.READY)
        elif verb == "QUIT":
            self._set(State.CLOSED)
        elif verb == "STARTTLS":
            self._mode = COMMANDS_MODE
            if code == "220":
                self._set(State.GREETED)
                held = self._client.clear()
                if held and held[0] != TLS_HANDSHAKE:
                    self._events += injected_commands(held, self.state.value)
        elif verb == "AUTH":
            if code == "334":
                if self.state is not State.AUTH:
                    self._auth_prior = prior
                self._set(State.AUTH)
                self._mode = AUTH_MODE
            else:  # the exchange is over (235, 535, 501...) or was refused (503, 504)
                self._mode = COMMANDS_MODE
                self._set(self._auth_prior if self.state is State.AUTH else prior)
        if verb == "EHLO" or verb == "HELO":
            self._ehlo_lines = []


def injected_commands(held: bytes, state: str) -> list[Event]:
    """Plaintext sent after STARTTLS and before the handshake, one COMMAND event per line,
    each flagged (RFC 3207 §4.2: the server MUST discard it; CVE-2011-0411)."""
    events = []
    for raw in held.splitlines(keepends=True):
        verb, _ = split_command(raw.rstrip(b"\r\n"))
        events.append(Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=raw, verb=verb, state=state, protocol=PROTOCOL,
                            notes=(Note(STARTTLS_INJECTION),)))
    return events
