"""Message flags in Maildir file names, and IMAP keywords.

The Maildir specification (D. J. Bernstein, "Using maildir format", cr.yp.to/proto/
maildir.html): a message in cur/ is named "unique:2,FLAGS" where "Flag 'P' (passed): the user
has resent/forwarded/bounced this message to someone else. Flag 'R' (replied) ... Flag 'S'
(seen) ... Flag 'T' (trashed) ... Flag 'D' (draft) ... Flag 'F' (flagged) ... Flags must be
stored in ASCII order: e.g., '2,FRS'."

The IMAP system flags of RFC 3501 §2.3.2 map onto those letters (as in Dovecot, Courier and
mutt).  IMAP keywords (RFC 3501 §2.3.2, "flag-keyword") use the lowercase letters: letter
"a" is keyword 0 of the folder's ``dovecot-keywords`` file ("0 $Label1" per line), "b" is
keyword 1, and so on: at most 26 keywords per mailbox.  \\Recent is not stored: it is the
file being in new/.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Iterable

INFO_PREFIX = ":2,"  # Maildir "experimental semantics" version 2 info
SYSTEM_FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S",
                       "\\Deleted": "T"}
LETTER_FLAGS = {letter: flag for flag, letter in SYSTEM_FLAG_LETTERS.items()}
_CANONICAL = {flag.lower(): flag for flag in SYSTEM_FLAG_LETTERS}
KEYWORD_LETTERS = string.ascii_lowercase  # 26 keywords per mailbox, as Dovecot
KEYWORDS_NAME = "dovecot-keywords"
# RFC 3501 §9: flag-keyword = atom; atom-specials exclude "(" ")" "{" SP CTL "%" "*" DQUOTE
# "\" and "]" (resp-specials).
_KEYWORD_RE = re.compile(r'[^\x00-\x20\x7f(){%*"\\\]]+\Z')


def canonical_flag(flag: str) -> str | None:
    """"\\seen" -> "\\Seen"; a keyword is returned as is; None for what cannot be stored
    (\\Recent, unknown system flags, text that is not an atom)."""
    if flag.startswith("\\"):
        return _CANONICAL.get(flag.lower())
    return flag if _KEYWORD_RE.match(flag) else None


def split_name(filename: str) -> tuple[str, str]:
    """("base", "info letters") of a Maildir file name; info is "" when there is none."""
    base, sep, info = filename.partition(":")
    if sep and info.startswith("2,"):
        return base, info[2:]
    return base, ""


class Keywords:
    """The keyword <-> letter table of one Maildir (``dovecot-keywords``)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / KEYWORDS_NAME
        self.names: list[str | None] = []  # index -> keyword
        self._seen: tuple[int, int] | None = None

    def load(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.names, self._seen = [], None
            return
        if (st.st_ino, st.st_mtime_ns) == self._seen:
            return
        names: list[str | None] = []
        for line in self.path.read_bytes().decode("utf-8", "replace").splitlines():
            idx, _, name = line.partition(" ")
            if idx.isdigit() and int(idx) < len(KEYWORD_LETTERS) and name:
                while len(names) <= int(idx):
                    names.append(None)
                names[int(idx)] = name
        self.names = names
        self._seen = (st.st_ino, st.st_mtime_ns)

    def letter(self, keyword: str, create: bool) -> str | None:
        """The letter of ``keyword`` (case-insensitive, RFC 3501 §2.3.2 says flags are);
        with ``create`` a new one is allocated (the caller holds the folder lock)."""
        low = keyword.lower()
        for idx, name in enumerate(self.names):
            if name is not None and name.lower() == low:
                return KEYWORD_LETTERS[idx]
        if not create:
            return None
        for idx, name in enumerate(self.names):
            if name is None:
                self.names[idx] = keyword
                break
        else:
            if len(self.names) >= len(KEYWORD_LETTERS):
                return None  # table full: the keyword is not stored (PERMANENTFLAGS says so)
            self.names.append(keyword)
            idx = len(self.names) - 1
        self._write()
        return KEYWORD_LETTERS[idx]

    def _write(self) -> None:
        data = "".join(f"{idx} {name}\n" for idx, name in enumerate(self.names) if name)
        tmp = self.path.with_name(f"{KEYWORDS_NAME}.{os.getpid()}.tmp")
        tmp.write_bytes(data.encode("utf-8"))
        os.replace(tmp, self.path)
        st = os.stat(self.path)
        self._seen = (st.st_ino, st.st_mtime_ns)

    def flags_of(self, info: str) -> frozenset[str]:
        """IMAP flags of a Maildir info string ("FSab" -> {\\Flagged, \\Seen, kw0, kw1})."""
        out = set()
        for letter in info:
            flag = LETTER_FLAGS.get(letter)
            if flag is not None:
                out.add(flag)
            elif "a" <= letter <= "z":
                idx = ord(letter) - ord("a")
                if idx < len(self.names) and self.names[idx]:
                    out.add(self.names[idx])
        return frozenset(out)

    def info_of(self, flags: Iterable[str], old_info: str = "") -> str:
        """The info letters for ``flags``, keeping letters we do not map (e.g. "P")."""
        letters = {ch for ch in old_info
                   if ch not in LETTER_FLAGS and not "a" <= ch <= "z" and ch.isalnum()}
        for flag in flags:
            canon = canonical_flag(flag)
            if canon is None:
                continue
            letter = SYSTEM_FLAG_LETTERS.get(canon) or self.letter(canon, create=True)
            if letter:
                letters.add(letter)
        return "".join(sorted(letters))

