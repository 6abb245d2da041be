"""CRLF line framing: limits, bare LF / bare CR, too-long lines, any chunking."""

import pytest
from hypothesis import given, strategies as st

from mailtrace.protocols.lines import LineReader, Literal, literal_announced


def read_all(data: bytes, limit: int = 512, chunk: int = 10_000):
    reader = LineReader(limit)
    lines = []
    for i in range(0, len(data), chunk):
        reader.feed(data[i:i + chunk])
        while (line := reader.next_line()) is not None:
            lines.append(line)
    return reader, lines


@pytest.mark.parametrize("chunk", [1, 2, 7, 10_000])
def test_crlf_lines_and_flags(chunk):
    reader, lines = read_all(b"HELO a\r\nbare\nmid\rcr\r\npartial", chunk=chunk)
    assert [line.raw for line in lines] == [b"HELO a\r\n", b"bare\n", b"mid\rcr\r\n"]
    assert [line.content for line in lines] == [b"HELO a", b"bare", b"mid\rcr"]
    assert [(line.bare_lf, line.bare_cr, line.too_long) for line in lines] == [
        (False, False, False), (True, False, False), (False, True, False)]
    assert reader.peek() == b"partial" and reader.buffered == 7


@pytest.mark.parametrize("chunk", [1, 100, 4096, 1 << 20])
def test_too_long_line_is_cut_and_counted(chunk):
    long = b"X" * 100_000 + b"\r\n"
    reader, lines = read_all(long + b"NOOP\r\n", limit=512, chunk=chunk)
    assert len(lines) == 2
    first = lines[0]
    assert first.too_long and first.size == len(long) and len(first.raw) <= 514
    assert first.raw.endswith(b"\r\n") and not first.bare_lf
    assert lines[1].raw == b"NOOP\r\n" and not lines[1].too_long


def test_line_of_exactly_the_limit_is_fine():
    _, lines = read_all(b"A" * 510 + b"\r\n" + b"B" * 511 + b"\r\n", limit=512)
    assert [line.too_long for line in lines] == [False, True]


def test_memory_stays_bounded_without_line_end():
    reader = LineReader(512)
    for _ in range(100):
        reader.feed(b"Y" * 10_000)
        assert reader.next_line() is None
    assert len(reader.peek()) <= 512
    assert reader.buffered == 1_000_000


def test_literal_and_clear():
    reader = LineReader(64)
    reader.feed(b"{5}\r\nab\ndeX\r\n")
    assert reader.next_piece().raw == b"{5}\r\n"
    reader.expect_literal(5)
    piece = reader.next_piece()
    assert isinstance(piece, Literal) and piece.raw == b"ab\nde" and piece.size == 5
    assert reader.clear() == b"X\r\n" and reader.buffered == 0


def pieces_of(data: bytes, chunk: int, **kw) -> list:
    reader = LineReader(64, auto_literals=True, **kw)
    out = []
    for i in range(0, len(data), chunk):
        reader.feed(data[i:i + chunk])
        while (piece := reader.next_piece()) is not None:
            out.append((type(piece).__name__, piece.raw, piece.size))
    return out


@pytest.mark.parametrize("chunk", [1, 2, 7, 10_000])
def test_imap_literals_are_framed_whatever_the_chunks(chunk):
    # RFC 3501 §4.3: the octets of a literal are not lines (an LF inside, no CRLF after);
    # RFC 7888: {n+} is framed the same way.  A literal longer than the line limit is fine.
    body = b"x\ny" + b"z" * 100
    data = b"a1 APPEND INBOX {%d}\r\n" % len(body) + body + b" {3+}\r\n\r\n\n\r\na2 NOOP\r\n"
    assert pieces_of(data, chunk) == [
        ("Line", b"a1 APPEND INBOX {103}\r\n", 23), ("Literal", body, 103), ("Line", b" {3+}\r\n", 7),
        ("Literal", b"\r\n\n", 3), ("Line", b"\r\n", 2), ("Line", b"a2 NOOP\r\n", 9)]


def test_literal_keep_caps_what_is_kept_not_what_is_counted():
    data = b"* 1 FETCH (BODY[] {1000}\r\n" + b"m" * 1000 + b")\r\n"
    pieces = pieces_of(data, 100, literal_keep=10)
    assert pieces[1] == ("Literal", b"m" * 10, 1000) and pieces[2][1] == b")\r\n"


def test_literal_in_chunks_and_cancelled():
    reader = LineReader(64)
    reader.feed(b"abcdef")
    reader.expect_literal(10, chunks=True)
    first = reader.next_piece()
    assert (first.raw, first.left) == (b"abcdef", 4) and reader.next_piece() is None
    reader.feed(b"ghijkl\r\n")
    last = reader.next_piece()
    assert (last.raw, last.left) == (b"ghij", 0) and not reader.in_literal
    assert reader.next_piece().raw == b"kl\r\n"
    reader.expect_literal(3)
    reader.cancel_literal()  # the server refused it (RFC 3501 §7.5): lines again
    reader.feed(b"a NOOP\r\n")
    assert reader.next_piece().raw == b"a NOOP\r\n"


def test_literal_announcements():
    assert literal_announced(b"a LOGIN {5}\r\n") == (5, False)
    assert literal_announced(b"a LOGIN {5+}\n") == (5, True)
    assert literal_announced(b"a LOGIN {5}x\r\n") is None and literal_announced(b"{-1}\r\n") is None


@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=300))
def test_random_bytes_never_raise_and_lose_nothing_short(data, chunk):
    reader, lines = read_all(data, limit=4096, chunk=chunk)
    assert b"".join(line.raw for line in lines) + reader.peek() == data
