"""CRLF line framing: limits, bare LF / bare CR, too-long lines, any chunking."""

import pytest
from hypothesis import given, strategies as st

from mailtrace.protocols.lines import LineReader


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


def test_take_and_clear():
    reader = LineReader(64)
    reader.feed(b"{5}\r\nabcdeX\r\n")
    assert reader.next_line().raw == b"{5}\r\n"
    assert reader.take(5) == b"abcde"
    assert reader.clear() == b"X\r\n" and reader.buffered == 0


@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=300))
def test_random_bytes_never_raise_and_lose_nothing_short(data, chunk):
    reader, lines = read_all(data, limit=4096, chunk=chunk)
    assert b"".join(line.raw for line in lines) + reader.peek() == data
