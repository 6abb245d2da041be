"""The subscription list of one user (IMAP SUBSCRIBE/LSUB, RFC 3501 §6.3.6-§6.3.9).

Kept where Dovecot keeps it for Maildir++, ``<user>/subscriptions``, in Dovecot 2.3's
format version 2: a "V<TAB>2" line, an empty line, then one mailbox per line with TAB as the
hierarchy separator ("Work<TAB>Sub" is "Work.Sub").  The older format (one name per line,
"." as separator) is read too.  Written through a temporary file and an atomic rename.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailtrace.store.model import InvalidMailboxName
from mailtrace.store.names import HIERARCHY_DELIMITER, canonical_mailbox

SUBSCRIPTIONS_NAME = "subscriptions"
_V2_HEADER = "V\t2"


def read(user_dir: Path) -> list[str]:
    try:
        data = (user_dir / SUBSCRIPTIONS_NAME).read_bytes()
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if lines and lines[0] == _V2_HEADER:
        lines = [line.replace("\t", HIERARCHY_DELIMITER) for line in lines[1:]]
    names: list[str] = []
    for line in lines:
        if not line:
            continue
        try:
            name = canonical_mailbox(line)
        except InvalidMailboxName:
            continue
        if name not in names:
            names.append(name)
    return names


def write(user_dir: Path, names: list[str]) -> None:
    body = "".join(name.replace(HIERARCHY_DELIMITER, "\t") + "\n" for name in names)
    path = user_dir / SUBSCRIPTIONS_NAME
    tmp = path.with_name(f"{SUBSCRIPTIONS_NAME}.{os.getpid()}.tmp")
    tmp.write_bytes(f"{_V2_HEADER}\n\n{body}".encode("utf-8"))
    os.replace(tmp, path)
