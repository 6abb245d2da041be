"""LIST and LSUB (RFC 3501 §6.3.8, §6.3.9), with LIST-EXTENDED (RFC 5258), LIST-STATUS
(RFC 5819) and SPECIAL-USE (RFC 6154).

Theory of operation.  RFC 5258 §3: "LIST [SP list-select-opts] SP mailbox SP mbox-or-pat
[SP list-return-opts]": selection options choose which names are candidates (SUBSCRIBED: the
subscription list, SPECIAL-USE: mailboxes with a special use; RECURSIVEMATCH adds parents
whose descendants are selected, with a CHILDINFO extended data item), one or several
patterns filter them, and return options add data (\\Subscribed, \\HasChildren, special-use
attributes, a STATUS response after each LIST line).  The plain RFC 3501 forms are the same
code with no options.  Names go to the client through ``conn.mailbox_name`` (UTF-8 after
ENABLE UTF8=ACCEPT).
"""

from __future__ import annotations

import re

from mailtrace.protocols.imap.commands_mailbox import status_items, status_response, store_error
from mailtrace.protocols.imap.lexer import ParseError, T
from mailtrace.store.model import StoreError

SELECT_OPTIONS = ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE")  # RFC 5258 §3.1, RFC 6154 §2
RETURN_OPTIONS = ("SUBSCRIBED", "CHILDREN", "STATUS", "SPECIAL-USE")  # RFC 5258 §3.2, RFC 5819 §2, RFC 6154 §2
# RFC 6154 §2 special uses, given here by the usual top-level names (as Dovecot's default
# configuration and the course's mail clients name them).
SPECIAL_USE = {"Drafts": "\\Drafts", "Sent": "\\Sent", "Trash": "\\Trash", "Junk": "\\Junk", "Archive": "\\Archive"}


def _pattern(pattern: str, delim: str) -> re.Pattern:
    """RFC 3501 §6.3.8: "*" matches zero or more characters; "%" is like "*" but does not
    match a hierarchy delimiter."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(f"[^{re.escape(delim)}]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z", re.S)


def _options(cur, what: str, allowed: tuple[str, ...]) -> list[str]:
    cur.open_paren(what)
    options = []
    while not cur.close_paren_if_next():
        option = cur.atom(what[:-1]).upper()
        if option not in allowed:
            raise ParseError(f'unknown LIST {what[:-1]} "{option}" (one of {", ".join(allowed)}; RFC 5258 §3)')
        options.append(option)
        if option == "STATUS":
            options.append(status_items(cur))
    return options


def _parse(cmd) -> tuple[list[str], str, list[str], list, bool]:
    """(selection options, reference, patterns, return options, extended syntax used)."""
    cur = cmd.args
    extended = False
    select: list[str] = []
    tok = cur.peek()
    if tok is not None and tok.kind is T.LPAREN:
        select, extended = _options(cur, "selection options", SELECT_OPTIONS), True
        if "RECURSIVEMATCH" in select and not set(select) - {"RECURSIVEMATCH", "REMOTE"}:
            # RFC 5258 §3.1: "MUST NOT occur as the only selection option (or only with REMOTE)"
            raise ParseError("RECURSIVEMATCH needs another selection option, e.g. (SUBSCRIBED RECURSIVEMATCH)")
    reference = cur.list_mailbox("reference name")
    tok = cur.peek()
    if tok is not None and tok.kind is T.LPAREN:  # RFC 5258 §3: several patterns
        cur.next("(")
        patterns = []
        while not cur.close_paren_if_next():
            patterns.append(cur.list_mailbox("mailbox name pattern"))
        if not patterns:
            raise ParseError("empty list of mailbox name patterns")
        extended = True
    else:
        patterns = [cur.list_mailbox("mailbox name pattern")]
    returns: list = []
    if cur.peek_atom() == "RETURN":
        cur.next("RETURN")
        returns, extended = _options(cur, "return options", RETURN_OPTIONS), True
    cur.end()
    return select, reference, patterns, returns, extended


def list_(conn, cmd) -> None:
    select, reference, patterns, returns, extended = _parse(cmd)
    delim = conn.store.HIERARCHY_DELIMITER
    if patterns == [""] and not extended:
        # §6.3.8: 'An empty ("" string) mailbox name argument is a special request to return
        # the hierarchy delimiter and the root name of the name given in the reference.'
        conn.untagged(b'LIST (\\Noselect) "' + delim.encode() + b'" ""', "LIST")
        conn.done(cmd, "OK", "LIST completed")
        return

    def job():  # in a worker thread: directories listed, LIST-STATUS looks into each mailbox
        try:
            return _list_lines(conn, select, reference, patterns, returns, extended), None
        except (StoreError, OSError) as exc:
            return None, exc

    def then(result) -> None:
        lines, exc = result
        if exc is not None:
            store_error(conn, cmd, exc)
            return
        for line, verb in lines:
            conn.untagged(line, verb)
        conn.done(cmd, "OK", "LIST completed")

    conn.run_slowly(job, then)


def _list_lines(conn, select, reference: str, patterns, returns, extended: bool) -> list[tuple[bytes, str]]:
    """The untagged LIST (and LIST-STATUS) responses, as (line, verb)."""
    delim = conn.store.HIERARCHY_DELIMITER
    out: list[tuple[bytes, str]] = []
    existing = set(conn.store.list_mailboxes(conn.user))
    subscribed = set(conn.store.subscriptions(conn.user))
    rxs = [_pattern(_canonical(reference + p), delim) for p in patterns]
    matches = lambda name: any(rx.match(name) for rx in rxs)  # noqa: E731
    parents = _parents(existing, delim)
    want_subscribed = "SUBSCRIBED" in select or "SUBSCRIBED" in returns
    want_children = not extended or "CHILDREN" in returns
    want_special = not extended or "SPECIAL-USE" in select or "SPECIAL-USE" in returns
    status = returns[returns.index("STATUS") + 1] if "STATUS" in returns else None
    if "SUBSCRIBED" in select:
        selected = subscribed
    elif "SPECIAL-USE" in select:
        selected = {name for name in existing if name in SPECIAL_USE}
    else:
        selected = existing | parents
    listed = {name for name in selected if matches(name)}
    childinfo: set[str] = set()
    if "RECURSIVEMATCH" in select:
        # §3.5: a matching name that is not selected itself but has a selected descendant;
        # "servers SHOULD suppress redundant CHILDINFO responses" (all such descendants listed)
        for parent in _parents(selected, delim):
            if parent not in listed and matches(parent) and any(
                    child.startswith(parent + delim) and child not in listed for child in selected):
                childinfo.add(parent)
    for name in sorted(listed | childinfo, key=lambda n: (n != "INBOX", n)):
        attrs = []
        if name not in existing:
            # RFC 5258 §3.1: a subscribed name that does not exist is \NonExistent (which
            # implies \Noselect); a parent that only holds other mailboxes is \Noselect
            attrs.append("\\NonExistent" if extended and name not in parents else "\\Noselect")
        if want_children:
            attrs.append("\\HasChildren" if name in parents else "\\HasNoChildren")
        if want_subscribed and name in subscribed:
            attrs.append("\\Subscribed")
        if want_special and name in SPECIAL_USE:
            attrs.append(SPECIAL_USE[name])
        extra = b' (CHILDINFO ("SUBSCRIBED"))' if name in childinfo else b""
        line = f"LIST ({' '.join(attrs)}) \"{delim}\" ".encode() + conn.mailbox_name(name) + extra
        if status is not None and name in existing:
            try:  # RFC 5819 §2: "an untagged LIST response followed by an untagged STATUS response"
                status_line = status_response(conn, name, status)
            except StoreError:  # gone meanwhile: no STATUS, and the LIST says \Noselect
                line = line.replace(b"LIST (", b"LIST (\\Noselect ", 1)
                status_line = None
            out.append((line, "LIST"))
            if status_line is not None:
                out.append((status_line, "STATUS"))
            continue
        out.append((line, "LIST"))
    return out




def lsub(conn, cmd) -> None:
    reference = cmd.args.list_mailbox("reference name")
    pattern = cmd.args.list_mailbox("mailbox name pattern")
    cmd.args.end()
    delim = conn.store.HIERARCHY_DELIMITER
    store, user = conn.store, conn.user

    def job():  # in a worker thread: the subscriptions file is read
        try:
            return set(store.subscriptions(user))
        except (StoreError, OSError) as exc:
            return exc

    def then(names) -> None:
        if isinstance(names, Exception):
            store_error(conn, cmd, names)
        else:
            _lsub_lines(conn, cmd, reference, pattern, names, delim)

    conn.run_slowly(job, then)


def _lsub_lines(conn, cmd, reference: str, pattern: str, names: set[str], delim: str) -> None:
    full = _canonical(reference + pattern)
    rx = _pattern(full, delim)
    # §6.3.9: LSUB returns the names the user subscribed; only with the "%" wildcard an
    # unsubscribed parent of a subscribed name is returned (flagged \Noselect).
    parents = _parents(names, delim) - names if "%" in full else set()
    for name in sorted(names | parents, key=lambda n: (n != "INBOX", n)):
        if rx.match(name):
            attrs = "\\Noselect" if name in parents else ""
            conn.untagged(f"LSUB ({attrs}) \"{delim}\" ".encode() + conn.mailbox_name(name), "LSUB")
    conn.done(cmd, "OK", "LSUB completed")


def _canonical(full: str) -> str:
    return "INBOX" + full[5:] if full.upper().startswith("INBOX") else full


def _parents(names, delim: str) -> set[str]:
    return {delim.join(n.split(delim)[:i]) for n in names for i in range(1, n.count(delim) + 1)}
