"""Dovecot's IMAP compliance tester, imaptest, against our IMAP server (issue 16).

``../shared/tools/imaptest/run.sh`` (beside the repository; ``IMAPTEST_TOOLS`` overrides) starts
``mailtrace serve imap`` and a standalone Dovecot as the baseline, runs each of imaptest's
scripted tests against both and writes ``results.tsv``.  This test fails on any imaptest test
that fails on mailtrace, and when fewer tests run than the server's extensions allow (a test is
skipped when the server does not advertise what it needs).  ``.ci/run`` builds imaptest
(``build.sh``) into ``IMAPTEST_DIR``; without it, or without Dovecot or root, this test skips.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("IMAPTEST_TOOLS", ROOT.parent / "shared" / "tools" / "imaptest"))
IMAPTEST_DIR = Path(os.environ.get("IMAPTEST_DIR", Path(tempfile.gettempdir()) / "imaptest-build"))
# Issue 16, "Done when": "at least 55 of the 71 tests run".
MIN_RUN = 55

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (TOOLS / "run.sh").exists(), reason=f"no imaptest tools at {TOOLS}"),
    pytest.mark.skipif(not (IMAPTEST_DIR / "src" / "imaptest").exists(),
                       reason="imaptest is not built (../shared/tools/imaptest/build.sh; .ci/run does it)"),
    pytest.mark.skipif(shutil.which("dovecot") is None or os.geteuid() != 0,
                       reason="needs Dovecot (Debian: dovecot-imapd) and root to start it as the baseline"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(600)
def test_every_imaptest_test_that_runs_passes_on_mailtrace():
    scratch = Path(tempfile.mkdtemp(prefix="imaptest-"))
    try:
        env = dict(os.environ, IMAPTEST_DIR=str(IMAPTEST_DIR), WORK=str(scratch / "work"),
                   MAILTRACE=f"{sys.executable} -m mailtrace", MT_PORT=str(_free_port()), DC_PORT=str(_free_port()))
        proc = subprocess.run(["bash", str(TOOLS / "run.sh")], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=580)
        print(proc.stdout, proc.stderr)
        results = scratch / "work" / "out" / "results.tsv"
        assert results.exists(), proc.stdout + proc.stderr
        rows = list(csv.DictReader(results.open(), delimiter="\t"))
        failures = (scratch / "work" / "out" / "failures.md").read_text()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ours = {row["test"]: row["mailtrace"] for row in rows}
    theirs = {row["test"]: row["dovecot"] for row in rows}
    assert sum(v == "PASS" for v in theirs.values()) > MIN_RUN, "the Dovecot baseline did not run"
    failed = sorted(t for t, v in ours.items() if v not in ("PASS", "SKIP"))
    assert not failed, f"imaptest tests failing on mailtrace: {failed}\n{failures}"
    ran = sum(v == "PASS" for v in ours.values())
    assert ran >= MIN_RUN, f"only {ran} imaptest tests ran (skipped: {sorted(t for t, v in ours.items() if v == 'SKIP')})"
