"""``--web`` on ``mailtrace lab``, ``serve`` and ``proxy``: the banner's URL serves the page; bad
values get a clear message; a lab without --web never loads the web view's HTTP library."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

pytest.importorskip("aiohttp")

from web_support import get  # noqa: E402

MAILTRACE = [sys.executable, "-m", "mailtrace"]


def _until_line(proc, pattern: str, timeout: float = 20) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError(f"no line matching {pattern!r} in {seen}")


@pytest.mark.parametrize("argv", [
    ["lab", "--smtp-port", "0", "--pop3-port", "0", "--imap-port", "0", "--no-tls"],
    ["serve", "smtp", "--port", "0", "--no-tls"],
])
def test_banner_prints_the_web_url_and_it_serves(tmp_path, argv):
    proc = subprocess.Popen(MAILTRACE + argv + ["--dir", str(tmp_path / "lab"), "--web", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = _until_line(proc, r"web view: (http://127\.0\.0\.1:\d+/)").group(1)
        status, headers, body = get(url, raw=True)
        assert status == 200 and b"/static/app.js" in body and "script-src 'self'" in headers["Content-Security-Policy"]
        assert get(url + "api/me")[2]["login"] is False
    finally:
        proc.terminate()
        proc.wait(10)


def test_proxy_web(tmp_path):
    proc = subprocess.Popen(MAILTRACE + ["proxy", "--to", "127.0.0.1:9", "--protocol", "smtp", "--quiet", "--web", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = _until_line(proc, r"web view: (http://127\.0\.0\.1:\d+/)").group(1)
        assert get(url + "api/sessions")[2] == [] and get(url + "api/mailboxes")[2] == []
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("extra, message", [
    (["--admin", "alice"], "--admin names the web view's administrator: give --web too"),
    (["--web", "0", "--admin", "mallory"], "'mallory' is not a lab user"),
    (["--web", "localhost"], "is not HOST:PORT"),
    (["--web", "99999"], "a port is 0 to 65535"),
    (["--web", "0.0.0.0:0", "--admin", "alice"], "would send the lab passwords in clear"),
])
def test_bad_web_options_are_explained(tmp_path, extra, message):
    done = subprocess.run(MAILTRACE + ["serve", "smtp", "--port", "0", "--no-tls", "--dir", str(tmp_path)] + extra,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_a_lab_without_web_does_not_load_aiohttp(tmp_path):
    code = f"""
import asyncio, sys
from pathlib import Path
from mailtrace.cli.serve import Endpoint, build_lab, start_listeners
lab = build_lab(Path({str(tmp_path)!r}), {{"alice": "alice"}}, tls=False, live=False)
async def main():
    for listener in await start_listeners(lab, [Endpoint("smtp", "127.0.0.1", 0)]):
        await listener.stop()
asyncio.run(main())
lab.store.close()
print(sorted(m for m in sys.modules if m.startswith(("aiohttp", "mailtrace.web"))))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_explain_knows_the_header_fields_the_web_view_explains():
    done = subprocess.run(MAILTRACE + ["explain", "Content-Transfer-Encoding", "--lang", "es"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and "RFC 2045 §6" in done.stdout and "quoted-printable" in done.stdout
    done = subprocess.run(MAILTRACE + ["explain", "nothing-here"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "web" not in done.stderr.split("command (")[1]
