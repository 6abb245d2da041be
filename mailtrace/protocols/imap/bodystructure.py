"""The MIME tree of a message: ENVELOPE, BODYSTRUCTURE and BODY[section] (RFC 3501 §6.4.5, §7.4.2).

Theory of operation.  "The BODYSTRUCTURE ... is the [MIME-IMB] body structure of the
message" (RFC 3501 §7.4.2) and BODY[section] fetches "the text of a particular body section"
whose "part specifier is a set of one or more part numbers delimited by periods" (§6.4.5).
Sizes and line counts are of the octets as they are on the wire, so the tree is built from
the raw bytes: the header/body split and the multipart boundaries (RFC 2046 §5.1.1: "the
CRLF preceding the boundary delimiter line is conceptually attached to the boundary") are
found here, while header *fields* and their parameters are decoded with Python's ``email``
package.
"""

from __future__ import annotations

import base64
import email.utils
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from mailtrace.protocols.imap import wire

# A MIME tree deeper than this is treated as opaque (RFC 2046 sets no limit; a guard against
# crafted messages that nest multiparts thousands deep).
MAX_MIME_DEPTH = 32
_HEADER_PARSER = BytesHeaderParser(policy=compat32)
_BLANK = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


@dataclass
class Part:
    header: bytes  # the header including the blank line that ends it
    body: bytes
    fields: Message
    maintype: str
    subtype: str
    children: list["Part"] = field(default_factory=list)
    message: "Part | None" = None  # the encapsulated message of a message/rfc822 part
    _raw_fields: dict | None = None

    def raw_values(self, name: str) -> list[bytes]:
        """The raw values of header field ``name`` (unfolded, 8-bit bytes kept as they are)."""
        if self._raw_fields is None:
            self._raw_fields = raw_fields(self.header)
        return self._raw_fields.get(name.lower(), [])

    @property
    def multipart(self) -> bool:
        return self.maintype == "multipart" and bool(self.children)


def raw_fields(header: bytes) -> dict[str, list[bytes]]:
    """RFC 5322 §2.2: field name, colon, body; §2.2.3: unfold CRLF followed by WSP."""
    fields: dict[str, list[bytes]] = {}
    for line in unfold(header).splitlines():
        name, colon, value = line.partition(b":")
        if colon and name and not name[:1].isspace():
            fields.setdefault(name.strip().decode("ascii", "replace").lower(), []).append(value.strip())
    return fields


def unfold(header: bytes) -> bytes:
    """RFC 5322 §2.2.3: "Unfolding is accomplished by simply removing any CRLF that is
    immediately followed by WSP" (so a boundary folded over two lines is one value)."""
    return _FOLD.sub(b"", header)


def split_header(raw: bytes) -> tuple[bytes, bytes]:
    """(header with its blank line, body) per RFC 5322 §2.1."""
    if raw.startswith(b"\r\n") or raw.startswith(b"\n"):
        cut = 2 if raw.startswith(b"\r\n") else 1
        return raw[:cut], raw[cut:]
    m = _BLANK.search(raw)
    if m is None:
        return raw, b""
    return raw[:m.end()], raw[m.end():]


def parse(raw: bytes, default_type: str = "text/plain", depth: int = 0) -> Part:
    header, body = split_header(raw)
    fields = _HEADER_PARSER.parsebytes(unfold(header))
    if fields.get("content-type") is None:
        fields.set_default_type(default_type)
    ctype = fields.get_content_type()
    if ctype == "text/plain" and fields.get("content-type") is None and default_type != "text/plain":
        ctype = default_type
    maintype, _, subtype = ctype.partition("/")
    part = Part(header, body, fields, maintype, subtype)
    if depth >= MAX_MIME_DEPTH:
        return part
    if maintype == "multipart":
        boundary = fields.get_param("boundary")
        if isinstance(boundary, str) and boundary:
            child_default = "message/rfc822" if subtype == "digest" else "text/plain"
            part.children = [parse(chunk, child_default, depth + 1) for chunk in _split_multipart(body, boundary)]
    elif ctype == "message/rfc822":
        part.message = parse(body, "text/plain", depth + 1)
    return part


def _split_multipart(body: bytes, boundary: str) -> list[bytes]:
    delim = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary.encode("utf-8", "replace")) + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    chunks = []
    start = None
    for m in delim.finditer(body):
        if start is not None:
            chunks.append(body[start:m.start()])
        if m.group(1):
            return chunks
        start = m.end()
    if start is not None:
        chunks.append(body[start:])
    return chunks


# -- ENVELOPE (RFC 3501 §7.4.2) -------------------------------------------------------------

def _hval(part: Part, name: str) -> bytes | None:
    values = part.raw_values(name)
    return values[0] if values else None


def _enc(text: str | None) -> bytes | None:
    return text.encode("utf-8", "surrogateescape") if text else None


def _split_top(text: str, seps: str) -> list[tuple[str, str]]:
    """Split ``text`` at the characters of ``seps`` outside quotes, comments and <...>:
    [(piece, the separator that ended it or "")]."""
    out, cur, depth, quoted, angle, i = [], [], 0, False, False, 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\" and i + 1 < len(text):
                cur.append(text[i:i + 2])
                i += 2
                continue
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif ch == "<" and not depth:
            angle = True
        elif ch == ">" and not depth:
            angle = False
        elif ch in seps and not depth and not angle:
            out.append(("".join(cur), ch))
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    out.append(("".join(cur), ""))
    return out


# An obsolete source route before the address (RFC 5322 §4.4 obs-route, RFC 3501 §7.4.2
# "at-domain-list (source route)"): "<@route1,@route2:user@domain>".
_ROUTE = re.compile(r"<\s*(@[^<>:\"]*):")

Address = tuple[str | None, str | None, str | None, str | None]  # name, route, mailbox, host


def address_list(part: Part, name: str) -> list[Address]:
    """The addresses of header ``name``, as ENVELOPE lists them (RFC 3501 §7.4.2): a group
    "name: a, b;" is (None, None, "name", None), its members, then (None, None, None, None)
    (RFC 5322 §3.4).  Used by ENVELOPE and by the address keys of SEARCH."""
    items: list[Address] = []
    for value in part.raw_values(name):
        text = value.decode("utf-8", "surrogateescape")
        for piece, sep in _split_top(text, ",:;"):
            piece = piece.strip()
            if sep == ":":
                items.append((None, None, piece.strip('"') or None, None))  # group start
                continue
            if piece:
                route = None
                m = _ROUTE.search(piece)
                if m:
                    route = re.sub(r"\s+", "", m.group(1))
                    piece = piece[:m.start()] + "<" + piece[m.end():]
                display, addr = email.utils.parseaddr(piece)
                if addr or display:
                    mailbox, _, host = addr.rpartition("@") if "@" in addr else (addr, "", "")
                    items.append((display.strip() or None, route, mailbox or None, host or None))
            if sep == ";":
                items.append((None, None, None, None))
    return items


def _addresses(part: Part, name: str) -> bytes:
    items = [b"(" + b" ".join(wire.nstring(_enc(x)) for x in address) + b")"
             for address in address_list(part, name)]
    return b"(" + b"".join(items) + b")" if items else b"NIL"


def envelope(part: Part) -> bytes:
    m = part
    frm = _addresses(m, "from")
    sender = _addresses(m, "sender")
    reply_to = _addresses(m, "reply-to")
    # §7.4.2: "If the Sender or Reply-To lines are absent in the [RFC-2822] header, or are
    # present but empty, the server sets the corresponding member of the envelope to be the
    # same value as the from member"
    sender = frm if sender == b"NIL" else sender
    reply_to = frm if reply_to == b"NIL" else reply_to
    items = [wire.nstring(_hval(m, "date")), wire.nstring(_hval(m, "subject")), frm, sender, reply_to,
             _addresses(m, "to"), _addresses(m, "cc"), _addresses(m, "bcc"),
             wire.nstring(_hval(m, "in-reply-to")), wire.nstring(_hval(m, "message-id"))]
    return b"(" + b" ".join(items) + b")"


# -- BODYSTRUCTURE (RFC 3501 §7.4.2) ---------------------------------------------------------

def _params(msg: Message, header: str) -> bytes:
    params = _raw_params(msg, header)
    pairs = []
    for key, value in params[1:]:
        if isinstance(value, tuple):
            value = email.utils.collapse_rfc2231_value(value)
        else:  # the header's own octets (raw UTF-8 in a filename, RFC 6532 §3.2), as they came
            value = value.encode("latin-1").decode("utf-8", "surrogateescape")
        pairs.append(wire.string(key.upper()) + b" " + wire.string(_enc(str(value)) or b""))
    return b"(" + b" ".join(pairs) + b")" if pairs else b"NIL"


def _raw_params(msg: Message, header: str) -> list:
    """``msg.get_params(header)``, but with 8-bit octets kept: compat32 turns a header with
    raw UTF-8 into a Header object whose text has U+FFFD for each octet, so the raw value is
    handed over as Latin-1 (one character per octet) and turned back by the caller."""
    raw = next((v for k, v in msg.raw_items() if k.lower() == header), None)
    if raw is None:
        return []
    clean = Message(policy=compat32)
    clean[header] = raw.encode("ascii", "surrogateescape").decode("latin-1")
    return clean.get_params(header=header) or []


def _disposition(msg: Message) -> bytes:
    value = msg.get("content-disposition")
    if value is None:
        return b"NIL"
    kind = str(value).split(";", 1)[0].strip()
    return b"(" + wire.string(kind.upper()) + b" " + _params(msg, "content-disposition") + b")"


def _language(part: Part) -> bytes:
    """body-fld-lang: NIL or a list of language tags (RFC 3501 §9, RFC 3282)."""
    value = _hval(part, "content-language")
    tags = [t.strip() for t in (value or b"").split(b",") if t.strip()]
    return b"(" + b" ".join(wire.string(t) for t in tags) + b")" if tags else b"NIL"


def _lines(data: bytes) -> int:
    """body-fld-lines (RFC 3501 §7.4.2): the number of line ends, as Dovecot counts them."""
    return data.count(b"\n")


def bodystructure(part: Part, extensible: bool = True) -> bytes:
    m = part.fields
    if part.multipart:
        out = b"(" + b"".join(bodystructure(c, extensible) for c in part.children)
        out += b" " + wire.string(part.subtype.upper())
        if extensible:
            out += b" " + _params(m, "content-type") + b" " + _disposition(m)
            out += b" " + _language(part) + b" " + wire.nstring(_hval(part, "content-location"))
        return out + b")"
    maintype, subtype = part.maintype, part.subtype
    if maintype == "multipart":  # a multipart without parts: shown as text/plain
        maintype, subtype = "text", "plain"
    params = _params(m, "content-type")
    if params == b"NIL" and maintype == "text":
        params = b'("CHARSET" "US-ASCII")'  # RFC 2045 §5.2 default
    encoding = (_hval(part, "content-transfer-encoding") or b"7BIT").upper()
    items = [wire.string(maintype.upper()), wire.string(subtype.upper()), params,
             wire.nstring(_hval(part, "content-id")), wire.nstring(_hval(part, "content-description")),
             wire.string(encoding), b"%d" % len(part.body)]
    if part.message is not None:
        items += [envelope(part.message), bodystructure(part.message, extensible), b"%d" % _lines(part.body)]
    elif maintype == "text":
        items.append(b"%d" % _lines(part.body))
    if extensible:
        items += [wire.nstring(_hval(part, "content-md5")), _disposition(m),
                  _language(part), wire.nstring(_hval(part, "content-location"))]
    return b"(" + b" ".join(items) + b")"


# -- BODY[section] (RFC 3501 §6.4.5) ---------------------------------------------------------

class SectionNotFound(Exception):
    pass


def _child(cur: Part, number: int, top: bool) -> Part:
    if cur.message is not None and not top:  # into the message a message/rfc822 part holds
        cur = cur.message
    if cur.multipart:
        if 1 <= number <= len(cur.children):
            return cur.children[number - 1]
        raise SectionNotFound(number)
    if number == 1:  # "a non-multipart message ... part 1 is the body" (RFC 3501 §6.4.5)
        return cur
    raise SectionNotFound(number)


def header_fields(header: bytes, names: tuple[str, ...], negate: bool) -> bytes:
    """The header lines whose field name is (not) in ``names``, plus the blank line that ends
    the header when the message has one (a header-only message has none, as Dovecot sends)."""
    wanted = {n.upper() for n in names}
    out = []
    keep = False
    ended = False
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            ended = True
            break
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().decode("ascii", "replace").upper()
        keep = (name in wanted) != negate
        if keep:
            out.append(line)
    if out and not out[-1].endswith(b"\n"):
        out[-1] += b"\r\n"
    return b"".join(out) + (b"\r\n" if ended else b"")


def section(root: Part, parts: tuple[int, ...], text: str, fields: tuple[str, ...] = ()) -> bytes:
    """The octets of BODY[parts.text] (``text`` is "", HEADER, HEADER.FIELDS[.NOT], TEXT or MIME)."""
    cur = root
    for i, number in enumerate(parts):
        cur = _child(cur, number, top=i == 0)
    if not parts:
        if text == "":
            return root.header + root.body
        target = root
    elif text == "":
        return cur.body
    elif text == "MIME":
        return cur.header
    else:
        if cur.message is None:
            raise SectionNotFound(text)
        target = cur.message
    if text == "HEADER":
        return target.header
    if text == "TEXT":
        return target.body
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return header_fields(target.header, fields, text.endswith(".NOT"))
    raise SectionNotFound(text)


# -- Content-Transfer-Encoding (RFC 2045 §6) ---------------------------------------------------

class UnknownCte(Exception):
    """A part whose Content-Transfer-Encoding we cannot decode (RFC 3516 §4.3: "NO" with the
    "UNKNOWN-CTE" response code)."""


IDENTITY_CTES = ("", "7bit", "8bit", "binary")  # RFC 2045 §6.2: no decoding to do
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def cte(part: Part) -> str:
    value = _hval(part, "content-transfer-encoding")
    return value.decode("ascii", "replace").strip().lower() if value else ""


def decode_qp(data: bytes) -> bytes:
    """RFC 2045 §6.7: =XX is an octet; trailing white space on a line is dropped (rule 3); a
    line ending in "=" is a soft line break (rule 5).  Hard line breaks stay as they were
    (CRLF on the wire)."""
    out = []
    for line in data.splitlines(keepends=True):
        body = line.rstrip(b"\r\n")
        end = line[len(body):]
        body = body.rstrip(b" \t")
        if body.endswith(b"="):
            body, end = body[:-1], b""
        out.append(_QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), body) + end)
    return b"".join(out)


def decoded_body(part: Part) -> bytes:
    """The part's body with its Content-Transfer-Encoding removed (RFC 3516 §3, step 1);
    UnknownCte for an encoding that is not one of RFC 2045's."""
    encoding = cte(part)
    if encoding in IDENTITY_CTES:
        return part.body
    if encoding == "base64":  # RFC 2045 §6.8: characters outside the alphabet are ignored;
        # "=" pads the end of the data
        data = re.sub(rb"[^A-Za-z0-9+/]", b"", part.body.split(b"=", 1)[0])
        data = data[:len(data) - len(data) % 4] if len(data) % 4 == 1 else data
        return base64.b64decode(data + b"=" * (-len(data) % 4))
    if encoding == "quoted-printable":
        return decode_qp(part.body)
    raise UnknownCte(encoding)


def binary_section(root: Part, parts: tuple[int, ...]) -> bytes:
    """BINARY[parts] (RFC 3516 §4.2): the section as BODY[parts] gives it, decoded; BINARY[] is
    the whole message as it is."""
    if not parts:
        return root.header + root.body
    cur = root
    for i, number in enumerate(parts):
        cur = _child(cur, number, top=i == 0)
    return decoded_body(cur)


_CTE_FIELD = re.compile(rb"(?im)^content-transfer-encoding:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*\r?\n")


def _leaves(part: Part, depth: int = 0):
    if part.multipart:
        for child in part.children:
            yield from _leaves(child, depth + 1)
    elif part.message is not None and depth < MAX_MIME_DEPTH:
        yield from _leaves(part.message, depth + 1)
    else:
        yield part


def binary_to_base64(raw: bytes) -> bytes:
    """RFC 3516 §4.4: "The server MAY modify the CTE of the appended data, however any such
    transformation MUST NOT result in a loss of data."  Parts that are "binary" or hold NUL
    (octets no IMAP literal may carry, RFC 3501 §4.3) are stored base64-encoded instead, so
    BODY[n] can send them and BINARY[n] decodes them back to the very octets appended."""
    if b"\0" not in raw and b"binary" not in raw.lower():
        return raw
    out = raw
    for part in _leaves(parse(raw)):
        if b"\0" not in part.body and cte(part) != "binary":
            continue
        old = part.header + part.body
        at = out.find(old)
        if at < 0:
            continue
        header = _CTE_FIELD.sub(b"", part.header)
        blank = b"\r\n" if header.endswith(b"\r\n") or not header.endswith(b"\n") else b"\n"
        header = header[:len(header) - len(blank)] if header.endswith(blank) else header
        encoded = base64.encodebytes(part.body).replace(b"\n", b"\r\n")  # 76-character lines
        new = header + b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded
        out = out[:at] + new + out[at + len(old):]
    return out
