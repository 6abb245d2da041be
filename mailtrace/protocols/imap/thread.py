"""THREAD (RFC 5256 §3 BASE.6.4.THREAD): ORDEREDSUBJECT and REFERENCES.

Theory of operation.  THREAD searches like SEARCH, then groups the matching messages into
conversations.  ORDEREDSUBJECT ("poor man's threading") groups by base subject; REFERENCES
follows the Message-ID / References / In-Reply-To chain in six steps, quoted below where they
are done.  Messages are ordered by sent date, the sequence number breaking ties (§2.2).
The response nests threads as in §4 BASE.7.2.THREAD: "(2)(3 6 (4 23)(44 7 96))".
"""

from __future__ import annotations

import re

from mailtrace.protocols.imap.sort import base_subject, casemap, decoded_header, sent_date

ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")
_MSG_ID = re.compile(r"<([^<>]*)>")


class Node:
    """A message of the thread tree, or a dummy (``number`` None) standing for a message that
    is referred to but not among those threaded."""

    __slots__ = ("number", "date", "subject", "refwd", "parent", "children")

    def __init__(self, number: int | None = None, date: tuple = (), subject: bytes = b"",
                 refwd: bool = False) -> None:
        self.number = number
        self.date = date  # (sent date, sequence number): the order of §2.2
        self.subject = subject
        self.refwd = refwd
        self.parent: Node | None = None
        self.children: list[Node] = []

    def sort_key(self) -> tuple:
        if self.number is None:  # "In the case of a dummy message ... use its first child"
            return self.children[0].sort_key() if self.children else ()
        return self.date

    def is_below(self, other: "Node") -> bool:
        """``self`` is ``other`` or one of its descendants (a link would make a loop)."""
        node: Node | None = self
        while node is not None:
            if node is other:
                return True
            node = node.parent
        return False


def _link(parent: Node, child: Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    parent.children.append(child)


def _unlink(child: Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
        child.parent = None


def normalize_id(text: str) -> str:
    """RFC 5256 §3: "<"01KF8JCEOCBS0045PS"@xxx.yyy.com>" and <01KF8JCEOCBS0045PS@xxx.yyy.com>
    "MUST be interpreted as being the same Message ID": quotes and quoting dropped."""
    return re.sub(r'\\(.)', r"\1", text.replace('"', "")).strip()


def message_ids(value: bytes | None) -> list[str]:
    if value is None:
        return []
    return [normalize_id(m) for m in _MSG_ID.findall(value.decode("utf-8", "surrogateescape")) if "@" in m]


def _node(seq: int, msg) -> Node:
    subject, refwd = base_subject(decoded_header(_first(msg, "subject")))
    return Node(seq, (sent_date(msg), seq), casemap(subject), refwd)


def _first(msg, name: str) -> bytes | None:
    values = msg.tree.raw_values(name)
    return values[0] if values else None


def ordered_subject(hits: list) -> list[Node]:
    """§3 ORDEREDSUBJECT: sorted by base subject then sent date, split by base subject, threads
    sorted by the sent date of their first message; the first message is the parent of all the
    others ("there are no grandchildren")."""
    nodes = sorted((_node(seq, msg) for seq, msg in hits), key=lambda n: (n.subject, n.date))
    threads: list[Node] = []
    for node in nodes:
        if threads and threads[-1].subject == node.subject:
            _link(threads[-1], node)
        else:
            threads.append(node)
    return sorted(threads, key=Node.sort_key)


def references(hits: list) -> list[Node]:
    """§3 REFERENCES, steps (1) to (6)."""
    table: dict[str, Node] = {}

    def container(message_id: str) -> Node:
        node = table.get(message_id)
        if node is None:  # "create a dummy message with this ID"
            node = table[message_id] = Node()
        return node

    for seq, msg in hits:  # (1) for each searched message
        node = _node(seq, msg)
        ids = message_ids(_first(msg, "message-id"))
        own = ids[0] if ids else None
        if own is not None and own in table and table[own].number is None:
            dummy = table[own]  # it was referred to before: it takes the dummy's place
            node.children, node.parent = dummy.children, dummy.parent
            for child in node.children:
                child.parent = node
            if dummy.parent is not None:
                siblings = dummy.parent.children
                siblings[siblings.index(dummy)] = node
            table[own] = node
        else:
            # "If a message does not contain a Message-ID ... or two or more messages have the
            # same Message ID ... assign a unique Message ID"
            own = own if own is not None and own not in table else f"\0{seq}"
            table[own] = node
        refs = message_ids(_first(msg, "references")) or message_ids(_first(msg, "in-reply-to"))[:1]
        for a, b in zip(refs, refs[1:]):  # (1)(A) link the references as parent/child
            pa, pb = container(a), container(b)
            # "If a message already has a parent, don't change the existing link" and "Do not
            # create a parent/child link if creating that link would introduce a loop"
            if pb.parent is None and not pa.is_below(pb):
                _link(pa, pb)
        # (1)(B) the last reference is the parent of this message (none: no parent)
        _unlink(node)
        if refs:
            parent = container(refs[-1])
            if not parent.is_below(node):
                _link(parent, node)

    # (2) the messages without parents are the children of the root
    root = [node for node in table.values() if node.parent is None]
    root = _prune(root, top=True)  # (3)
    for node in root:  # (4) sort the top level by sent date (a dummy: its children first)
        if node.number is None:
            node.children.sort(key=Node.sort_key)
    root.sort(key=Node.sort_key)
    root = _merge_subjects(root)  # (5)
    _sort_all(root)  # (6)
    root.sort(key=Node.sort_key)
    return root


def _prune(nodes: list[Node], top: bool) -> list[Node]:
    """(3) "If it is a dummy message with NO children, delete it.  If it is a dummy message with
    children, delete it, but promote its children to the current level ... Do not promote the
    children if doing so would make them children of the root, unless there is only one child.\""""
    out: list[Node] = []
    for node in nodes:
        node.children = _prune(node.children, top=False)
        for child in node.children:
            child.parent = node
        if node.number is not None:
            out.append(node)
        elif not node.children:
            continue
        elif not top or len(node.children) == 1:
            for child in node.children:
                child.parent = node.parent
            out.extend(node.children)
        else:
            out.append(node)
    return out


def _thread_subject(node: Node) -> bytes:
    """(5)(B)(i) the base subject of the message, or of its first child if it is a dummy."""
    if node.number is None:
        return node.children[0].subject if node.children else b""
    return node.subject


def _merge_subjects(root: list[Node]) -> list[Node]:
    """(5) gather the top-level messages that have the same base subject."""
    table: dict[bytes, Node] = {}
    for node in root:  # (B) one message per base subject
        subject = _thread_subject(node)
        if not subject:
            continue
        held = table.get(subject)
        if held is None:
            table[subject] = node
        elif held.number is not None and (node.number is None or (held.refwd and not node.refwd)):
            table[subject] = node
    out = list(root)
    for node in root:  # (C) merge threads with the same thread subject
        subject = _thread_subject(node)
        held = table.get(subject) if subject else None
        if held is None or held is node:
            continue
        out.remove(node)
        if held.number is None and node.number is None:  # both dummies: children become siblings
            for child in list(node.children):
                _link(held, child)
        elif held.number is None:  # the table's is a dummy: the message joins its children
            _link(held, node)
        elif node.refwd and not held.refwd:  # a reply joins the original's children
            _link(held, node)
        else:  # a new dummy holds both, in the table message's place
            dummy = Node()
            out[out.index(held)] = dummy
            _link(dummy, held)
            _link(dummy, node)
            table[subject] = dummy
    return out


def _sort_all(nodes: list[Node]) -> None:
    """(6) sort every set of siblings by sent date, the youngest generation first."""
    for node in nodes:
        _sort_all(node.children)
        node.children.sort(key=Node.sort_key)


def render(threads: list[Node], number_of) -> bytes:
    """The THREAD response's data (§5 thread-list), e.g. b"(2)(3 6 (4 23)(44 7 96))"."""
    def members(node: Node) -> str:
        parts = []
        while True:
            if node.number is not None:
                parts.append(str(number_of(node.number)))
            if len(node.children) == 1:
                node = node.children[0]
                continue
            if node.children:
                parts.append("".join(f"({members(child)})" for child in node.children))
            return " ".join(parts)

    return "".join(f"({members(node)})" for node in threads).encode()
