"""Transcripts saved as JSON Lines: a versioned, line-per-event file format.

The first line is a header naming the format and its version::

    {"format": "mailtrace-transcript", "version": 2, "tool": "mailtrace 0.1.0", "created": "..."}

Each further line is one event.  ``raw`` holds the wire bytes as text when they are valid
UTF-8, otherwise ``raw_b64`` holds them base64-encoded.  Secrets (passwords, AUTH payloads)
are saved in their redacted form unless the sink was created with ``show_secrets=True``.

Version 2 writes the event's typed facts as JSON values under their field names, only when
set: ``"args": {"reverse_path": "a@b"}``, ``"peer": {"client": ..., "started": 1700000000.5}``,
``"reason": {"text": ..., "clauses": [["client-quit", {}]]}``, ``"tls": {"how": "starttls"}``,
``"messages": [["read", "bob", "INBOX", 3, "key"]]``, ``"response_code": "UIDVALIDITY"``,
``"pipelined": true``, ...  Version 1 (mailtrace before the typed events) kept them all as
strings in one ``"info"`` object; this module still reads it.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import operator
from pathlib import Path
from typing import IO, Iterator

from mailtrace import __version__
from mailtrace.transcript.event import (Args, Clause, Event, Kind, MessageRef, Note, Peer, Reason, Side, Tls,
                                       facts_from_info)
from mailtrace.transcript.filesink import FileSink

FORMAT = "mailtrace-transcript"
VERSION = 2
#: Flat typed facts written under their own name when they differ from the default.
FACTS = ("response_code", "user", "continued", "command", "spooled", "incomplete", "pipelined", "arrived",
         "partial", "scripted", "unsolicited", "missing")
# One encoder for every event line: json.dumps(..., ensure_ascii=False) builds a new one per
# call, which was half the cost of writing an event (the lab's log writer thread).
_ENCODER = json.JSONEncoder(ensure_ascii=False)


class TranscriptFormatError(ValueError):
    """The file is not a mailtrace transcript (or a version we cannot read)."""


def header() -> dict:
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {"format": FORMAT, "version": VERSION, "tool": f"mailtrace {__version__}", "created": now}


# Precomputed for event_to_dict, which runs once per event in the log writer's thread: the
# enums' values (``Side.CLIENT.value`` is a property call), and getters that fetch a group of
# fields in one call, so an event with none of them set (most events) skips the group at once.
_SIDE = {side: side.value for side in Side}
_KIND = {kind: kind.value for kind in Kind}
_LINE_FIELDS = ("verb", "code", "tag", "state")
_line_fields = operator.attrgetter(*_LINE_FIELDS)
_facts_of = operator.attrgetter(*FACTS)
_typed_of = operator.attrgetter("args", "messages", "peer", "reason", "tls")


def event_to_dict(event: Event, show_secrets: bool = False) -> dict:
    redacted = event.redacted
    data = redacted if redacted is not None and not show_secrets else event.raw
    d: dict = {
        "session": event.session,
        "seq": event.seq,
        "t": round(event.t, 6),
        "side": _SIDE[event.side],
        "kind": _KIND[event.kind],
        "protocol": event.protocol,
    }
    try:
        d["raw"] = data.decode("utf-8")
    except UnicodeDecodeError:
        d["raw_b64"] = base64.b64encode(data).decode("ascii")
    for name, value in zip(_LINE_FIELDS, _line_fields(event)):
        if value:
            d[name] = value
    if event.notes:
        d["notes"] = [{"rule": n.rule, "detail": n.detail} for n in event.notes]
    if event.size >= 0:
        d["size"] = event.size
    if redacted is not None:
        d["redacted"] = not show_secrets
    args, messages, peer, reason, tls = _typed_of(event)
    if args is not None:
        d["args"] = args.to_dict()
    facts = _facts_of(event)
    if any(facts):
        for name, value in zip(FACTS, facts):
            if value:
                d[name] = value
    if messages:
        d["messages"] = _messages(messages)
    if peer is not None:
        d["peer"] = _peer(peer)
    if reason is not None:
        d["reason"] = _reason(reason)
    if tls is not None:
        d["tls"] = _tls(tls)
    return d


# The JSON shapes of the nested typed facts (one definition for event_to_dict and event_line).
def _messages(messages: tuple[MessageRef, ...]) -> list:
    return [m.to_list() for m in messages]


def _message_json(m: MessageRef) -> str:
    """``_ENCODER.encode(m.to_list())`` without building the encoder's machinery for 5 values."""
    action = getattr(m.action, "value", m.action)
    return f"[{_quote(action)}, {_quote(m.user)}, {_quote(m.mailbox)}, {_number(m.uid)}, {_quote(m.key)}]"


def _peer(peer: Peer) -> dict:
    return {"client": peer.client, "server": peer.server, "mode": peer.mode, "started": peer.started}


def _reason(reason: Reason) -> dict:
    return {"text": reason.text, "clauses": [[c.key, dict(c.fields)] for c in reason.clauses]}


def _tls(tls: Tls) -> dict:
    return {"how": tls.how, "seen": tls.seen, "intercepted": tls.intercepted, "mark": tls.mark, "detail": tls.detail}


# The same line as ``_ENCODER.encode(event_to_dict(event))``, byte for byte, written directly:
# the log writer's thread spends most of its time here.  Strings go through the encoder's own
# escaping function, numbers through ``repr`` as the encoder does; the rarer nested facts (notes,
# args, peer, ...) through the encoder itself.
_quote = json.encoder.encode_basestring  # what JSONEncoder(ensure_ascii=False) uses (C when built)
_SIDE_JSON = {side: _quote(side.value) for side in Side}
_KIND_JSON = {kind: _quote(kind.value) for kind in Kind}
_LINE_KEYS = tuple(f', "{name}": ' for name in _LINE_FIELDS)
_FACT_KEYS = tuple(f', "{name}": ' for name in FACTS)
_FINITE = (int, float)


def _number(value) -> str:
    """A number as JSONEncoder writes it (repr for finite ints and floats)."""
    if type(value) in _FINITE and value - value == 0:  # (inf - inf and nan are not 0)
        return repr(value)
    return _ENCODER.encode(value)


# The bytes a JSON string never escapes (printable ASCII but " and \\, and every byte >= 0x80)
# and CR, LF.  A message body (a RETR, a FETCH, a DATA) holds only those: its CRLFs are written
# out by two ``bytes.replace`` (C, memchr-fast: half the time of the same on the decoded text,
# 13 -> 7 us for a 10 KB body) instead of the encoder's character-by-character loop; the line
# is the same (the decoding still checks the bytes are UTF-8).
_PLAIN = bytes([0x0A, 0x0D, *(b for b in range(0x20, 0x100) if b not in b'"\\')])


def _raw_member(data: bytes) -> tuple[str, ...]:
    """The ``"raw"`` member (``"raw_b64"`` for bytes that are not UTF-8), as pieces of the line:
    a 10 KB body is copied once more by the line's join, not once per concatenation."""
    try:
        if len(data) > 256 and not data.translate(None, _PLAIN):
            return ', "raw": "', data.replace(b"\r", b"\\r").replace(b"\n", b"\\n").decode("utf-8"), '"'
        return ', "raw": ', _quote(data.decode("utf-8"))
    except UnicodeDecodeError:
        return ', "raw_b64": "', base64.b64encode(data).decode("ascii"), '"'


def event_line(event: Event, show_secrets: bool = False) -> str:
    """One event as its JSON line (without the newline): what ``JsonlSink`` writes."""
    redacted = event.redacted
    data = redacted if redacted is not None and not show_secrets else event.raw
    parts = ['{"session": ', _quote(event.session), ', "seq": ', _number(event.seq), ', "t": ',
             _number(round(event.t, 6)), ', "side": ', _SIDE_JSON[event.side], ', "kind": ', _KIND_JSON[event.kind],
             ', "protocol": ', _quote(event.protocol), *_raw_member(data)]
    for key, value in zip(_LINE_KEYS, _line_fields(event)):
        if value:
            parts += (key, _quote(value))
    if event.notes:
        parts += (', "notes": ', _ENCODER.encode([{"rule": n.rule, "detail": n.detail} for n in event.notes]))
    if event.size >= 0:
        parts += (', "size": ', _number(event.size))
    if redacted is not None:
        parts.append(', "redacted": true' if not show_secrets else ', "redacted": false')
    args, messages, peer, reason, tls = _typed_of(event)
    if args is not None:
        parts += (', "args": ', _ENCODER.encode(args.to_dict()))
    facts = _facts_of(event)
    if any(facts):
        for key, value in zip(_FACT_KEYS, facts):
            if value:
                parts += (key, _ENCODER.encode(value))
    if messages:  # (a RETR's or a FETCH's reply: the message it read; written as the encoder would)
        parts += (', "messages": [', ", ".join([_message_json(m) for m in messages]), "]")
    if peer is not None:
        parts += (', "peer": ', _ENCODER.encode(_peer(peer)))
    if reason is not None:
        parts += (', "reason": ', _ENCODER.encode(_reason(reason)))
    if tls is not None:
        parts += (', "tls": ', _ENCODER.encode(_tls(tls)))
    parts.append("}")
    return "".join(parts)


def _facts(d: dict) -> dict:
    """The typed facts of a version-2 event line."""
    facts = {name: type(_DEFAULTS[name])(d[name]) for name in FACTS if name in d}
    if "args" in d:
        facts["args"] = Args.from_dict(d["args"])
    if "messages" in d:
        facts["messages"] = tuple(MessageRef.from_list(item) for item in d["messages"])
    if "peer" in d:
        p = d["peer"]
        facts["peer"] = Peer(client=str(p.get("client", "")), server=str(p.get("server", "")),
                             mode=str(p.get("mode", "")), started=float(p.get("started") or 0))
    if "reason" in d:
        r = d["reason"]
        facts["reason"] = Reason(text=str(r.get("text", "")), clauses=tuple(
            Clause(str(key), tuple((str(n), str(v)) for n, v in dict(fields).items()))
            for key, fields in r.get("clauses", ())))
    if "tls" in d:
        t = d["tls"]
        intercepted = t.get("intercepted")
        facts["tls"] = Tls(how=str(t.get("how", "")), seen=bool(t.get("seen", True)),
                           intercepted=None if intercepted is None else bool(intercepted),
                           mark=str(t.get("mark", "")), detail=str(t.get("detail", "")))
    return facts


_DEFAULTS = {name: getattr(Event(side=Side.NONE, kind=Kind.OPEN), name) for name in FACTS}


def event_from_dict(d: dict, version: int = VERSION) -> Event:
    """One event line of a file of format ``version`` (1: the facts are in ``"info"``)."""
    if version < 2:
        facts = facts_from_info({str(k): str(v) for k, v in (d.get("info") or {}).items()})
    else:
        facts = _facts(d)
    if "raw_b64" in d:
        raw = base64.b64decode(d["raw_b64"])
    else:
        raw = d.get("raw", "").encode("utf-8")
    return Event(
        session=d.get("session", ""),
        seq=int(d.get("seq", 0)),
        t=float(d.get("t", 0.0)),
        side=Side(d.get("side", "-")),
        kind=Kind(d.get("kind", "command")),
        protocol=d.get("protocol", ""),
        raw=raw,
        verb=d.get("verb", ""),
        code=d.get("code", ""),
        tag=d.get("tag", ""),
        state=d.get("state", ""),
        notes=tuple(Note(n.get("rule", ""), n.get("detail", "")) for n in d.get("notes", ())),
        size=int(d.get("size", -1)),
        # a saved redacted line is already redacted: keep it shown as it is
        redacted=None,
        **facts,
    )


class JsonlSink(FileSink):
    """Writes events to a JSON Lines file.

    With ``autoflush`` (the default) every event is flushed at once; a server passes
    ``autoflush=False`` and calls ``flush()`` once per batch of events instead (the recorder's
    ``flush()``, after each chunk of input is handled), which keeps the file live for
    ``tail -f`` at a fraction of the system calls.
    """

    def __init__(self, target: str | Path | IO[str], show_secrets: bool = False, autoflush: bool = True) -> None:
        super().__init__(target, autoflush)
        self.show_secrets = show_secrets
        self._file.write(json.dumps(header()) + "\n")
        self._file.flush()

    def handle(self, event: Event) -> None:
        self._file.write(event_line(event, self.show_secrets) + "\n")
        self._written(event)

    def handle_many(self, events: list[Event]) -> None:
        """``handle`` each of ``events``, in one write (the log writer's batches)."""
        show = self.show_secrets
        lines = [event_line(event, show) for event in events]
        lines.append("")  # (the last line's newline: one join, no copy of each line to add its own)
        self._file.write("\n".join(lines))
        if self.autoflush or any(event.kind is Kind.CLOSE for event in events):
            self._file.flush()


def read_jsonl(path: str | Path) -> Iterator[Event]:
    """Read the events of a saved transcript, checking its header."""
    with open(path, encoding="utf-8") as f:
        first = f.readline()
        try:
            head = json.loads(first)
        except json.JSONDecodeError as exc:
            raise TranscriptFormatError(f"{path}: the first line is not JSON ({exc.msg})") from None
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            raise TranscriptFormatError(f"{path}: not a mailtrace transcript (no '{FORMAT}' header)")
        version = head.get("version", 0)
        if not isinstance(version, int) or version > VERSION:
            raise TranscriptFormatError(
                f"{path}: transcript format version {head.get('version')} is newer than this mailtrace reads ({VERSION})"
            )
        for number, line in enumerate(f, start=2):
            if not line.strip():
                continue
            try:
                yield event_from_dict(json.loads(line), version)
            except (json.JSONDecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
                raise TranscriptFormatError(f"{path}:{number}: bad event line ({exc})") from None
