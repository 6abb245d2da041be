"""Which client lines carry a password, and what a transcript shows instead.

Theory of operation.  A password must never reach a log, a report or a page unless the
teacher asks for it (``--show-secrets``).  Each core already knows a password when its
parser meets one (a PASS argument, a LOGIN literal, a SASL response after "334"/"+"); the
functions here decide for the *first line* of a command, and they read it the way a lenient
server would, not the way the grammar says a client should write it: a tab instead of a space
(``AUTH<TAB>PLAIN ...``, ``a<TAB>LOGIN``), an odd tag (``a+b LOGIN``, ``* LOGIN``), a
``UID`` in front (``a UID LOGIN``), extra arguments (``USER alice pw``), trailing NULs, a
line cut because it was too long.  Whatever the core then replies (OK, BAD, -ERR), the
line was typed as a credential and is shown masked.

Each function takes one raw line (its line end included) and returns the masked form, or
None when the line carries no secret.  The command word and the user name stay visible
(they are what students need to see); the mechanism name stays only when it is a known
SASL mechanism (a base64 blob typed in its place would otherwise show).
"""

from __future__ import annotations

import re

MASK = b"***"
POP3_MASK = b"********"  # what the POP3 transcripts have always shown
# RFC 4422 mechanism names seen in mail (anything else is shown masked).
SASL_MECHANISMS = frozenset({b"PLAIN", b"LOGIN", b"CRAM-MD5", b"DIGEST-MD5", b"XOAUTH2", b"OAUTHBEARER",
                             b"SCRAM-SHA-1", b"SCRAM-SHA-256", b"SCRAM-SHA-1-PLUS", b"SCRAM-SHA-256-PLUS",
                             b"EXTERNAL", b"ANONYMOUS", b"GSSAPI", b"NTLM"})
_BLANKS = re.compile(rb"[ \t]+")
# An IMAP astring as a user name: quoted string, literal announcement, or atom (RFC 3501 §9).
_IMAP_USER = rb'(?:"(?:[^"\\\r\n]|\\.)*"|\{\d+\+?\}|[^ \t\r\n"{]+)'
_IMAP_LOGIN = re.compile(rb"^(\S+[ \t]+(?:UID[ \t]+)?LOGIN)(?=[ \t\r\n]|$)([ \t]+" + _IMAP_USER + rb")?(.*)$",
                         re.I | re.S)
_IMAP_AUTH = re.compile(rb"^(\S+)[ \t]+(?:UID[ \t]+)?AUTHENTICATE(?=[ \t\r\n]|$)[ \t]*(\S*)(.*)$", re.I | re.S)
_LITERAL_ONLY = re.compile(rb"^[ \t]*(\{\d+\+?\})?\)?[ \t]*\r?\n?\Z")


def line_end(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return b"\r\n"
    return b"\n" if line.endswith(b"\n") else b""


def words(line: bytes, maxsplit: int) -> list[bytes]:
    """The line's words, split at runs of spaces and tabs (at most ``maxsplit`` splits)."""
    return _BLANKS.split(line.rstrip(b"\r\n").strip(b" \t"), maxsplit)


def mechanism(word: bytes) -> bytes:
    return word.upper() if word.upper() in SASL_MECHANISMS else MASK


def _sasl(verb: bytes, w: list[bytes], end: bytes) -> bytes | None:
    """``AUTH mech [initial-response]`` (SMTP, POP3): the response is a credential."""
    if len(w) < 2:
        return None
    mech = mechanism(w[1])
    if len(w) == 2:
        return None if mech != MASK else verb + b" " + MASK + end
    return verb + b" " + mech + b" " + MASK + end


def smtp(line: bytes) -> bytes | None:
    """RFC 4954 §4: ``AUTH mechanism [initial-response]``."""
    w = words(line, 2)
    if w[0].upper() == b"AUTH":
        return _sasl(b"AUTH", w, line_end(line))
    return None


def pop3(line: bytes) -> bytes | None:
    """RFC 1939 §7 PASS and APOP, RFC 5034 AUTH; and USER with a password typed after the name."""
    w = words(line, 2)
    verb, end = w[0].upper(), line_end(line)
    if verb == b"PASS":
        return b"PASS " + POP3_MASK + end if len(w) > 1 else None
    if verb == b"AUTH":
        masked = _sasl(b"AUTH", w, end)
        return masked.replace(MASK, POP3_MASK) if masked else None
    if verb in (b"APOP", b"USER") and len(w) > 2:
        return verb + b" " + w[1] + b" " + POP3_MASK + end
    return None


def imap(line: bytes) -> bytes | None:
    """RFC 3501 §6.2.3 LOGIN (the password, after the user name) and §6.2.2 AUTHENTICATE
    with an initial response (RFC 4959)."""
    end = line_end(line)
    m = _IMAP_LOGIN.match(line)
    if m:
        rest = m.group(3)
        if _LITERAL_ONLY.match(rest) and (m.group(2) is not None or not rest.strip(b" \t\r\n")):
            return None  # the password (if any) comes later, as a literal: the core masks that
        return m.group(1) + (m.group(2) or b"") + b" " + MASK + end
    m = _IMAP_AUTH.match(line)
    if m and m.group(2):
        rest = m.group(3)
        if _LITERAL_ONLY.match(rest) and mechanism(m.group(2)) != MASK:
            return None
        return m.group(1) + b" AUTHENTICATE " + mechanism(m.group(2)) + b" " + MASK + end
    return None


def starts_sasl(line: bytes) -> bool:
    """``AUTH mech`` / ``tag AUTHENTICATE mech``: the client's next lines may be SASL
    responses (LOGIN sends the password after the user name even with an initial response),
    sent even when the server refused the command (a student typing ahead).  The cores mask
    those lines until one is a command they know."""
    w = words(line, 3)
    if w[0].upper() == b"AUTH":
        return True
    i = 2 if len(w) > 2 and w[1].upper() == b"UID" else 1
    return len(w) > i and w[i].upper() == b"AUTHENTICATE"


def imap_secret_may_follow(line: bytes) -> bool:
    """An AUTHENTICATE, or a LOGIN whose line ends announcing its password as a literal:
    if the server refuses it, a client typing ahead sends the secret on the next line."""
    if starts_sasl(line):
        return True
    m = _IMAP_LOGIN.match(line)
    return bool(m) and re.search(rb"\{\d+\+?\}\r?\n?\Z", line) is not None


def masked_line(line: bytes) -> bytes:
    """A whole line that may be a credential (a SASL response nobody asked for)."""
    return MASK + line_end(line)


def imap_literal_is_secret(verb: str, first_line: bytes | None) -> bool:
    """Is the literal announced by this LOGIN command line the password?  Every literal of
    LOGIN is, except the user name (a literal at the end of the command's first line right
    after LOGIN)."""
    if "LOGIN" not in verb.upper():
        return False
    if first_line is None:
        return True
    m = _IMAP_LOGIN.match(first_line)
    return not (m and m.group(2) and m.group(2).strip(b" \t").startswith(b"{") and _LITERAL_ONLY.match(m.group(3)))
