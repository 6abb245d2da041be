"""Live capture: tcpdump writes pcap to a pipe, the same streaming reader and reassembler as
``mailtrace show capture.pcap`` read it.  tcpdump does the privileged part (opening the
interface), so mailtrace itself never needs root; ``--immediate-mode`` makes every packet
arrive at once instead of in kernel-buffered blocks."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass

from mailtrace.proxy.registry import PORT_PROTOCOL

PERMISSION_HINT = (
    "capturing packets needs privileges. Either run it as root (sudo mailtrace sniff ...), or let "
    "tcpdump capture for your user once: sudo setcap cap_net_raw,cap_net_admin=eip {tcpdump}"
)


class SniffError(RuntimeError):
    pass


@dataclass
class SniffConfig:
    iface: str = "lo"
    port: int | None = None
    duration: float | None = None  # stop after this many seconds (None: until Ctrl+C)


def kernel_drops(proc: subprocess.Popen) -> int:
    """How many packets the kernel dropped, from tcpdump's closing statistics (0 if unknown)."""
    for line in getattr(proc, "final_stats", ()):
        if "dropped by kernel" in line:
            try:
                return int(line.split()[0])
            except ValueError:
                return 0
    return 0


def bpf_filter(port: int | None) -> str:
    ports = [port] if port else sorted(PORT_PROTOCOL)
    return "tcp and (" + " or ".join(f"port {p}" for p in ports) + ")"


def start_tcpdump(cfg: SniffConfig) -> tuple[subprocess.Popen, str]:
    """Start tcpdump writing pcap to its stdout; (process, its 'listening' line) or SniffError."""
    tcpdump = shutil.which("tcpdump") or next((p for p in ("/usr/sbin/tcpdump", "/usr/bin/tcpdump") if os.path.exists(p)), None)
    if tcpdump is None:
        raise SniffError("tcpdump is not installed (Debian/Ubuntu: sudo apt install tcpdump)")
    # In immediate mode libpcap gives every packet a ring slot of snaplen octets: with the default
    # 2 MB buffer and snaplen 262144 that is 8 slots, and a busy moment drops packets.  65535
    # octets hold any loopback segment (MTU 65536) and -B 65536 (KiB) gives about 1000 slots.
    cmd = [tcpdump, "-i", cfg.iface, "--immediate-mode", "-U", "-n", "-s", "65535", "-B", "65536", "-w", "-"]
    if os.geteuid() == 0:
        cmd[1:1] = ["-Z", "root"]  # keep root: dropping to the tcpdump user changes nothing for a pipe
    cmd.append(bpf_filter(cfg.port))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stderr.readline().decode("utf-8", "replace").strip()
    if "listening on" not in first:
        rest = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.wait()
        message = " ".join(x for x in (first, rest) if x)
        lowered = message.lower()
        if "permission" in lowered or "not permitted" in lowered:
            raise SniffError(f"{message}\nhint: " + PERMISSION_HINT.format(tcpdump=tcpdump))
        if "no such device" in lowered or "doesn't exist" in lowered:
            raise SniffError(f"{message}\nhint: list the interfaces with: ip link (the loopback one is usually lo)")
        raise SniffError(message or f"tcpdump exited with status {proc.returncode}")
    proc.final_stats = []  # tcpdump's closing statistics ("N packets dropped by kernel")
    threading.Thread(target=lambda: proc.final_stats.extend(
        line.decode("utf-8", "replace").strip() for line in proc.stderr), daemon=True).start()
    if cfg.duration:
        timer = threading.Timer(cfg.duration, proc.terminate)
        timer.daemon = True
        timer.start()
    return proc, first
