"""QA regression (independent checker): the HTML ladder shows a decoded AUTH user without a fold."""

from __future__ import annotations

from mailtrace.proxy.trace import Tracer
from mailtrace.transcript.event import Side
from mailtrace.transcript.html import render_html
from mailtrace.transcript.recorder import MemorySink, Recorder

AUTH_LOGIN = [("S", b"220 ready\r\n"), ("C", b"EHLO c\r\n"), ("S", b"250 AUTH LOGIN\r\n"), ("C", b"AUTH LOGIN\r\n"),
              ("S", b"334 VXNlcm5hbWU6\r\n"), ("C", b"Y2Fyb2w=\r\n"), ("S", b"334 UGFzc3dvcmQ6\r\n"),
              ("C", b"czNjcmV0\r\n"), ("S", b"235 ok\r\n"), ("C", b"MAIL FROM:<c@lab.test>\r\n"), ("S", b"250 OK\r\n"),
              ("C", b"RCPT TO:<b@lab.test>\r\n"), ("S", b"250 OK\r\n"), ("C", b"DATA\r\n"), ("S", b"354 go\r\n"),
              ("C", b"Subject: s\r\n\r\nbody\r\n.\r\n"), ("S", b"250 queued\r\n")]


def test_auth_login_user_is_visible_and_the_message_still_folds():
    mem = MemorySink()
    tracer = Tracer(Recorder([mem]).session("smtp", mode="proxy"), "smtp")
    for who, data in AUTH_LOGIN:
        tracer.feed(Side.CLIENT if who == "C" else Side.SERVER, data)
    tracer.finish(Side.CLIENT, "closed")
    page = render_html(mem.events)
    assert "&quot;carol&quot;" in page
    folded = [chunk.split("</details>")[0] for chunk in page.split("<details")[1:]]
    assert not any("carol" in chunk for chunk in folded)  # the user is on the arrow, not hidden in a fold
    assert any("Subject: s" in chunk for chunk in folded)  # DATA is still folded
    assert "s3cret" not in page
