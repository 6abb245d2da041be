"""The SMTP observer: the spec applied to both sides of a conversation it does not take part in.

Theory of operation
-------------------
A proxy, a pcap import or the grader judging a student's server hands over the client's bytes
and the server's bytes as they come, cut anywhere.  Client lines are commands, parsed as the
server core parses them (``syntax.parse_command``); server lines are reply lines (RFC 5321
§4.2.1: "every line, except the last, begin[s] with the reply code, followed immediately by a
hyphen"), so a reply is complete at its line with a space after the code.  Each complete
reply moves the state through the same table the core uses, ``spec.TRANSITIONS``, with the
verb it answers: the observer has no state machine of its own.

What a client line *means* depends on the server's last answer, so after a command in
``spec.REPLY_DECIDES_NEXT`` the observer holds the client's bytes back until the reply:

* after DATA: 354 (state ``data``) makes them the message, read up to "<CRLF>.<CRLF>"
  (§4.1.1.4) into ONE DATA event; any other reply makes them commands again;
* after AUTH: 334 (state ``auth``) makes the next line a base64 response (a redacted DATA
  event, verb "AUTH"); 235/5xx end the exchange (RFC 4954 §4);
* after STARTTLS: 220 means TLS starts (RFC 3207 §4); from then on ``encrypted`` is True and
  nothing is parsed until ``tls_started()`` (the proxy intercepting TLS).  Plaintext the client
  sent after STARTTLS, before the 220, is flagged (RFC 3207 §4.2, CVE-2011-0411).

The events are those of the server core: one per command, one per reply line, one DATA per
message, with the same ``state`` on the replies, the same violation rules (from the same
functions: ``syntax.line_notes``, ``syntax.order_notes``, ``DataReader.notes``), the same
redaction (``syntax.Redaction``), plus ``bad-reply`` for server lines that are no reply.
A command's own event shows the state it leads to if the server accepts it (looked up in the
same table), as the core's shows the state after its reply.
"""

from __future__ import annotations

from collections import deque

from mailtrace.protocols.base import MAX_OBSERVED_LINE, TLS_HANDSHAKE
from mailtrace.protocols.lines import Line, LineReader
from mailtrace.protocols.smtp.data import DataReader
from mailtrace.protocols.smtp.spec import (
    BAD_REPLY, COMMANDS, DATA_NO_RECIPIENT, DATA_READ_LIMIT, END_OF_DATA, GREETING, MAX_AUTH_LINE,
    MAX_COMMAND_LINE, PROTOCOL, REPLY_DECIDES_NEXT, TRANSITIONS, Outcome, State, data_without_recipient,
    expected_state, outcome, starts_tls,
)
from mailtrace.protocols.smtp.syntax import (
    Attempts, Redaction, command_args, declared_body, envelope_path, injected_commands, line_notes, order_notes,
    parse_command, parse_reply_line, path_notes, reply_response_code,
)
from mailtrace.transcript.event import Event, Kind, Note, Side

OBSERVED_DATA_KEEP = 32 * 1024 * 1024  # octets of a message body kept in its DATA event
HOLD_LIMIT = 1024 * 1024  # client octets held while waiting for a reply (a client that never waits)

# What client bytes are: decided by the state (spec.TRANSITIONS), or held until a reply decides.
COMMANDS_MODE, DATA_MODE, AUTH_MODE, HOLD_MODE = "commands", "data", "auth", "hold"
MODE_OF_STATE = {State.DATA: DATA_MODE, State.AUTH: AUTH_MODE}


class SmtpObserver:
    """The ``Observer`` interface of ``protocols.base`` for SMTP."""

    def __init__(self) -> None:
        self.state = State.GREETING
        self._client = LineReader(MAX_OBSERVED_LINE)
        self._server = LineReader(MAX_OBSERVED_LINE)
        self._mode = COMMANDS_MODE
        # (table verb, event verb) of what awaits a reply: (".", "DATA") is the reply after a message
        self._outstanding: deque[tuple[str, str]] = deque()
        self._ahead = self.state  # the state the outstanding commands lead to if all are accepted
        self._encrypted = False
        self._greeted = False  # the greeting (220, 554 or 421) was seen
        self._pipelining = False  # the server advertised PIPELINING in its EHLO reply
        self._ehlo_keywords: set[str] = set()  # the extensions of the EHLO reply being read
        self._reply_lines = 0  # lines of the reply being read
        self._body_8bitmime = False  # what the last MAIL declared (RFC 6152, RFC 6531 §3.4)
        self._smtputf8 = False
        self._attempts = Attempts()  # for LEFT_WITHOUT_MAIL, as the core counts
        self._redaction = Redaction()
        self._data = DataReader(OBSERVED_DATA_KEEP, OBSERVED_DATA_KEEP)
        self._events: list[Event] = []

    @property
    def encrypted(self) -> bool:
        return self._encrypted

    # --- the Observer interface ----------------------------------------------------------
    def feed_client(self, data: bytes) -> list[Event]:
        if self._encrypted or not data:
            return []
        self._client.feed(data)
        if self._mode == HOLD_MODE and self._client.buffered > HOLD_LIMIT:
            # The client does not wait for the reply: read on as if the server had said yes, in
            # the state the table gives (after DATA the message, after AUTH a SASL response).
            self._mode = MODE_OF_STATE.get(self._ahead, COMMANDS_MODE)
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
        """Both sides now speak TLS through the proxy: parse on, from a fresh session (RFC 3207
        §4.2; the 220 already took the state back to ``greeted``)."""
        self._encrypted = False
        self._client.clear()
        self._server.clear()
        self._pipelining = False
        self._mode = COMMANDS_MODE
        self._outstanding.clear()
        self._ahead = self.state
        return []

    def close(self) -> list[Event]:
        if self._mode == DATA_MODE:
            self._data.add(self._client.clear())
            # as the core does: a message cut short is recorded even when nothing came after the 354
            self._events.append(self._data.event(incomplete="the connection ended before the final dot"))
        return self._take()

    # --- helpers -------------------------------------------------------------------------
    def _take(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _event(self, side: Side, kind: Kind, raw: bytes, state: State | None = None, **kw) -> None:
        self._events.append(Event(side=side, kind=kind, raw=raw, state=(state or self.state).value,
                                  protocol=PROTOCOL, **kw))

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
                self._event(Side.CLIENT, Kind.DATA, line.raw, verb="AUTH", redacted=Redaction.RESPONSE,
                            notes=tuple(line_notes(line, MAX_AUTH_LINE)))
                self._expect("AUTH")
            else:
                self._command(line)

    def _expect(self, verb: str, step: str | None = None) -> None:
        """``verb`` now awaits its reply; hold what follows if that reply decides what it is."""
        self._outstanding.append((verb if step is None else step, verb))
        if verb in REPLY_DECIDES_NEXT:
            self._mode = HOLD_MODE
            if verb == "DATA":
                self._client.limit = DATA_READ_LIMIT  # a held message must not be cut as a long line

    def _command(self, line: Line) -> None:
        cmd = parse_command(line, MAX_COMMAND_LINE)
        verb = cmd.verb
        if not self._greeted:
            cmd.notes += order_notes(None, self._pipelining)
        elif self._outstanding:
            cmd.notes += order_notes(self._outstanding[-1][0], self._pipelining)
        path = envelope_path(verb, cmd.arg)
        if path is not None:
            cmd.notes += path_notes(path)
            if verb == "MAIL":
                self._body_8bitmime, self._smtputf8 = declared_body(path.params)
        self._attempts.command(verb)
        if verb == "QUIT":
            cmd.notes += self._attempts.quit_notes()
        if verb == "DATA" and data_without_recipient(self.state, any(s == "RCPT" for s, _ in self._outstanding)):
            cmd.notes.append(Note(DATA_NO_RECIPIENT))
        redacted = self._redaction.command(line.raw, known=verb in COMMANDS)
        if self._greeted and self.state is not State.CLOSED:
            self._ahead = expected_state(self._ahead, verb)  # shown on the command: where it leads if accepted
        self._event(Side.CLIENT, Kind.COMMAND, line.raw, self._ahead, verb=verb, notes=tuple(cmd.notes),
                    redacted=redacted, size=line.size if line.size > len(line.raw) else -1,
                    args=command_args(verb, cmd.arg))
        self._expect(verb)

    def _end_of_data(self) -> None:
        data = self._data
        self._events.append(data.event(data.notes(self._body_8bitmime, self._smtputf8)))
        self._data = DataReader(OBSERVED_DATA_KEEP, OBSERVED_DATA_KEEP)
        self._client.limit = MAX_OBSERVED_LINE
        self._expect("DATA", END_OF_DATA)  # the reply after the final dot
        self._mode = COMMANDS_MODE

    # --- server side ---------------------------------------------------------------------
    def _server_line(self, line: Line) -> None:
        parsed = parse_reply_line(line.raw)
        if not self._greeted:
            step, verb = GREETING, ""
        else:
            step, verb = self._outstanding[0] if self._outstanding else ("", "")
        if parsed is None:
            notes = [Note(BAD_REPLY, line.content[:40].decode("utf-8", "backslashreplace"))]
            self._event(Side.SERVER, Kind.REPLY, line.raw, verb=verb, notes=tuple(notes))
            return
        code, last = parsed
        after = TRANSITIONS.next_state(self.state, step, outcome(code))  # every line of a reply shows it
        response_code = reply_response_code(verb, self._reply_lines, line.raw)  # an EHLO line: its keyword
        if verb == "EHLO" and response_code:
            self._ehlo_keywords.add(response_code)
        self._reply_lines = 0 if last else self._reply_lines + 1
        self._event(Side.SERVER, Kind.REPLY, line.raw, after, verb=verb, code=code, response_code=response_code,
                    notes=tuple(line_notes(line, MAX_OBSERVED_LINE)))
        if last:
            self._answered(step, code, after)

    def _answered(self, step: str, code: str, after: State) -> None:
        """A complete reply to ``step``: the state follows the table; then what the reply
        tells about the client's next bytes."""
        if self._greeted and self._outstanding:
            self._outstanding.popleft()
        self._greeted = True
        self.state = after
        if not self._outstanding:
            self._ahead = after
        if step in ("HELO", "EHLO"):
            if outcome(code) is Outcome.OK:
                self._attempts.introduced = True
                self._pipelining = "PIPELINING" in self._ehlo_keywords  # RFC 2920 §3
            self._ehlo_keywords = set()
        if after is State.AUTH:  # a 334 (RFC 4954 §4): the next lines are SASL responses
            self._redaction.challenged()
        if self._mode == HOLD_MODE and not self._outstanding:
            self._mode = MODE_OF_STATE.get(after, COMMANDS_MODE)
            if self._mode != DATA_MODE:
                self._client.limit = MAX_OBSERVED_LINE
        if starts_tls(step, outcome(code)):
            held = self._client.clear()
            if held and held[0] != TLS_HANDSHAKE:
                self._events += injected_commands(held, self.state.value)
            self._encrypted = True
            return
        self._client_input()  # held client bytes may now be understood
