"""The SMTP command redaction's quick path (a line with no AUTH word) says what the full
reading says (RFC 4954 §4: AUTH's initial response and the SASL lines after it are secrets)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrace.protocols import credentials
from mailtrace.protocols.smtp.syntax import Redaction


def full_reading(state: dict, raw: bytes, known: bool) -> bytes | None:
    """``Redaction.command`` without its quick path."""
    redacted = credentials.smtp(raw)
    if redacted is None and state["maybe"] and not known:
        redacted = credentials.masked_line(raw)
    state["maybe"] = credentials.starts_sasl(raw) or (state["maybe"] and not known)
    return redacted


words = st.sampled_from([b"AUTH", b"auth", b"AuTh", b"PLAIN", b"LOGIN", b"dGVzdA==", b"MAIL", b"FROM:<a@b>",
                         b"AUTHENTICATE", b"x", b"", b"\t", b" "])
lines = st.lists(words, max_size=5).map(b" ".join).flatmap(
    lambda line: st.sampled_from([line + b"\r\n", line + b"\n", line]))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(lines, st.booleans()), max_size=8))
def test_quick_path_agrees_with_the_full_reading(sequence):
    redaction, state = Redaction(), {"maybe": False}
    for raw, known in sequence:
        assert redaction.command(raw, known) == full_reading(state, raw, known), (raw, known)
