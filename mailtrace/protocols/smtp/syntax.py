"""SMTP syntax, read the same way by the server core and the observer: commands, replies,
paths and parameters, the notes a line earns, which lines are credentials.

Theory of operation
-------------------
RFC 5321 §2.3.8 and §4.1.1: a command is a four-letter verb, maybe followed by a space and
an argument, and a CRLF.  A reply (§4.2) is a three-digit code, then a space on its last line
or a hyphen on every line before it:

    "The format for multiline replies requires that every line, except the last, begin with
    the reply code, followed immediately by a hyphen, "-" (also known as minus), followed by
    text.  The last line will begin with the reply code, followed immediately by <SP>,
    optionally some text, and <CRLF>."                                  (RFC 5321 §4.2.1)

MAIL and RCPT carry a path in angle brackets (§4.1.2):

    Path = "<" [ A-d-l ":" ] Mailbox ">"

with no space after the colon (§3.3: "no blank spaces are permitted between the colon and
the address").  Like sendmail, the lab accepts ``RCPT TO: bob@lab.test`` but the parse
reports each departure from the grammar as a violation rule, so the transcript can say what
RFC 5321 really requires.  Nothing in this module performs I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailtrace.protocols import credentials
from mailtrace.protocols.lines import Line
from mailtrace.protocols.smtp.spec import (
    BARE_CR, BARE_LF, BEFORE_GREETING, EHLO_KEYWORDS, LEFT_WITHOUT_MAIL, LINE_TOO_LONG, MAX_DOMAIN, MAX_LOCAL_PART, MAX_PATH,
    MISSING_BRACKETS, MUST_END_GROUP, NO_PIPELINING, PIPELINING_GROUP, PROTOCOL, SPACE_AFTER_COLON,
    STARTTLS_INJECTION,
)
from mailtrace.transcript.event import Args, Event, Kind, Note, Side

# --- Commands --------------------------------------------------------------------------------


@dataclass(slots=True)
class Command:
    """One command line, parsed: what a handler receives.  ``notes`` are the violations found
    so far (the line's own, then the path's); a handler may add more."""

    verb: str  # upper-cased: "MAIL"
    arg: str  # the rest, without the separating space: "FROM:<a@b.c> SIZE=10"
    line: Line
    notes: list[Note] = field(default_factory=list)
    path: Path | None = None  # MAIL's or RCPT's path, once its handler has read it (read once)


def split_command(content: bytes) -> tuple[str, str]:
    """(VERB, argument) of a command line without its CRLF; undecodable bytes are escaped."""
    text = content.decode("utf-8", errors="backslashreplace")
    verb, _, arg = text.partition(" ")
    return verb.upper(), arg.strip(" ")


def parse_command(line: Line, limit: int) -> Command:
    verb, arg = split_command(line.content)
    return Command(verb, arg, line, line_notes(line, limit))


def line_notes(line: Line, limit: int) -> list[Note]:
    """What is wrong with the line itself (§2.3.8 line ends; ``limit``: §4.5.3.1.4)."""
    notes = []
    if line.bare_lf:
        notes.append(Note(BARE_LF))
    if line.bare_cr:
        notes.append(Note(BARE_CR))
    if line.size > limit:
        notes.append(Note(LINE_TOO_LONG, f"{line.size} > {limit}"))
    return notes


def order_notes(previous: str | None, pipelining: bool) -> list[Note]:
    """Notes for a command sent before the client read the reply to ``previous`` (None: before
    the greeting, §3.1).  RFC 2920 §3: only with PIPELINING may a client send without waiting,
    and never after a command that must end a group (§3.1)."""
    if previous is None:
        return [Note(BEFORE_GREETING)]
    if previous in MUST_END_GROUP:
        return [Note(PIPELINING_GROUP, f"{previous} →")]
    if not pipelining:
        return [Note(NO_PIPELINING, f"{previous} →")]
    return []


class Redaction:
    """Which client lines are shown masked (RFC 4954 §4: AUTH carries a credential).

    ``AUTH mech initial-response`` is masked however it is written (``credentials.smtp``); the
    lines after an AUTH that got no 334 may still be SASL responses the client typed ahead,
    so they are masked until a line is a command the server knows."""

    RESPONSE = credentials.MASK + b"\r\n"  # what an AUTH response line (after 334) shows

    def __init__(self) -> None:
        self._maybe_sasl = False

    def command(self, raw: bytes, known: bool) -> bytes | None:
        if b"AUTH" not in raw.upper():  # no AUTH word (most lines): no credential, no SASL next
            redacted = credentials.masked_line(raw) if self._maybe_sasl and not known else None
            self._maybe_sasl = self._maybe_sasl and not known
            return redacted
        redacted = credentials.smtp(raw)  # read leniently: AUTH<TAB>PLAIN, a cut line...
        if redacted is None and self._maybe_sasl and not known:
            redacted = credentials.masked_line(raw)
        self._maybe_sasl = credentials.starts_sasl(raw) or (self._maybe_sasl and not known)
        return redacted

    def challenged(self) -> None:
        """A 334 came: the next lines are AUTH responses (masked as such)."""
        self._maybe_sasl = False


def injected_commands(held: bytes, state: str) -> list[Event]:
    """Plaintext sent after STARTTLS and before the handshake, one COMMAND event per line,
    each flagged (RFC 3207 §4.2: the server MUST discard it; CVE-2011-0411)."""
    events = []
    for raw in held.splitlines(keepends=True):
        verb, _ = split_command(raw.rstrip(b"\r\n"))
        events.append(Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=raw, verb=verb, state=state, protocol=PROTOCOL,
                            notes=(Note(STARTTLS_INJECTION),)))
    return events


# --- Replies ---------------------------------------------------------------------------------
_REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -]|\r?\n|$)")


def parse_reply_line(raw: bytes) -> tuple[str, bool] | None:
    """(code, is_last) of one reply line, or None when it is no reply line (§4.2)."""
    m = _REPLY_LINE.match(raw)
    if m is None:
        return None
    return m.group(1).decode(), m.group(2) != b"-"


def continues(raw: bytes) -> bool:
    """True for a reply line that more lines of the same reply follow: "250-..." (§4.2.1)."""
    parsed = parse_reply_line(raw)
    return parsed is not None and not parsed[1]


def ehlo_keyword(raw: bytes) -> str:
    """The extension keyword of an EHLO reply line ("250-SIZE 10485760" -> "SIZE"), if known."""
    word = raw[4:].split(None, 1)[0].decode("ascii", "replace").upper() if len(raw) > 4 and raw[4:].strip() else ""
    return word if word in EHLO_KEYWORDS else ""


def reply_response_code(verb: str, index: int, raw: bytes) -> str:
    """The ``response_code`` of one reply line: the extension an EHLO reply line offers (every
    line but the first, §4.1.1.1), explained from the knowledge's "extensions" table; else ""."""
    return ehlo_keyword(raw) if verb == "EHLO" and index else ""


# --- Paths (RFC 5321 §4.1.2) -----------------------------------------------------------------
# RFC 6531 §3.3: atext, qtextSMTP and (U-)labels also take UTF8-non-ascii (SMTPUTF8).  Each class
# is written as the ASCII it leaves out ("[^...]": every non-ASCII character is in): the same set
# as "[A-Za-z0-9...\u0080-\U0010ffff]", which Python's re compiles in ~3 ms a class (40 ms at the
# import of this module, paid by every ``mailtrace show``); tests/unit/test_smtp_path_classes.py
_ATEXT = r"[^\x00-\x20\"(),.:;<>@\[\\\]\x7f]"  # A-Za-z0-9 !#$%&'*+-/=?^_`{|}~, non-ASCII
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = r'"(?:[^\x00-\x1f\x22\x5c\x7f]|\\[\x20-\x7e])*"'  # qtextSMTP: \x20-\x7e but " and \, non-ASCII
_LET_DIG = r"[^\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]"  # A-Za-z0-9, non-ASCII (U-label)
_LDH = r"[^\x00-\x2c\x2e\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]"  # A-Za-z0-9 and -, non-ASCII
_LABEL = rf"{_LET_DIG}(?:{_LDH}*{_LET_DIG})?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
_MAILBOX = re.compile(rf"^(?P<local>{_DOT_STRING}|{_QUOTED})@(?P<domain>{_DOMAIN}|{_LITERAL})$")
_ADL = re.compile(rf"^@{_DOMAIN}(?:,@{_DOMAIN})*:")
# Non-ASCII local parts and domains are SMTPUTF8 (RFC 6531 §3.3): the grammar accepts them, and
# MAIL/RCPT refuse them (§3.5) in a transaction whose MAIL did not carry the SMTPUTF8 parameter.


@dataclass(frozen=True, slots=True)
class Path:
    address: str  # "bob@lab.test" ("" for the null reverse-path <>); source route removed
    local: str
    domain: str
    params: tuple[tuple[str, str | None], ...]  # ESMTP parameters, keywords upper-cased
    notes: tuple[tuple[str, str], ...]  # (rule, detail) departures from the grammar

    @property
    def internationalized(self) -> bool:
        """A UTF-8 address (RFC 6531 §3.3): only in a transaction with MAIL ... SMTPUTF8."""
        return not self.address.isascii()


class PathError(ValueError):
    """The argument is no path at all (reply 501)."""


def parse_path(arg: str, keyword: str, allow_null: bool) -> Path:
    """Parse ``FROM:<a@b> PARAMS`` / ``TO:<a@b>`` (``keyword`` is "FROM" or "TO")."""
    notes: list[tuple[str, str]] = []
    head = arg[: len(keyword) + 1]
    if head.upper() != keyword + ":":
        raise PathError(f"expected {keyword}:<address>")
    rest = arg[len(keyword) + 1:]
    if rest[:1] in (" ", "\t"):
        notes.append((SPACE_AFTER_COLON, f"{keyword}:{rest.split('>')[0][:60]}{'>' if '>' in rest else ''}"))
        rest = rest.lstrip(" \t")
    if rest.startswith("<"):
        end = _closing_bracket(rest)
        if end < 0:
            raise PathError("missing '>'")
        inner, tail = rest[1:end], rest[end + 1:]
        if tail and not tail.startswith(" "):
            raise PathError("unexpected text after '>'")
    else:
        inner, _, tail = rest.partition(" ")
        if not inner:
            raise PathError("no address")
        notes.append((MISSING_BRACKETS, f"{keyword}:{inner}"))
    params = parse_params(tail)
    if inner == "":
        if not allow_null:
            raise PathError("the null path <> is allowed only in MAIL FROM")
        return Path("", "", "", params, tuple(notes))
    m = _ADL.match(inner)
    if m:  # a source route: MUST be accepted, SHOULD be ignored (§4.1.2, Appendix C)
        inner = inner[m.end():]
    if len(inner.encode("utf-8", "surrogateescape")) > MAX_PATH - 2:  # octets (§4.5.3.1), UTF-8 included
        raise PathError("path too long")
    mm = _MAILBOX.match(inner)
    if mm is None and inner.lower() == "postmaster" and not allow_null:  # RCPT TO:<Postmaster> (§4.1.1.3)
        return Path(inner, inner, "", params, tuple(notes))
    if mm is None:
        raise PathError(f"bad address syntax: {inner}")
    local, domain = mm.group("local"), mm.group("domain")
    if len(local.encode("utf-8", "surrogateescape")) > MAX_LOCAL_PART or \
            len(domain.encode("utf-8", "surrogateescape")) > MAX_DOMAIN:
        raise PathError("local part or domain too long")
    return Path(inner, local, domain, params, tuple(notes))


def _closing_bracket(rest: str) -> int:
    """The index of the '>' that closes the path opened at ``rest[0]`` (-1: none).  A '>' inside
    a quoted local part is text (qtextSMTP, §4.1.2, includes %d62), not the end of the path."""
    end = rest.find(">")
    if '"' not in (rest[:end] if end >= 0 else rest):  # no quoted local part: the first '>'
        return end
    quoted = escaped = False
    for i in range(1, len(rest)):
        char = rest[i]
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return i
    return -1


def unquoted_local(local: str) -> str:
    """The local part as compared with mailbox names: RFC 5321 §4.1.2, "all quoted forms MUST
    be treated as equivalent", so <"bob"@lab.test> is bob's and <"b\\ob"@lab.test> too."""
    if len(local) < 2 or not local.startswith('"'):
        return local
    return re.sub(r"\\(.)", r"\1", local[1:-1])


#: The keyword before the path of each envelope command (§4.1.1.2, §4.1.1.3).
PATH_KEYWORD = {"MAIL": "FROM", "RCPT": "TO"}


def read_path(verb: str, arg: str) -> Path:
    """The path of a MAIL or RCPT argument (``PathError`` when there is none); only MAIL takes
    the null path <> (§4.1.1.2)."""
    return parse_path(arg, PATH_KEYWORD[verb], allow_null=verb == "MAIL")


def envelope_path(verb: str, arg: str) -> Path | None:
    """``read_path`` for any command: None for other verbs and for a path it cannot read."""
    if verb not in PATH_KEYWORD:
        return None
    try:
        return read_path(verb, arg)
    except PathError:
        return None


def path_notes(path: Path) -> list[Note]:
    """The path's departures from the grammar (space after the colon, missing brackets) as notes."""
    return [Note(rule, detail) for rule, detail in path.notes]


def declared_body(params: tuple[tuple[str, str | None], ...]) -> tuple[bool, bool]:
    """(8BITMIME, SMTPUTF8): what a MAIL's parameters declared about the message, BODY=8BITMIME
    (RFC 6152 §2) and SMTPUTF8 (RFC 6531 §3.4); the core refuses malformed ones first."""
    return (any(key == "BODY" and (value or "").upper() == "8BITMIME" for key, value in params),
            any(key == "SMTPUTF8" for key, _ in params))


_PURPOSEFUL = frozenset({"MAIL", "AUTH", "VRFY", "EXPN"})


@dataclass(slots=True)
class Attempts:
    """Did a client that was greeted try a mail transaction before QUIT?  Leaving without one
    (``LEFT_WITHOUT_MAIL``) often means the client missed an extension it needed.  A client that
    logged in (AUTH: a mail program checking an account) or asked about an address (VRFY, EXPN)
    came for that, and is not flagged."""

    introduced: bool = False  # a HELO/EHLO was accepted in this connection
    mail_commands: int = 0  # MAIL, AUTH, VRFY and EXPN commands seen (accepted or not)

    def command(self, verb: str) -> None:
        if verb in _PURPOSEFUL:
            self.mail_commands += 1

    def quit_notes(self) -> list[Note]:
        return [Note(LEFT_WITHOUT_MAIL)] if self.introduced and not self.mail_commands else []


def command_args(verb: str, arg: str, path: Path | None = None) -> Args | None:
    """The transcript's typed arguments of a MAIL or RCPT command (None for other verbs and for a
    path ``parse_path`` cannot read): the server core and the observer both record them, so the
    grader and the web view read the envelope without parsing the line again.  ``path``: the
    one the command's handler already read from ``arg``, if any."""
    if path is None:
        path = envelope_path(verb, arg)
    if path is None:
        return None
    if verb == "MAIL":
        return Args(reverse_path=path.address, params=path.params)
    return Args(forward_path=path.address, params=path.params)


_KEYWORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_VALUE = re.compile(r"^[\x21-\x3c\x3e-\x7e]+$")


def parse_params(text: str) -> tuple[tuple[str, str | None], ...]:
    """ESMTP parameters ``KEY[=VALUE]`` separated by spaces (§4.1.2)."""
    params = []
    for word in text.split():
        key, eq, value = word.partition("=")
        if not _KEYWORD.match(key) or (eq and not _VALUE.match(value)):
            raise PathError(f"bad parameter: {word}")
        params.append((key.upper(), value if eq else None))
    return tuple(params)
