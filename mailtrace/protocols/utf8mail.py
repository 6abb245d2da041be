"""Internationalized mail (RFC 6530-6532): where a message holds raw UTF-8, header or body.

Theory of operation
-------------------
Three different rules decide whether raw 8-bit octets may cross a hop:

* the BODY: 8-bit text needs BODY=8BITMIME in SMTP (RFC 6152 §3);
* the HEADER: raw UTF-8 in header fields is RFC 6532 §3, allowed in SMTP only with
  ``MAIL FROM:<...> SMTPUTF8`` (RFC 6531 §3.2), in POP3 only after ``UTF8`` (RFC 6856 §2.1),
  in IMAP only after ``ENABLE UTF8=ACCEPT`` (RFC 6855 §3);
* otherwise a header field carries non-ASCII text as RFC 2047 encoded-words
  (``Subject: =?UTF-8?Q?canci=C3=B3n?=``), which are plain ASCII.

SMTP, POP3 and IMAP ask this module the same question; nothing here does I/O.
"""

from __future__ import annotations

import re

HEADER_END = re.compile(rb"\r?\n\r?\n")  # the empty line that ends the header section (RFC 5322 §2.1)


def eight_bit_parts(message: bytes) -> tuple[bool, bool]:
    """(raw 8-bit octets in the header section, in the rest); the header ends at the first empty line."""
    if message.isascii():
        return False, False
    if message.startswith((b"\r\n", b"\n")):  # no header at all
        return False, True
    m = HEADER_END.search(message)
    if m is None:
        return True, False
    return not message[:m.start()].isascii(), not message[m.end():].isascii()


def has_utf8_header(message: bytes) -> bool:
    """A message with raw UTF-8 in its header (RFC 6532): only for clients that enabled UTF-8.

    Octets that are not UTF-8 at all (a legacy Latin-1 header, garbage) make no
    internationalized message: such broken mail is handed out as it was stored."""
    if message.isascii():
        return False
    m = HEADER_END.search(message)
    header = message[:m.start()] if m else message
    if header.isascii():
        return False
    try:
        header.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
