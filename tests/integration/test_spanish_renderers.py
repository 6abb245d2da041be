"""With --lang es every word the program adds to a transcript is Spanish, in every sink.

Real sessions on the lab servers (SMTP with and without STARTTLS, POP3 with QUIT and dropped
without it, IMAP with LOGOUT, a client that hangs up mid-session) and through the tracing proxy
(STARTTLS relayed unseen) are rendered with lang="es" by the live terminal view, the text sink,
the HTML ladder and ``mailtrace show --lang es`` (text and HTML).  The output must contain none of
the English phrases of the renderers' own vocabulary: taken from the data (the English side of
``[view]``, ``[close]``, ``[cli]`` and the session events in knowledge/common.toml) and from a list
of the phrases students reported.  The dialogue itself (the servers' English replies) is not
checked: it is what went over the wire.
"""

from __future__ import annotations

import json
import poplib
import imaplib
import re
import smtplib
import socket
import subprocess
import sys
from io import StringIO

import pytest
from rich.console import Console

from mailtrace import knowledge
from mailtrace.transcript.event import Kind
from mailtrace.transcript.html import render_html
from mailtrace.transcript.jsonl import JsonlSink
from mailtrace.transcript.terminal import TerminalSink
from mailtrace.transcript.text import render_text
from test_proxy_support import loop_thread, start_proxy, wait_closed  # noqa: F401 (fixture)

REPORTED = [" octets, ", " octets]", " lines]", "closed (", "client sent QUIT", "client closed the connection", "session smtp-",
            "marked deleted were kept", "TLS relayed unseen", "A protocol rule was broken", "[guessed]",
            "more octets not recorded", "Expand all", "Fold all", "round trip", "Timeline", ">Client<", ">Server<"]


def english_vocabulary() -> list[str]:
    """The fixed pieces of the renderers' English templates that their Spanish text does not share."""
    pieces = set(REPORTED)
    common = knowledge.load("common")
    entries = [*common.get("view", {}).values(), *common.get("close", {}).values(), *common.get("cli", {}).values(),
               *(common["events"][k] for k in ("note", "violation", "close"))]
    for entry in entries:
        spanish = entry.meaning("es")
        for piece in re.split(r"\{[^}]*\}", entry.meaning("en")):
            piece = piece.strip(" -[]():;,.")
            if len(piece.split()) >= 2 and piece not in spanish:  # one word alone may be a protocol word
                pieces.add(piece)
    return sorted(pieces)


def english_in(text: str) -> list[str]:
    return [piece for piece in english_vocabulary() if piece in text]


def sessions_on_the_lab(lab) -> list:
    """Six real sessions, each closed a different way; the lab's recorded events."""
    with smtplib.SMTP("127.0.0.1", lab.port("smtp"), timeout=10) as client:  # QUIT
        client.sendmail("alice@lab.test", ["bob@lab.test"], b"Subject: uno\r\n\r\nprimera linea\r\nsegunda\r\n")
    with smtplib.SMTP("127.0.0.1", lab.port("smtp"), timeout=10) as client:  # STARTTLS, then QUIT
        client.ehlo()
        client.starttls(context=lab.client_tls_context())
        client.ehlo()
    with socket.create_connection(("127.0.0.1", lab.port("smtp")), timeout=10) as sock:  # hangs up
        sock.recv(1000)
        sock.sendall(b"HELO crepes.fr\r\n")
        sock.recv(1000)
    pop = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=10)  # QUIT
    pop.user("bob"), pop.pass_("bob"), pop.list(), pop.retr(1), pop.quit()
    pop = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=10)  # DELE, then dropped without QUIT
    pop.user("bob"), pop.pass_("bob"), pop.dele(1)
    pop.close()  # closes the socket without sending QUIT
    with imaplib.IMAP4("127.0.0.1", lab.port("imap"), timeout=10) as imap:  # LOGOUT
        imap.login("bob", "bob")
        imap.select("INBOX")
        imap.fetch("1", "(FLAGS BODY.PEEK[HEADER])")
    return lab.wait_closed(6)


@pytest.fixture
def spanish_lab(lab_factory):
    out = StringIO()
    terminal = TerminalSink(Console(file=out, width=200), lang="es")
    lab = lab_factory(("smtp", "pop3", "imap"), sinks=(terminal,))
    events = sessions_on_the_lab(lab)
    return lab, events, out


def test_the_sessions_cover_every_kind_of_close_and_the_pop3_note(spanish_lab):
    _, events, out = spanish_lab
    closes = [e for e in events if e.kind is Kind.CLOSE]
    reasons = {knowledge.close_reason(e, "es") for e in closes}
    assert {"el cliente envió QUIT", "QUIT", "el cliente cerró la conexión"} <= reasons
    assert any(e.kind is Kind.TLS for e in events)
    note = next(e for e in events if any(n.rule == "no-quit" for n in e.notes))
    ann = knowledge.annotate(note, "es")
    # RFC 1939 §6 allows the drop: an informative note, no broken rule, no mistake counted
    assert ann.problems == () and ann.infos and "se conservan 1 mensaje(s)" in ann.infos[0][2]
    assert knowledge.mistakes(note) == []
    assert ann.meaning == knowledge.lookup("common", "events", "note").meaning("es")


def test_live_view_is_spanish(spanish_lab):
    _, _, out = spanish_lab
    text = out.getvalue()
    assert "── Saludo" in text and "octetos" in text and "cerrada (el cliente envió QUIT)" in text
    assert "ℹ La conexión terminó sin QUIT" in text and "Se ha incumplido" not in text
    assert english_in(text) == []


def test_text_and_html_are_spanish(spanish_lab):
    _, events, _ = spanish_lab
    text = render_text(events, lang="es", fold=True, annotate=True)
    assert "--- sesión smtp-1 cerrada: el cliente envió QUIT ---" in text
    assert "*** nota: Lo que ha pasado" in text and "!!!" not in text.split("*** nota")[1].split("\n")[1]
    assert english_in(text) == []
    page = render_html(events, lang="es")
    assert "Desplegar todo" in page and "class='note info'" in page
    assert english_in(page) == []


def test_web_view_summaries_in_the_readers_language(spanish_lab):
    from mailtrace.web.feed import WebFeed

    _, events, _ = spanish_lab
    feed = WebFeed()
    for event in events:
        feed.handle(event)
    summaries = {s.id: s for s in feed.sessions.values()}
    assert summaries["smtp-1"].to_json("es")["close_reason"] == "el cliente envió QUIT"
    assert summaries["smtp-1"].to_json()["close_reason"] == "client sent QUIT"
    assert summaries["pop3-5"].violations == 0  # dropped without QUIT: a note, not a mistake


def test_mailtrace_show_lang_es_text_and_html(spanish_lab, tmp_path):
    _, events, _ = spanish_lab
    log = tmp_path / "lab.jsonl"
    sink = JsonlSink(log)
    for event in events:
        sink.handle(event)
    sink.close()
    assert any(json.loads(line).get("reason", {}).get("clauses") for line in log.read_text().splitlines()[1:])
    shown = subprocess.run([sys.executable, "-m", "mailtrace", "show", str(log), "--lang", "es"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "cerrada (el cliente envió QUIT)" in shown.stdout and english_in(shown.stdout) == []
    page = subprocess.run([sys.executable, "-m", "mailtrace", "show", str(log), "--lang", "es", "--format", "html"],
                          capture_output=True, text=True, timeout=60)
    assert page.returncode == 0, page.stderr
    assert "Línea de tiempo" in page.stdout and english_in(page.stdout) == []


def test_proxy_relaying_starttls_unseen_is_spanish(lab_factory, loop_thread):  # noqa: F811
    lab = lab_factory(("smtp",))
    proxy, mem = loop_thread.run(start_proxy(lab.port("smtp"), protocol="smtp", lang="es"))
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as client:
        client.ehlo()
        client.starttls(context=lab.client_tls_context())
        client.ehlo()
    wait_closed(mem, 1)
    events = list(mem.events)
    close = next(e for e in events if e.kind is Kind.CLOSE)
    assert "TLS retransmitido sin descifrar" in knowledge.close_reason(close, "es")
    assert "TLS relayed unseen" in close.reason.text  # the English record for JSONL readers
    out = StringIO()
    terminal = TerminalSink(Console(file=out, width=200), lang="es")
    for event in events:
        terminal.handle(event)
    for text in (out.getvalue(), render_text(events, lang="es", fold=True), render_html(events, lang="es")):
        assert "TLS cifrado desde aquí" in text
        assert english_in(text) == []


def test_the_vocabulary_catches_english():
    """The check can fail: an English rendering of the same sessions is caught."""
    assert "client sent QUIT" in english_in("● closed (client sent QUIT)")
    assert english_in("[data: 39 octets, 3 lines]")


def test_cli_banner_and_errors_are_spanish(tmp_path):
    """`mailtrace serve --lang es`: the banner, the stop line and a port error speak Spanish."""
    import os
    import signal

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        taken = busy.getsockname()[1]
        failed = subprocess.run([sys.executable, "-m", "mailtrace", "serve", "smtp", "--port", str(taken), "--dir", "lab",
                                 "--no-tls", "--lang", "es"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                                env=env)
    finally:
        busy.close()
    assert failed.returncode == 1 and "ya está en uso" in failed.stderr and "Elige otro puerto" in failed.stderr
    assert "Traceback" not in failed.stderr
    proc = subprocess.Popen([sys.executable, "-m", "mailtrace", "serve", "smtp", "--port", "0", "--dir", "lab",
                             "--no-tls", "--lang", "es"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    banner = ""
    try:
        for _ in range(20):  # bounded: the banner is a handful of lines
            line = proc.stdout.readline()
            banner += line
            if not line or "Ctrl-C" in line:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert "SMTP en 127.0.0.1:" in banner and "conéctate (smtp): nc -C" in banner
    assert "usuarios (nombre / contraseña)" in banner and "Ctrl-C detiene el laboratorio." in banner
    assert "mailtrace: detenido." in out and english_in(banner + out) == []
