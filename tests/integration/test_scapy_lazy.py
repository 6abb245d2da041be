"""scapy is loaded only by the packet view and live capture (issue #18): ``mailtrace --help``, the
lab servers and the ordinary ``show`` never pay for it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from test_pcap import SMTP_DIALOGUE
from test_pcap_scapy_support import TcpScript

ROOT = Path(__file__).resolve().parents[2]
MAILTRACE = [sys.executable, "-m", "mailtrace"]
SCAPY_USERS = {"mailtrace/capture/segments.py", "mailtrace/capture/sniff.py"}


def imported_modules(*args: str) -> set[str]:
    """The modules Python imported running ``args``, from ``-X importtime``'s report."""
    res = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", res.stderr, re.MULTILINE)
    assert "mailtrace" in names  # the report was read
    return {n.split(".")[0] for n in names}


def test_mailtrace_help_imports_no_scapy():
    assert "scapy" not in imported_modules("-m", "mailtrace", "--help")


def test_the_servers_never_import_scapy():
    assert "scapy" not in imported_modules("-c", "import mailtrace.cli.lab, mailtrace.cli.serve, mailtrace.servers.lab, "
                                                 "mailtrace.servers.smtp, mailtrace.servers.pop3, mailtrace.servers.imap")
    assert "scapy" not in imported_modules("-m", "mailtrace", "lab", "--help")


def test_show_loads_scapy_only_for_packets(tmp_path):
    pcap = tmp_path / "c.pcap"
    TcpScript().handshake().dialogue(SMTP_DIALOGUE).close().write(pcap)
    assert "scapy" not in imported_modules("-m", "mailtrace", "show", str(pcap))
    assert "scapy" in imported_modules("-m", "mailtrace", "show", str(pcap), "--packets")


def test_only_the_packet_view_and_live_capture_import_scapy():
    users = {str(p.relative_to(ROOT)) for p in (ROOT / "mailtrace").rglob("*.py")
             if re.search(r"^\s*(from|import) scapy", p.read_text("utf-8"), re.MULTILINE)}
    assert users == SCAPY_USERS
    for path in SCAPY_USERS:  # and lazily: inside functions, never at module level
        assert not re.search(r"^(from|import) scapy", (ROOT / path).read_text("utf-8"), re.MULTILINE), path

