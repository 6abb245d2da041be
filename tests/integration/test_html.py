"""The HTML ladder: self-contained, one arrow per line, annotations, folding, violations, and
it renders in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from mailtrace.transcript.event import Event, Kind, Note, Side, Tls, command, reply
from mailtrace.transcript.html import render_html
from mailtrace.transcript.recorder import MemorySink, Recorder


def _events():
    mem = MemorySink()
    s = Recorder([mem]).session("smtp", client="127.0.0.1:4000", server="127.0.0.1:25")
    s.record(reply(b"220 lab.test ESMTP <ready>\r\n", "220"), t=0.0)
    s.record(command(b"HELO crepes.fr\r\n", "HELO"), t=1.5)
    s.record(reply(b"550 no <such> user\r\n", "550"), t=1.6)
    s.record(command(b"RCPT TO: bob@lab.test\r\n", "RCPT", notes=(Note("rcpt-syntax", "space after colon"),)), t=1.7)
    s.record(Event(side=Side.CLIENT, kind=Kind.DATA, raw=b"Subject: <b>hi</b>\r\n\r\nbody\r\n.\r\n", verb="DATA"), t=1.8)
    s.record(Event(side=Side.NONE, kind=Kind.TLS, tls=Tls(how="starttls", intercepted=False)), t=1.9)
    s.close(Side.CLIENT, "bye", t=2.0)
    return mem.events


def test_html_is_self_contained_ladder():
    page = render_html(_events(), lang="en")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", page)  # nothing loaded from the network
    assert page.count("class='msg c2s") == 3 and page.count("class='msg s2c") == 2
    assert "&lt;b&gt;hi&lt;/b&gt;" in page and "<b>hi</b>" not in page  # escaped
    assert "<details><summary>DATA:" in page
    assert " r5" in page and " r2" in page  # reply classes coloured
    assert "viol-row" in page and "space after colon" in page
    assert "+1.500" in page and "dt slow" in page  # time between turns, long pause highlighted
    assert "note tls" in page


def test_html_in_spanish():
    page = render_html(_events(), lang="es")
    assert "<html lang=es>" in page and "Cliente" in page and "Desplegar todo" in page


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="chromium is not installed")
def test_html_renders_in_headless_chromium(tmp_path):
    page = tmp_path / "t.html"
    page.write_text(render_html(_events()), encoding="utf-8")
    shot = tmp_path / "t.png"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,800",
                          f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=90)
    assert shot.exists(), res.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000  # a real picture, not a blank page


# --------------------------------------------------------------------------- the timeline (issue #9)

def _swaks_session(lab, *extra):
    from conftest import need

    swaks = need("swaks")
    res = subprocess.run([swaks, "--server", f"127.0.0.1:{lab.port()}", "--from", "alice@lab.test",
                          "--to", "bob@lab.test,carol@lab.test", "--body", "timeline", *extra],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def _round_trips(page: str) -> list[int]:
    return [int(n) for n in re.findall(r"<figcaption><b>[^<]+</b> · (\d+) ", page)]


def test_timeline_shows_what_pipelining_saves_in_round_trips(lab):
    """Two real swaks sessions to the lab, one waiting for every reply, one pipelining: the same
    commands, two round trips fewer (MAIL, RCPT, RCPT and DATA go as one group, RFC 2920 §3.1)."""
    from mailtrace.transcript.timeline import round_trips

    _swaks_session(lab)
    _swaks_session(lab, "--pipeline")
    events = lab.wait_closed(2)
    sessions: dict[str, list] = {}
    for e in events:
        sessions.setdefault(e.session, []).append(e)
    plain, piped = sessions.values()
    verbs = lambda evs: [e.verb.upper() for e in evs if e.kind is Kind.COMMAND]  # noqa: E731
    assert verbs(plain) == verbs(piped) == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]
    # EHLO, MAIL, RCPT, RCPT, DATA, the message, QUIT: 7 waits; pipelined: EHLO, group, message, QUIT
    assert max(round_trips(plain)) == 7 and max(round_trips(piped)) == 4
    page = render_html(events, lang="en")
    assert _round_trips(page) == [7, 4]
    assert page.count("<svg") == 2 and page.count("<figure class=timeline>") == 2
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", page)  # still self-contained
    arrows = re.findall(r"<line x1='(\d+)' y1='([\d.]+)' x2='(\d+)' y2='([\d.]+)' stroke='#[0-9a-f]+' stroke-width='1.5'",
                        page)
    payload = [e for e in events if e.kind in (Kind.COMMAND, Kind.REPLY, Kind.DATA)]
    assert len(arrows) == len(payload)  # one arrow per line
    ys = [float(a[1]) for a in arrows]
    assert all(float(a[3]) >= float(a[1]) for a in arrows)  # time runs down: no arrow goes back in time
    assert ys[:len(ys) // 2] == sorted(ys[:len(ys) // 2])
    assert "↻ 4" in page and "↻ 7" in page  # round trips numbered in the ladder too
    es = render_html(events, lang="es")
    assert "Línea de tiempo" in es and "idas y vueltas" in es and _round_trips(es) == [7, 4]


def test_timeline_axis_is_real_time():
    from mailtrace.transcript.timeline import _positions, _ticks, _y_at

    times = [0.0, 0.5, 0.5, 1.0]
    ys = _positions(times)
    assert ys[1] - ys[0] == ys[3] - ys[1]  # equal spans of time, equal lengths
    assert ys[2] > ys[1]  # two lines seen together are still two arrows
    assert _y_at(0.25, times, ys) == (ys[0] + ys[1]) / 2
    assert _ticks(1.0) == (0.2, "ms") and _ticks(30.0) == (5.0, "s")


def test_round_trips_follow_how_the_client_lines_arrived():
    """A line sent without waiting (the SMTP core's ``pipelined``, the grader's ``arrived``) does
    not start a round trip; an observer's transcript lists the group first and needs no mark."""
    from mailtrace.transcript.timeline import round_trips

    def line(side, raw, **facts):
        return Event(side=side, kind=Kind.COMMAND if side is Side.CLIENT else Kind.REPLY, raw=raw, **facts)

    greeting = line(Side.SERVER, b"220 hi\r\n")
    lab = [greeting, line(Side.CLIENT, b"MAIL FROM:<a@b>\r\n"), line(Side.SERVER, b"250 ok\r\n"),
           line(Side.CLIENT, b"RCPT TO:<c@d>\r\n", pipelined=True), line(Side.SERVER, b"250 ok\r\n"),
           line(Side.CLIENT, b"QUIT\r\n"), line(Side.SERVER, b"221 bye\r\n")]
    assert round_trips(lab) == [0, 1, 1, 1, 1, 2, 2]
    graded = [greeting, line(Side.CLIENT, b"MAIL FROM:<a@b>\r\n"), line(Side.SERVER, b"250 ok\r\n"),
              line(Side.CLIENT, b"RCPT TO:<c@d>\r\n", arrived="same-segment"), line(Side.SERVER, b"250 ok\r\n")]
    assert round_trips(graded) == [0, 1, 1, 1, 1]
    observed = [greeting, line(Side.CLIENT, b"MAIL FROM:<a@b>\r\n"), line(Side.CLIENT, b"RCPT TO:<c@d>\r\n"),
                line(Side.SERVER, b"250 ok\r\n"), line(Side.SERVER, b"250 ok\r\n"), line(Side.CLIENT, b"QUIT\r\n")]
    assert round_trips(observed) == [0, 1, 1, 1, 1, 2]
    assert round_trips([line(Side.CLIENT, b"EHLO x\r\n", pipelined=True)]) == [1]  # before the greeting: still one
