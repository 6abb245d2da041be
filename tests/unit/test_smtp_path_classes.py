"""smtp/syntax.py writes the character classes of RFC 5321 §4.1.2 paths (with RFC 6531 §3.3's
UTF8-non-ascii) as the ASCII they leave out, because the classes spelled with a
``\\u0080-\\U0010ffff`` range take Python's re ~3 ms each to compile.  Both spellings must be the
same set of characters."""

from __future__ import annotations

import re

import pytest

from mailtrace.protocols.smtp import syntax

NON_ASCII = "\u0080-\U0010ffff"
SPELLED_OUT = {  # the grammar's own wording, as the module had it
    "_ATEXT": rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~{NON_ASCII}-]",
    "_LET_DIG": rf"[A-Za-z0-9{NON_ASCII}]",
    "_LDH": rf"[A-Za-z0-9{NON_ASCII}-]",
}
SAMPLES = [chr(c) for c in range(0x800)] + ["\u20ac", "\u4e2d", "\ud7ff", "\ue000", "\uffff", "\U0001f600", "\U0010ffff"]


@pytest.mark.parametrize("name", sorted(SPELLED_OUT))
def test_each_class_is_the_same_set_as_spelled_out(name):
    ours, theirs = re.compile(getattr(syntax, name)), re.compile(SPELLED_OUT[name])
    assert [c for c in SAMPLES if ours.fullmatch(c)] == [c for c in SAMPLES if theirs.fullmatch(c)]


def test_qtext_is_printable_ascii_but_quote_and_backslash_plus_non_ascii():
    quoted = re.compile(syntax._QUOTED)
    inside = [c for c in SAMPLES if quoted.fullmatch(f'"{c}"')]
    expected = [c for c in SAMPLES if 0x20 <= ord(c) <= 0x7E and c not in '"\\' or ord(c) >= 0x80]
    assert inside == expected


@pytest.mark.parametrize("path, ok", [
    ("bob@lab.test", True), ("bob.smith+tag@sub.lab.test", True), ('"bob smith"@lab.test', True),
    ("josé@correo.example", True), ("bob@[192.0.2.1]", True), ("bob@-lab.test", False), ("bob@lab-.test", False),
    ("bob..smith@lab.test", False), ("bob smith@lab.test", False), ("bob@lab..test", False), ("@lab.test", False),
])
def test_mailbox_grammar(path, ok):
    assert bool(syntax._MAILBOX.match(path)) is ok
