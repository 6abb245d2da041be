"""SEARCH keys: parsing and matching (RFC 3501 §6.4.4).

Theory of operation.  "The SEARCH command searches the mailbox for messages that match the
given searching criteria.  Searching criteria consist of one or more search keys ... When
multiple keys are specified, the result is the intersection (AND function) of all the
messages that match those keys" (§6.4.4).  Each key is parsed by the ``KEYS`` table into a
node ``(name, args)``; ``matches()`` evaluates a node with the matcher from the same table.
"In all search keys that use strings, a message matches the key if the string is a substring
of the field.  The matching is case-insensitive."  Dates compare the date part only,
"disregarding time and timezone".
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import quopri
import time
from dataclasses import dataclass
from email.header import decode_header, make_header
from typing import Callable

from mailtrace.protocols.imap.bodystructure import address_list
from mailtrace.protocols.imap.fetch import MessageData
from mailtrace.protocols.imap.lexer import ParseError, T
from mailtrace.protocols.imap import wire
from mailtrace.protocols.imap.parser import Cursor, normalize_flag, parse_date, parse_sequence_set, set_text

# RFC 3501 §6.4.4: "US-ASCII MUST be supported; other [CHARSET]s MAY be supported."
CHARSETS = ("UTF-8", "US-ASCII")
# A nesting guard for NOT/OR/( ): deep enough for any real client, shallow enough for the stack.
MAX_SEARCH_DEPTH = 64


class BadCharset(Exception):
    pass


@dataclass
class Candidate:
    seq: int
    msg: MessageData
    flags: frozenset
    recent: bool
    max_seq: int
    max_uid: int
    modseq: int = 0


Node = tuple  # (key name, args...)


# RFC 4731 §3.1 result options of SEARCH RETURN (...), in the order the response lists them.
RETURN_OPTIONS = ("MIN", "MAX", "ALL", "COUNT")


def parse_return(cur: Cursor) -> list[str] | None:
    """RFC 4466 §2.6 / RFC 4731 §3.1: ``SEARCH RETURN (MIN MAX ALL COUNT) keys``; None when
    the command has no RETURN (a plain SEARCH response), ["ALL"] for ``RETURN ()``."""
    if cur.peek_atom() != "RETURN":
        return None
    cur.next("RETURN")
    cur.open_paren("search return options")
    options: list[str] = []
    while not cur.close_paren_if_next():
        option = cur.atom("search return option").upper()
        if option not in RETURN_OPTIONS:
            raise ParseError(f'unknown search return option "{option}" (one of {", ".join(RETURN_OPTIONS)})')
        options.append(option)
    # §3.1: "If the list of result options is empty, that requests the server to return an
    # ESEARCH response instead of the SEARCH response.  This is equivalent to "(ALL)"."
    return options or ["ALL"]


def esearch_response(tag: str, uid: bool, hits: list[int], options: list[str], modseq: int = 0) -> bytes:
    """The ESEARCH response (RFC 4731 §3.1; RFC 4466 §2.6.2 ``(TAG "x") [UID] ...``): MIN, MAX
    and ALL only when something matched, COUNT always."""
    out = [b"ESEARCH (TAG " + wire.quote(tag) + b")"]
    if uid:
        out.append(b"UID")
    for option in RETURN_OPTIONS:
        if option not in options or (option != "COUNT" and not hits):
            continue
        value = {"MIN": lambda: str(min(hits)), "MAX": lambda: str(max(hits)),
                 "ALL": lambda: set_text(hits), "COUNT": lambda: str(len(hits))}[option]()
        out.append(f"{option} {value}".encode())
    if modseq and hits:  # RFC 7162 §3.1.10: "the ESEARCH response containing the MODSEQ result option"
        out.append(b"MODSEQ %d" % modseq)
    return b" ".join(out)


def parse(cur: Cursor) -> Node:
    """The whole SEARCH argument list (an implicit AND); CHARSET first if given."""
    if cur.peek_atom() == "CHARSET":
        cur.next("CHARSET")
        charset = cur.astring("charset name").decode("ascii", "replace").upper()
        if charset not in CHARSETS:
            raise BadCharset(charset)
    keys = []
    while not cur.at_end():
        keys.append(_key(cur, 0))
    if not keys:
        raise ParseError("missing search key (e.g. ALL, UNSEEN, FROM \"alice\")")
    return ("AND", *keys)


def _key(cur: Cursor, depth: int) -> Node:
    if depth > MAX_SEARCH_DEPTH:
        raise ParseError("search keys nested too deeply")
    tok = cur.next("search key")
    if tok.kind is T.LPAREN:
        keys = []
        while not cur.close_paren_if_next():
            if cur.at_end():
                raise ParseError('missing ")" to close a parenthesized search key')
            keys.append(_key(cur, depth + 1))
        if not keys:
            raise ParseError("empty parenthesized search key")
        return ("AND", *keys)
    if tok.kind is not T.ATOM:
        raise ParseError(f"expected a search key, got {tok.describe()}")
    name = tok.text().upper()
    if name[:1].isdigit() or name[:1] == "*":
        return ("SEQ", parse_sequence_set(tok.text()))
    spec = KEYS.get(name)
    if spec is None:
        raise ParseError(f'unknown search key "{tok.text()}"')
    args = []
    for kind in spec.args:
        if kind == "key":
            args.append(_key(cur, depth + 1))
        elif kind == "string":
            args.append(_text(cur.astring(f"string after {name}")))
        elif kind == "date":
            args.append(parse_date(cur.astring(f"date after {name}").decode("ascii", "replace")))
        elif kind == "number":
            args.append(cur.number(f"number after {name}"))
        elif kind == "flag":
            args.append(normalize_flag(cur.atom(f"keyword after {name}")))
        elif kind == "set":
            args.append(cur.seqset(f"UID set after {name}"))
        elif kind == "modseq":
            # RFC 7162 §3.1.5: MODSEQ [<entry-name> <entry-type-req>] <mod-sequence-valzer>; a
            # server without per-flag mod-sequences "MUST ignore <entry-name> and <entry-type-req>"
            tok = cur.peek()
            if tok is not None and tok.kind in (T.QUOTED, T.LITERAL):
                cur.next("entry name")
                cur.atom("entry type (shared, priv or all)")
            value = cur.atom("mod-sequence after MODSEQ")
            if not value.isdigit():
                raise ParseError(f'bad mod-sequence "{value}" after MODSEQ')
            args.append(int(value))
    return (name, *args)


def uses_modseq(node: Node) -> bool:
    """The search holds a MODSEQ key (RFC 7162 §3.1.5: the response then ends in (MODSEQ n))."""
    return node[0] == "MODSEQ" or any(isinstance(a, tuple) and uses_modseq(a) for a in node[1:])


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace").casefold()


# -- matching -------------------------------------------------------------------------------

def matches(node: Node, c: Candidate) -> bool:
    return KEYS[node[0]].match(c, *node[1:])


def _header_text(c: Candidate, name: str) -> str:
    values = c.msg.tree.fields.get_all(name) or []
    out = []
    for v in values:
        try:
            out.append(str(make_header(decode_header(str(v)))))
        except (ValueError, LookupError, UnicodeError):
            out.append(str(v))
    return "\n".join(out).casefold()


def _decoded_body(c: Candidate) -> str:
    texts = []
    stack = [c.msg.tree]
    while stack:
        part = stack.pop()
        if part.multipart:
            stack.extend(part.children)
            continue
        if part.message is not None:
            stack.append(part.message)
            continue
        body = part.body
        cte = str(part.fields.get("content-transfer-encoding", "")).strip().lower()
        try:
            if cte == "base64":
                body = base64.b64decode(body, validate=False)
            elif cte == "quoted-printable":
                body = quopri.decodestring(body)
        except (binascii.Error, ValueError):
            pass
        charset = part.fields.get_content_charset() or "utf-8"
        try:
            texts.append(body.decode(charset, "replace"))
        except LookupError:
            texts.append(body.decode("utf-8", "replace"))
    return "\n".join(texts).casefold()


def _day(stamp: float) -> tuple[int, int, int]:
    t = time.gmtime(stamp)
    return t.tm_year, t.tm_mon, t.tm_mday


def _sent_day(c: Candidate) -> tuple[int, int, int] | None:
    value = c.msg.tree.fields.get("date")
    if value is None:
        return None
    try:
        dt = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    return dt.year, dt.month, dt.day


def _date_cmp(day, op: str, target) -> bool:
    if day is None:
        return False
    return {"<": day < target, "=": day == target, ">=": day >= target}[op]


def _flag(name: str) -> Callable[..., bool]:
    return lambda c: name in c.flags


def _noflag(name: str) -> Callable[..., bool]:
    return lambda c: name not in c.flags


def _hdr(name: str) -> Callable[..., bool]:
    return lambda c, s: s in _header_text(c, name)


def _address_text(c: Candidate, name: str) -> str:
    """The addresses of an address header as "name mailbox@host" lines, comments and
    folding gone: "<user (comment)@ (comment) domain>" is found by "user@domain", as in
    Dovecot (the parsed addresses are what ENVELOPE shows)."""
    out = []
    for display, _, mailbox, host in address_list(c.msg.tree, name):
        if mailbox is not None or display is not None:
            out.append(f"{display or ''} {mailbox or ''}@{host or ''}")
    return "\n".join(out).casefold()


def _addr(name: str) -> Callable[..., bool]:
    """FROM, TO, CC, BCC: the header text or its parsed addresses contain the string."""
    return lambda c, s: s in _header_text(c, name) or s in _address_text(c, name)


@dataclass(frozen=True)
class KeySpec:
    args: tuple[str, ...]
    match: Callable[..., bool]


# RFC 3501 §6.4.4, one entry per search key.
KEYS: dict[str, KeySpec] = {
    "AND": KeySpec((), lambda c, *keys: all(matches(k, c) for k in keys)),
    "SEQ": KeySpec((), lambda c, s: s.contains(c.seq, c.max_seq)),
    "ALL": KeySpec((), lambda c: True),
    "ANSWERED": KeySpec((), _flag("\\Answered")),
    "DELETED": KeySpec((), _flag("\\Deleted")),
    "DRAFT": KeySpec((), _flag("\\Draft")),
    "FLAGGED": KeySpec((), _flag("\\Flagged")),
    "SEEN": KeySpec((), _flag("\\Seen")),
    "UNANSWERED": KeySpec((), _noflag("\\Answered")),
    "UNDELETED": KeySpec((), _noflag("\\Deleted")),
    "UNDRAFT": KeySpec((), _noflag("\\Draft")),
    "UNFLAGGED": KeySpec((), _noflag("\\Flagged")),
    "UNSEEN": KeySpec((), _noflag("\\Seen")),
    "RECENT": KeySpec((), lambda c: c.recent),
    "NEW": KeySpec((), lambda c: c.recent and "\\Seen" not in c.flags),
    "OLD": KeySpec((), lambda c: not c.recent),
    "KEYWORD": KeySpec(("flag",), lambda c, k: k in c.flags),
    "UNKEYWORD": KeySpec(("flag",), lambda c, k: k not in c.flags),
    "BCC": KeySpec(("string",), _addr("bcc")),
    "CC": KeySpec(("string",), _addr("cc")),
    "FROM": KeySpec(("string",), _addr("from")),
    "TO": KeySpec(("string",), _addr("to")),
    "SUBJECT": KeySpec(("string",), _hdr("subject")),
    "HEADER": KeySpec(("string", "string"), lambda c, f, s: (not s and bool(c.msg.tree.fields.get_all(f)))
                      or (bool(s) and s in _header_text(c, f))),
    "BODY": KeySpec(("string",), lambda c, s: s in _decoded_body(c)),
    # "header or body": the raw text (every MIME header too, as Dovecot) or the decoded body
    "TEXT": KeySpec(("string",), lambda c, s: s in c.msg.raw.decode("utf-8", "replace").casefold()
                    or s in _decoded_body(c)),
    "BEFORE": KeySpec(("date",), lambda c, d: _date_cmp(_day(c.msg.info.internaldate), "<", d)),
    "ON": KeySpec(("date",), lambda c, d: _date_cmp(_day(c.msg.info.internaldate), "=", d)),
    "SINCE": KeySpec(("date",), lambda c, d: _date_cmp(_day(c.msg.info.internaldate), ">=", d)),
    "SENTBEFORE": KeySpec(("date",), lambda c, d: _date_cmp(_sent_day(c), "<", d)),
    "SENTON": KeySpec(("date",), lambda c, d: _date_cmp(_sent_day(c), "=", d)),
    "SENTSINCE": KeySpec(("date",), lambda c, d: _date_cmp(_sent_day(c), ">=", d)),
    "LARGER": KeySpec(("number",), lambda c, n: c.msg.info.size > n),
    "SMALLER": KeySpec(("number",), lambda c, n: c.msg.info.size < n),
    "UID": KeySpec(("set",), lambda c, s: s.contains(c.msg.info.uid, c.max_uid)),
    "MODSEQ": KeySpec(("modseq",), lambda c, n: c.modseq >= n),  # RFC 7162 §3.1.5
    "NOT": KeySpec(("key",), lambda c, k: not matches(k, c)),
    "OR": KeySpec(("key", "key"), lambda c, a, b: matches(a, c) or matches(b, c)),
}

