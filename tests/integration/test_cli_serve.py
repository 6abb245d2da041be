"""`mailtrace serve` and `mailtrace lab` run for real: banner, live transcript, logs, Ctrl-C, errors."""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mailtrace.cli import main
from mailtrace.cli.serve import parse_users
from waiting import wait_until

MAILTRACE = [sys.executable, "-m", "mailtrace"]
PORT = re.compile(rb"(SMTP|POP3|IMAP) (?:on|en) 127\.0\.0\.1:(\d+)")  # --lang en / es


def start(args: list[str], cwd: Path) -> tuple[subprocess.Popen, dict[str, int], bytes]:
    """Start mailtrace, read its banner up to 'Ctrl-C', return (process, {proto: port}, banner)."""
    env = dict(os.environ, COLUMNS="200", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(MAILTRACE + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    banner = b""
    deadline = time.monotonic() + 30
    while b"Ctrl-C" not in banner:
        line = proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"no banner: {banner + out!r} {err!r}")
        banner += line
    first = banner.split(b"\n")[0]
    ports = {m.group(1).decode().lower(): int(m.group(2)) for m in PORT.finditer(first) if b"implicit" not in
             first[max(0, m.start() - 13):m.start()]}
    return proc, ports, banner


def stop(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    return out, err


def closed_in(log: Path) -> bool:
    """The session's close is in the live JSONL log: the server has recorded the whole session."""
    lines = log.read_text().splitlines() if log.exists() else []
    return any(json.loads(x).get("kind") == "close" for x in lines if x.endswith("}"))


def test_serve_smtp_port_0_live_transcript_logs_and_ctrl_c(tmp_path):
    log, text = tmp_path / "s.jsonl", tmp_path / "s.txt"
    proc, ports, banner = start(["serve", "smtp", "--port", "0", "--dir", "lab", "--log", str(log), "--text",
                                 str(text), "--no-tls"], tmp_path)
    try:
        port = ports["smtp"]
        assert port != 0 and f"nc -C 127.0.0.1 {port}".encode() in banner
        assert b"alice / alice" in banner and b"bob / bob" in banner and b"mail" in banner
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@example.org", ["bob@lab.test"], b"Subject: cli\r\n\r\nvia the CLI\r\n")
        wait_until(lambda: closed_in(log), what="the session's close in the log")
    finally:
        out, err = stop(proc)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"Traceback" not in out
    assert b"\x1b[" not in out  # not a terminal: no colour codes
    assert b"C \xe2\x86\x92 mail FROM:<a@example.org>" in out and b"RFC 5321 \xc2\xa74.1.1.2" in out
    assert b"stopped" in out
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert records[0]["format"] == "mailtrace-transcript"
    assert any(r.get("verb") == "DATA" and r["kind"] == "data" for r in records)
    assert "C: rcpt TO:<bob@lab.test>" in text.read_text()
    delivered = list((tmp_path / "lab" / "mail" / "bob" / "new").iterdir())
    assert len(delivered) == 1


def test_serve_spanish_annotations(tmp_path):
    log = tmp_path / "s.jsonl"
    proc, ports, _ = start(["serve", "smtp", "--port", "0", "--dir", "lab", "--lang", "es", "--no-tls", "--log", str(log)],
                           tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", ports["smtp"]), timeout=10) as sock:
            f = sock.makefile("rb")
            f.readline()
            sock.sendall(b"HELO crepes.fr\r\n")
            f.readline()
            sock.sendall(b"QUIT\r\n")
            f.readline()
            f.close()
        wait_until(lambda: closed_in(log), what="the session's close in the log")
    finally:
        out, err = stop(proc)
    assert "El cliente saluda".encode() in out, out


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(MAILTRACE + ["serve", "smtp", "--port", str(port), "--dir", "lab", "--no-tls"],
                                cwd=tmp_path, capture_output=True, timeout=30)
    assert result.returncode == 1
    assert b"in use" in result.stderr and b"Traceback" not in result.stderr


def test_non_loopback_host_warns(tmp_path):
    # 192.0.2.1 (TEST-NET-1) is not on this machine: the warning, then a clear error, no traffic
    result = subprocess.run(MAILTRACE + ["serve", "smtp", "--port", "0", "--host", "192.0.2.1", "--dir", "lab",
                                         "--no-tls"], cwd=tmp_path, capture_output=True, timeout=30)
    assert b"WARNING" in result.stderr and b"not loopback" in result.stderr
    assert result.returncode == 1 and b"Traceback" not in result.stderr


def test_lab_starts_every_available_server_with_tls(tmp_path):
    from mailtrace.cli.serve import available_protocols

    args = ["lab", "--dir", "lab", "--user", "carol:se:cret"]
    for proto in ("smtp", "pop3", "imap"):
        args += [f"--{proto}-port", "0", f"--{proto}s-port", "0"]
    proc, ports, banner = start(args, tmp_path)
    try:
        assert set(ports) == set(available_protocols())
        assert b"carol / se:cret" in banner and b"ca.pem" in banner
        ctx = __import__("mailtrace.tls", fromlist=["client_context"]).client_context(tmp_path / "lab")
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as client:
            client.starttls(context=ctx)
            client.login("carol", "se:cret")
            client.sendmail("carol@lab.test", ["carol@lab.test"], b"Subject: self\r\n\r\nhi\r\n")
    finally:
        out, err = stop(proc)
    assert proc.returncode == 0 and b"Traceback" not in err, err
    assert len(list((tmp_path / "lab" / "mail" / "carol" / "new").iterdir())) == 1


def test_parse_users():
    assert parse_users(()) == {"alice": "alice", "bob": "bob"}
    assert parse_users(("Dave:pa:ss word",)) == {"dave": "pa:ss word"}
    for bad in ("nopassword", "x:", "../etc:pw", ":pw"):
        with pytest.raises(click.BadParameter):
            parse_users((bad,))


def test_bad_user_option_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["serve", "smtp", "--user", "../x:pw", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "--user" in result.output


def test_explain_uses_the_smtp_knowledge():
    runner = CliRunner()
    result = runner.invoke(main, ["explain", "354"])
    assert result.exit_code == 0 and "<CRLF>.<CRLF>" in result.output
    result = runner.invoke(main, ["explain", "smtp", "RCPT", "--lang", "es"])
    assert result.exit_code == 0 and "destinatario" in result.output and "RFC 5321 §4.1.1.3" in result.output
    result = runner.invoke(main, ["explain", "smtp", "missing-brackets"])
    assert result.exit_code == 0 and "<user@domain>" in result.output


def test_fresh_empties_the_mail_store_and_keeps_the_lab_ca(tmp_path):
    """Labs are followed in order in one folder: `--fresh` starts each from no mail (issue 9)."""
    def deliver_and_stop(extra: list[str]) -> None:
        proc, ports, _ = start(["serve", "smtp", "--port", "0", "--dir", "lab", *extra], tmp_path)
        try:
            with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as client:
                client.sendmail("a@example.org", ["bob@lab.test"], b"Subject: x\r\n\r\nbody\r\n")
        finally:
            stop(proc)

    def delivered() -> list[Path]:
        return sorted((tmp_path / "lab" / "mail" / "bob" / "new").iterdir())

    deliver_and_stop([])
    deliver_and_stop([])
    assert len(delivered()) == 2  # without --fresh the store persists
    ca = (tmp_path / "lab" / "tls" / "ca.pem").read_bytes()
    deliver_and_stop(["--fresh"])
    assert len(delivered()) == 1  # only the message of this run
    assert (tmp_path / "lab" / "tls" / "ca.pem").read_bytes() == ca  # clients that trust the CA still do


def test_max_message_size_raises_the_smtp_limit_and_its_size_advertisement(tmp_path):
    """--max-message-size: the SIZE keyword advertises it (RFC 1870 §4) and a message over the
    default 10 MiB but under the new limit is accepted; over the new limit, 552 (RFC 1870 §6.3)."""
    proc, ports, _ = start(["serve", "smtp", "--port", "0", "--dir", "lab", "--no-tls", "--quiet",
                            "--max-message-size", "12M"], tmp_path)
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (11 * 1024 * 1024 // 1000)
    assert 10 * 1024 * 1024 < len(big) < 12 * 1024 * 1024
    try:
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as client:
            client.ehlo()
            assert client.esmtp_features["size"] == str(12 * 1024 * 1024)
            client.sendmail("a@example.org", ["bob@lab.test"], big)  # raises unless 250
            client.ehlo()
            refused = client.sendmail("a@example.org", ["bob@lab.test"], big + big[16:])  # ~22 MB
    except smtplib.SMTPException as exc:
        refused = exc
    finally:
        stop(proc)
    assert isinstance(refused, smtplib.SMTPSenderRefused) and refused.smtp_code == 552, refused
    delivered = list((tmp_path / "lab" / "mail" / "bob" / "new").iterdir())
    assert len(delivered) == 1  # spooled to tmp/ by the shell's store jobs, then published whole:
    assert delivered[0].read_bytes().endswith(big.replace(b"\r\n", b"\n"))  # LF on disk (Maildir)


@pytest.mark.parametrize("value", ["1000", "ten", "99999999999999999999G"])
def test_max_message_size_bad_values_are_usage_errors(value, tmp_path):
    result = CliRunner().invoke(main, ["lab", "--dir", str(tmp_path / "lab"), "--max-message-size", value])
    assert result.exit_code == 2 and "--max-message-size" in result.output and result.exception is not None
    assert not (tmp_path / "lab").exists()


@pytest.mark.parametrize("show_secrets", [False, True])
def test_the_banner_shows_passwords_from_a_users_file_only_with_show_secrets(tmp_path, show_secrets):
    """The lab's terminal is what a class sees on the projector: passwords read from a --users
    FILE are not shown (unless --show-secrets); those typed with --user are on the command line
    already, and the demo users' are in every handout (found by an independent tester)."""
    accounts = tmp_path / "class.csv"
    accounts.write_text("name,password\ncarol,Cr0w-Pass-91\ndave,Dv!x secret\n")
    args = ["lab", "--smtp-port", "0", "--pop3-port", "0", "--imap-port", "0", "--dir", "lab", "--no-tls",
            "--users", str(accounts), "--user", "erin:typed-pw"] + (["--show-secrets"] if show_secrets else [])
    proc, _, banner = start(args, tmp_path)
    stop(proc)
    assert (b"Cr0w-Pass-91" in banner) is show_secrets and (b"Dv!x secret" in banner) is show_secrets
    assert b"erin / typed-pw" in banner  # typed on the command line in this terminal
    assert b"carol@lab.test" in banner and b"dave@lab.test" in banner
    assert b"mutt -f" in banner and b"/mail/erin" in banner  # an account that exists
    demo, _, demo_banner = start(["serve", "smtp", "--port", "0", "--dir", "demo", "--no-tls"], tmp_path)
    stop(demo)
    assert b"alice / alice" in demo_banner
