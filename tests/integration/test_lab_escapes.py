"""What a client sends must not drive the instructor's terminal (the lab's live view and text log)."""

import socket
import subprocess
import sys
import time


def test_escape_sequences_from_a_client_are_shown_inert(tmp_path):
    text_log = tmp_path / "t.txt"
    lab = subprocess.Popen([sys.executable, "-m", "mailtrace", "serve", "smtp", "--port", "0", "--dir",
                            str(tmp_path / "lab"), "--text", str(text_log)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        first = lab.stdout.readline().decode()
        port = int(first.split("127.0.0.1:")[1].split()[0].rstrip(","))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.recv(1000)
            s.sendall(b"HELO \x1b[2Jevil\x1b]0;pwned\x07\r\nQUIT\r\n")
            while s.recv(1000):
                pass
        deadline = time.time() + 10
        while b"closed" not in text_log.read_bytes() and time.time() < deadline:
            time.sleep(0.05)
    finally:
        lab.terminate()
        out = lab.communicate(timeout=10)[0]
    assert b"\x1b" not in out and b"\x07" not in out and b"\\x1b[2Jevil" in out
    saved = text_log.read_bytes()
    assert b"\x1b" not in saved and b"\\x1b[2Jevil" in saved
