"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3), and their UTF-8 form (RFC 6855 §3).

RFC 3501 §5.1.3: "printable US-ASCII characters, except for "&", represent themselves ... "&"
is used to shift to modified BASE64 and "-" to shift back to US-ASCII ... "&" is represented
by "&-"", and "modified BASE64, with a further modification from [UTF-7] that "," is used
instead of "/"", over UTF-16.  Names are stored in this form (as Dovecot stores them); a client
that sent ENABLE UTF8=ACCEPT sends and receives them in UTF-8 instead.
"""

from __future__ import annotations

import base64
import re

_SHIFTED = re.compile(r"&([A-Za-z0-9+,]*)-")


def encode(name: str) -> str:
    """"Ñu & co" -> "&ANE-u &- co"."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + data.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode(name: str) -> str:
    """"&ANE-u &- co" -> "Ñu & co"; text that is not valid modified UTF-7 is left as it is."""
    def one(m: re.Match) -> str:
        if not m.group(1):
            return "&"
        data = m.group(1).replace(",", "/")
        try:
            return base64.b64decode(data + "=" * (-len(data) % 4)).decode("utf-16-be")
        except (ValueError, UnicodeDecodeError):
            return m.group(0)

    return _SHIFTED.sub(one, name)
