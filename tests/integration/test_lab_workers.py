"""``mailtrace lab --workers 2``: the real command, its servers in two worker processes.

Started as a user starts it (``sys.executable -m mailtrace lab``, every port 0) and driven by
smtplib, poplib and imaplib.  Where a test needs two sessions in *different* workers it asks the
kernel which process holds the server side of each connection (/proc/net/tcp and
/proc/PID/fd), rather than trusting the parent's choice.
"""

from __future__ import annotations

import imaplib
import json
import os
import poplib
import re
import signal
import smtplib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mailtrace_cli import MAILTRACE
from waiting import read_line, wait_until

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")

BANNER = re.compile(r"(implicit-TLS )?(SMTP|POP3|IMAP) on (\S+):(\d+)")


class RealLab:
    """``mailtrace lab --workers N --quiet --log t.jsonl`` on ephemeral ports."""

    def __init__(self, tmp: Path, *extra: str, workers: int = 2, host: str = "127.0.0.1", quiet: bool = True) -> None:
        self.log = tmp / "t.jsonl"
        args = [*MAILTRACE, "lab", "--dir", str(tmp / "lab"), "--workers", str(workers), *(["--quiet"] if quiet else []),
                "--log", str(self.log), "--host", host, *extra]
        for opt in ("--smtp-port", "--pop3-port", "--imap-port", "--smtps-port", "--pop3s-port", "--imaps-port"):
            args += [opt, "0"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.banner = ""
        while "Ctrl-C" not in self.banner:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"the lab did not start: {self.banner}{self.proc.stderr.read()}")
            self.banner += line
        self.ports = {p.lower(): int(n) for tls, p, _, n in BANNER.findall(self.banner) if not tls}
        self.tls_ports = {p.lower(): int(n) for tls, p, _, n in BANNER.findall(self.banner) if tls}
        self.directory = tmp / "lab"
        self.workers = wait_until(lambda: children(self.proc.pid) if len(children(self.proc.pid)) == workers else None,
                                  what="the worker processes")

    def stop(self, sig: int = signal.SIGINT) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=30)
        return out + err

    def sessions(self) -> dict[str, list[dict]]:
        """The JSONL log's events by session, in file order."""
        by_session: dict[str, list[dict]] = {}
        for line in self.log.read_text().splitlines()[1:]:  # (the first line is the file's header)
            event = json.loads(line)
            by_session.setdefault(event["session"], []).append(event)
        return by_session


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def serving_pid(client: socket.socket, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the server side of ``client``'s TCP connection."""
    client_port = client.getsockname()[1]
    server_port = client.getpeername()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            inode = fields[9]
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
        except OSError:
            continue
    return None


@pytest.fixture
def real_lab(tmp_path):
    labs: list[RealLab] = []

    def start(*extra: str, **kw) -> RealLab:
        labs.append(RealLab(tmp_path, *extra, **kw))
        return labs[-1]

    yield start
    for lab in labs:
        if lab.proc.poll() is None:
            lab.proc.kill()
            lab.proc.wait()


def test_imap_idle_in_one_worker_sees_mail_delivered_by_smtp_in_the_other(real_lab):
    lab = real_lab()
    imap = imaplib.IMAP4("127.0.0.1", lab.ports["imap"], timeout=20)
    imap.login("alice", "alice")
    imap.select("INBOX")
    tag = imap._new_tag().decode()
    imap.send(f"{tag} IDLE\r\n".encode())
    assert imap.readline().startswith(b"+ ")
    smtp = smtplib.SMTP("127.0.0.1", lab.ports["smtp"], timeout=20)
    assert serving_pid(smtp.sock, lab.workers) != serving_pid(imap.sock, lab.workers)
    smtp.sendmail("bob@lab.test", ["alice@lab.test"], b"Subject: across workers\r\n\r\nhello\r\n")
    smtp.quit()
    assert imap.readline() == b"* 1 EXISTS\r\n"  # RFC 2177 §3: the server tells the idling client
    imap.send(b"DONE\r\n")
    while not (line := imap.readline()).startswith(tag.encode()):
        assert line.startswith(b"* ")
    assert line.startswith(f"{tag} OK".encode())
    imap.logout()
    lab.stop()


def test_pop3_maildrop_lock_holds_across_workers(real_lab):
    lab = real_lab("--no-tls")
    first = poplib.POP3("127.0.0.1", lab.ports["pop3"], timeout=20)
    first.user("alice")
    first.pass_("alice")
    second = poplib.POP3("127.0.0.1", lab.ports["pop3"], timeout=20)
    assert serving_pid(first.sock, lab.workers) != serving_pid(second.sock, lab.workers)
    second.user("alice")
    with pytest.raises(poplib.error_proto, match=r"IN-USE"):  # RFC 1939 §8, RFC 3206 [IN-USE]
        second.pass_("alice")
    first.quit()
    third = poplib.POP3("127.0.0.1", lab.ports["pop3"], timeout=20)
    third.user("alice")
    assert third.pass_("alice").startswith(b"+OK")  # the lock went with the first session
    third.quit()
    second.close()
    lab.stop()


def test_connection_limit_is_counted_across_workers(real_lab):
    lab = real_lab("--no-tls", "--max-connections", "2")
    a = socket.create_connection(("127.0.0.1", lab.ports["pop3"]), timeout=20)
    b = socket.create_connection(("127.0.0.1", lab.ports["smtp"]), timeout=20)
    assert read_line(a).startswith(b"+OK") and read_line(b).startswith(b"220 ")
    assert serving_pid(a, lab.workers) != serving_pid(b, lab.workers)
    c = socket.create_connection(("127.0.0.1", lab.ports["imap"]), timeout=20)
    assert read_line(c).startswith(b"* BYE [UNAVAILABLE]")  # the third of two: busy, in any worker
    a.sendall(b"QUIT\r\n")
    assert read_line(a).startswith(b"+OK")
    a.close()
    # once the first one has gone, a new connection gets in (the parent counts the worker's release)
    def admitted() -> bool:
        d = socket.create_connection(("127.0.0.1", lab.ports["imap"]), timeout=20)
        ok = read_line(d).startswith(b"* OK")
        d.close()
        return ok

    wait_until(admitted, what="a connection admitted again")
    b.close()
    c.close()
    lab.stop()


def outward_address() -> str | None:
    """An address of this machine that is not loopback (where the per-address limits apply)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # (TEST-NET-1: nothing is sent, only a route is chosen)
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_per_address_limit_is_counted_across_workers(real_lab):
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no address but loopback (loopback is exempt from per-address limits)")
    lab = real_lab("--no-tls", "--max-per-address", "2", host=address)
    a = socket.create_connection((address, lab.ports["pop3"]), timeout=20)
    b = socket.create_connection((address, lab.ports["pop3"]), timeout=20)
    assert read_line(a).startswith(b"+OK") and read_line(b).startswith(b"+OK")
    assert serving_pid(a, lab.workers) != serving_pid(b, lab.workers)
    c = socket.create_connection((address, lab.ports["smtp"]), timeout=20)
    assert read_line(c).startswith(b"421 ")
    for s in (a, b, c):
        s.close()
    lab.stop()


def per_user_sessions(folder: Path) -> dict[str, list[int]]:
    """--log-dir's JSONL of one user (written by the parent from the workers' events): seqs by session."""
    (log,) = folder.glob("*.jsonl")
    seqs: dict[str, list[int]] = {}
    for line in log.read_text().splitlines()[1:]:
        event = json.loads(line)
        seqs.setdefault(event["session"], []).append(event["seq"])
    return seqs


def test_jsonl_log_has_every_event_in_session_order_and_ctrl_c_leaves_no_process(real_lab, tmp_path):
    lab = real_lab("--log-dir", str(tmp_path / "per-user"))
    for n in range(6):
        with smtplib.SMTP("127.0.0.1", lab.ports["smtp"], timeout=20) as smtp:
            smtp.sendmail("bob@lab.test", ["alice@lab.test"], f"Subject: {n}\r\n\r\nbody {n}\r\n".encode())
    pop = poplib.POP3("127.0.0.1", lab.ports["pop3"], timeout=20)
    pop.user("alice")
    pop.pass_("alice")
    assert len(pop.list()[1]) == 6
    for n in range(1, 7):
        pop.retr(n)
    pop.quit()
    idle = imaplib.IMAP4("127.0.0.1", lab.ports["imap"], timeout=20)
    idle.login("bob", "bob")
    idle.select("INBOX")
    idle.send(b"i1 IDLE\r\n")
    assert idle.readline().startswith(b"+ ")
    workers = lab.workers
    output = lab.stop(signal.SIGINT)  # Ctrl-C
    assert lab.proc.returncode == 0, output
    assert idle.readline() == b"* BYE server shutting down\r\n"  # said by its worker, as in one process
    assert [pid for pid in workers if not ended(pid)] == []
    sessions = lab.sessions()
    assert sorted(sid.split("-")[0] for sid in sessions) == ["imap"] + ["pop3"] + ["smtp"] * 6
    for sid, events in sessions.items():
        assert [e["seq"] for e in events] == list(range(len(events))), sid
        assert events[0]["kind"] == "open" and events[-1]["kind"] == "close", sid
    for sid, events in sessions.items():
        if sid.startswith("smtp"):
            assert [e["code"] for e in events if e["kind"] == "reply" and e.get("verb") == "DATA"][-1] == "250"
    retrs = [e for e in next(v for k, v in sessions.items() if k.startswith("pop3")) if e.get("verb") == "RETR"]
    assert len([e for e in retrs if e["kind"] == "command"]) == 6
    # the per-user transcripts (the parent's sinks, fed with the workers' events) are as complete
    filed = {folder.name: per_user_sessions(folder) for folder in (tmp_path / "per-user").iterdir()}
    assert [sid.split("-")[0] for sid in filed["alice"]] == ["pop3"]  # (the users who logged in)
    assert [sid.split("-")[0] for sid in filed["bob"]] == ["imap"]
    every = [(sid, seqs) for by_session in filed.values() for sid, seqs in by_session.items()]
    assert sorted(sid for sid, _ in every) == sorted(sessions)  # each session filed once
    for sid, seqs in every:
        assert seqs == [e["seq"] for e in sessions[sid]], sid


def test_killed_parent_leaves_no_worker(real_lab):
    lab = real_lab("--no-tls")
    workers = lab.workers
    lab.proc.kill()  # SIGKILL: no chance to stop them itself
    lab.proc.wait()

    wait_until(lambda: all(ended(pid) for pid in workers), what="the workers to end with their parent")


def ended(pid: int) -> bool:
    """The process is gone, or a zombie (its exit status not yet collected)."""
    try:
        return b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return True


def test_implicit_tls_is_handshaken_by_the_worker(real_lab):
    from mailtrace.tls import client_context

    lab = real_lab()
    context = client_context(lab.directory)
    with smtplib.SMTP_SSL("127.0.0.1", lab.tls_ports["smtp"], context=context, timeout=20) as smtp:
        smtp.sendmail("bob@lab.test", ["alice@lab.test"], b"Subject: tls\r\n\r\nover TLS\r\n")
    pop = poplib.POP3_SSL("127.0.0.1", lab.tls_ports["pop3"], context=context, timeout=20)
    pop.user("alice")
    pop.pass_("alice")
    assert pop.stat()[0] == 1
    pop.quit()
    imap = imaplib.IMAP4_SSL("127.0.0.1", lab.tls_ports["imap"], ssl_context=context, timeout=20)
    imap.login("alice", "alice")
    assert imap.select("INBOX") == ("OK", [b"1"])
    imap.logout()
    lab.stop()
    kinds = [[e["kind"] for e in events][:2] for events in lab.sessions().values()]
    assert kinds == [["open", "tls"]] * 3  # recorded as implicit TLS, as in one process


def test_workers_option_takes_a_count_or_auto():
    result = subprocess.run([*MAILTRACE, "lab", "--workers", "many"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "give a number of worker processes (0 to 64) or auto" in result.stderr


def test_a_worker_that_dies_costs_only_its_own_connections(real_lab):
    lab = real_lab("--no-tls")
    imap = imaplib.IMAP4("127.0.0.1", lab.ports["imap"], timeout=20)
    imap.login("alice", "alice")
    victim = serving_pid(imap.sock, lab.workers)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: ended(victim), what="the killed worker to end")
    # the parent closes the lost session in its transcript and keeps serving with the other worker
    with smtplib.SMTP("127.0.0.1", lab.ports["smtp"], timeout=20) as smtp:
        smtp.sendmail("bob@lab.test", ["alice@lab.test"], b"Subject: after\r\n\r\nstill here\r\n")
    output = lab.stop()
    assert "lab worker" in output and "ended unexpectedly" in output
    sessions = lab.sessions()
    (lost,) = [sid for sid in sessions if sid.startswith("imap")]
    assert sessions[lost][-1]["kind"] == "close"
    assert sessions[lost][-1]["reason"]["text"] == "the lab worker serving it ended"
    seqs = [e["seq"] for e in sessions[lost]]
    assert seqs == sorted(set(seqs))  # the close comes after the last line its worker logged
    (sent,) = [events for sid, events in sessions.items() if sid.startswith("smtp")]
    assert [e["code"] for e in sent if e.get("verb") == "DATA" and e["kind"] == "reply"][-1] == "250"


SUMMARY = re.compile(r"… ([\d,]+) events in the last .* not shown: ([\d,]+) sessions opened")
DRAWN = re.compile(r"^\s*\S+\s+\d+\.\d{3} ")  # the one line each drawn event has


def test_live_view_accounts_for_every_event_the_workers_recorded(real_lab):
    # With the live view alone, workers send it only what it would draw and count the rest:
    # every event of the JSONL log is drawn or summed up on the terminal, exactly once.
    import threading

    lab = real_lab("--no-tls", quiet=False)
    seen: list[str] = []

    def read_view() -> None:
        for line in lab.proc.stdout:
            seen.append(line)

    reader = threading.Thread(target=read_view, daemon=True)
    reader.start()
    for n in range(3):
        with smtplib.SMTP("127.0.0.1", lab.ports["smtp"], timeout=20) as smtp:
            smtp.sendmail("bob@lab.test", ["alice@lab.test"], f"Subject: {n}\r\n\r\nbody {n}\r\n".encode())
    sessions = 3
    for _ in range(40):  # a flood: far more events a second than the view draws
        pop = poplib.POP3("127.0.0.1", lab.ports["pop3"], timeout=20)
        pop.user("alice")
        pop.pass_("alice")
        for n in range(1, 4):
            pop.retr(n)
        pop.quit()
        sessions += 1

    def logged() -> int | None:
        by_session = lab.sessions() if lab.log.exists() else {}
        closed = [sid for sid, events in by_session.items() if events[-1]["kind"] == "close"]
        return sum(len(events) for events in by_session.values()) if len(closed) == sessions else None

    total = wait_until(logged, timeout=30, what="every session closed in the JSONL log")

    def accounted() -> tuple[int, int] | None:
        lines = list(seen)
        summaries = [SUMMARY.search(line) for line in lines if "not shown" in line]
        events = sum(1 for line in lines if DRAWN.search(line)) + sum(int(m[1].replace(",", "")) for m in summaries)
        opened = sum(line.count("● SMTP") + line.count("● POP3") for line in lines) + sum(int(m[2]) for m in summaries)
        return (events, opened) if events >= total else None

    assert wait_until(accounted, timeout=30, what="the view to show or sum up every event") == (total, sessions)
    lab.stop()


def test_pop3_retr_of_a_message_imap_expunged_in_the_other_worker_is_refused(real_lab):
    """A message one worker holds in memory (store/cache.py) and the other worker's IMAP session
    expunged: POP3 RETR answers -ERR [SYS/TEMP] in the POP3 worker, as the single-process lab
    does (the message is gone from the maildrop; RFC 3206 §4: a temporary failure)."""
    lab = real_lab("--no-tls")
    smtp = smtplib.SMTP("127.0.0.1", lab.ports["smtp"], timeout=20)
    for n in range(1, 4):
        smtp.sendmail("alice@lab.test", ["bob@lab.test"], f"Subject: message {n}\r\n\r\nbody {n}\r\n".encode())
    smtp.quit()
    pop = poplib.POP3("127.0.0.1", lab.ports["pop3"], timeout=20)
    pop.user("bob")
    pop.pass_("bob")
    assert b"body 2" in b"\r\n".join(pop.retr(2)[1])  # now in the POP3 worker's memory
    imap = imaplib.IMAP4("127.0.0.1", lab.ports["imap"], timeout=20)
    assert serving_pid(imap.sock, lab.workers) != serving_pid(pop.sock, lab.workers)
    imap.login("bob", "bob")
    imap.select("INBOX")
    assert imap.store("2", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert imap.expunge()[1] == [b"2"]
    with pytest.raises(poplib.error_proto, match=r"^b'-ERR \[SYS/TEMP\]"):
        pop.retr(2)
    assert b"body 3" in b"\r\n".join(pop.retr(3)[1])  # the others are still served
    imap.logout()
    pop.quit()
    lab.stop()
