"""The POP3 observer: the spec applied to both sides of a conversation it does not take part in.

Theory of operation.  A proxy or a pcap import hands us the client's bytes and the server's
bytes as they come, cut anywhere.  Each side is framed by the one line framer
(``protocols.lines.LineReader``), with the limits of ``spec``; client lines become COMMAND
events, read by ``spec.read_command`` exactly as the server core reads them (same notes, same
redaction), and server lines REPLY events, read by ``spec.read_status``.  The hard part is the
server side: RFC 1939 §3 says "Responses to certain commands are multi-line", and nothing in
the response itself says so -- the observer must remember which command each response
answers (clients may pipeline, RFC 2449 §6.6, so commands wait in a queue) and, when that
command's +OK is multi-line (``spec.is_multiline``: LIST and UIDL without argument, RETR,
TOP, CAPA), gather the lines up to the terminating ".CRLF" into ONE DATA event,
byte-stuffing included.

The state follows the replies it sees through the same table the core changes state with
(``spec.after_reply`` on ``spec.TRANSITIONS``): +OK to PASS, APOP or AUTH enters TRANSACTION,
QUIT from TRANSACTION enters UPDATE and, answered, ends the session.  It also flags the
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

from mailtrace.protocols.base import MAX_OBSERVED_LINE
from mailtrace.protocols.lines import Line, LineReader
from mailtrace.protocols.pop3.spec import (
    ALL_COMMANDS,
    CONTINUATION,
    MAX_COMMAND_LINE,
    Command,
    CommandSpec,
    Outcome,
    Redaction,
    State,
    after_reply,
    closes,
    ends_body,
    is_multiline,
    marked_after,
    no_quit,
    outcome,
    read_command,
    read_status,
    too_long,
    user_pass,
    wrong_state,
)
from mailtrace.transcript.event import Event, Kind, Note, Side, Tls


@dataclass
class _Expect:
    """A command whose response is still due."""

    verb: str  # "" for an unknown command or a line too long
    multiline: bool  # whether +OK starts a multi-line response
    runs: bool  # well formed and allowed: the server runs it (so its -ERR may change the state)
    spec: CommandSpec | None = None
    judge: bool = False  # pipelined: check the state when the server reaches it


class Pop3Observer:
    """The ``Observer`` interface (``mailtrace.protocols.base``) for POP3."""

    def __init__(self) -> None:
        self.state = State.AUTHORIZATION
        self.greeted = False
        self.ended = False  # the server answered QUIT: it closes the connection
        self._encrypted = False
        self._tls_reported: set[Side] = set()
        self._stls_pending = False  # STLS sent, answer not seen yet
        self._marked = 0  # messages DELE marked in this session (RSET unmarks them, RFC 1939 §5)
        self._client = LineReader(MAX_COMMAND_LINE)  # the server core's framing of commands
        self._server = LineReader(MAX_OBSERVED_LINE)
        self._redaction = Redaction()
        self._expect: deque[_Expect] = deque()
        self._body: bytearray | None = None  # gathering a multi-line response
        self._body_size = 0  # its octets on the wire (more than kept if a line was over the limit)
        self._body_verb = ""
        self._sasl = False  # the server sent "+ ": the client's next line is a SASL response
        self._user = False  # a USER was accepted (or awaits its answer) that no PASS has used yet

    @property
    def encrypted(self) -> bool:
        return self._encrypted

    # --- client side -------------------------------------------------------------------------
    def feed_client(self, data: bytes) -> list[Event]:
        if self._encrypted:
            return self._unseen(Side.CLIENT, data)
        self._client.feed(data)
        events = []
        while (line := self._client.next_line()) is not None:
            events.append(self._sasl_line(line) if self._sasl else self._command(line))
        return events

    def _sasl_line(self, line: Line) -> Event:
        """One base64 SASL response (RFC 5034 §4), or "*" to cancel: credentials, so redacted."""
        self._sasl = False
        return Event(side=Side.CLIENT, kind=Kind.DATA, raw=line.raw, size=_cut(line), verb="AUTH",
                     state=self.state.value, redacted=Redaction.sasl_response(line.raw))

    def _command(self, line: Line) -> Event:
        seen: list[Note] = []  # what only an observer can see: the order of both sides
        if not self.greeted:
            seen.append(Note("before-greeting"))
        if self.ended:
            seen.append(Note("after-quit"))
        if self._stls_pending:
            seen.append(Note("after-stls", "sent before the server answered STLS"))
        if line.too_long:  # as the server core: no keyword read, -ERR expected
            self._expect.append(_Expect("", False, False))
            return Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=line.raw, size=line.size, state=self.state.value,
                         notes=(too_long(line.size), *seen), redacted=self._redaction.of(line.raw, False))
        pipelined = bool(self._expect)  # earlier responses still due: judge it when the server gets there
        command = read_command(line.raw, None if pipelined or self.ended else self.state, ALL_COMMANDS,
                               bare_lf=line.bare_lf)
        spec = command.spec
        if spec is not None and spec.extra["starts_tls"]:
            self._stls_pending = True
        multiline = spec is not None and is_multiline(spec, bool(command.args))
        self._expect.append(_Expect(command.verb, multiline, command.runs, spec, judge=pipelined and spec is not None))
        notes = command.notes + self._user_pass(command) + tuple(seen)
        return Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=line.raw, verb=command.verb, state=self.state.value,
                     notes=notes, redacted=self._redaction.of(line.raw, spec is not None), args=command.typed)

    def _user_pass(self, command: Command) -> tuple[Note, ...]:
        """USER then PASS, by the core's rule (``spec.user_pass``); a refused USER ends the wait
        when its -ERR comes (``_answered``)."""
        if not command.runs:
            return ()
        self._user, notes = user_pass(command.verb, self._user)
        return notes

    # --- server side -------------------------------------------------------------------------
    def feed_server(self, data: bytes) -> list[Event]:
        if self._encrypted:
            return self._unseen(Side.SERVER, data)
        self._server.feed(data)
        events: list[Event] = []
        while (line := self._server.next_line()) is not None:
            events += self._server_line(line)
            if self._encrypted:  # +OK to STLS: what follows it is TLS
                return events + self._unseen(Side.SERVER, self._server.clear())
        return events

    def _server_line(self, line: Line) -> list[Event]:
        raw = line.raw
        if self._body is not None:
            self._body += raw
            self._body_size += line.size
            if ends_body(raw):
                return [self._body_event()] + self._judge_next()
            return []
        # "+" answers nothing but AUTH (RFC 5034 §4): elsewhere it is a bad status line
        reply, notes = read_status(line, continuation=bool(self._expect) and self._expect[0].verb == "AUTH")
        if reply.status == CONTINUATION:
            self._sasl = True  # a SASL challenge: the AUTH command is still going on
            return [Event(side=Side.SERVER, kind=Kind.REPLY, raw=raw, code=CONTINUATION, verb="AUTH",
                          state=self.state.value)]
        if not self.greeted:
            self.greeted = True
            expect = _Expect("", False, False)
        else:
            expect = self._expect.popleft() if self._expect else _Expect("", False, False)
        verb, result = expect.verb, outcome(reply)
        if reply.status:
            self._answered(expect, result)
        self._sasl = False
        event = Event(side=Side.SERVER, kind=Kind.REPLY, raw=raw, size=_cut(line), code=reply.status, verb=verb,
                      state=self.state.value, notes=notes, response_code=reply.code)
        if result is Outcome.OK and expect.multiline:
            self._body, self._body_size, self._body_verb = bytearray(), 0, verb
            return [event]
        return [event] + self._judge_next()

    def _answered(self, expect: _Expect, result: Outcome) -> None:
        """The server answered ``expect``: the state moves as the core's does (``spec.after_reply``)."""
        verb = expect.verb
        self.state = after_reply(self.state, verb, result, expect.runs)
        if closes(verb, result, expect.runs):
            self.ended = True
        if expect.spec is not None and expect.spec.extra["starts_tls"]:
            self._stls_pending = False
            self._encrypted = result is Outcome.OK
            self._user = self._user and not self._encrypted  # RFC 2595 §4: nothing said before TLS counts
        if verb == "USER" and expect.runs and result is not Outcome.OK:
            self._user = False
        self._marked = marked_after(verb, result, self._marked)  # as the core counts them

    def _body_event(self, notes: tuple[Note, ...] = ()) -> Event:
        body, self._body = bytes(self._body or b""), None
        return Event(side=Side.SERVER, kind=Kind.DATA, raw=body, size=self._body_size if self._body_size > len(body) else -1,
                     verb=self._body_verb, state=self.state.value, notes=notes)

    def _judge_next(self) -> list[Event]:
        """A response is complete: judge the pipelined command the server turns to next."""
        if not self._expect or not self._expect[0].judge:
            return []
        head = self._expect[0]
        head.judge = False
        if self.ended:
            note = Note("after-quit", f"{head.verb} was pipelined after QUIT")
        elif self.state not in head.spec.states:
            note, _ = wrong_state(head.verb, head.spec, self.state)
        else:
            return []
        head.runs = False
        return [Event(side=Side.CLIENT, kind=Kind.VIOLATION, verb=head.verb, state=self.state.value,
                      notes=(note,))]

    # --- TLS and the end ---------------------------------------------------------------------
    def _unseen(self, side: Side, data: bytes) -> list[Event]:
        if not data or side in self._tls_reported:
            return []
        self._tls_reported.add(side)
        return [Event(side=side, kind=Kind.TLS, size=len(data), state=self.state.value,
                      tls=Tls(how="stls", seen=False))]

    def tls_started(self) -> list[Event]:
        # RFC 2595 §4: the session is still in AUTHORIZATION; the client must discard what
        # it knew of the capabilities and the server greets no more.
        self._encrypted = False
        self._user = False
        self._tls_reported.clear()
        self._client.clear()
        self._server.clear()
        return [Event(side=Side.NONE, kind=Kind.TLS, state=self.state.value, tls=Tls(how="stls"))]

    def close(self) -> list[Event]:
        events: list[Event] = []
        if self._encrypted:
            return events
        rest = self._client.clear()
        if rest:
            events.append(Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=rest, state=self.state.value,
                                notes=(Note("incomplete-command", "a command line without its CRLF"),)))
        rest = self._server.clear()
        if self._body is not None:
            self._body += rest
            self._body_size += len(rest)
            events.append(self._body_event((Note("incomplete-response", "no terminating .CRLF"),)))
        elif rest:
            events.append(Event(side=Side.SERVER, kind=Kind.REPLY, raw=rest, state=self.state.value,
                                notes=(Note("incomplete-response", "a status line without its CRLF"),)))
        if self.state is State.TRANSACTION and not self.ended:
            events.append(no_quit(self.state, self._marked))  # as the server core says it
        return events


def _cut(line: Line) -> int:
    """An event's ``size`` for a line: its real length when the framer kept only its start."""
    return line.size if line.too_long else -1
