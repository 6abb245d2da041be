"""The POP3 observer: parses both sides of a conversation it does not take part in.

Theory of operation.  A proxy or a pcap import hands us the client's bytes and the server's
bytes as they come, cut anywhere.  Each side is split into lines; client lines become
COMMAND events, server lines REPLY events.  The hard part is the server side: RFC 1939 §3
says "Responses to certain commands are multi-line", and nothing in the response itself says
so -- the observer must remember which command each response answers (clients may pipeline,
RFC 2449 §6.6, so commands wait in a queue) and, when that command's +OK is multi-line
(``spec.CommandSpec.is_multiline``: LIST and UIDL without argument, RETR, TOP, CAPA), gather
the lines up to the terminating ".CRLF" into ONE DATA event, byte-stuffing included.

It tracks the state from what the server answers (+OK to PASS or APOP enters TRANSACTION,
+OK to QUIT ends the session) and flags the same violations as the server core, plus the
server's own mistakes (a status line that is neither "+OK" nor "-ERR").  After +OK to STLS
the bytes are TLS records: ``encrypted`` becomes True and nothing more is parsed unless the
proxy intercepts TLS and calls :meth:`Pop3Observer.tls_started`.

A pipelined command is judged when the server reaches it, not when it is sent: "STAT"
pipelined after "PASS" is right if the PASS succeeds (the server runs STAT in TRANSACTION).
So a command sent while earlier responses are still due keeps its state check in its queue
entry; when the response before it is complete, the check runs on the state the server is
then in, and a wrong state (or a command after +OK to QUIT) becomes a VIOLATION event.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from mailtrace.protocols.pop3.spec import (
    COMMANDS,
    CONTINUATION,
    ERR,
    OBSERVED_COMMANDS,
    MAX_COMMAND_LINE,
    MAX_RESPONSE_LINE,
    OK,
    RESPONSE_CODES,
    ArgumentError,
    State,
    decode_line,
    parse_arguments,
    redact,
)
from mailtrace.transcript.event import Event, Kind, Note, Side

#: The observer keeps whole lines, but not without bound: a "line" longer than this is cut
#: into pieces (a message body line may legally be long; a command line may not).
MAX_OBSERVED_LINE = 64 * 1024


class _Lines:
    """Splits one direction into lines (kept with their endings), bounded by MAX_OBSERVED_LINE."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        lines = []
        start = 0
        buf = self.buf
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            lines.append(bytes(buf[start: nl + 1]))
            start = nl + 1
        del buf[:start]
        while len(buf) > MAX_OBSERVED_LINE:
            lines.append(bytes(buf[:MAX_OBSERVED_LINE]))
            del buf[:MAX_OBSERVED_LINE]
        return lines

    def rest(self) -> bytes:
        data = bytes(self.buf)
        self.buf.clear()
        return data


@dataclass
class _Expect:
    verb: str  # "" for an unknown command
    multiline: bool  # whether +OK starts a multi-line response
    states: tuple = ()  # pipelined: the states to check when the server reaches it


class Pop3Observer:
    """The ``Observer`` interface (``mailtrace.protocols.base``) for POP3."""

    def __init__(self) -> None:
        self.state = State.AUTHORIZATION
        self.greeted = False
        self.ended = False  # the server said +OK to QUIT
        self._encrypted = False
        self._tls_reported: set[Side] = set()
        self._stls_pending = False  # STLS sent, answer not seen yet
        self._marked = 0  # messages DELE marked in this session (RSET unmarks them, RFC 1939 §5)
        self._client = _Lines()
        self._server = _Lines()
        self._expect: deque[_Expect] = deque()
        self._body: bytearray | None = None  # gathering a multi-line response
        self._body_verb = ""
        self._sasl = False  # the server sent "+ ": the client's next line is a SASL response

    @property
    def encrypted(self) -> bool:
        return self._encrypted

    # --- client side -------------------------------------------------------------------------
    def feed_client(self, data: bytes) -> list[Event]:
        if self._encrypted:
            return self._unseen(Side.CLIENT, data)
        return [self._sasl_line(line) if self._sasl else self._command(line) for line in self._client.feed(data)]

    def _sasl_line(self, line: bytes) -> Event:
        """One base64 SASL response (RFC 5034 §4), or "*" to cancel: credentials, so redacted."""
        self._sasl = False
        ending = b"\r\n" if line.endswith(b"\r\n") else line[len(line.rstrip(b"\r\n")):]
        redacted = None if line.rstrip(b"\r\n") == b"*" else b"********" + ending
        return Event(side=Side.CLIENT, kind=Kind.DATA, raw=line, verb="AUTH", state=self.state.value,
                     redacted=redacted)

    def _command(self, line: bytes) -> Event:
        notes: list[Note] = []
        if not line.endswith(b"\n"):
            notes.append(Note("line-too-long", f"over {MAX_OBSERVED_LINE} octets"))
        elif not line.endswith(b"\r\n"):
            notes.append(Note("bare-lf"))
        if len(line) > MAX_COMMAND_LINE:
            notes.append(Note("line-too-long", f"{len(line)} octets, limit {MAX_COMMAND_LINE} (RFC 2449 §4)"))
        if not self.greeted:
            notes.append(Note("before-greeting"))
        if self.ended:
            notes.append(Note("after-quit"))
        if self._stls_pending:
            notes.append(Note("after-stls", "sent before the server answered STLS"))
        text = decode_line(line.rstrip(b"\r\n"))
        keyword, _, rest = text.partition(" ")
        name = keyword.upper()
        spec = COMMANDS.get(name) or OBSERVED_COMMANDS.get(name)
        if spec is None:
            notes.append(Note("unknown-command", keyword[:40]))
            self._expect.append(_Expect("", False))
            return Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=line, state=self.state.value, notes=tuple(notes),
                         redacted=redact("", line, ""))
        pipelined = bool(self._expect)  # earlier responses still due: judge it when the server gets there
        if not pipelined and self.state not in spec.states and not self.ended:
            notes.append(self._wrong_state(name, spec.states))
        has_argument = False
        try:
            has_argument = bool(parse_arguments(spec, rest))
        except ArgumentError as exc:
            notes.append(Note("bad-argument", str(exc)))
        if name == "STLS":
            self._stls_pending = True
        self._expect.append(_Expect(name, spec.is_multiline(has_argument),
                                    tuple(spec.states) if pipelined else ()))
        return Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=line, verb=name, state=self.state.value,
                     notes=tuple(notes), redacted=redact(name, line, rest))

    # --- server side -------------------------------------------------------------------------
    def feed_server(self, data: bytes) -> list[Event]:
        if self._encrypted:
            return self._unseen(Side.SERVER, data)
        events: list[Event] = []
        lines = self._server.feed(data)
        for i, line in enumerate(lines):
            if self._encrypted:  # +OK to STLS: what follows it in this chunk is TLS
                rest = b"".join(lines[i:]) + self._server.rest()
                return events + self._unseen(Side.SERVER, rest)
            events += self._server_line(line)
        if self._encrypted:  # the TLS bytes after "+OK" had no line end yet
            events += self._unseen(Side.SERVER, self._server.rest())
        return events

    def _server_line(self, line: bytes) -> list[Event]:
        if self._body is not None:
            self._body += line
            if line in (b".\r\n", b".\n"):
                body, self._body = bytes(self._body), None
                return [Event(side=Side.SERVER, kind=Kind.DATA, raw=body, verb=self._body_verb,
                              state=self.state.value)] + self._judge_next()
            return []
        notes: list[Note] = []
        if (line.startswith(b"+ ") or line.rstrip(b"\r\n") == b"+") and self._expect and self._expect[0].verb == "AUTH":
            self._sasl = True  # a SASL challenge: the AUTH command is still going on
            return [Event(side=Side.SERVER, kind=Kind.REPLY, raw=line, code=CONTINUATION, verb="AUTH",
                          state=self.state.value)]
        if not line.endswith(b"\r\n"):
            notes.append(Note("bare-lf"))
        if len(line) > MAX_RESPONSE_LINE:
            notes.append(Note("response-too-long", f"{len(line)} octets, limit {MAX_RESPONSE_LINE} (RFC 1939 §3)"))
        if line.startswith(b"+OK"):
            code = OK
        elif line.startswith(b"-ERR"):
            code = ERR
        else:
            code = ""
            notes.append(Note("bad-status", "a status line starts with +OK or -ERR, in upper case"))
        if not self.greeted:
            self.greeted = True
            expect = _Expect("", False)
        else:
            expect = self._expect.popleft() if self._expect else _Expect("", False)
        verb = expect.verb
        if code == OK:
            self._advance(verb)
        if verb == "STLS":
            self._stls_pending = False
        self._sasl = False
        info = {}
        text = line[len(code):].strip()
        if code and text.startswith(b"[") and b"]" in text:
            resp_code = text[1: text.index(b"]")].decode("ascii", "replace")
            if resp_code.split("/")[0] in {c.split("/")[0] for c in RESPONSE_CODES}:
                info["code"] = resp_code
        event = Event(side=Side.SERVER, kind=Kind.REPLY, raw=line, code=code, verb=verb, state=self.state.value,
                      notes=tuple(notes), info=info)
        if code == OK and expect.multiline:
            self._body = bytearray()
            self._body_verb = verb
            return [event]
        return [event] + self._judge_next()

    def _judge_next(self) -> list[Event]:
        """A response is complete: judge the pipelined command the server turns to next."""
        if not self._expect or not self._expect[0].states:
            return []
        head = self._expect[0]
        states, head.states = head.states, ()
        if self.ended:
            note = Note("after-quit", f"{head.verb} was pipelined after QUIT")
        elif self.state not in states:
            note = self._wrong_state(head.verb, states)
        else:
            return []
        return [Event(side=Side.CLIENT, kind=Kind.VIOLATION, verb=head.verb, state=self.state.value,
                      notes=(note,))]

    def _wrong_state(self, name: str, states) -> Note:
        allowed = " or ".join(s.value for s in State if s in states)
        return Note("wrong-state", f"{name} is allowed in {allowed}, not {self.state.value}")

    def _advance(self, verb: str) -> None:
        if verb in ("PASS", "APOP", "AUTH") and self.state is State.AUTHORIZATION:
            self.state = State.TRANSACTION
        elif verb == "DELE" and self.state is State.TRANSACTION:
            self._marked += 1
        elif verb == "RSET" and self.state is State.TRANSACTION:
            self._marked = 0
        elif verb == "QUIT":
            if self.state is State.TRANSACTION:
                self.state = State.UPDATE
            self.ended = True
        elif verb == "STLS":
            self._encrypted = True

    # --- TLS and the end ---------------------------------------------------------------------
    def _unseen(self, side: Side, data: bytes) -> list[Event]:
        if not data or side in self._tls_reported:
            return []
        self._tls_reported.add(side)
        return [Event(side=side, kind=Kind.TLS, size=len(data), state=self.state.value,
                      info={"how": "stls", "seen": "no"})]

    def tls_started(self) -> list[Event]:
        # RFC 2595 §4: the session is still in AUTHORIZATION; the client must discard what
        # it knew of the capabilities and the server greets no more.
        self._encrypted = False
        self._tls_reported.clear()
        self._client.rest()
        self._server.rest()
        return [Event(side=Side.NONE, kind=Kind.TLS, state=self.state.value, info={"how": "stls"})]

    def close(self) -> list[Event]:
        events: list[Event] = []
        if self._encrypted:
            return events
        rest = self._client.rest()
        if rest:
            events.append(Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=rest, state=self.state.value,
                                notes=(Note("incomplete-command", "a command line without its CRLF"),)))
        rest = self._server.rest()
        if self._body is not None:
            body, self._body = bytes(self._body) + rest, None
            events.append(Event(side=Side.SERVER, kind=Kind.DATA, raw=body, verb=self._body_verb,
                                state=self.state.value,
                                notes=(Note("incomplete-response", "no terminating .CRLF"),)))
        elif rest:
            events.append(Event(side=Side.SERVER, kind=Kind.REPLY, raw=rest, state=self.state.value,
                                notes=(Note("incomplete-response", "a status line without its CRLF"),)))
        if self.state is State.TRANSACTION and not self.ended:
            events.append(Event(side=Side.CLIENT, kind=Kind.VIOLATION, state=self.state.value,
                                notes=(Note("no-quit", str(self._marked)),)))  # as the server core says it
        return events
