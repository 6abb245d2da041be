"""The HTML ladder: self-contained, one arrow per line, annotations, folding, violations, and
it renders in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from mailtrace.transcript.event import Event, Kind, Note, Side, command, reply
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
    s.record(Event(side=Side.NONE, kind=Kind.TLS, info={"how": "starttls", "intercepted": "no"}), t=1.9)
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
