"""POP3 as data: states, the command table, limits, reply and response codes, violations.

Theory of operation (RFC 1939 §3):

    "A POP3 session progresses through a number of states during its lifetime.  Once the
    TCP connection has been opened and the POP3 server has sent the greeting, the session
    enters the AUTHORIZATION state. [...] Once the client has successfully done this, the
    server acquires resources associated with the client's maildrop, and the session
    enters the TRANSACTION state. [...] When the client has issued the QUIT command, the
    session enters the UPDATE state."

Both the server core (``server.py``) and the observer (``observer.py``) read these tables,
and ``mailtrace/knowledge/pop3.toml`` explains every key in them (a test keeps the two in
sync both ways).  Nothing here does I/O.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass


class State(str, enum.Enum):
    """The three states of RFC 1939 §3 (the value is what ``Event.state`` holds)."""

    AUTHORIZATION = "AUTHORIZATION"  # §4: identify and authenticate
    TRANSACTION = "TRANSACTION"  # §5: the maildrop is locked and open
    UPDATE = "UPDATE"  # §6: after QUIT from TRANSACTION: deletions are committed


# --- Limits, each with the rule it comes from --------------------------------------------------
#: RFC 2449 §4: "The maximum length of a command is increased from 47 characters (4
#: character command, single space, 40 character argument, CRLF) to 255 octets, including
#: the terminating CRLF."  (RFC 1939 §3 alone allowed 40-character arguments.)
MAX_COMMAND_LINE = 255
#: RFC 1939 §3: "Responses may be up to 512 characters long, including the terminating CRLF."
#: (the status line; message content lines in a multi-line response are not bound by it).
MAX_RESPONSE_LINE = 512
#: RFC 1939 §3: "Such a timer MUST be of at least 10 minutes' duration."
MIN_AUTOLOGOUT_SECONDS = 600.0
AUTOLOGOUT_SECONDS = MIN_AUTOLOGOUT_SECONDS
#: Message numbers are decimal (RFC 1939 §4); more digits than this can name no message we
#: hold, so they are answered "no such message" without building a huge integer.
MAX_NUMBER_DIGITS = 10
#: Not from the RFC: a client that sends this many bad commands in a row is cut off, as
#: Dovecot does (its CLIENT_MAX_BAD_COMMANDS, 20 in a row); RFC 1939 §4 lets the server
#: close the connection after a negative reply.  Any +OK starts the count again.
MAX_BAD_COMMANDS = 20
#: RFC 1939 §7 (UIDL): "one to 70 characters in the range 0x21 to 0x7E".
MAX_UIDL_LENGTH = 70

# --- Replies -----------------------------------------------------------------------------------
OK = "+OK"
ERR = "-ERR"
#: RFC 1939 §3: "There are currently two status indicators" (servers MUST send them upper case).
REPLY_CODES = frozenset({OK, ERR})

#: Extended response codes in square brackets after -ERR (RFC 2449 §8, RFC 3206 §4 and §5).
RESPONSE_CODES = frozenset({
    "IN-USE",  # RFC 2449 §8.1.2: the maildrop is locked by another session
    "LOGIN-DELAY",  # RFC 2449 §8.1.1: logging in too soon after the last time
    "AUTH",  # RFC 3206 §5: the credentials were wrong (retrying with others may work)
    "SYS/TEMP",  # RFC 3206 §4: a temporary system problem
    "SYS/PERM",  # RFC 3206 §4: a permanent system problem
    "UTF8",  # RFC 6856 §5: the message has UTF-8 headers and the client did not send UTF8
})


class Multiline(enum.Enum):
    """When the +OK answer to a command is followed by lines ending in ".CRLF" (RFC 1939 §3)."""

    NEVER = "never"
    ALWAYS = "always"
    WITHOUT_ARGUMENT = "without-argument"  # LIST and UIDL: multi-line only when given no msg


class Arg(enum.Enum):
    """Kinds of command argument, checked by :func:`parse_arguments`."""

    MSG = "msg"  # a message-number: decimal, 1..n (RFC 1939 §4)
    LINES = "lines"  # TOP's count of body lines: a non-negative decimal number (§7)
    NAME = "name"  # a mailbox (user) name: one word
    DIGEST = "digest"  # APOP: 32 lower-case hex digits of MD5 (§7)
    TEXT = "text"  # PASS: the rest of the line, spaces included (§7)


@dataclass(frozen=True)
class CommandSpec:
    states: frozenset[State]  # where the command is allowed (RFC 1939 §9 summary)
    args: tuple[Arg, ...] = ()
    optional: int = 0  # how many of the trailing args may be left out
    multiline: Multiline = Multiline.NEVER
    rfc: str = ""

    def is_multiline(self, has_argument: bool) -> bool:
        if self.multiline is Multiline.ALWAYS:
            return True
        return self.multiline is Multiline.WITHOUT_ARGUMENT and not has_argument


_AUTH = frozenset({State.AUTHORIZATION})
_TRANS = frozenset({State.TRANSACTION})
_BOTH = frozenset({State.AUTHORIZATION, State.TRANSACTION})

#: Every command the lab server knows; the handlers live in ``server.HANDLERS``.
COMMANDS: dict[str, CommandSpec] = {
    "USER": CommandSpec(_AUTH, (Arg.NAME,), rfc="RFC 1939 §7"),
    "PASS": CommandSpec(_AUTH, (Arg.TEXT,), rfc="RFC 1939 §7"),
    "APOP": CommandSpec(_AUTH, (Arg.NAME, Arg.DIGEST), rfc="RFC 1939 §7"),
    "QUIT": CommandSpec(_BOTH, rfc="RFC 1939 §4, §6"),
    "CAPA": CommandSpec(_BOTH, multiline=Multiline.ALWAYS, rfc="RFC 2449 §5"),
    "STLS": CommandSpec(_AUTH, rfc="RFC 2595 §4"),
    "UTF8": CommandSpec(_AUTH, rfc="RFC 6856 §2.1"),
    "STAT": CommandSpec(_TRANS, rfc="RFC 1939 §5"),
    "LIST": CommandSpec(_TRANS, (Arg.MSG,), optional=1, multiline=Multiline.WITHOUT_ARGUMENT, rfc="RFC 1939 §5"),
    "RETR": CommandSpec(_TRANS, (Arg.MSG,), multiline=Multiline.ALWAYS, rfc="RFC 1939 §5"),
    "DELE": CommandSpec(_TRANS, (Arg.MSG,), rfc="RFC 1939 §5"),
    "NOOP": CommandSpec(_TRANS, rfc="RFC 1939 §5"),
    "RSET": CommandSpec(_TRANS, rfc="RFC 1939 §5"),
    "TOP": CommandSpec(_TRANS, (Arg.MSG, Arg.LINES), multiline=Multiline.ALWAYS, rfc="RFC 1939 §7"),
    "UIDL": CommandSpec(_TRANS, (Arg.MSG,), optional=1, multiline=Multiline.WITHOUT_ARGUMENT, rfc="RFC 1939 §7"),
}

#: Commands the lab server does not offer but the observer understands in other servers'
#: conversations (proxy, pcap import).  AUTH (RFC 5034 §4): "AUTH mechanism [initial-response]",
#: then "+ challenge" continuations answered by one base64 line each, until +OK or -ERR.
OBSERVED_COMMANDS: dict[str, CommandSpec] = {
    "AUTH": CommandSpec(_AUTH, (Arg.NAME, Arg.NAME), optional=1, rfc="RFC 5034 §4"),
}
#: The continuation that asks for the next SASL response line (RFC 5034 §4); only the
#: observer sees it (the lab server offers USER/PASS and APOP, not SASL).
CONTINUATION = "+"

#: Capabilities listed by CAPA (RFC 2449 §6). STLS only while TLS can still be started.
CAPABILITIES = ("TOP", "UIDL", "USER", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "UTF8")  # UTF8: RFC 6856 §2

# --- Violations (knowledge keys, table [violations] of pop3.toml) ----------------------------
VIOLATIONS = frozenset({
    "bare-lf",  # a line ended in LF alone (RFC 1939 §3: "terminated by a CRLF pair")
    "line-too-long",  # command line over MAX_COMMAND_LINE (RFC 2449 §4)
    "unknown-command",  # RFC 1939 §3: -ERR for an unrecognized command
    "wrong-state",  # RFC 1939 §3: -ERR for a command in an incorrect state
    "bad-argument",  # missing, extra or malformed arguments
    "pass-without-user",  # PASS not right after a successful USER (RFC 1939 §7)
    "after-quit",  # bytes sent after QUIT (the server has closed the session)
    "after-stls",  # commands pipelined after STLS, before the TLS handshake (RFC 2595 §4)
    "before-greeting",  # the client spoke before the server's greeting (RFC 1939 §4)
    "no-quit",  # the connection ended in TRANSACTION without QUIT: nothing is deleted (§6)
    "too-many-errors",  # the server hung up after MAX_BAD_COMMANDS bad commands
    "bad-status",  # a server line that is neither +OK nor -ERR (RFC 1939 §3)
    "response-too-long",  # a status line over MAX_RESPONSE_LINE (RFC 1939 §3)
    "incomplete-response",  # a response cut off before its CRLF or its ".CRLF"
    "incomplete-command",  # a command line cut off before its CRLF
})


class ArgumentError(ValueError):
    """A command's arguments are malformed; ``str(exc)`` is the text after ``-ERR``."""


def parse_arguments(spec: CommandSpec, text: str) -> list:
    """Check ``text`` (everything after the keyword and its space) against ``spec``.

    Returns the arguments, numbers as ``int``.  A message number with more digits than
    ``MAX_NUMBER_DIGITS`` comes back as ``-1`` (no message has it).
    """
    if spec.args and spec.args[-1] is Arg.TEXT:  # PASS: the whole rest is one argument
        if not text:
            raise ArgumentError("missing argument")
        return [text]
    words = text.split(" ") if text else []
    if any(w == "" for w in words):
        raise ArgumentError("arguments are separated by a single space")
    least, most = len(spec.args) - spec.optional, len(spec.args)
    if len(words) < least:
        raise ArgumentError("missing argument" if len(words) == least - 1 else "missing arguments")
    if len(words) > most:
        raise ArgumentError("too many arguments" if most else "this command takes no arguments")
    return [_convert(kind, word) for kind, word in zip(spec.args, words)]


def _convert(kind: Arg, word: str):
    if kind in (Arg.MSG, Arg.LINES):
        if not word.isascii() or not word.isdigit():
            what = "message number" if kind is Arg.MSG else "line count"
            raise ArgumentError(f"invalid {what} {word[:40]!r}")
        if len(word) > MAX_NUMBER_DIGITS:
            return -1 if kind is Arg.MSG else 10**MAX_NUMBER_DIGITS
        return int(word)
    if kind is Arg.DIGEST:
        if len(word) != 32 or any(c not in "0123456789abcdefABCDEF" for c in word):
            raise ArgumentError("the APOP digest is 32 hexadecimal digits (MD5)")
        return word.lower()
    if not word.isprintable():
        raise ArgumentError("arguments are printable ASCII (RFC 1939 §3)")
    return word


def apop_digest(timestamp: str, secret: str) -> str:
    """RFC 1939 §7: MD5 of the greeting's timestamp (brackets included) then the secret."""
    return hashlib.md5((timestamp + secret).encode("utf-8")).hexdigest()


def make_timestamp(pid: int, clock: int, hostname: str) -> str:
    """A greeting timestamp in RFC 822 msg-id syntax, "<process-ID.clock@hostname>" (§7).

    The caller passes a fresh ``clock`` each time: it "MUST be different each time the POP3
    server issues a banner greeting".
    """
    return f"<{pid}.{clock}@{hostname}>"


def uidl_of(uid: int, uidvalidity: int) -> str:
    """The unique-id of a message: what Dovecot's default ``pop3_uidl_format = %08Xu%08Xv`` gives.

    (Dovecot 2.3 writes that hex in lower case: tests/test_pop3_dovecot.py compares.)  Stable
    across sessions and restarts because the store persists both numbers in the same
    ``dovecot-uidlist`` Dovecot reads, so a client keeping mail on the server can switch
    between Dovecot and mailtrace without downloading it all again; 16 characters of 0-9a-f,
    well inside RFC 1939 §7's "one to 70 characters in the range 0x21
    to 0x7E".
    """
    return f"{uid:08x}{uidvalidity:08x}"


_DOT_AFTER_LF = re.compile(rb"\n\.")


def byte_stuff(data: bytes) -> bytes:
    """Prefix "." to every line that starts with "." (RFC 1939 §3) and end with ".CRLF".

    ``data`` is a message in wire form (CRLF line endings).  A message that does not end in
    CRLF gets one before the terminator, as Dovecot does.
    """
    if data.startswith(b"."):
        data = b"." + data
    if _DOT_AFTER_LF.search(data):  # (a compiled search beats ``b"\n." in data`` 3x on text)
        data = data.replace(b"\n.", b"\n..")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def top_of(data: bytes, lines: int) -> bytes:
    """The header, the blank line and the first ``lines`` body lines (RFC 1939 §7 TOP)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data  # no body: the whole message is header
    head, body = data[: end + 4], data[end + 4:]
    pos = 0
    for _ in range(lines):
        nl = body.find(b"\n", pos)
        if nl < 0:
            return data
        pos = nl + 1
    return head + body[:pos]


def decode_line(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def redact(name: str, line: bytes, rest: str) -> bytes | None:
    """What a transcript shows instead of a PASS, APOP or AUTH line (the secret hidden), read
    leniently (``protocols.credentials``): a tab after PASS, a password after USER's name."""
    from mailtrace.protocols import credentials

    return credentials.pop3(line)
