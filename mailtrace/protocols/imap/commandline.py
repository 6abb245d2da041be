"""Reading a client's command lines (RFC 3501 §2.2.1, §4.3): one set of decisions for the
server core (``dispatch.py``) and the observer (``observer.py``).

Theory of operation.  "Each client command is prefixed with an identifier ... called a 'tag'"
(§2.2.1).  The first line of a command names its tag and command (``UID FETCH``: the command
of a UID command, §6.4.8); a line ending in ``{n}`` announces a literal (§4.3), after which
the command goes on with another line.  For each line this module decides, the same way for
both roles:

* the tag and verb, or that the tag is missing or invalid (``bad-tag``);
* the violations of the line itself: ``bare-lf`` (§2.2: lines end in CRLF), ``tag-reuse``
  (§2.2.1: "The client MUST use a different tag for each command" - a SHOULD-level habit
  checked here), ``wrong-state`` (§3), ``literal-length-mismatch`` (§4.3: the octets after a
  literal continue the command: SP, ")" or CRLF);
* what of the line a transcript may show: the password of LOGIN and an AUTHENTICATE initial
  response are masked (``protocols.credentials``), and so is the literal that holds one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailtrace.protocols import credentials
from mailtrace.protocols.imap.spec import COMMANDS, MAX_REMEMBERED_TAGS, REDACTED, TAG_RE, State
from mailtrace.transcript.event import Note

# A continuation line that is only the next literal's announcement (or the end): no password on it.
LITERAL_ONLY = re.compile(rb"^ *(\{\d+\+?\})?\)?\r?\n\Z")


def line_notes(line: bytes) -> list[Note]:
    """Violations of any line, from either side: it must end in CRLF (RFC 3501 §2.2)."""
    if line.endswith(b"\r\n"):
        return []
    return [Note("bare-lf", "the line ends in LF without CR (RFC 3501 §2.2: lines end in CRLF)")]


@dataclass
class CommandStart:
    """What the first line of a command says."""

    tag: str | None  # None: no valid tag (then the line is not a command)
    verb: str
    notes: list[Note] = field(default_factory=list)
    redacted: bytes | None = None  # the line as a transcript may show it (None: as it is)


class CommandReader:
    """The client's side of one session, as far as its command lines go (tags seen, whether
    the next line may be a secret); one per connection, in the core and in the observer."""

    def __init__(self) -> None:
        self.tags: set[str] = set()
        self.maybe_secret = False  # the last command line may be followed by a SASL response

    def first_line(self, line: bytes, state: State, *, check_state: bool = True,
                   context: tuple[Note, ...] = ()) -> CommandStart:
        """Read the first line of a command.  ``context``: notes only the caller can know
        (an observer's "sent before the server answered STARTTLS"), placed after the line's own."""
        notes = line_notes(line) + list(context)
        m = TAG_RE.match(line)
        maybe_secret = self.maybe_secret  # until a tagged command, lines after AUTHENTICATE may be SASL
        self.maybe_secret = credentials.imap_secret_may_follow(line) or (maybe_secret and m is None)
        if m is None:  # "a+b LOGIN", "* LOGIN", "a<TAB>LOGIN": refused, but typed as a LOGIN
            # (and a SASL response typed after a refused AUTHENTICATE has no tag either)
            masked = credentials.imap(line) or (credentials.masked_line(line) if maybe_secret else None)
            return CommandStart(None, "", notes + [Note("bad-tag")], masked)
        tag = m.group(1).decode("ascii")
        name = m.group(2).decode("ascii").upper()
        verb = f"UID {m.group(3).decode('ascii').upper()}" if name == "UID" and m.group(3) else name
        if tag in self.tags:
            notes.append(Note("tag-reuse", f'tag "{tag}" was used before in this session'))
        elif len(self.tags) < MAX_REMEMBERED_TAGS:
            self.tags.add(tag)
        spec = COMMANDS.get(verb)
        if check_state and spec is not None and state not in spec.states:
            notes.append(Note("wrong-state", f"{verb} in the {state.value} state"))
        # the masked form (read leniently: "a UID LOGIN", tabs and extra arguments are masked too)
        return CommandStart(tag, verb, notes, credentials.imap(line))

    @staticmethod
    def next_line(verb: str, line: bytes) -> tuple[list[Note], bytes | None]:
        """A line that continues a command after a literal: its notes and masked form."""
        notes = line_notes(line)
        if not line.startswith((b" ", b")", b"\r\n", b"\n")):
            notes.append(Note("literal-length-mismatch", "the octets after a literal must be SP, \")\" or CRLF"))
        redacted = b" " + REDACTED + b"\r\n" if "LOGIN" in verb and not LITERAL_ONLY.match(line) else None
        return notes, redacted

    @staticmethod
    def literal_is_secret(verb: str, first_line: bytes | None) -> bool:
        """Does the literal this line announces hold a password (LOGIN's second argument)?"""
        return credentials.imap_literal_is_secret(verb, first_line)
