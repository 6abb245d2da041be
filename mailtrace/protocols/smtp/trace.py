"""Trace headers added at delivery: Return-Path and Received (RFC 5321 §4.4).

Theory of operation
-------------------
    "When an SMTP server receives a message for delivery or further processing, it MUST
    insert trace ("time stamp" or "Received") information at the beginning of the message
    content ... When the delivery SMTP server makes the "final delivery" of a message, it
    inserts a return-path line at the beginning of the mail data."      (RFC 5321 §4.4)

The Received line follows the grammar of §4.4 (``From-domain By-domain [Via] [With] [ID]
[For] ";" date-time``); the ``with`` keyword is ESMTP, ESMTPS, ESMTPA, ESMTPSA or SMTP
(RFC 3848), or UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA when the MAIL command carried
SMTPUTF8 (RFC 6531 §3.7.3, §4.3); the addresses are then UTF-8 (``for <josé@lab.test>``).  Pure string work: the time is passed in.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import re


def _client_literal(client: str) -> str:
    """"127.0.0.1:51234" -> "[127.0.0.1]" (an address literal, §4.1.3)."""
    host = client.rsplit(":", 1)[0] if client.count(":") == 1 else client.rpartition(":")[0] or client
    host = host.strip("[]")
    if ":" in host:
        return f"[IPv6:{host}]"
    return f"[{host}]" if host else "[unknown]"


def trace_headers(*, sender: str, recipient: str, helo: str, client: str, hostname: str, software: str,
                  with_: str, queue_id: str, when: float) -> bytes:
    date = email.utils.format_datetime(_dt.datetime.fromtimestamp(when, _dt.timezone.utc))
    helo = "".join(ch for ch in helo if 32 < ord(ch) < 127 and ch not in "()") or "unknown"
    received = (f"Received: from {helo} ({_client_literal(client)})\r\n"
                f"\tby {hostname} ({software}) with {with_} id {queue_id}\r\n"
                f"\tfor <{recipient}>; {date}\r\n")
    return f"Return-Path: <{sender}>\r\n{received}".encode("utf-8")


# RFC 5322 §2.2: "A field name MUST be composed of printable US-ASCII characters (i.e.,
# characters that have values between 33 and 126, inclusive), except colon."
_FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")


def with_header_break(content: bytes) -> bytes:
    """``content`` with an empty line where its header section ends, if it has none there.

    RFC 5322 §2.1: "A message consists of header fields ... optionally followed by a message
    body"; the body is "preceded by" an empty line.  A message typed by hand (``Hola...``) has
    no header section, and once trace headers go in front of it its first line would read as
    a broken header field (IMAP's ENVELOPE would lose it).  As Postfix's cleanup(8) does, the
    header section ends at the first line that is neither a header field nor its
    continuation (a line starting with a space or tab, RFC 5322 §2.2.3), and an empty line is
    put there."""
    pos = 0
    while pos < len(content):
        end = content.find(b"\n", pos)
        line = content[pos:] if end < 0 else content[pos:end + 1]
        if line in (b"\r\n", b"\n"):
            return content  # the empty line is there
        if not (_FIELD_LINE.match(line) or (pos > 0 and line[:1] in (b" ", b"\t"))):
            break
        if end < 0:
            return content + b"\r\n"  # only header fields, and no line end after the last
        pos = end + 1
    else:
        return content  # nothing but header fields (or nothing at all)
    return content[:pos] + b"\r\n" + content[pos:]
