"""FETCH data items: parsing the request and writing the response (RFC 3501 §6.4.5, §7.4.2).

Theory of operation.  "The FETCH command retrieves data associated with a message in the
mailbox.  The data items to be fetched can be either a single atom or a parenthesized list"
(§6.4.5).  Each item is parsed into a ``FetchItem``; the server writes one untagged
``* n FETCH (...)`` per message (§7.4.2).  "BODY[<section>]<<partial>>" items that are not
.PEEK set \\Seen: "The \\Seen flag is implicitly set; if this causes the flags to change, they
SHOULD be included as part of the FETCH responses."
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable

from mailtrace.protocols.imap import bodystructure
from mailtrace.protocols.imap.lexer import ParseError
from mailtrace.protocols.imap.parser import MONTHS, Cursor

_BODY_RE = re.compile(r"^(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK)\[([^\]]*)\](?:<(\d+)\.(\d+)>)?$", re.I)
_BINARY_SIZE_RE = re.compile(r"^BINARY\.SIZE\[([^\]]*)\]$", re.I)
_SECTION_RE = re.compile(r"^((?:\d+)(?:\.\d+)*)?(?:\.?(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME))?(?:\s*\((.*)\))?$", re.I | re.S)
# RFC 3501 §6.4.5 macros.
MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}


@dataclass(frozen=True)
class FetchItem:
    name: str  # FLAGS, UID, ..., or BODY[] for section fetches
    sets_seen: bool = False
    parts: tuple[int, ...] = ()
    text: str = ""  # "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: tuple[str, ...] = ()
    partial: tuple[int, int] | None = None
    label: str = ""  # how the item is named in the response

    @property
    def needs_body(self) -> bool:
        return self.name not in ("FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "MODSEQ")


def _simple(name: str, sets_seen: bool = False) -> Callable[[], FetchItem]:
    return lambda: FetchItem(name, sets_seen=sets_seen, label=name)


# The simple data items, by name (RFC 3501 §6.4.5).
SIMPLE_ITEMS: dict[str, Callable[[], FetchItem]] = {
    "FLAGS": _simple("FLAGS"),
    "UID": _simple("UID"),
    "INTERNALDATE": _simple("INTERNALDATE"),
    "RFC822.SIZE": _simple("RFC822.SIZE"),
    "ENVELOPE": _simple("ENVELOPE"),
    "BODY": _simple("BODY"),
    "BODYSTRUCTURE": _simple("BODYSTRUCTURE"),
    "RFC822": _simple("RFC822", sets_seen=True),  # "Functionally equivalent to BODY[]"
    "RFC822.HEADER": _simple("RFC822.HEADER"),  # "equivalent to BODY.PEEK[HEADER]"
    "RFC822.TEXT": _simple("RFC822.TEXT", sets_seen=True),  # "equivalent to BODY[TEXT]"
    "MODSEQ": _simple("MODSEQ"),  # RFC 7162 §3.1.4.2
}


def parse_items(cur: Cursor) -> list[FetchItem]:
    if cur.paren_if_next():
        items = []
        while not cur.close_paren_if_next():
            items.append(_parse_one(cur.atom("fetch data item")))
        if not items:
            raise ParseError("empty fetch data item list")
        return items
    name = cur.atom("fetch data item")
    macro = MACROS.get(name.upper())
    if macro:
        return [SIMPLE_ITEMS[n]() for n in macro]
    return [_parse_one(name)]


def _parse_one(text: str) -> FetchItem:
    upper = text.upper()
    if upper in SIMPLE_ITEMS:
        return SIMPLE_ITEMS[upper]()
    m = _BODY_RE.match(text)
    size = _BINARY_SIZE_RE.match(text)
    if size:  # RFC 3516 §4.2 BINARY.SIZE<section-binary>: the decoded size
        section = size.group(1).strip()
        return FetchItem("BINARY.SIZE", parts=_section_part(text, section), label=f"BINARY.SIZE[{section}]")
    if not m:
        raise ParseError(f'unknown fetch data item "{text}"')
    kind = m.group(1).upper()
    if kind.startswith("BINARY"):
        return _parse_binary(text, kind, m)
    sm = _SECTION_RE.match(m.group(2).strip())
    if not sm:
        raise ParseError(f'bad section "[{m.group(2)}]" in "{text}"')
    parts = tuple(int(p) for p in sm.group(1).split(".")) if sm.group(1) else ()
    if any(p == 0 for p in parts):
        raise ParseError(f'bad section "[{m.group(2)}]": part numbers start at 1')
    spec = (sm.group(2) or "").upper()
    fields: tuple[str, ...] = ()
    if spec.startswith("HEADER.FIELDS"):
        if sm.group(3) is None:
            raise ParseError(f'"{text}": HEADER.FIELDS needs a list of field names')
        fields = tuple(f.strip('"').upper() for f in sm.group(3).split() if f.strip('"'))  # upper, as Dovecot
        if not fields:
            raise ParseError(f'"{text}": empty list of header field names')
    elif sm.group(3) is not None:
        raise ParseError(f'bad section "[{m.group(2)}]"')
    if spec == "MIME" and not parts:
        raise ParseError('"MIME" needs a part number (e.g. BODY[1.MIME])')
    section = ".".join(str(p) for p in parts)
    if spec:
        section = f"{section}.{spec}" if section else spec
    if fields:
        section += " (" + " ".join(fields) + ")"
    partial = None
    if m.group(3) is not None:
        partial = (int(m.group(3)), int(m.group(4)))
        if partial[1] == 0:
            raise ParseError(f'"{text}": a partial fetch needs a non-zero length')
    label = f"BODY[{section}]" + (f"<{partial[0]}>" if partial else "")
    return FetchItem("BODY[]", sets_seen=not kind.endswith(".PEEK"), parts=parts, text=spec,
                     fields=fields, partial=partial, label=label)


def _section_part(text: str, section: str) -> tuple[int, ...]:
    """RFC 3516 §6 section-binary = "[" [section-part] "]": part numbers only."""
    if not section:
        return ()
    if not re.fullmatch(r"\d+(?:\.\d+)*", section):
        raise ParseError(f'"{text}": a BINARY section is part numbers only, e.g. BINARY[1.2] (RFC 3516 §6)')
    parts = tuple(int(p) for p in section.split("."))
    if any(p == 0 for p in parts):
        raise ParseError(f'bad section "[{section}]": part numbers start at 1')
    return parts


def _parse_binary(text: str, kind: str, m: re.Match) -> FetchItem:
    """BINARY[section]<partial>, BINARY.PEEK[...] (RFC 3516 §4.2): the section decoded."""
    section = m.group(2).strip()
    parts = _section_part(text, section)
    partial = None
    if m.group(3) is not None:
        partial = (int(m.group(3)), int(m.group(4)))
        if partial[1] == 0:
            raise ParseError(f'"{text}": a partial fetch needs a non-zero length')
    label = f"BINARY[{section}]" + (f"<{partial[0]}>" if partial else "")
    return FetchItem("BINARY[]", sets_seen=not kind.endswith(".PEEK"), parts=parts, partial=partial, label=label)


def internaldate(stamp: float) -> bytes:
    """RFC 3501 §9 date-time, in UTC: ``"17-Jul-1996 09:44:25 +0000"``."""
    t = time.gmtime(stamp)
    return b'"%02d-%s-%04d %02d:%02d:%02d +0000"' % (t.tm_mday, MONTHS[t.tm_mon - 1].encode(), t.tm_year,
                                                    t.tm_hour, t.tm_min, t.tm_sec)


def flag_list(flags) -> bytes:
    return b"(" + " ".join(flags).encode("utf-8") + b")"


class MessageData:
    """What FETCH and SEARCH need of one message; the bytes and MIME tree are read lazily."""

    def __init__(self, info, read: Callable[[], bytes], cache: dict | None = None) -> None:
        self.info = info
        self._read = read
        self._raw: bytes | None = None
        self._tree: bodystructure.Part | None = None
        self.modseq = 0  # RFC 7162 §3: set by FETCH when MODSEQ is asked for

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = self._read()
        return self._raw

    @property
    def tree(self) -> bodystructure.Part:
        if self._tree is None:
            self._tree = bodystructure.parse(self.raw)
        return self._tree


class Literal:
    """A value sent as a literal of its own (BODY[], RFC822...): its own LITERAL event.
    ``binary``: sent as a literal8 ``~{n}`` (RFC 3516 §4.3), for octets a literal cannot carry."""

    __slots__ = ("data", "binary")

    def __init__(self, data: bytes, binary: bool = False) -> None:
        self.data = data
        self.binary = binary


_NOT_TEXT = re.compile(rb"\x00|\r(?!\n)|(?<!\r)\n")


def needs_literal8(data: bytes) -> bool:
    """RFC 3516 §4.3: decoded data that holds NUL (or, as Dovecot also counts, a CR or LF that is
    not part of a CRLF line end) goes as a <literal8>; other data as a plain literal."""
    return _NOT_TEXT.search(data) is not None


def render(seq: int, msg: MessageData, items: list[FetchItem], flags, recent: bool,
           add_uid: bool) -> list[tuple[str, bytes]]:
    """The ``* seq FETCH (...)`` response as ("line" | "literal", bytes) pieces, in wire order."""
    pieces: list[tuple[str, bytes]] = []
    line = [b"* %d FETCH (" % seq]
    sep = b""
    if add_uid and not any(i.name == "UID" for i in items):
        line.append(b"UID %d" % msg.info.uid)
        sep = b" "
    for item in items:
        value = _value(item, msg, flags, recent)
        if isinstance(value, Literal):
            line.append(b"%s%s %s{%d}\r\n" % (sep, item.label.encode(), b"~" if value.binary else b"",
                                               len(value.data)))
            pieces.append(("line", b"".join(line)))
            pieces.append(("literal", value.data))
            line = []
        else:
            line.append(sep + item.label.encode() + b" " + value)
        sep = b" "
    line.append(b")\r\n")
    pieces.append(("line", b"".join(line)))
    return pieces


def all_flags(flags, recent: bool) -> list[str]:
    out = sorted(flags, key=lambda f: (not f.startswith("\\"), f))
    if recent:
        out.append("\\Recent")
    return out


def _value(item: FetchItem, msg: MessageData, flags, recent: bool) -> bytes | Literal:
    name = item.name
    if name == "FLAGS":
        return flag_list(all_flags(flags, recent))
    if name == "UID":
        return b"%d" % msg.info.uid
    if name == "MODSEQ":  # RFC 7162 §3.1.4.2: "MODSEQ (<mod-sequence>)"
        return b"(%d)" % msg.modseq
    if name == "INTERNALDATE":
        return internaldate(msg.info.internaldate)
    if name == "RFC822.SIZE":
        return b"%d" % msg.info.size
    if name == "ENVELOPE":
        return bodystructure.envelope(msg.tree)
    if name == "BODY":
        return bodystructure.bodystructure(msg.tree, extensible=False)
    if name == "BODYSTRUCTURE":
        return bodystructure.bodystructure(msg.tree, extensible=True)
    if name == "RFC822":
        return Literal(msg.raw)
    if name == "RFC822.HEADER":
        return Literal(msg.tree.header)
    if name == "RFC822.TEXT":
        return Literal(msg.tree.body)
    if name in ("BINARY[]", "BINARY.SIZE"):  # RFC 3516: raises UnknownCte for an unknown encoding
        data = bodystructure.binary_section(msg.tree, item.parts)
        if name == "BINARY.SIZE":
            return b"%d" % len(data)
        if item.partial is not None:
            start, length = item.partial
            data = data[start:start + length]
        return Literal(data, binary=needs_literal8(data))
    try:
        data = msg.raw if (not item.parts and not item.text) else bodystructure.section(
            msg.tree, item.parts, item.text, item.fields)
    except bodystructure.SectionNotFound:
        data = b""  # RFC 3501 §6.4.5 leaves this open; an empty string, as Dovecot sends
    if item.partial is not None:
        start, length = item.partial
        data = data[start:start + length]
    return Literal(data)

