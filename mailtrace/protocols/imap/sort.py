"""SORT (RFC 5256 §3 BASE.6.4.SORT): the sort keys of a message and the base subject.

Theory of operation.  "The SORT command first searches the mailbox for messages that match the
given searching criteria ... It then returns the matching messages in an untagged SORT
response, sorted according to one or more sort criteria."  "If two or more messages exactly
match according to the sorting criteria, these messages are sorted according to the order in
which they appear in the mailbox" (an implicit last criterion, the sequence number), and
REVERSE "only reverses a single criterion".  Strings "MUST collate ... according to the
i;unicode-casemap collation" (RFC 5256 §7): each character to its title case, then decomposed
(for ASCII: upper case, so "C" < "[" < "_").
The base subject (§2.1) and the sent date (§2.2) are shared with THREAD (``thread.py``).
"""

from __future__ import annotations

import email.utils
import functools
import re
import unicodedata
from email.header import decode_header, make_header

from mailtrace.protocols.imap.bodystructure import address_list
from mailtrace.protocols.imap.lexer import ParseError

SORT_KEYS = ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO")  # RFC 5256 §5 sort-key

# RFC 5256 §5: subj-blob = "[" *BLOBCHAR "]" *WSP; subj-refwd = ("re" / ("fw" ["d"])) *WSP
# [subj-blob] ":"; subj-leader = (*subj-blob subj-refwd) / WSP; subj-trailer = "(fwd)" / WSP.
_BLOB = r"\[[^\[\]]*\] *"
_LEADER = re.compile(rf"(?:{_BLOB})*(?:re|fwd?) *(?:{_BLOB})?:", re.I)
_BLOB_RE = re.compile(_BLOB)
_SPACES = re.compile(r"[ \t\r\n]+")


def casemap(text: str) -> bytes:
    """The i;unicode-casemap collation key of ``text`` (RFC 5256 §7): title case, decomposed,
    compared as UTF-8 octets."""
    folded = unicodedata.normalize("NFKD", "".join(ch.title() for ch in text))
    return folded.encode("utf-8", "surrogateescape")


def decoded_header(value: bytes | None) -> str:
    if value is None:
        return ""
    text = value.decode("utf-8", "surrogateescape")
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError):
        return text


@functools.lru_cache(maxsize=4096)
def base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 §2.1 steps (1)-(7): (the base subject, whether the subject marks a reply or
    forward -- "the base subject extraction rules ... remove any of the following: a
    subj-refwd, a "(fwd)" subj-trailer, or a subj-fwd-hdr and subj-fwd-trl", §3 REFERENCES)."""
    s = _SPACES.sub(" ", subject)  # (1) tabs and continuations to space, runs to one
    refwd = False
    while True:
        while True:  # (2) subj-trailer, repeatedly
            if s.endswith(" "):
                s = s[:-1]
            elif s[-5:].lower() == "(fwd)":
                s, refwd = s[:-5], True
            else:
                break
        while True:  # (5) repeat (3) and (4)
            if s.startswith(" "):  # (3) subj-leader: WSP
                s = s[1:]
                continue
            m = _LEADER.match(s)  # (3) subj-leader: *subj-blob subj-refwd
            if m:
                s, refwd = s[m.end():], True
                continue
            m = _BLOB_RE.match(s)  # (4) a subj-blob, unless nothing would be left
            if m and s[m.end():].strip(" "):
                s = s[m.end():]
                continue
            break
        if s[:5].lower() == "[fwd:" and s.endswith("]"):  # (6) subj-fwd-hdr ... subj-fwd-trl
            s, refwd = s[5:-1], True
            continue
        return s, refwd  # (7)


def sent_date(msg) -> float:
    """RFC 5256 §2.2: the Date: header in UTC; the INTERNALDATE when it cannot be parsed."""
    values = msg.tree.raw_values("date")
    if values:
        parsed = email.utils.parsedate_tz(values[0].decode("ascii", "replace"))
        if parsed is not None:
            try:
                return float(email.utils.mktime_tz(parsed))  # no zone: UTC ("SHOULD be treated as UTC")
            except (OverflowError, ValueError):
                pass
    return msg.info.internaldate


def _first_mailbox(msg, header: str) -> bytes:
    """"[IMAP] addr-mailbox of the first ... address" (RFC 5256 §3); "" when absent."""
    addresses = address_list(msg.tree, header)
    return casemap(addresses[0][2] or "") if addresses else b""


KEY_OF = {
    "ARRIVAL": lambda msg: msg.info.internaldate,
    "CC": lambda msg: _first_mailbox(msg, "cc"),
    "DATE": sent_date,
    "FROM": lambda msg: _first_mailbox(msg, "from"),
    "SIZE": lambda msg: msg.info.size,
    "SUBJECT": lambda msg: casemap(base_subject(decoded_header(msg.tree.raw_values("subject")[0]
                                                                     if msg.tree.raw_values("subject") else None))[0]),
    "TO": lambda msg: _first_mailbox(msg, "to"),
}


def parse_criteria(cur) -> list[tuple[str, bool]]:
    """RFC 5256 §5 sort-criteria: "(" ["REVERSE" SP] sort-key ... ")" -> [(key, reverse)]."""
    cur.open_paren("sort criteria")
    criteria: list[tuple[str, bool]] = []
    reverse = False
    while not cur.close_paren_if_next():
        word = cur.atom("sort criterion").upper()
        if word == "REVERSE" and not reverse:
            reverse = True
            continue
        if word not in SORT_KEYS:
            raise ParseError(f'unknown sort criterion "{word}" (REVERSE and {", ".join(SORT_KEYS)})')
        criteria.append((word, reverse))
        reverse = False
    if reverse or not criteria:
        raise ParseError("a sort criterion is missing")
    return criteria


def sort(hits: list, criteria: list[tuple[str, bool]]) -> list:
    """``hits``, [(seq, msg)] in mailbox order, sorted by ``criteria``; stable sorts from the
    last criterion to the first keep the mailbox order for exact ties."""
    out = list(hits)
    for name, reverse in reversed(criteria):
        key = KEY_OF[name]
        out.sort(key=lambda hit: key(hit[1]), reverse=reverse)
    return out
