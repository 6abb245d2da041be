"""Keep traced bytes from driving the terminal that shows them.

A proxy, a sniffer or a saved capture shows whatever a client or a server sent.  Printed as they
are, bytes such as ESC (``\\x1b[2J`` clears the screen, ``\\x1b]0;...`` retitles the window), a lone
CR or BS (overwrite the line before, faking a transcript) act on the instructor's terminal.
``EscapingSink`` wraps a human-readable sink (terminal, text file) and hands it the events with
every control character written out as ``\\xNN``; line ends (CRLF, LF) and TAB stay as they are.
The JSON Lines and pcap sinks keep the exact bytes and are never wrapped.
"""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass, replace

from mailtrace.transcript.event import Event, Note

# C0 controls but TAB and LF, DEL, a CR that does not end a line, and the C1 controls (U+0080 to
# U+009F, which some terminals obey as 8-bit escapes) in their UTF-8 form
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]|\r(?!\n)|\xc2[\x80-\x9f]")
_CONTROL_TEXT = re.compile("[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)")


# The bytes that never need escaping (printable ASCII, TAB, LF, CR, the bytes of UTF-8 text but
# the lead byte 0xC2 of the C1 controls): most traffic holds nothing else, and deleting them
# (``bytes.translate``, C) tells so several times faster than the regular expression's search.
_INERT = bytes([0x09, 0x0A, 0x0D, *range(0x20, 0x7F), *range(0x80, 0xC2), *range(0xC3, 0x100)])


def _bytes(data: bytes) -> bytes:
    if not data.translate(None, _INERT) and data.count(b"\r") == data.count(b"\r\n"):
        return data  # (every CR ends a line)
    return _CONTROL_BYTES.sub(lambda m: b"".join(b"\\x%02x" % c for c in m.group()), data)


def _text(text: str) -> str:
    return _CONTROL_TEXT.sub(lambda m: "\\x%02x" % ord(m.group()), text)


def escape_controls(event: Event) -> Event:
    """The event with its shown bytes and note details made inert (the same event if already so)."""
    raw = _bytes(event.raw)
    redacted = _bytes(event.redacted) if event.redacted is not None else None
    notes = tuple(Note(n.rule, _text(n.detail)) if n.detail else n for n in event.notes)
    facts = {name: _inert(getattr(event, name)) for name in TEXT_FACTS}
    changed = {name: value for name, value in facts.items() if value != getattr(event, name)}
    if raw == event.raw and redacted == event.redacted and notes == event.notes and not changed:
        return event
    return replace(event, raw=raw, redacted=redacted, notes=notes, **changed,
                   size=event.size if event.size >= 0 or raw == event.raw else len(event.raw))


#: The typed facts that may hold text from the wire (a path, a reason quoting an error, ...).
TEXT_FACTS = ("args", "response_code", "user", "command", "incomplete", "partial", "reason", "tls")


def _inert(value):
    """``value`` (a string, a tuple or a small dataclass of them) with its controls written out."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, tuple):
        return tuple(_inert(v) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: _inert(getattr(value, f.name)) for f in fields(value)})
    return value


class EscapingSink:
    """A sink that passes every event on to ``inner`` with its control characters escaped."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def handle(self, event: Event) -> None:
        self.inner.handle(escape_controls(event))

    def flush(self) -> None:
        flush = getattr(self.inner, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        self.inner.close()
