"""Benchmark (run by hand, not a test): the packet view against the dialogue view.

    .venv/bin/python tests/bench/bench_packets.py [SESSIONS]

Writes a capture of SESSIONS SMTP sessions (default 200) with the exporter, then times on the
same file ``mailtrace show`` (mailtrace's own reader), ``mailtrace show --packets`` (scapy
dissects every packet, plus the transcript for the lines) and ``tcpdump -r`` when installed, and
prints the ratios.  It also prints what ``mailtrace --help`` costs and whether it loads scapy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench_pcap import make_capture  # noqa: E402

MAILTRACE = [sys.executable, "-m", "mailtrace"]


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "c.pcap")
        make_capture(path, sessions)
        show = timed([*MAILTRACE, "show", path])
        packets = timed([*MAILTRACE, "show", path, "--packets"])
        print(f"{sessions} sessions: show {show:.2f} s, show --packets {packets:.2f} s "
              f"(packets / show = {packets / show:.1f}x)")
        if shutil.which("tcpdump"):
            dump = timed(["tcpdump", "-r", path, "-nn"])
            print(f"tcpdump -r {dump:.2f} s (show --packets / tcpdump = {packets / dump:.1f}x)")
    helps = [timed([*MAILTRACE, "--help"]) for _ in range(5)]
    report = subprocess.run([sys.executable, "-X", "importtime", "-m", "mailtrace", "--help"],
                            capture_output=True, text=True).stderr
    print(f"mailtrace --help: best of 5 {min(helps) * 1000:.0f} ms; scapy loaded: {'scapy' in report}")


if __name__ == "__main__":
    main()
