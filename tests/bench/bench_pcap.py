"""Benchmark (run by hand, not a test): pcap import speed.

    .venv/bin/python tests/bench/bench_pcap.py [SESSIONS]

Writes a capture of SESSIONS SMTP sessions (default 2000; ~25 packets each) with the exporter,
then times on the same file:
  * mailtrace: stream + reassemble only, and the full import (observers, annotations' recorder);
  * scapy: rdpcap(file).sessions() (the whole file in memory, packets as objects);
  * tshark: -q -z follow,tcp,raw,N for every stream (Wireshark's own reassembly, in C).
Targets (issue 4): mailtrace >= 10x scapy, and within 3x of tshark.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

_TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(_TESTS, ".."))
# pytest's pythonpath (pyproject.toml): test_pcap (tests/integration) and its helpers import each other
for _sub in ("golden", "integration", "unit", ""):
    sys.path.insert(1, os.path.join(_TESTS, _sub))

from mailtrace.capture.export import PcapSink  # noqa: E402
from mailtrace.capture.importer import import_capture  # noqa: E402
from mailtrace.capture.packets import tcp_segment  # noqa: E402
from mailtrace.capture.pcapfile import read_packets  # noqa: E402
from mailtrace.capture.reassembly import Reassembler  # noqa: E402
from mailtrace.proxy.trace import Tracer  # noqa: E402
from mailtrace.transcript.event import Side  # noqa: E402
from mailtrace.transcript.recorder import Recorder  # noqa: E402
from test_pcap import SMTP_DIALOGUE  # noqa: E402


def make_capture(path: str, sessions: int) -> None:
    sink = PcapSink(path, pcapng=False)
    rec = Recorder([sink])
    for i in range(sessions):
        s = rec.session("smtp", client=f"10.0.{i // 250}.{i % 250 + 1}:{30000 + i % 30000}", server="10.9.9.9:25",
                        started=1_700_000_000.0 + i)
        tracer = Tracer(s, "smtp")
        for j, (who, data) in enumerate(SMTP_DIALOGUE):
            tracer.feed(Side.CLIENT if who == "C" else Side.SERVER, data, t=j * 0.01)
        tracer.finish(Side.CLIENT, "bye", t=0.2)
    rec.close()


class _Null:
    def open(self, flow, ts): pass
    def data(self, flow, side, data, ts): pass
    def gap(self, flow, side, n, ts): pass
    def close(self, flow, side, reason, ts): pass


def reassemble_only(path: str) -> int:
    r = Reassembler(_Null())
    n = 0
    with open(path, "rb") as f:
        for ts, lt, frame in read_packets(f):
            seg = tcp_segment(lt, frame)
            if seg is not None:
                r.segment(seg, ts)
                n += 1
    r.finish(0)
    return n


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def main() -> None:
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    d = tempfile.mkdtemp()
    path = os.path.join(d, "big.pcap")
    t, _ = timed(lambda: make_capture(path, sessions))
    size = os.path.getsize(path)
    print(f"capture: {sessions} sessions, {size / 1e6:.1f} MB, written in {t:.2f} s")

    t_re, n = timed(lambda: reassemble_only(path))
    print(f"mailtrace reassembly only:   {t_re:7.2f} s  ({n / t_re:,.0f} packets/s)")
    t_full, stats = timed(lambda: import_capture(path, Recorder([])))
    print(f"mailtrace full import:       {t_full:7.2f} s  ({stats.packets / t_full:,.0f} packets/s, {stats.sessions} sessions)")

    try:
        from scapy.all import rdpcap  # noqa: F401

        t_scapy, sess = timed(lambda: rdpcap(path).sessions())
        print(f"scapy rdpcap + sessions():   {t_scapy:7.2f} s  ({len(sess)} one-way sessions)")
        print(f"  -> mailtrace full import is {t_scapy / t_full:.1f}x faster than scapy (target >= 10x)")
    except ImportError:
        print("scapy not installed")

    if shutil.which("tshark"):
        args = ["tshark", "-r", path, "-q"]
        for i in range(sessions):
            args += ["-z", f"follow,tcp,raw,{i}"]
        t_tshark, res = timed(lambda: subprocess.run(args, capture_output=True, timeout=3600))
        print(f"tshark -z follow,tcp,raw x{sessions}: {t_tshark:7.2f} s  (exit {res.returncode})")
        t_one, _ = timed(lambda: subprocess.run(["tshark", "-r", path, "-q", "-z", "follow,tcp,raw,0"],
                                                capture_output=True, timeout=600))
        print(f"tshark one follow (startup + one pass): {t_one:.2f} s")
        print(f"  -> mailtrace full import / tshark = {t_full / t_tshark:.2f} (target <= 3)")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
