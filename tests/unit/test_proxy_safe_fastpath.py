"""The live view's escaping of traced bytes: its bulk check for "nothing to escape" never lets
through what the regular expression would have escaped (mailtrace/proxy/safe.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrace.proxy.safe import _CONTROL_BYTES, _bytes


def reference(data: bytes) -> bytes:
    """The escaping with no shortcut: every match written out as \\xNN."""
    return _CONTROL_BYTES.sub(lambda m: b"".join(b"\\x%02x" % c for c in m.group()), data)


PIECES = st.one_of(st.sampled_from([b"\r\n", b"\r", b"\n", b"\t", b"\x00", b"\x1b[2J", b"\x7f", b"\xc2\x85",
                                    b"\xc2", b"\xc3\xa9", b"text ", b"."]), st.binary(max_size=8))


@settings(max_examples=500, deadline=None)
@given(st.lists(PIECES, max_size=30).map(b"".join))
def test_escaping_equals_the_regular_expression_alone(data):
    assert _bytes(data) == reference(data)


def test_clean_text_is_returned_as_is_and_controls_are_written_out():
    text = b"Subject: hi\r\n\r\nbody\twith a tab\r\n" * 100
    assert _bytes(text) is text
    assert _bytes(b"a\rb\r\n") == b"a\\x0db\r\n"
    assert _bytes(b"x\x1b[2J\r\n") == b"x\\x1b[2J\r\n"
