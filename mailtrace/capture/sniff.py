"""Live capture, with one of two engines feeding the same reassembler and observers as
``mailtrace show capture.pcap``:

* **tcpdump** writes pcap to a pipe, read by the same streaming reader.  tcpdump does the
  privileged part (opening the interface), so mailtrace itself never needs root;
  ``--immediate-mode`` makes every packet arrive at once instead of in kernel-buffered blocks.
* **scapy**'s asynchronous sniffer (``AsyncSniffer``), for machines with libpcap or Npcap but
  no tcpdump: its thread puts each frame on a queue, the caller reads ``(time, linktype,
  frame)`` tuples from it exactly as from a pcap file.  The kernel filter is the same BPF
  expression when libpcap can compile it; without libpcap the frames are filtered in Python.

``auto`` (the default) takes tcpdump when it is installed, else scapy.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Iterator

from mailtrace.proxy.registry import PORT_PROTOCOL

PERMISSION_HINT = (
    "capturing packets needs privileges. Either run it as root (sudo mailtrace sniff ...), or let "
    "tcpdump capture for your user once: sudo setcap cap_net_raw,cap_net_admin=eip {tcpdump}"
)
SCAPY_PERMISSION_HINT = (
    "capturing packets needs privileges. Either run it as root (sudo mailtrace sniff ...), or let "
    "this Python capture for your user once: sudo setcap cap_net_raw,cap_net_admin=eip {python}"
)
ENGINES = ("auto", "tcpdump", "scapy")


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


def find_tcpdump() -> str | None:
    """tcpdump on PATH, or in the ``sbin`` beside a ``bin`` of PATH (Debian keeps /usr/sbin off a
    user's PATH)."""
    dirs = [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if d]
    dirs += [d[:-3] + "sbin" for d in dirs if d.endswith("/bin")]
    return shutil.which("tcpdump", path=os.pathsep.join(dirs))


def choose_engine(engine: str) -> str:
    """'tcpdump' or 'scapy' for ``--engine`` (auto: tcpdump when installed)."""
    if engine == "auto":
        return "tcpdump" if find_tcpdump() else "scapy"
    return engine


def start_tcpdump(cfg: SniffConfig) -> tuple[subprocess.Popen, str]:
    """Start tcpdump writing pcap to its stdout; (process, its 'listening' line) or SniffError."""
    tcpdump = find_tcpdump()
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


def is_loopback(iface: str) -> bool:
    """Is ``iface`` a loopback interface? (Linux: IFF_LOOPBACK in its flags; elsewhere by name.)"""
    try:
        with open(f"/sys/class/net/{os.path.basename(iface)}/flags") as f:
            return bool(int(f.read().strip(), 16) & 0x8)
    except (OSError, ValueError):
        return iface in ("lo", "lo0")


class ScapyCapture:
    """scapy's ``AsyncSniffer`` on one interface; ``packets()`` yields ``(ts, linktype, frame)``
    until ``stop()`` (or ``cfg.duration``) ends the capture."""

    _END = object()

    def __init__(self, cfg: SniffConfig) -> None:
        from scapy.config import conf
        from scapy.error import Scapy_Exception
        from scapy.layers import inet, inet6, l2  # noqa: F401  (the link and IP layers the sniffer dissects)
        from scapy.sendrecv import AsyncSniffer

        self.cfg = cfg
        self.queue: queue.Queue = queue.Queue()
        self._layer2num = conf.l2types.layer2num
        self.filtered_in_python = False
        # On a loopback interface every packet passes twice (sent, then received): like libpcap,
        # keep only the received copy, which scapy's L2socket does (it drops PACKET_OUTGOING).
        listen = conf.L2socket if is_loopback(cfg.iface) else conf.L2listen
        try:
            try:
                sock = listen(iface=cfg.iface, filter=bpf_filter(cfg.port))
            except (ImportError, Scapy_Exception):  # no libpcap to compile the filter: filter here
                sock = listen(iface=cfg.iface)
                self.filtered_in_python = True
        except PermissionError as exc:
            raise SniffError(f"{exc}\nhint: " + SCAPY_PERMISSION_HINT.format(python=os.path.realpath(sys.executable)))
        except ValueError:  # scapy: "Interface 'x' not found"
            raise SniffError(f"{cfg.iface}: no such interface\nhint: list the interfaces with: ip link "
                             "(the loopback one is usually lo)")
        except OSError as exc:
            if exc.errno == 19:  # ENODEV
                raise SniffError(f"{cfg.iface}: no such interface\nhint: list the interfaces with: ip link "
                                 "(the loopback one is usually lo)")
            raise SniffError(f"cannot capture on {cfg.iface}: {exc}")
        ports = {cfg.port} if cfg.port else set(PORT_PROTOCOL)
        lfilter = None
        if self.filtered_in_python:
            from scapy.layers.inet import TCP

            def lfilter(pkt) -> bool:
                tcp = pkt.getlayer(TCP)
                return tcp is not None and (tcp.sport in ports or tcp.dport in ports)
        self.sniffer = AsyncSniffer(opened_socket=sock, prn=self._put, store=False, lfilter=lfilter)
        self.sniffer.start()
        watcher = threading.Thread(target=self._watch, daemon=True)
        watcher.start()
        if cfg.duration:
            timer = threading.Timer(cfg.duration, self.stop)
            timer.daemon = True
            timer.start()

    def _put(self, pkt) -> None:
        linktype = self._layer2num.get(type(pkt), 1)
        self.queue.put((float(pkt.time), linktype, bytes(pkt)))

    def _watch(self) -> None:
        self.sniffer.join()  # ends with stop()
        self.queue.put(self._END)

    def stop(self) -> None:
        if self.sniffer.running:
            try:
                self.sniffer.stop(join=False)
            except Exception:  # stopped meanwhile (Ctrl+C and --duration at once)
                pass

    def packets(self) -> Iterator[tuple[float, int, bytes]]:
        while True:
            try:
                item = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is self._END:
                return
            yield item
