"""What a command that read a stored message actually took from it, for the life of a message.

The server cores say that a FETCH, RETR or TOP read a message (``transcript.links``
``Action.READ``); the web view tells a student how:

* IMAP (RFC 3501 §6.4.5): ``BODY[]``, ``BODY[TEXT]``, ``RFC822``, ``RFC822.TEXT`` (and
  ``BINARY[]``, RFC 3516) read the message and set ``\\Seen``; their ``.PEEK`` forms read it
  without setting it; ``ENVELOPE``, ``BODYSTRUCTURE``, ``BODY[HEADER]``, ``RFC822.HEADER`` take the
  header or the structure only; ``FLAGS``, ``UID``, ``INTERNALDATE``, ``RFC822.SIZE``, ``MODSEQ``
  only describe the message: that is no reading at all.
* POP3 (RFC 1939 §7): ``RETR`` reads the message, ``TOP n k`` its header and first k lines.

The FETCH items are parsed by the IMAP server's own parser (``protocols.imap.fetch``).
"""

from __future__ import annotations

# label keys: ui.action_KEY of knowledge/web.toml
READ = "read"  # the message (POP3 RETR; a FETCH whose items could not be parsed)
READ_SEEN = "read_seen"  # IMAP: the body, and \Seen set
PEEKED = "peeked"  # IMAP: the body with BODY.PEEK / BINARY.PEEK: \Seen left as it was
HEADER = "header"  # IMAP: the header or the MIME structure, not the body; POP3 TOP n 0
TOP = "top"  # POP3 TOP n k (k > 0): the header and the first k lines of the body

# items that only describe a message (RFC 3501 §6.4.5; MODSEQ: RFC 7162 §3.1.4.2)
_METADATA = frozenset({"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "MODSEQ"})


def imap_fetch(raw: bytes, verb: str) -> str | None:
    """The label of a FETCH or UID FETCH command line; None when it asked for metadata only."""
    from mailtrace.protocols.imap import fetch
    from mailtrace.protocols.imap.lexer import ParseError, tokenize
    from mailtrace.protocols.imap.parser import Cursor

    try:
        tokens, _notes = tokenize(raw.rstrip(b"\r\n"), 0)
        cursor = Cursor(tokens, pos=1 + len(verb.split()))  # after the tag and the verb's words
        cursor.seqset()
        items = fetch.parse_items(cursor)
    except (ParseError, ValueError, IndexError):
        return READ  # the core said it was read; say no more than that
    content = [i for i in items if i.name in ("RFC822", "RFC822.TEXT", "BINARY[]")
               or (i.name == "BODY[]" and i.text in ("", "TEXT"))]
    if content:
        return READ_SEEN if any(i.sets_seen for i in content) else PEEKED
    if all(i.name in _METADATA for i in items):
        return None
    return HEADER


def pop3_top(raw: bytes) -> str:
    """TOP msg n (RFC 1939 §7): the header only when n is 0."""
    words = raw.split()
    return HEADER if len(words) >= 3 and words[2] == b"0" else TOP
