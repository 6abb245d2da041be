"""The SMTP DATA reader's bulk scan against a line-by-line reference (RFC 5321 §4.5.2).

``DataReader`` finds the end of the data, the rule violations and the dot-stuffing with a few
whole-chunk passes (see mailtrace/protocols/smtp/data.py).  ``reference`` below reads the same
stream the way the RFC describes it, one line at a time; on random streams, fed in random
chunks as a socket would deliver them, both must agree on everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrace.protocols.smtp.data import DataReader, unstuff
from mailtrace.protocols.smtp.spec import (
    BARE_CR, BARE_LF, CONTROL_IN_DATA, LINE_TOO_LONG, MAX_TEXT_LINE, NUL_IN_DATA,
)

CONTROLS = set(range(0x01, 0x09)) | {0x0B, 0x0C} | set(range(0x0E, 0x20)) | {0x7F}  # RFC 5322 §3.5


@dataclass
class Result:
    consumed: int = 0  # octets of the stream up to and including the final "." line
    body: bytes = b""  # as sent, without the final "." line
    message: bytes = b""  # dot-stuffing removed
    rules: set[str] = field(default_factory=set)
    eight_bit: bool = False


def reference(stream: bytes) -> Result | None:
    """One line at a time (a line ends after its LF): the first line that is "." alone ends the
    data; a line that starts with "." loses that dot (§4.5.2).  None when the end never comes."""
    out = Result()
    message = []
    pos = 0
    while pos < len(stream):
        lf = stream.find(b"\n", pos)
        if lf < 0:
            return None
        line = stream[pos:lf + 1]
        pos = lf + 1
        if line in (b".\r\n", b".\n"):
            out.consumed = pos
            if line == b".\n":
                out.rules.add(BARE_LF)
            out.body = stream[:pos - len(line)]
            out.message = b"".join(message)
            out.eight_bit = any(octet >= 0x80 for octet in out.body)
            return out
        message.append(line[1:] if line.startswith(b".") else line)
        if not line.endswith(b"\r\n"):
            out.rules.add(BARE_LF)
        if line.count(b"\r") > line.endswith(b"\r\n"):
            out.rules.add(BARE_CR)
        # §4.5.3.1.6: 1000 octets with the CRLF, "not counting the leading dot duplicated for transparency"
        if len(line) - line.startswith(b".") - 1 >= MAX_TEXT_LINE:
            out.rules.add(LINE_TOO_LONG)
        if 0 in line:
            out.rules.add(NUL_IN_DATA)
        if any(octet in CONTROLS for octet in line):
            out.rules.add(CONTROL_IN_DATA)
    return None


def read(stream: bytes, cuts: list[int]) -> Result | None:
    """``DataReader`` fed ``stream`` in pieces ending at ``cuts``, as the server core feeds it."""
    reader = DataReader(max_size=1 << 30, keep=1 << 30)
    buf = bytearray()
    consumed = 0
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        buf += stream[start:end]
        used, finished = reader.consume(buf)
        del buf[:used]
        consumed += used
        if finished:
            return Result(consumed, bytes(reader.body), reader.message(), reader.rules, reader.eight_bit)
    return None


def same(stream: bytes, cuts: list[int]) -> None:
    want = reference(stream)
    got = read(stream, cuts)
    assert got == want, (stream, cuts)


# pieces that matter to the scan: line ends (whole, split, bare), dots at line starts, the
# final "." line, NUL and other controls, 8-bit octets, and lines around 1000 octets
PIECES = st.one_of(
    st.sampled_from([b"\r\n", b"\n", b"\r", b".", b"..", b"\r\n.", b"\r\n.\r\n", b"\n.\n", b"\r\n.\r",
                     b"\x00", b"\x01", b"\x7f", b"\t", b"\xc3\xa9", b"a", b"text "]),
    st.binary(max_size=20),
    st.integers(MAX_TEXT_LINE - 3, MAX_TEXT_LINE + 2).map(lambda n: b"x" * n),
    st.integers(MAX_TEXT_LINE - 3, MAX_TEXT_LINE + 2).map(lambda n: b"\r\n." + b"x" * n),
)


@st.composite
def streams(draw) -> tuple[bytes, list[int]]:
    stream = b"".join(draw(st.lists(PIECES, max_size=40)))
    if draw(st.booleans()):
        stream += b"\r\n.\r\n" + draw(st.binary(max_size=10))  # an end, then the next command
    cuts = sorted(set(draw(st.lists(st.integers(0, len(stream)), max_size=8))))
    return stream, cuts


@settings(max_examples=600, deadline=None)
@given(streams())
def test_bulk_scan_agrees_with_a_line_by_line_reader(case):
    same(*case)


@pytest.mark.parametrize("body", [b"", b"a\r\n", b".\r\n".join([b"x", b".y", b""]), b"x" * 999 + b"\r\n"])
def test_end_of_data_split_at_every_position(body):
    stream = body + b".\r\nQUIT\r\n"
    for cut in range(len(stream) + 1):
        same(stream, [cut])
    for first in range(len(stream)):  # and in three pieces
        for second in range(first, min(first + 6, len(stream)) + 1):
            same(stream, [first, second])


@pytest.mark.parametrize("length", [MAX_TEXT_LINE - 2, MAX_TEXT_LINE - 1, MAX_TEXT_LINE, MAX_TEXT_LINE + 1])
def test_line_length_limit_across_chunks(length):
    line = b"y" * (length - 2) + b"\r\n"  # ``length`` octets with the CRLF
    stream = b"a\r\n" + line + b"b\r\n.\r\n"
    assert (LINE_TOO_LONG in reference(stream).rules) == (length > MAX_TEXT_LINE)
    for cut in range(0, len(stream) + 1, 7):
        same(stream, [cut, min(cut + 500, len(stream))])


def test_unstuff_removes_one_dot_at_each_line_start():
    assert unstuff(b".a\r\n..\r\nb.c\r\n.\r\n") == b"a\r\n.\r\nb.c\r\n\r\n"
    assert unstuff(bytearray(b".x\n.y")) == b"x\ny"


@pytest.mark.parametrize("length", [MAX_TEXT_LINE - 1, MAX_TEXT_LINE, MAX_TEXT_LINE + 1, MAX_TEXT_LINE + 2])
def test_line_length_limit_does_not_count_the_stuffed_dot(length):
    """§4.5.3.1.6: "The maximum total length of a text line including the <CRLF> is 1000 octets
    (not counting the leading dot duplicated for transparency)": a line of 1000 octets whose
    first character is a period is sent as 1001 octets, and is not too long."""
    line = b"." + b"z" * (length - 3) + b"\r\n"  # ``length`` octets on the wire, stuffed dot included
    for stream in (b"a\r\n" + line + b"b\r\n.\r\n", line + b".\r\n"):
        for cut in [None, *range(0, len(stream) + 1, 97), stream.index(b".") + 1]:
            reader = DataReader(max_size=1 << 20, keep=1 << 20)
            buf = bytearray()
            for piece in ([stream] if cut is None else [stream[:cut], stream[cut:]]):
                buf += piece
                used, finished = reader.consume(buf)
                del buf[:used]
            assert finished
            assert (LINE_TOO_LONG in reader.rules) == (length > MAX_TEXT_LINE + 1), (length, cut)
    same(b"a\r\n" + line + b"b\r\n.\r\n", [])
