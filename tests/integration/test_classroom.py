"""One lab server for a classroom (issue #11): ``mailtrace lab --host ADDRESS --users FILE``.

Off loopback, plaintext passwords are refused before TLS (IMAP LOGINDISABLED and no AUTH=,
POP3 -ERR to USER/PASS before STLS, SMTP AUTH offered only after STARTTLS) and accepted
after it; the lab certificate names the address; each user's sessions land in
``--log-dir``/<user>/.  The server runs as ``python -m mailtrace lab`` bound to a real
non-loopback address of this machine (another 127.x address would still be loopback); when
the machine has none, a dummy interface with a private address is made (root only) or the
test is skipped with the reason.
"""

from __future__ import annotations

import imaplib
import json
import os
import poplib
import re
import smtplib
import ssl
import subprocess
import sys
import threading
import time

import pytest

from mailtrace.cli.serve import read_users_file
from mailtrace.netaddr import is_loopback

DUMMY = ("mtdummy0", "10.99.0.1")


def _own_addresses() -> list[str]:
    try:
        out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, timeout=60).stdout
        return [a["local"] for i in json.loads(out or "[]") for a in i.get("addr_info", [])
                if not is_loopback(a["local"])]
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []


@pytest.fixture(scope="module")
def address():
    own = _own_addresses()
    if own:
        yield own[0]
        return
    if os.geteuid() != 0:
        pytest.skip("no non-loopback address on this machine, and making a dummy interface needs root")
    name, addr = DUMMY
    made = subprocess.run(["ip", "link", "add", name, "type", "dummy"], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a dummy interface: {made.stderr.decode().strip()}")
    try:
        subprocess.run(["ip", "addr", "add", f"{addr}/24", "dev", name], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield addr
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


@pytest.fixture
def classroom(tmp_path, address):
    users = tmp_path / "class.csv"
    users.write_text("name,password\nana,Secreta-1\nbeto,Secreta-2\n")
    log_dir = tmp_path / "logs"
    proc = subprocess.Popen([sys.executable, "-m", "mailtrace", "lab", "--host", address, "--users", str(users),
                             "--log-dir", str(log_dir), "--dir", str(tmp_path / "lab"),
                             "--smtp-port", "0", "--pop3-port", "0", "--imap-port", "0",
                             "--smtps-port", "0", "--pop3s-port", "0", "--imaps-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    if not first.startswith("mailtrace lab:"):
        proc.kill()
        pytest.fail(f"the lab did not start: {first}{proc.stderr.read()}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    ports = {(bool(m.group(1)), m.group(2).lower()): int(m.group(3))
             for m in re.finditer(r"(implicit-TLS )?(SMTP|POP3|IMAP) on [^,]*:(\d+)", first)}
    ctx = ssl.create_default_context(cafile=str(tmp_path / "lab" / "tls" / "ca.pem"))
    yield address, {p: ports[(False, p)] for p in ("smtp", "pop3", "imap")}, \
        {p: ports[(True, p)] for p in ("smtp", "pop3", "imap")}, ctx, log_dir
    proc.terminate()
    assert proc.wait(timeout=20) == 0


def test_imap_loginDISABLED_before_tls_and_login_after(classroom):
    address, plain, _, ctx, log_dir = classroom
    imap = imaplib.IMAP4(address, plain["imap"], timeout=60)
    assert "LOGINDISABLED" in imap.capabilities and not any(c.startswith("AUTH=") for c in imap.capabilities)
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        imap.login("ana", "Secreta-1")  # a tagged NO [PRIVACYREQUIRED] (RFC 5530 §3)
    imap.starttls(ssl_context=ctx)  # the certificate names the address: hostname check passes
    assert "LOGINDISABLED" not in imap.capabilities and "AUTH=PLAIN" in imap.capabilities
    assert imap.login("ana", "Secreta-1")[0] == "OK"
    imap.logout()


def test_pop3_refuses_user_pass_before_stls(classroom):
    address, plain, _, ctx, _ = classroom
    pop = poplib.POP3(address, plain["pop3"], timeout=60)
    assert "USER" not in pop.capa()
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\] plaintext authentication disallowed"):
        pop.user("ana")
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
        pop.pass_("Secreta-1")
    pop.stls(context=ctx)
    assert "USER" in pop.capa()
    pop.user("ana")
    assert pop.pass_("Secreta-1").startswith(b"+OK")
    pop.quit()


def test_smtp_offers_auth_only_after_starttls(classroom):
    address, plain, _, ctx, _ = classroom
    smtp = smtplib.SMTP(address, plain["smtp"], timeout=60)
    smtp.ehlo("student.test")
    assert not smtp.has_extn("auth") and smtp.has_extn("starttls")
    code, text = smtp.docmd("AUTH", "PLAIN AGFuYQBTZWNyZXRhLTE=")
    assert code == 538 and b"5.7.11" in text
    smtp.starttls(context=ctx)
    smtp.ehlo("student.test")
    assert smtp.has_extn("auth")
    smtp.login("ana", "Secreta-1")
    smtp.sendmail("ana@lab.test", ["beto@lab.test"], b"Subject: hi\r\n\r\nhola\r\n")
    smtp.quit()


def test_implicit_tls_accepts_at_once_and_transcripts_per_user(classroom):
    address, _, tls, ctx, log_dir = classroom
    with imaplib.IMAP4_SSL(address, tls["imap"], ssl_context=ctx, timeout=60) as imap:
        assert "LOGINDISABLED" not in imap.capabilities
        imap.login("beto", "Secreta-2")
        imap.logout()
    pop = poplib.POP3_SSL(address, tls["pop3"], context=ctx, timeout=60)
    pop.user("ana")
    pop.pass_("Secreta-1")
    pop.quit()
    # each user's sessions in their own folder; the password never in them
    for user, password, line in (("beto", "Secreta-2", "LOGIN beto ***"), ("ana", "Secreta-1", "USER ana")):
        text = ""
        for _ in range(100):  # bounded: the server writes the session once it has seen the close
            files = list((log_dir / user).glob("*.txt")) if (log_dir / user).is_dir() else []
            text = files[0].read_text() if files else ""
            if "closed" in text:
                break
            time.sleep(0.1)
        assert line in text and password not in text
    assert {p.name for p in log_dir.iterdir()} <= {"ana", "beto", "_anonymous"}


def test_users_file_csv_and_toml(tmp_path):
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("Ana,pw one\n# a comment\nbeto,pw,with,commas\n")
    assert read_users_file(csv_file) == {"ana": "pw one", "beto": "pw"}
    toml_file = tmp_path / "c.toml"
    toml_file.write_text('[users]\nana = "x1"\n[[user]]\nname = "Beto"\npassword = "x2"\n')
    assert read_users_file(toml_file) == {"ana": "x1", "beto": "x2"}
    dup = tmp_path / "d.csv"
    dup.write_text("ana,1\nANA,2\n")
    import click

    with pytest.raises(click.BadParameter, match="given twice") as raised:
        read_users_file(dup)
    assert f"{dup}:2" in raised.value.format_message() and raised.value.param_hint == "--users"
    no_password = tmp_path / "n.csv"
    no_password.write_text("name,password\nana,x1\ncarol,\n")
    with pytest.raises(click.BadParameter, match="password is missing") as raised:
        read_users_file(no_password)
    assert f"{no_password}:3" in raised.value.format_message()  # the file and line to mend


def test_users_file_errors_are_cli_messages(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[users\n")
    res = subprocess.run([sys.executable, "-m", "mailtrace", "lab", "--users", str(bad), "--dir", str(tmp_path / "l")],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "--users" in res.stderr and "Traceback" not in res.stderr
