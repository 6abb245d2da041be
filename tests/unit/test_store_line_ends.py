"""The store's line-end conversions (store/files.py) on any octets: a message is kept with LF
line ends (``to_disk``) and served with CRLF (``to_wire``, RFC 5322 §2.3); ``wire_size`` is the
size it has on the wire, which the file name carries (",W=")."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrace.store.files import to_disk, to_wire, wire_size

octets = st.lists(st.sampled_from([b"\r\n", b"\n", b"\r", b"a", b"text ", b"\x00", b"\xc3\xa9"]), max_size=60).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(data=octets | st.binary(max_size=200))
def test_line_end_conversions(data):
    assert to_disk(data) == data.replace(b"\r\n", b"\n")  # every CRLF as LF, nothing else changed
    assert wire_size(data) == len(to_wire(data))
    assert wire_size(to_disk(data)) == len(to_wire(to_disk(data)))
