"""pcap export (tshark decodes it as the transcript) and import (reassembly of reordered,
duplicated, missing segments; captures that start mid-session; a real tcpdump capture).  The
captures to import are built with scapy (``test_pcap_scapy_support``), not by our own writer."""

from __future__ import annotations

import io
import random
import shutil
import smtplib
import subprocess

import pytest

from mailtrace.capture.export import export
from mailtrace.capture.importer import import_capture
from mailtrace.capture.pcapfile import CaptureFormatError, read_packets
from mailtrace.proxy.trace import Tracer
from mailtrace.transcript.event import Kind, Side
from mailtrace.transcript.recorder import MemorySink, Recorder
from test_pcap_scapy_support import CLIENT, SERVER, TcpScript
from test_proxy_support import loop_thread, start_aiosmtpd, start_proxy, wait_closed  # noqa: F401
from waiting import wait_until

SMTP_DIALOGUE = [
    ("S", b"220 lab.test ESMTP ready\r\n"),
    ("C", b"EHLO client.test\r\n"),
    ("S", b"250-lab.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
    ("C", b"MAIL FROM:<alice@lab.test>\r\n"),
    ("S", b"250 2.1.0 OK\r\n"),
    ("C", b"RCPT TO:<bob@lab.test>\r\n"),
    ("S", b"250 2.1.5 OK\r\n"),
    ("C", b"DATA\r\n"),
    ("S", b"354 go ahead\r\n"),
    ("C", b"Subject: test\r\n\r\nline one\r\n..dot line\r\n.\r\n"),
    ("S", b"250 2.0.0 queued\r\n"),
    ("C", b"QUIT\r\n"),
    ("S", b"221 2.0.0 bye\r\n"),
]
POP3_DIALOGUE = [
    ("S", b"+OK POP3 ready\r\n"), ("C", b"USER alice\r\n"), ("S", b"+OK\r\n"), ("C", b"PASS secret\r\n"),
    ("S", b"+OK 1 message\r\n"), ("C", b"STAT\r\n"), ("S", b"+OK 1 120\r\n"), ("C", b"QUIT\r\n"), ("S", b"+OK bye\r\n"),
]
IMAP_DIALOGUE = [
    ("S", b"* OK IMAP4rev1 ready\r\n"), ("C", b"a1 CAPABILITY\r\n"), ("S", b"* CAPABILITY IMAP4rev1\r\na1 OK done\r\n"),
    ("C", b"a2 LOGIN alice secret\r\n"), ("S", b"a2 OK logged in\r\n"), ("C", b"a3 LOGOUT\r\n"),
    ("S", b"* BYE\r\na3 OK bye\r\n"),
]


def transcript(protocol, dialogue, client="127.0.0.1:40000", server="127.0.0.1:2525", show_secrets=True):
    """Events of a scripted dialogue, parsed by the protocol's observer (as the proxy would)."""
    mem = MemorySink()
    session = Recorder([mem]).session(protocol, client=client, server=server, mode="proxy", started=1_700_000_000.0)
    tracer = Tracer(session, protocol, show_secrets=show_secrets)
    for i, (who, data) in enumerate(dialogue):
        tracer.feed(Side.CLIENT if who == "C" else Side.SERVER, data, t=0.1 * (i + 1))
    tracer.finish(Side.CLIENT, "client closed the connection", t=0.1 * (len(dialogue) + 1))
    return mem.events


def dialogue_of(events):
    return [(e.side.value, e.raw) for e in events if e.kind in (Kind.COMMAND, Kind.REPLY, Kind.DATA, Kind.LITERAL)]


def streams_of(events):
    out = {"C": b"", "S": b""}
    for side, raw in dialogue_of(events):
        out[side] += raw
    return out


def reimport(data: bytes, **kw):
    mem = MemorySink()
    stats = import_capture(io.BytesIO(data), Recorder([mem]), **kw)
    return mem.events, stats


def test_export_is_wellformed_tcp_and_round_trips():
    events = transcript("smtp", SMTP_DIALOGUE)
    buf = io.BytesIO()
    export(events, buf, pcapng=False)
    frames = list(read_packets(io.BytesIO(buf.getvalue())))
    assert len(frames) == 3 + len(dialogue_of(events)) + 3  # handshake, one segment per event, FIN/FIN/ACK
    assert frames[0][0] == pytest.approx(1_700_000_000.0)
    back, stats = reimport(buf.getvalue())
    assert stats.sessions == 1 and stats.gaps == 0
    assert streams_of(back) == streams_of(events)
    assert back[0].peer.server == "127.0.0.1:25"  # exported on the standard port
    assert back[-1].kind is Kind.CLOSE


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark is not installed")
@pytest.mark.parametrize("protocol,dialogue,filt,field", [
    ("smtp", SMTP_DIALOGUE, "smtp", "smtp.req.command"),
    ("pop3", POP3_DIALOGUE, "pop", "pop.request.command"),
    ("imap", IMAP_DIALOGUE, "imap", "imap.request.command"),
])
def test_tshark_lists_the_transcripts_requests(tmp_path, protocol, dialogue, filt, field):
    events = transcript(protocol, dialogue)
    out = tmp_path / "x.pcapng"
    export(events, out, show_secrets=True)
    res = subprocess.run(["tshark", "-r", str(out), "-Y", filt, "-T", "fields", "-e", field, "-e", "frame.comment"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    rows = [line.split("\t") for line in res.stdout.splitlines()]
    commands = [r[0].upper() for r in rows if r[0]]
    wanted = [e.verb.upper() for e in events if e.kind is Kind.COMMAND]
    assert commands == wanted
    # every request and response of the transcript is one decoded frame, with its annotation
    assert len(rows) == len(dialogue_of(events))
    assert all(r[1] for r in rows if r[0])


def test_import_reordered_duplicated_segments_same_dialogue():
    events = transcript("smtp", SMTP_DIALOGUE)
    c, s = ("127.0.0.1", 40000), ("127.0.0.1", 25)
    streams = {Side.CLIENT: b"", Side.SERVER: b""}
    segments = []  # (side, seq, payload) in dialogue order, each write cut in pieces
    seqs = {Side.CLIENT: 1001, Side.SERVER: 5001}
    for who, data in SMTP_DIALOGUE:
        side = Side.CLIENT if who == "C" else Side.SERVER
        pieces = [data[i:i + 7] for i in range(0, len(data), 7)]
        turn = []
        for p in pieces:
            turn.append((side, seqs[side], p))
            seqs[side] += len(p)
        streams[side] += data
        rnd = random.Random(len(segments))
        shuffled = turn[:]
        rnd.shuffle(shuffled)  # reordered within the turn
        shuffled.insert(rnd.randrange(len(shuffled) + 1), turn[0])  # a retransmission
        if len(turn) > 2:  # an overlapping retransmission: the end of piece 0 and all of piece 1
            shuffled.append((side, turn[1][1] - 3, turn[0][2][-3:] + turn[1][2]))
        segments.extend(shuffled)
    script = TcpScript(client=c, server=s).handshake()
    for side, seq, payload in segments:  # no ACK flag: no ack-based gap guesses
        script.packets.append(script.frame(CLIENT if side is Side.CLIENT else SERVER, "P", seq, 0, payload))
    buf = io.BytesIO(script.pcap())
    back, stats = reimport(buf.getvalue())
    assert stats.gaps == 0
    got = streams_of(back)
    assert got == {"C": streams[Side.CLIENT], "S": streams[Side.SERVER]}
    assert [(s_, r) for s_, r in dialogue_of(back)] == [(s_, r) for s_, r in dialogue_of(events)]


def _simple_capture(drop_handshake=False, drop_index=None):
    """A POP3 session built with scapy; ``drop_index``: that turn was not captured (but acknowledged)."""
    script = TcpScript(client=("127.0.0.1", 40001), server=("127.0.0.1", 110))
    if not drop_handshake:
        script.handshake()
    for i, (who, data) in enumerate(POP3_DIALOGUE):
        seg = script.segment(CLIENT if who == "C" else SERVER, data)
        if i != drop_index:
            script.packets.append(seg)
    return script.close(SERVER).pcap()


def test_import_missing_segment_becomes_a_gap():
    back, stats = reimport(_simple_capture(drop_index=5))  # "STAT" never captured, but acknowledged
    gaps = [e for e in back if e.kind is Kind.GAP]
    assert stats.gaps == 1 and gaps[0].side is Side.CLIENT and gaps[0].missing == 6
    assert b"QUIT\r\n" in [e.raw for e in back]
    assert back[0].protocol == "pop3" and back[-1].kind is Kind.CLOSE


def test_import_capture_starting_mid_session():
    data = _simple_capture(drop_handshake=True)
    back, stats = reimport(data)
    assert stats.sessions == 1
    assert back[1].kind is Kind.GAP and "after the connection" in back[1].reason.text
    assert back[0].peer.server == "127.0.0.1:110"
    assert [e.raw for e in back if e.side is Side.CLIENT and e.kind is Kind.COMMAND][0] == b"USER alice\r\n"


def test_import_timestamps_and_greeting_identification():
    events = transcript("imap", IMAP_DIALOGUE)
    buf = io.BytesIO()
    export(events, buf)
    raw = buf.getvalue().replace(b"\x00\x8f", b"\x1f\x90")  # port 143 -> 8080: identify by the greeting
    back, stats = reimport(raw)
    assert stats.sessions == 1 and back[0].protocol == "imap"
    assert int(back[0].peer.started) == 1700000000
    # times count from the SYN, written at the open event's t (the recorder's clock: not 0 on a busy machine)
    assert [e.t for e in back if e.kind is Kind.COMMAND][0] == pytest.approx(0.2 - events[0].t, abs=1e-5)


def test_not_a_capture_is_a_clear_error():
    with pytest.raises(CaptureFormatError):
        list(read_packets(io.BytesIO(b"hello world, no pcap")))


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("tcpdump"), reason="tcpdump is not installed")
def test_tcpdump_capture_of_real_session_imports_to_proxy_dialogue(tmp_path, loop_thread):
    _, handler, port = loop_thread.run(start_aiosmtpd())
    proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp", show_secrets=True))
    pcap = tmp_path / "lo.pcap"
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-n", "-Z", "root", "-s", "65535", "-B", "65536",
                             "-w", str(pcap), f"tcp port {proxy.port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = dump.stderr.readline()
        if "listening" not in line:
            dump.kill()
            pytest.skip(f"tcpdump cannot capture here: {line.strip() or dump.stderr.read().strip()}")
        with smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as s:
            s.ehlo("client.test")
            s.login("alice", "pw")
            s.sendmail("alice@lab.test", ["bob@lab.test"], b"Subject: dump\r\n\r\ncaptured\r\n")
        wait_closed(mem, 1)

        def captured_whole_session():  # tcpdump -U writes each packet as it comes: wait for the last
            try:
                back, _ = reimport(pcap.read_bytes(), port=proxy.port, protocol="smtp", show_secrets=True)
            except CaptureFormatError:  # a record cut in the middle of being written
                return False
            return dialogue_of(back) == dialogue_of(mem.events)

        wait_until(captured_whole_session, what="tcpdump to write the whole session")
    finally:
        dump.terminate()
        dump.wait(10)
    back, stats = reimport(pcap.read_bytes(), port=proxy.port, protocol="smtp", show_secrets=True)
    assert stats.sessions == 1 and stats.gaps == 0
    assert dialogue_of(back) == dialogue_of(mem.events)
    assert [e.text(True) for e in back if e.kind is Kind.COMMAND] == [e.text(True) for e in mem.events if e.kind is Kind.COMMAND]


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark is not installed")
def test_intercepted_starttls_exports_decrypted_dialogue_as_second_stream(tmp_path):
    mem = MemorySink()
    session = Recorder([mem]).session("smtp", client="127.0.0.1:40000", server="127.0.0.1:2525", started=1e9)
    tracer = Tracer(session, "smtp", intercept=True)
    before = [("S", b"220 lab.test ESMTP\r\n"), ("C", b"EHLO c\r\n"), ("S", b"250 STARTTLS\r\n"),
              ("C", b"STARTTLS\r\n"), ("S", b"220 go ahead\r\n")]
    for i, (who, data) in enumerate(before):
        swap = tracer.feed(Side.CLIENT if who == "C" else Side.SERVER, data, t=i * 0.1)
    assert swap  # the proxy would now swap both sides to TLS
    tracer.tls_started(t=0.6)
    for i, (who, data) in enumerate(SMTP_DIALOGUE[1:]):
        tracer.feed(Side.CLIENT if who == "C" else Side.SERVER, data, t=0.7 + i * 0.1)
    tracer.finish(Side.CLIENT, "done", t=3.0)
    out = tmp_path / "i.pcapng"
    export(mem.events, out)
    res = subprocess.run(["tshark", "-r", str(out), "-Y", "smtp || tls || _ws.malformed", "-T", "fields",
                          "-e", "tcp.stream", "-e", "smtp.req.command", "-e", "_ws.col.Protocol"],
                         capture_output=True, text=True, timeout=60)
    rows = [r.split("\t") for r in res.stdout.splitlines()]
    assert {r[2] for r in rows} <= {"SMTP", "SMTP/IMF"}  # no TLS, nothing malformed
    first = [r[1] for r in rows if r[0] == "0" and r[1]]
    second = [r[1] for r in rows if r[0] == "1" and r[1]]
    assert first == ["EHLO", "STAR"]  # Wireshark keeps the first four letters of a command
    assert second == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    comments = subprocess.run(["tshark", "-r", str(out), "-Y", "frame.comment contains \"intercept\"", "-T", "fields",
                               "-e", "tcp.stream"], capture_output=True, text=True, timeout=60).stdout.split()
    assert "1" in comments  # the decrypted stream says what it is


def test_ipv6_sessions_export_and_import():
    events = transcript("pop3", POP3_DIALOGUE, client="[::1]:40000", server="[::1]:1100")
    buf = io.BytesIO()
    export(events, buf, pcapng=True, show_secrets=True)
    back, stats = reimport(buf.getvalue())
    assert stats.sessions == 1 and back[0].peer.server == "[::1]:110" and back[0].peer.client == "[::1]:40000"
    assert streams_of(back) == streams_of(events)


def test_an_annotation_longer_than_a_pcapng_option_is_split_not_lost(tmp_path):
    """Issue #11: the proxy's annotator lost annotations with "struct.error: ushort format"
    (an option's length is 16 bits).  Now it is cut into "[i/n] " comments; tshark reads them."""
    import io
    import os
    import shutil
    import subprocess

    from mailtrace.capture.pcapfile import MAX_OPTION, PcapWriter, read_packets

    comment = "ñ" * 100_000 + "end"  # 200,003 octets of UTF-8
    buf = io.BytesIO()
    writer = PcapWriter(buf, pcapng=True)
    writer.write(1.0, b"\x00" * 60, comment=comment)
    writer.flush()
    assert len(list(read_packets(io.BytesIO(buf.getvalue())))) == 1
    path = tmp_path / "c.pcapng"
    path.write_bytes(buf.getvalue())
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark) to read the comments back")
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.comment"], capture_output=True,
                         text=True, timeout=60, env=dict(os.environ, HOME=str(tmp_path)))
    shown = out.stdout.strip().split(",")
    assert len(shown) == 4 and shown[0].startswith("[1/4] ") and shown[-1].endswith("end")
    assert "".join(s.split("] ", 1)[1] for s in shown) == comment
    assert all(len(s.encode()) <= MAX_OPTION for s in shown)


SMTP_AUTH = [("S", b"220 ready\r\n"), ("C", b"EHLO c\r\n"), ("S", b"250-x\r\n250 AUTH PLAIN LOGIN\r\n"),
             ("C", b"AUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n"), ("S", b"535 no\r\n"),
             ("C", b"AUTH LOGIN\r\n"), ("S", b"334 VXNlcm5hbWU6\r\n"), ("C", b"YWxpY2U=\r\n"),
             ("S", b"334 UGFzc3dvcmQ6\r\n"), ("C", b"czNjcmV0\r\n"), ("S", b"235 ok\r\n"),
             ("C", b"AUTH PLAIN %%%\r\n"), ("S", b"501 bad\r\n"), ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")]


def _auth_notes(data: bytes, lang: str) -> list[str]:
    back, _ = reimport(data, lang=lang)
    return [e.text(False).partition("  [")[2] for e in back
            if e.side is Side.CLIENT and e.kind in (Kind.COMMAND, Kind.DATA) and e.redacted is not None]


@pytest.mark.parametrize("lang,hidden,bad", [("en", "hidden in this file", "not valid base64"),
                                             ("es", "oculto en este fichero", "no es base64 válido")])
def test_redacted_auth_payloads_read_back_as_redacted_not_as_bad_base64(lang, hidden, bad):
    """An export without --show-secrets writes each AUTH payload as ***: read back, that is the
    export's redaction, not a client that sent bad base64 (a real bad payload still is one)."""
    buf = io.BytesIO()
    export(transcript("smtp", SMTP_AUTH, show_secrets=False), buf, pcapng=False)
    assert b"s3cret" not in buf.getvalue() and b"YWxpY2U=" not in buf.getvalue()
    notes = _auth_notes(buf.getvalue(), lang)
    assert len(notes) == 4 and all(hidden in n and bad not in n for n in notes), notes
    # the same session exported with --show-secrets: the payloads are there, decoded or not
    buf = io.BytesIO()
    export(transcript("smtp", SMTP_AUTH, show_secrets=True), buf, pcapng=False)
    notes = _auth_notes(buf.getvalue(), lang)
    assert len(notes) == 4 and not any(hidden in n for n in notes), notes
    assert "alice" in notes[1] and bad in notes[3]


STLS = {"pop3": ([("S", b"+OK ready\r\n"), ("C", b"STLS\r\n"), ("S", b"+OK go ahead\r\n")],
                 [("C", b"USER alice\r\n"), ("S", b"+OK\r\n"), ("C", b"PASS alice\r\n"), ("S", b"+OK in\r\n"),
                  ("C", b"STAT\r\n"), ("S", b"+OK 0 0\r\n"), ("C", b"QUIT\r\n"), ("S", b"+OK bye\r\n")]),
        "imap": ([("S", b"* OK ready\r\n"), ("C", b"a1 STARTTLS\r\n"), ("S", b"a1 OK go ahead\r\n")],
                 [("C", b"a2 LOGIN alice alice\r\n"), ("S", b"a2 OK in\r\n"), ("C", b"a3 SELECT INBOX\r\n"),
                  ("S", b"* 0 EXISTS\r\na3 OK [READ-WRITE] done\r\n"), ("C", b"a4 LOGOUT\r\n"),
                  ("S", b"* BYE\r\na4 OK bye\r\n")])}


def _starttls_session(recorder, protocol, client, intercepted, t0=0.0):
    before, after = STLS[protocol]
    session = recorder.session(protocol, client=client, server="127.0.0.1:1100", started=1e9 + t0)
    tracer = Tracer(session, protocol, intercept=intercepted)
    for i, (who, data) in enumerate(before):
        tracer.feed(Side.CLIENT if who == "C" else Side.SERVER, data, t=0.1 * i)
    if intercepted:
        tracer.tls_started(t=0.5)
        for i, (who, data) in enumerate(after):
            tracer.feed(Side.CLIENT if who == "C" else Side.SERVER, data, t=0.6 + 0.1 * i)
    tracer.finish(Side.CLIENT, "done", t=2.0)


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_intercepted_stls_and_starttls_read_back_as_one_session(protocol):
    """POP3 STLS (RFC 2595 §4) and IMAP STARTTLS (RFC 3501 §6.2.1) as SMTP's: the export's
    decrypted second conversation continues the session; the commands are the same."""
    mem = MemorySink()
    _starttls_session(Recorder([mem]), protocol, "127.0.0.1:40000", intercepted=True)
    buf = io.BytesIO()
    export(mem.events, buf, pcapng=False, show_secrets=True)
    back, stats = reimport(buf.getvalue(), show_secrets=True)
    assert stats.conversations == 2 and stats.sessions == 1
    tls = [e.tls for e in back if e.kind is Kind.TLS]
    assert len(tls) == 1 and tls[0].intercepted is True
    assert dialogue_of(back) == dialogue_of(mem.events)
    assert not any(e.notes for e in back)  # nothing flagged (no login "before the greeting")


def test_starttls_unseen_then_a_new_session_stays_two_sessions():
    """Not every conversation after a STARTTLS is its decrypted rest: one that opens with the
    server's greeting is a session of its own, and the first stays 'TLS, not seen'."""
    mem = MemorySink()
    recorder = Recorder([mem])
    _starttls_session(recorder, "pop3", "127.0.0.1:40000", intercepted=False)
    session = recorder.session("pop3", client="127.0.0.1:40001", server="127.0.0.1:1100", started=1e9 + 3)
    tracer = Tracer(session, "pop3")
    for i, (who, data) in enumerate(POP3_DIALOGUE):
        tracer.feed(Side.CLIENT if who == "C" else Side.SERVER, data, t=0.1 * i)
    tracer.finish(Side.CLIENT, "done", t=2.0)
    buf = io.BytesIO()
    export(mem.events, buf, pcapng=False, show_secrets=True)
    back, stats = reimport(buf.getvalue(), show_secrets=True)
    assert stats.sessions == 2
    first, second = sorted({e.session for e in back})
    assert [e.tls.intercepted for e in back if e.kind is Kind.TLS] == [False]
    assert [e.session for e in back if e.kind is Kind.TLS] == [first]
    assert streams_of([e for e in back if e.session == second]) == streams_of(
        [e for e in mem.events if e.session == second])
