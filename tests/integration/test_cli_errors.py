"""User mistakes on the lab's command line give a clear error, never a traceback."""

import socket
import subprocess
import sys

PORTS0 = ["--smtp-port", "0", "--pop3-port", "0", "--imap-port", "0",
          "--smtps-port", "0", "--pop3s-port", "0", "--imaps-port", "0"]


def mailtrace(*args, cwd):
    return subprocess.run([sys.executable, "-m", "mailtrace", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_lab_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = mailtrace("lab", *PORTS0, "--dir", str(blocker / "lab"), cwd=tmp_path)
    assert r.returncode == 1 and "cannot use" in r.stderr and "Traceback" not in r.stderr


def test_log_that_cannot_be_written(tmp_path):
    r = mailtrace("lab", *PORTS0, "--dir", str(tmp_path / "lab"), "--log", str(tmp_path / "no" / "x.jsonl"),
                  cwd=tmp_path)
    assert r.returncode == 1 and "x.jsonl" in r.stderr and "Traceback" not in r.stderr


def test_busy_port_names_the_flag_to_change(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = str(busy.getsockname()[1])
        r = mailtrace("lab", *PORTS0[2:], "--smtp-port", port, "--dir", str(tmp_path / "lab"), cwd=tmp_path)
        assert r.returncode == 1 and "already in use" in r.stderr and "--smtp-port 0" in r.stderr
        r = mailtrace("serve", "smtp", "--port", port, "--dir", str(tmp_path / "lab"), cwd=tmp_path)
        assert r.returncode == 1 and "--port 0" in r.stderr and "Traceback" not in r.stderr


def test_banner_addresses_bracket_ipv6():
    from mailtrace.cli.serve import host_port

    assert host_port("127.0.0.1", 2525) == "127.0.0.1:2525"
    assert host_port("::1", 2525) == "[::1]:2525"
