"""QA regression (independent checker): traced bytes cannot drive the terminal of the person
watching (`mailtrace show`, proxy and sniff live views and --text files)."""

from __future__ import annotations

import subprocess
import sys

from mailtrace.proxy.safe import escape_controls
from mailtrace.transcript.event import Note, Side, command, reply
from mailtrace.transcript.jsonl import JsonlSink
from mailtrace.transcript.recorder import Recorder

HOSTILE = b"NOOP \x1b]0;PWNED\x07\x1b[2J\x1b[31mRED\rFAKE\x08\x08 \xc2\x9b31m\r\n"


def test_escape_controls_keeps_line_ends_and_tabs():
    event = escape_controls(command(HOSTILE, "NOOP", notes=(Note("bad", "x\x1b[1Ay"),)))
    assert b"\x1b" not in event.raw and b"\x07" not in event.raw and b"\x08" not in event.raw
    assert b"\\x1b[2J" in event.raw and b"RED\\x0dFAKE" in event.raw and b"\\xc2\\x9b" in event.raw
    assert event.raw.endswith(b"\r\n")
    assert event.notes[0].detail == "x\\x1b[1Ay"
    assert event.octets == len(HOSTILE)  # the size shown is still the wire size
    body = escape_controls(reply(b"a\tb\r\nline two\r\n", "250"))
    assert body.raw == b"a\tb\r\nline two\r\n"


def test_show_prints_no_escape_sequences(tmp_path):
    path = tmp_path / "hostile.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        session = Recorder([JsonlSink(f)]).session("smtp", client="127.0.0.1:40000", server="127.0.0.1:25")
        session.record(reply(b"220 ready\r\n", "220"))
        session.record(command(HOSTILE, "NOOP"))
        session.close(Side.CLIENT, "bye\x1b[2J")
    for extra in ([], ["-o", str(tmp_path / "out.txt")]):
        proc = subprocess.run([sys.executable, "-m", "mailtrace", "show", str(path), *extra],
                              capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        shown = proc.stdout + (b"" if not extra else (tmp_path / "out.txt").read_bytes())
        assert b"PWNED" in shown and b"\x1b]0" not in shown and b"\x1b[2J" not in shown
        assert b"\x07" not in shown and b"\rFAKE" not in shown
    assert b"\\u001b]0;PWNED" in path.read_bytes()
