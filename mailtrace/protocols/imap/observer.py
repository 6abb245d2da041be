"""ImapObserver: both sides of an IMAP conversation we only watch (proxy, pcap import).

Theory of operation.  Each direction is framed by the same rule as the server core: lines
end in LF, and a line ending in ``{n}`` is followed by exactly n octets of literal (RFC 3501
§4.3), on the client side (APPEND, LOGIN with a literal password) as on the server side (FETCH
BODY[]).  Each line and each whole literal becomes one event, however the bytes were split.
A synchronizing literal is sent only after the server's "+" (§7.5); if the server answers the
command with a tagged NO/BAD instead, no literal follows.  Tagged completions drive the state
(§3): OK to LOGIN/AUTHENTICATE -> authenticated, OK to SELECT/EXAMINE -> selected, CLOSE (or
UNSELECT, RFC 3691) -> authenticated, LOGOUT -> logout; OK to STARTTLS means the next bytes are
TLS records (§6.2.1).
"""

from __future__ import annotations

from mailtrace.protocols import credentials
from mailtrace.protocols.base import MAX_OBSERVED_LINE
from mailtrace.protocols.imap import spec, wire
from mailtrace.protocols.imap.commandline import CommandReader, after_logout, blank, line_notes, tokens_of
from mailtrace.protocols.imap.lexer import ParseError
from mailtrace.protocols.imap.spec import DONE, MAX_OBSERVED_LITERAL, REDACTED, SASL, Reply, State
from mailtrace.protocols.lines import LineReader, Literal, literal_announced
from mailtrace.transcript.event import Event, Kind, Note, Side, Tls


def _cut(piece: Literal) -> int:
    """An event's ``size``: -1 unless the literal was kept only in part."""
    return piece.size if piece.size != len(piece.raw) else -1


def _stream() -> LineReader:
    """One direction's framing: lines, and after a ``{n}`` the n octets of a literal (§4.3)."""
    return LineReader(MAX_OBSERVED_LINE, auto_literals=True, literal_keep=MAX_OBSERVED_LITERAL)


class ImapObserver:
    def __init__(self) -> None:
        self.state = State.NOT_AUTHENTICATED
        self._encrypted = False
        self._tls_reported: set[Side] = set()
        self._client = _stream()
        self._server = _stream()
        self._commands = CommandReader()  # the same reading of command lines as the core's
        self._pending: dict[str, str] = {}  # tag -> verb of commands not yet completed
        self._cmd: tuple[str, str] | None = None  # the client command being read (tag, verb)
        self._cmd_parts: list[bytes] = []
        self._cmd_first = True
        self._literal_secret = False
        self._after_server_literal = False  # the server line goes on after a literal (FETCH BODY[])
        self._sasl = False  # the server sent "+" to an AUTHENTICATE: next client line is SASL
        self._idle = False  # "+ idling" seen: next client line is DONE
        self._server_verb = ""  # the response continued after a server literal
        self._starttls_tag: str | None = None
        self._logout_tag: str | None = None  # a LOGOUT the server will run (§6.1.3)
        self._logged_out = False

    @property
    def encrypted(self) -> bool:
        return self._encrypted

    def _ev(self, side: Side, kind: Kind, raw: bytes, **kw) -> Event:
        return Event(side=side, kind=kind, raw=raw, protocol="imap", state=self.state.value, **kw)

    # -- client side ----------------------------------------------------------------------
    def feed_client(self, data: bytes) -> list[Event]:
        if self._encrypted:
            return self._unseen(Side.CLIENT, data)
        if self._logged_out and data:
            return [self._ev(Side.CLIENT, Kind.COMMAND, data, notes=(after_logout(),))]
        events = []
        self._client.feed(data)
        while (piece := self._client.next_piece()) is not None:
            if isinstance(piece, Literal):
                tag = self._cmd[0] if self._cmd else ""
                events.append(self._ev(Side.CLIENT, Kind.LITERAL, piece.raw, tag=tag, size=_cut(piece),
                                       redacted=REDACTED if self._literal_secret else None,
                                       command=self._cmd[1] if self._cmd else ""))
                if piece.size != len(piece.raw) and self._cmd_parts:  # kept in part: an empty stand-in
                    self._cmd_parts[-1] = wire.with_literal_size(self._cmd_parts[-1], 0)  # (as the core's spool token)
                    self._cmd_parts.append(b"")
                else:
                    self._cmd_parts.append(piece.raw)
            else:
                events += self._client_line(piece.raw)
        return events

    def _client_line(self, line: bytes) -> list[Event]:
        if self._sasl or self._idle:
            notes = tuple(line_notes(line))
            tag = self._cmd[0] if self._cmd else ""
            if self._idle:
                self._idle = False
                return [self._ev(Side.CLIENT, Kind.COMMAND, line, verb="DONE", tag=tag, notes=notes)]
            self._sasl = False
            return [self._ev(Side.CLIENT, Kind.DATA, line, verb="AUTHENTICATE", tag=tag, notes=notes,
                             redacted=REDACTED + b"\r\n")]
        first = self._cmd_first
        if first:
            if blank(line):
                return []
            if self._logout_tag is not None and self._logout_tag in self._pending:
                self._client.cancel_literal()  # the server discards it all, as the core does
                return [self._ev(Side.CLIENT, Kind.COMMAND, line, notes=(after_logout(),))]
            context = []
            if self._starttls_tag is not None and self._starttls_tag in self._pending:
                context.append(Note("starttls-injection", "sent after STARTTLS, before the server's answer"))
            # "wrong state" only when nothing is in flight: a pipelined SELECT right after LOGIN is fine
            start = self._commands.first_line(line, self.state, check_state=not self._pending,
                                              context=tuple(context))
            notes, redacted = start.notes, start.redacted
            if start.tag is None:
                self._client.cancel_literal()
                self._literal_secret = self._commands.maybe_secret  # a literal it announced may be the password
                return [self._ev(Side.CLIENT, Kind.COMMAND, line, notes=tuple(notes), redacted=redacted)]
            tag, verb = start.tag, start.verb
            self._cmd = (tag, verb)
            self._pending[tag] = verb
            self._cmd_parts = []
            if spec.negotiates_tls(verb):
                self._starttls_tag = tag
        else:
            tag, verb = self._cmd or ("", "")
            notes, redacted = self._commands.next_line(verb, line)
        self._cmd_parts.append(line)
        args = None
        if literal_announced(line) is not None:
            self._cmd_first = False
            self._literal_secret = credentials.imap_literal_is_secret(verb, line if first else None)
        else:
            self._cmd_first = True
            try:
                tokens, found = tokens_of(b"".join(self._cmd_parts), verb)
                notes += [n for n in found if n not in notes]
            except ParseError:
                tokens = None
            args = self._commands.args(verb, tokens)  # what it names, read as the core reads it
            if verb == "LOGOUT" and tokens == []:  # run (not BAD): what follows is never read
                self._logout_tag = tag
        return [self._ev(Side.CLIENT, Kind.COMMAND, line, verb=verb, tag=tag, notes=tuple(notes), redacted=redacted,
                         continued=not first, args=args)]

    # -- server side ----------------------------------------------------------------------
    def feed_server(self, data: bytes) -> list[Event]:
        if self._encrypted:
            return self._unseen(Side.SERVER, data)
        events: list[Event] = []
        self._server.feed(data)
        while (piece := self._server.next_piece()) is not None:
            if isinstance(piece, Literal):
                events.append(self._ev(Side.SERVER, Kind.LITERAL, piece.raw, tag="*", size=_cut(piece),
                                       command=self._server_verb))
                self._after_server_literal = True
            else:
                events.append(self._server_line(piece.raw))
            if self._encrypted:  # OK to STARTTLS: the rest is TLS
                return events + self._unseen(Side.SERVER, self._server.clear())
        return events

    def _server_line(self, line: bytes) -> Event:
        notes = tuple(line_notes(line))
        if self._after_server_literal:
            self._after_server_literal = False
            return self._ev(Side.SERVER, Kind.REPLY, line, tag="*", verb=self._server_verb, notes=notes)
        read = spec.read_reply(line)  # the same reading of a server line as the core's events
        reply = read.reply
        facts = {"response_code": spec.response_code(reply)} if reply.code else {}
        if reply.tag == "+":
            verb = self._cmd[1] if self._cmd else ""
            follows = spec.continuation(verb)  # a SASL response line, DONE, or a literal
            if follows == SASL:
                self._sasl = True
            elif follows == DONE:
                self._idle = True
            return self._ev(Side.SERVER, Kind.REPLY, line, tag="+", code="+", verb=verb, notes=notes)
        if reply.tag == "*":
            if reply.status == "PREAUTH":  # a greeting (§7.1.4): the session starts authenticated
                self.state = spec.GREETINGS[reply.status]
            if literal_announced(line) is not None:
                self._server_verb = read.verb or reply.status
            return self._ev(Side.SERVER, Kind.REPLY, line, tag="*", code=reply.status, verb=read.verb, notes=notes,
                            **facts)
        tag = reply.tag
        verb = self._pending.pop(tag, "")
        if self._cmd and self._cmd[0] == tag and self._client.in_literal and not self._client.buffered:
            self._client.cancel_literal()  # the server refused a synchronizing literal (§7.5)
            self._cmd_first = True
        self._transition(verb, reply)
        return self._ev(Side.SERVER, Kind.REPLY, line, tag=tag, code=reply.status, verb=verb, notes=notes, **facts)

    def _transition(self, verb: str, reply: Reply) -> None:
        """The state after a tagged completion: the server core's own table (spec.TRANSITIONS)."""
        self.state = spec.TRANSITIONS.next_state(self.state, verb, spec.outcome(reply))
        if self.state is State.LOGOUT:
            self._logged_out = True
        elif reply.tag == self._starttls_tag and spec.starts_tls(verb, reply):
            self._encrypted = True  # §6.2.1: the next bytes are the TLS negotiation

    # -- TLS and the end ----------------------------------------------------------------------
    def _unseen(self, side: Side, data: bytes) -> list[Event]:
        if not data or side in self._tls_reported:
            return []
        self._tls_reported.add(side)
        return [Event(side=side, kind=Kind.TLS, protocol="imap", size=len(data), state=self.state.value,
                      tls=Tls(how="starttls", seen=False))]

    def tls_started(self) -> list[Event]:
        self._encrypted = False
        self._tls_reported.clear()
        self._client.clear()
        self._server.clear()
        return [Event(side=Side.NONE, kind=Kind.TLS, protocol="imap", state=self.state.value, tls=Tls(how="starttls"))]

    def close(self) -> list[Event]:
        if self._encrypted:
            return []
        events = []
        for side, stream in ((Side.CLIENT, self._client), (Side.SERVER, self._server)):
            literal = stream.in_literal
            left = stream.literal_left
            rest = stream.clear()
            if literal:
                events.append(self._ev(side, Kind.LITERAL, rest, notes=(Note(
                    "literal-length-mismatch", f"{left + len(rest)} octets announced, {len(rest)} arrived"),)))
            elif rest:
                events.append(self._ev(side, Kind.COMMAND if side is Side.CLIENT else Kind.REPLY, rest,
                                       notes=(Note("incomplete-command"),)))
        return events
