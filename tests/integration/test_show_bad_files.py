"""`mailtrace show` on files that are not what their name says, and on captures cut short:
run as a user would (``python -m mailtrace show FILE``), never a traceback, always a clear word."""

from __future__ import annotations

import random
import subprocess

import pytest
from scapy.utils import wrpcapng

from mailtrace_cli import MAILTRACE
from test_pcap_scapy_support import CLIENT, SERVER, TcpScript

POP3 = [("S", b"+OK POP3 ready\r\n"), ("C", b"USER alice\r\n"), ("S", b"+OK\r\n"), ("C", b"PASS secret\r\n"),
        ("S", b"+OK 1 message\r\n"), ("C", b"STAT\r\n"), ("S", b"+OK 1 120\r\n"), ("C", b"QUIT\r\n"),
        ("S", b"+OK bye\r\n")]


def show(path, *args):
    proc = subprocess.run([*MAILTRACE, "show", str(path), *args], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.mark.parametrize("name,content", [
    ("random.pcap", random.Random(7).randbytes(3000)),
    ("empty.pcap", b""),
    ("notes.pcap", b"these are my notes, not a capture\n"),
    ("binary.pcapng", b"\x00\x01\x02\x03" * 50),
])
def test_a_file_that_is_no_capture_nor_transcript_is_named_so_with_a_hint(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    for lang, words in (("en", ("pcap/pcapng capture", "JSONL transcript", "hint:")),
                        ("es", ("captura pcap/pcapng", "transcripción JSONL", "pista:"))):
        r = show(path, "--lang", lang)
        assert r.returncode == 1 and r.stdout == ""
        assert all(word in r.stderr for word in words), r.stderr
        assert "Expecting value" not in r.stderr  # the old diagnosis: a JSON parser's complaint
    if not content:
        assert "is empty" in show(path).stderr


def _file(script: TcpScript, fmt: str, tmp_path) -> bytes:
    if fmt == "pcap":
        return script.pcap()
    wrpcapng(str(tmp_path / "scapy.pcapng"), script.packets)  # scapy's writer, not ours
    return (tmp_path / "scapy.pcapng").read_bytes()


def _capture(fmt: str, cut_inside: bytes | None, tmp_path) -> bytes:
    """A POP3 conversation as tcpdump would write it; ``cut_inside``: the file ends in the middle of
    the packet carrying that line (the capture was cut short), the packets after it lost."""
    script = TcpScript(client=("127.0.0.1", 40001), server=("127.0.0.1", 110)).handshake()
    for who, data in POP3:
        script.say(CLIENT if who == "C" else SERVER, data)
        if data == cut_inside:
            return _file(script, fmt, tmp_path)[:-3]  # three octets of the last record missing
    return _file(script.close(SERVER), fmt, tmp_path)


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_a_capture_cut_mid_packet_imports_what_it_can_and_says_it_was_cut(tmp_path, fmt):
    whole, cut = tmp_path / f"whole.{fmt}", tmp_path / f"cut.{fmt}"
    whole.write_bytes(_capture(fmt, None, tmp_path))
    cut.write_bytes(_capture(fmt, b"STAT\r\n", tmp_path))
    complete = show(whole)
    assert complete.returncode == 0 and "cut short" not in complete.stderr + complete.stdout
    assert "STAT" in complete.stdout and "QUIT" in complete.stdout
    r = show(cut)
    assert r.returncode == 0, r.stderr
    assert "USER alice" in r.stdout and "+OK 1 message" in r.stdout  # every complete packet is there
    assert "STAT" not in r.stdout  # the packet that was cut is not made up
    assert "cut short" in r.stderr and "3 octets missing" in r.stderr, r.stderr
    assert "cut short inside a packet" in r.stdout  # the session's end says why it ends there
    es = show(cut, "--lang", "es")
    assert "está cortado" in es.stderr and "se cortó a mitad de un paquete" in es.stdout
    jsonl = show(cut, "--format", "jsonl")
    assert jsonl.returncode == 0 and '"USER alice' in jsonl.stdout and "cut short" in jsonl.stderr


def test_counted_words_agree_with_their_number_in_both_languages(tmp_path):
    """One missing octet is "1 octet" / "falta 1 octeto" (the texts said "1 mail sessions")."""
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(_capture("pcap", None, tmp_path)[:-1])
    assert "(1 octet missing)" in show(cut).stderr
    assert "(falta 1 octeto)" in show(cut, "--lang", "es").stderr
    cut.write_bytes(_capture("pcap", None, tmp_path)[:-2])
    assert "(2 octets missing)" in show(cut).stderr
    assert "(faltan 2 octetos)" in show(cut, "--lang", "es").stderr
