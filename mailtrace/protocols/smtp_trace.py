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
