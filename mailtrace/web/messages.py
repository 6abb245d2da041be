"""A stored message explained for the web view: header fields, MIME tree, text, HTML.

The MIME tree is the one the IMAP server sends as BODYSTRUCTURE
(``mailtrace.protocols.imap.bodystructure``: the raw bytes split at the header's blank line,
RFC 5322 §2.1, and at the multipart boundaries, RFC 2046 §5.1.1); each part is shown twice,
as it travels (base64, quoted-printable: RFC 2045 §6) and decoded, so students see what a
Content-Transfer-Encoding does.  What each header field means comes from the knowledge data
(``knowledge/message.toml``), in English or Spanish.  Nothing here escapes HTML: the page's
script puts every value in the DOM as text, and HTML parts go through ``sanitize``.
"""

from __future__ import annotations

import email.errors
import email.header
import email.utils
from email.message import Message
from email.policy import compat32

from mailtrace import knowledge
from mailtrace.protocols.imap import bodystructure
from mailtrace.web.sanitize import sanitize_html

PREVIEW = 16 * 1024  # characters of a part shown encoded and decoded (the rest is cut, and said)
SUMMARY_FIELDS = ("from", "to", "subject", "date")


def decode_header_value(value: str) -> str:
    """RFC 2047 encoded words ("=?utf-8?q?Caf=C3=A9?=") decoded; bad ones left as they are."""
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        return value


def header_fields(raw_header: bytes) -> list[tuple[str, str]]:
    """(name as written, unfolded raw value) in order (RFC 5322 §2.2, §2.2.3)."""
    unfolded = raw_header.replace(b"\r\n ", b" ").replace(b"\r\n\t", b"\t").replace(b"\n ", b" ").replace(b"\n\t", b"\t")
    fields = []
    for line in unfolded.splitlines():
        name, colon, value = line.partition(b":")
        if colon and name and not name[:1].isspace():
            fields.append((name.decode("ascii", "replace").strip(), value.strip().decode("utf-8", "replace")))
    return fields


def summary(raw: bytes) -> dict[str, str]:
    """From, To, Subject, Date of a message (decoded), for mailbox listings."""
    header, _ = bodystructure.split_header(raw)
    out = {name: "" for name in SUMMARY_FIELDS}
    for name, value in header_fields(header):
        key = name.lower()
        if key in out and not out[key]:
            out[key] = decode_header_value(value)
    return out


def explain_headers(raw: bytes, lang: str) -> list[dict]:
    header, _ = bodystructure.split_header(raw)
    rows = []
    for name, value in header_fields(header):
        entry = knowledge.lookup("message", "headers", name.lower())
        rows.append({"name": name, "value": value, "decoded": decode_header_value(value),
                     "meaning": entry.meaning(lang) if entry else "", "explain": entry.explain(lang) if entry else "",
                     "rfc": entry.rfc if entry else "", "trace": bool(entry and entry.extra.get("trace"))})
    return rows


def _decoded(part: bodystructure.Part) -> tuple[bytes, str]:
    """The part's body decoded from its transfer encoding, and the charset it declares."""
    msg = Message(policy=compat32)
    for name, value in part.fields.items():
        msg[name] = value
    msg.set_payload(part.body)
    try:
        data = msg.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - a broken encoding shows as is
        data = part.body
    return (data if isinstance(data, bytes) else part.body), (part.fields.get_content_charset() or "")


def _as_text(data: bytes, charset: str) -> str:
    try:
        return data.decode(charset or "us-ascii", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _cut(text: str) -> tuple[str, bool]:
    return (text[:PREVIEW], True) if len(text) > PREVIEW else (text, False)


def mime_tree(part: bodystructure.Part, path: str = "") -> dict:
    """One node per MIME part: type, parameters, encoding, disposition, sizes, and for leaf
    parts the body encoded and decoded (text parts as text; other parts by size only)."""
    fields = part.fields
    disposition = fields.get("content-disposition", "")
    node = {"path": path or "TEXT", "type": f"{part.maintype}/{part.subtype}",
            "charset": fields.get_content_charset() or "",
            "encoding": (fields.get("content-transfer-encoding") or "7bit").strip().lower(),
            "disposition": disposition.split(";")[0].strip().lower() if disposition else "",
            "filename": decode_header_value(fields.get_filename() or "") if fields.get_filename() else "",
            "size": len(part.body), "children": []}
    if part.multipart:
        node["children"] = [mime_tree(child, f"{path}.{i}" if path else str(i))
                            for i, child in enumerate(part.children, 1)]
        return node
    if part.message is not None:
        node["children"] = [mime_tree(part.message, f"{path}.1" if path else "1")]
        return node
    decoded, charset = _decoded(part)
    node["decoded_size"] = len(decoded)
    node["encoded"], node["encoded_cut"] = _cut(part.body.decode("ascii", errors="replace"))
    if part.maintype == "text":
        node["decoded"], node["decoded_cut"] = _cut(_as_text(decoded, charset))
    else:
        node["decoded"], node["decoded_cut"] = "", False
    return node


def _first(part: bodystructure.Part, ctype: str) -> bodystructure.Part | None:
    if part.multipart:
        for child in part.children:
            found = _first(child, ctype)
            if found is not None:
                return found
        return None
    disposition = (part.fields.get("content-disposition") or "").lower()
    if f"{part.maintype}/{part.subtype}" == ctype and not disposition.startswith("attachment"):
        return part
    return None


def body_text(raw: bytes, ctype: str) -> str | None:
    """The first inline part of type ``ctype`` (text/plain, text/html), decoded to text."""
    part = _first(bodystructure.parse(raw), ctype)
    if part is None:
        return None
    data, charset = _decoded(part)
    return _as_text(data, charset)


def explain(raw: bytes, lang: str) -> dict:
    """Everything the message page shows (but the raw source and the HTML, fetched apart)."""
    tree = bodystructure.parse(raw)
    html = _first(tree, "text/html")
    return {"headers": explain_headers(raw, lang), "mime": mime_tree(tree), "text": body_text(raw, "text/plain"),
            "has_html": html is not None, "size": len(raw)}


def safe_html(raw: bytes) -> str | None:
    html = body_text(raw, "text/html")
    return None if html is None else sanitize_html(html)


def parse_date(value: str) -> float:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0
