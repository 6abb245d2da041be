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

import re

from mailtrace.protocols.imap import wire
from mailtrace.protocols.imap.connection import TAG_RE, MAX_REMEMBERED_TAGS, REDACTED
from mailtrace.protocols import credentials
from mailtrace.protocols.imap.dispatch import LITERAL_ONLY, redact_first_line
from mailtrace.protocols.imap.lexer import ParseError, tokenize
from mailtrace.protocols.imap.states import State
from mailtrace.protocols.imap.table import COMMANDS
from mailtrace.transcript.event import Event, Kind, Note, Side

STATUS = ("OK", "NO", "BAD", "BYE", "PREAUTH")
_CODE_RE = re.compile(rb"^\S+ \S+ \[([A-Za-z0-9.-]+)")


class _Stream:
    """Literal-aware framing of one direction: complete ("line" | "literal", bytes) pieces."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.literal_left = 0
        self.in_literal = False

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self.buf += data
        out = []
        while True:
            if self.in_literal:
                if len(self.buf) < self.literal_left:
                    break
                out.append(("literal", bytes(self.buf[:self.literal_left])))
                del self.buf[:self.literal_left]
                self.in_literal = False
                continue
            i = self.buf.find(b"\n")
            if i < 0:
                break
            line = bytes(self.buf[:i + 1])
            del self.buf[:i + 1]
            out.append(("line", line))
            lit = wire.literal_size(line)
            if lit is not None:
                self.in_literal, self.literal_left = True, lit[0]
        return out

    def rest(self) -> bytes:
        data = bytes(self.buf)
        self.buf.clear()
        self.in_literal = False
        return data


class ImapObserver:
    def __init__(self) -> None:
        self.state = State.NOT_AUTHENTICATED
        self._maybe_secret = False  # a secret may come next (see credentials.imap_secret_may_follow)
        self._encrypted = False
        self._tls_reported: set[Side] = set()
        self._client = _Stream()
        self._server = _Stream()
        self._tags: set[str] = set()
        self._pending: dict[str, str] = {}  # tag -> verb of commands not yet completed
        self._cmd: tuple[str, str] | None = None  # the client command being read (tag, verb)
        self._cmd_parts: list[bytes] = []
        self._cmd_first = True
        self._literal_secret = False
        self._after_literal = {Side.CLIENT: False, Side.SERVER: False}
        self._sasl = False  # the server sent "+" to an AUTHENTICATE: next client line is SASL
        self._idle = False  # "+ idling" seen: next client line is DONE
        self._server_verb = ""  # the response continued after a server literal
        self._starttls_tag: str | None = None
        self._logged_out = False

    @property
    def encrypted(self) -> bool:
        return self._encrypted

    def _ev(self, side: Side, kind: Kind, raw: bytes, **kw) -> Event:
        if kw.get("info") is None:
            kw["info"] = {}
        return Event(side=side, kind=kind, raw=raw, protocol="imap", state=self.state.value, **kw)

    # -- client side ----------------------------------------------------------------------
    def feed_client(self, data: bytes) -> list[Event]:
        if self._encrypted:
            return self._unseen(Side.CLIENT, data)
        if self._logged_out and data:
            return [self._ev(Side.CLIENT, Kind.COMMAND, data, notes=(Note("after-logout"),))]
        events = []
        for kind, piece in self._client.feed(data):
            if kind == "literal":
                tag = self._cmd[0] if self._cmd else ""
                events.append(self._ev(Side.CLIENT, Kind.LITERAL, piece, tag=tag,
                                       redacted=REDACTED if self._literal_secret else None,
                                       info={"command": self._cmd[1] if self._cmd else ""}))
                self._cmd_parts.append(piece)
                self._after_literal[Side.CLIENT] = True
            else:
                events += self._client_line(piece)
        return events

    def _client_line(self, line: bytes) -> list[Event]:
        notes = [] if line.endswith(b"\r\n") else [Note("bare-lf")]
        if self._sasl or self._idle:
            tag = self._cmd[0] if self._cmd else ""
            if self._idle:
                self._idle = False
                return [self._ev(Side.CLIENT, Kind.COMMAND, line, verb="DONE", tag=tag, notes=tuple(notes))]
            self._sasl = False
            return [self._ev(Side.CLIENT, Kind.DATA, line, verb="AUTHENTICATE", tag=tag, notes=tuple(notes),
                             redacted=REDACTED + b"\r\n")]
        first = self._cmd_first
        redacted = None
        if first:
            if not line.strip():
                return []
            m = TAG_RE.match(line)
            maybe_secret = self._maybe_secret  # as the server core decides it (dispatch.command_line)
            self._maybe_secret = credentials.imap_secret_may_follow(line) or (maybe_secret and m is None)
            if m is None:
                self._client.in_literal = False
                self._literal_secret = self._maybe_secret  # a literal it announced may be the password
                masked = credentials.imap(line) or (credentials.masked_line(line) if maybe_secret else None)
                return [self._ev(Side.CLIENT, Kind.COMMAND, line, notes=tuple(notes) + (Note("bad-tag"),),
                                 redacted=masked)]
            tag = m.group(1).decode("ascii")
            name = m.group(2).decode("ascii").upper()
            verb = f"UID {m.group(3).decode('ascii').upper()}" if name == "UID" and m.group(3) else name
            if self._starttls_tag is not None and self._starttls_tag in self._pending:
                notes.append(Note("starttls-injection", "sent after STARTTLS, before the server's answer"))
            if "LOGOUT" in self._pending.values():  # RFC 3501 §6.1.3: nothing follows LOGOUT
                notes.append(Note("after-logout", "pipelined after LOGOUT: the server will not run it"))
            if tag in self._tags:
                notes.append(Note("tag-reuse", f'tag "{tag}" was used before in this session'))
            elif len(self._tags) < MAX_REMEMBERED_TAGS:
                self._tags.add(tag)
            spec = COMMANDS.get(verb)
            # only when nothing is in flight: a pipelined SELECT right after LOGIN is fine
            if spec is not None and not self._pending and self.state not in spec.states:
                notes.append(Note("wrong-state", f"{verb} in the {self.state.value} state"))
            self._cmd = (tag, verb)
            self._pending[tag] = verb
            self._cmd_parts = []
            redacted = redact_first_line(verb, line)
            if verb == "STARTTLS":
                self._starttls_tag = tag
        else:
            tag, verb = self._cmd or ("", "")
            if self._after_literal[Side.CLIENT] and not line.startswith((b" ", b")", b"\r\n", b"\n")):
                notes.append(Note("literal-length-mismatch", "the octets after a literal must be SP, \")\" or CRLF"))
            if "LOGIN" in verb and not LITERAL_ONLY.match(line):
                redacted = b" " + REDACTED + b"\r\n"
        self._after_literal[Side.CLIENT] = False
        self._cmd_parts.append(line)
        lit = wire.literal_size(line)
        if lit is not None:
            self._cmd_first = False
            self._literal_secret = credentials.imap_literal_is_secret(verb, line if first else None)
        else:
            self._cmd_first = True
            try:
                _, found = tokenize(b"".join(self._cmd_parts), 0)
                notes += [n for n in found if n not in notes]
            except ParseError:
                pass
        return [self._ev(Side.CLIENT, Kind.COMMAND, line, verb=verb, tag=tag, notes=tuple(notes), redacted=redacted,
                         info=None if first else {"continued": "yes"})]

    # -- server side ----------------------------------------------------------------------
    def feed_server(self, data: bytes) -> list[Event]:
        if self._encrypted:
            return self._unseen(Side.SERVER, data)
        events: list[Event] = []
        pieces = self._server.feed(data)
        for i, (kind, piece) in enumerate(pieces):
            if self._encrypted:  # OK to STARTTLS: the rest is TLS
                rest = b"".join(p for _, p in pieces[i:]) + self._server.rest()
                return events + self._unseen(Side.SERVER, rest)
            if kind == "literal":
                events.append(self._ev(Side.SERVER, Kind.LITERAL, piece, tag="*", info={"command": self._server_verb}))
                self._after_literal[Side.SERVER] = True
            else:
                events.append(self._server_line(piece))
        if self._encrypted:
            events += self._unseen(Side.SERVER, self._server.rest())
        return events

    def _server_line(self, line: bytes) -> Event:
        notes = () if line.endswith(b"\r\n") else (Note("bare-lf"),)
        info = {}
        m = _CODE_RE.match(line)
        if m:
            info["code"] = m.group(1).decode("ascii").upper()
        if self._after_literal[Side.SERVER]:
            self._after_literal[Side.SERVER] = False
            ev = self._ev(Side.SERVER, Kind.REPLY, line, tag="*", verb=self._server_verb, notes=notes)
            return ev
        words = line.rstrip(b"\r\n").split(b" ", 3)
        tag = words[0].decode("ascii", "replace")
        second = words[1].decode("ascii", "replace").upper() if len(words) > 1 else ""
        if tag == "+":
            verb = self._cmd[1] if self._cmd else ""
            if verb == "AUTHENTICATE":
                self._sasl = True
            elif verb == "IDLE":
                self._idle = True
            return self._ev(Side.SERVER, Kind.REPLY, line, tag="+", code="+", verb=verb, notes=notes, info=info)
        if tag == "*":
            code, verb = "", ""
            if second in STATUS:
                code = second
                if second == "PREAUTH":
                    self.state = State.AUTHENTICATED
            elif second.isdigit() and len(words) > 2:
                verb = words[2].decode("ascii", "replace").upper().rstrip(")")
            else:
                verb = second
            if wire.literal_size(line) is not None:
                self._server_verb = verb or code
            return self._ev(Side.SERVER, Kind.REPLY, line, tag="*", code=code, verb=verb, notes=notes, info=info)
        verb = self._pending.pop(tag, "")
        if self._cmd and self._cmd[0] == tag and self._client.in_literal and not self._client.buf:
            self._client.in_literal = False  # the server refused a synchronizing literal
            self._cmd_first = True
        self._transition(verb, second, tag)
        return self._ev(Side.SERVER, Kind.REPLY, line, tag=tag, code=second, verb=verb, notes=notes, info=info)

    def _transition(self, verb: str, status: str, tag: str) -> None:
        if verb in ("SELECT", "EXAMINE") and self.state is State.SELECTED and status != "OK":
            self.state = State.AUTHENTICATED  # §6.3.1: a failed SELECT closes the old mailbox
        if status != "OK":
            return
        if verb in ("LOGIN", "AUTHENTICATE"):
            self.state = State.AUTHENTICATED
        elif verb in ("SELECT", "EXAMINE"):
            self.state = State.SELECTED
        elif verb in ("CLOSE", "UNSELECT"):
            self.state = State.AUTHENTICATED
        elif verb == "LOGOUT":
            self.state = State.LOGOUT
            self._logged_out = True
        elif verb == "STARTTLS" and tag == self._starttls_tag:
            self._encrypted = True

    # -- TLS and the end ----------------------------------------------------------------------
    def _unseen(self, side: Side, data: bytes) -> list[Event]:
        if not data or side in self._tls_reported:
            return []
        self._tls_reported.add(side)
        return [Event(side=side, kind=Kind.TLS, protocol="imap", size=len(data), state=self.state.value,
                      info={"how": "starttls", "seen": "no"})]

    def tls_started(self) -> list[Event]:
        self._encrypted = False
        self._tls_reported.clear()
        self._client.rest()
        self._server.rest()
        return [Event(side=Side.NONE, kind=Kind.TLS, protocol="imap", state=self.state.value, info={"how": "starttls"})]

    def close(self) -> list[Event]:
        if self._encrypted:
            return []
        events = []
        for side, stream in ((Side.CLIENT, self._client), (Side.SERVER, self._server)):
            literal = stream.in_literal
            left = stream.literal_left
            rest = stream.rest()
            if literal:
                events.append(self._ev(side, Kind.LITERAL, rest, notes=(Note(
                    "literal-length-mismatch", f"{left} octets announced, {len(rest)} arrived"),)))
            elif rest:
                events.append(self._ev(side, Kind.COMMAND if side is Side.CLIENT else Kind.REPLY, rest,
                                       notes=(Note("incomplete-command"),)))
        return events
