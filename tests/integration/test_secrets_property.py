"""Secrets never logged (issue #11): a property test.

Hypothesis generates client sessions in every syntax the servers accept for credentials
(tabs, extra arguments, literals synchronizing or not, continuation lines, over-long lines,
NULs, odd tags, lower case, bare LF) with a random password, feeds them to the real server
cores (and to the proxy's observers, the same bytes seen from outside), records them through
a real Recorder, and asserts the password (and its base64 forms) never reaches any sink:
the live terminal view, the text log, JSONL, HTML, a pcapng export with its comments, the
proxy's credential annotations; and that ``--show-secrets`` does show it (so the test can fail).

The grader's side too: the same bytes sent over a real socket to the grader's scripted server
(the real core behind the fault layer, as when a student's client is graded), and every grade
output made from that run: the text report with its transcript, JSON, JUnit, Gradescope, the
terminal report, and the class report's HTML page, ladder pages and JSONL transcripts.
"""

from __future__ import annotations

import base64
import io
import socket
import string
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailtrace.capture.export import PcapSink
from mailtrace.protocols.base import Pending
from mailtrace.protocols.imap import ImapConfig, ImapServerConnection
from mailtrace.protocols.imap.observer import ImapObserver
from mailtrace.protocols.pop3 import Pop3ServerConnection, make_timestamp
from mailtrace.protocols.pop3.observer import Pop3Observer
from mailtrace.protocols.smtp import SmtpConfig, SmtpServerConnection
from mailtrace.protocols.smtp.observer import SmtpObserver
from mailtrace.proxy.credentials import CredentialDecoder
from mailtrace.store.maildir import MaildirStore
from mailtrace.transcript.event import Event, Side
from mailtrace.transcript.html import render_html
from mailtrace.transcript.jsonl import JsonlSink
from mailtrace.transcript.recorder import MemorySink, Recorder
from mailtrace.transcript.text import TextSink

USER = "alice"
# At least one character outside base64's alphabet and outside words, and one digit: a secret
# that happened to be a piece of the program's own text (the "334 UGFzc3dvcmQ6" of AUTH LOGIN,
# the "after-reply" of a grade report's JSON) would be found without having leaked.
secrets_ = st.text(alphabet=string.ascii_letters + string.digits + "!#%&*-_.", min_size=10, max_size=20).filter(
    lambda s: any(c in "!#%&*" for c in s) and any(c.isdigit() for c in s))
blank = st.sampled_from([" ", "\t", "  ", " \t"])
end = st.sampled_from(["\r\n", "\n"])
nul = st.sampled_from(["", "\x00", "\x00\x00"])


def b64(data: str) -> str:
    return base64.b64encode(data.encode()).decode()


def plain(secret: str) -> str:
    return b64(f"\x00{USER}\x00{secret}")  # RFC 4616 §2


@st.composite
def smtp_sessions(draw, secret: str) -> list[str]:
    sp, e = draw(blank), draw(end)
    verb = draw(st.sampled_from(["AUTH", "auth", "Auth"]))
    form = draw(st.sampled_from(["ir", "plain-next-line", "login", "login-ir", "extra", "long", "nul"]))
    if form == "ir":
        lines = [f"{verb}{sp}PLAIN{sp}{plain(secret)}{e}"]
    elif form == "plain-next-line":
        lines = [f"{verb}{sp}PLAIN{e}", f"{plain(secret)}{e}"]
    elif form == "login":
        lines = [f"{verb}{sp}LOGIN{e}", f"{b64(USER)}{e}", f"{b64(secret)}{e}"]
    elif form == "login-ir":
        lines = [f"{verb}{sp}LOGIN{sp}{b64(USER)}{e}", f"{b64(secret)}{e}"]
    elif form == "extra":
        lines = [f"{verb}{sp}PLAIN{sp}{plain(secret)}{sp}more{e}"]
    elif form == "long":
        lines = [f"{verb}{sp}PLAIN{sp}{plain(secret)}{sp}{'A' * 700}{e}"]
    else:
        lines = [f"{verb}{sp}PLAIN{sp}{plain(secret)}{draw(nul)}{e}"]
    return [f"EHLO x{e}", *lines, f"NOOP{e}", f"QUIT{e}"]


@st.composite
def pop3_sessions(draw, secret: str) -> list[str]:
    sp, e, z = draw(blank), draw(end), draw(nul)
    form = draw(st.sampled_from(["pass", "user-extra", "apop", "auth-ir", "long", "lower"]))
    if form == "pass":
        lines = [f"USER{sp}{USER}{e}", f"PASS{sp}{secret}{z}{e}"]
    elif form == "user-extra":
        lines = [f"USER{sp}{USER}{sp}{secret}{e}"]
    elif form == "apop":
        lines = [f"APOP{sp}{USER}{sp}{secret}{z}{e}"]
    elif form == "auth-ir":
        lines = [f"AUTH{sp}PLAIN{sp}{plain(secret)}{e}"]
    elif form == "long":
        lines = [f"USER {USER}{e}", f"PASS{sp}{secret}{sp}{'x' * 400}{e}"]
    else:
        lines = [f"user {USER}{e}", f"pass{sp}{secret}{e}"]
    return [*lines, f"STAT{e}", f"QUIT{e}"]


@st.composite
def imap_sessions(draw, secret: str) -> list[str]:
    sp, e, z = draw(blank), draw(end), draw(nul)
    tag = draw(st.sampled_from(["a", "A1", "a+b", "*", "a.b"]))
    login = draw(st.sampled_from(["LOGIN", "login", "UID LOGIN"]))
    n = len(secret.encode())
    form = draw(st.sampled_from(["atoms", "quoted", "sync-literal", "nonsync-literal", "both-literals", "nul",
                                 "long", "auth-ir", "auth-next-line"]))
    if form == "atoms":
        lines = [f"{tag}{sp}{login}{sp}{USER}{sp}{secret}{e}"]
    elif form == "quoted":
        lines = [f'{tag}{sp}{login}{sp}"{USER}"{sp}"{secret}"{e}']
    elif form == "sync-literal":
        lines = [f"{tag}{sp}{login}{sp}{USER}{sp}{{{n}}}{e}", f"{secret}{e}"]
    elif form == "nonsync-literal":
        lines = [f"{tag}{sp}{login}{sp}{USER}{sp}{{{n}+}}{e}", f"{secret}{e}"]
    elif form == "both-literals":
        lines = [f"{tag}{sp}{login}{sp}{{{len(USER)}+}}{e}", f"{USER} {{{n}+}}{e}", f"{secret}{e}"]
    elif form == "nul":
        lines = [f"{tag}{sp}{login}{sp}{USER}{sp}{secret}{z}{e}"]
    elif form == "long":
        lines = [f"{tag}{sp}{login}{sp}{USER}{sp}{secret}{sp}{'x' * 70_000}{e}"]
    elif form == "auth-ir":
        lines = [f"{tag}{sp}AUTHENTICATE{sp}PLAIN{sp}{plain(secret)}{e}"]
    else:
        lines = [f"{tag}{sp}AUTHENTICATE{sp}PLAIN{e}", f"{plain(secret)}{e}"]
    return [*lines, f"z NOOP{e}", f"y LOGOUT{e}"]


SESSIONS = {"smtp": smtp_sessions, "pop3": pop3_sessions, "imap": imap_sessions}


def make_core(protocol: str, store):
    if protocol == "smtp":
        return SmtpServerConnection(SmtpConfig(), store, clock=time.time, client_address="127.0.0.1:40000", secure_channel=True)
    if protocol == "pop3":
        return Pop3ServerConnection(store, make_timestamp(1, 1, "lab.test"))
    return ImapServerConnection(ImapConfig(), store, clock=time.time)


def run_outputs(outputs) -> list[Event]:
    """The events of a core's outputs, running its store jobs (Pending) in place."""
    events, queue = [], list(outputs)
    while queue:
        out = queue.pop(0)
        if isinstance(out, Event):
            events.append(out)
        elif isinstance(out, Pending):
            queue[0:0] = out.resume(out.job())
    return events


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(data)]:
        if p > last:
            pieces.append(data[last:p])
            last = p
    return pieces


def server_events(protocol: str, data: bytes, cuts: list[int], store) -> list[Event]:
    core = make_core(protocol, store)
    events = run_outputs(core.start())
    for piece in chunked(data, cuts):
        events += run_outputs(core.receive(piece))
    return events + run_outputs(core.eof())


def observer_events(protocol: str, data: bytes, cuts: list[int], server_side: list[Event]) -> list[Event]:
    """The same client bytes seen by the proxy's observer (the server's replies interleaved)."""
    observer = {"smtp": SmtpObserver, "pop3": Pop3Observer, "imap": ImapObserver}[protocol]()
    events = []
    greeting = next((e.raw for e in server_side if e.side is Side.SERVER), b"")
    events += observer.feed_server(greeting)
    for piece in chunked(data, cuts):
        events += observer.feed_client(piece)
    return events + observer.close()


def every_sink_output(protocol: str, events: list[Event], show_secrets: bool) -> bytes:
    """What each sink writes for these events: terminal, text, JSONL, HTML, pcapng, annotations."""
    from rich.console import Console

    from mailtrace.transcript.terminal import TerminalSink

    text, jsonl, pcap, term = io.StringIO(), io.StringIO(), io.BytesIO(), io.StringIO()
    memory = MemorySink()
    decoder = CredentialDecoder(protocol, show_secrets=show_secrets)
    sinks = [memory, TextSink(text, show_secrets=show_secrets), JsonlSink(jsonl, show_secrets=show_secrets),
             PcapSink(pcap, pcapng=True, show_secrets=show_secrets),
             TerminalSink(Console(file=term, width=200, color_system=None), show_secrets=show_secrets)]
    recorder = Recorder(sinks)
    session = recorder.session(protocol, client="127.0.0.1:40000", server="127.0.0.1:2525")
    for event in events:
        session.record(decoder.feed(event))  # the proxy's annotation of credentials, as it runs
    session.close(Side.CLIENT, "done")
    recorder.flush()
    html = render_html(memory.events, show_secrets=show_secrets)
    out = b"".join([text.getvalue().encode(), jsonl.getvalue().encode(), pcap.getvalue(), term.getvalue().encode(),
                    html.encode()])
    recorder.close()
    return out


def forms(secret: str) -> list[bytes]:
    return [secret.encode(), plain(secret).encode(), b64(secret).encode()]


@pytest.fixture(scope="module")
def store():
    with tempfile.TemporaryDirectory() as d:
        s = MaildirStore(Path(d), {USER: "alice"}, fsync=False)
        yield s
        s.close()


@pytest.mark.parametrize("protocol", ["smtp", "pop3", "imap"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), secret=secrets_, cuts=st.lists(st.integers(min_value=0, max_value=10**6), max_size=6))
def test_a_password_never_reaches_a_sink(store, protocol, data, secret, cuts):
    lines = data.draw(SESSIONS[protocol](secret))
    wire = "".join(lines).encode()
    server_side = server_events(protocol, wire, cuts, store)
    for events in (server_side, observer_events(protocol, wire, cuts, server_side)):
        shown = every_sink_output(protocol, events, show_secrets=False)
        for form in forms(secret):
            assert form not in shown, f"{form!r} leaked from {lines!r}"


@pytest.mark.parametrize("protocol", ["smtp", "pop3", "imap"])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), secret=secrets_)
def test_show_secrets_shows_them(store, protocol, data, secret):
    """The other side of the property: with --show-secrets the password (or its base64) is there."""
    lines = data.draw(SESSIONS[protocol](secret))
    events = server_events(protocol, "".join(lines).encode(), [], store)
    shown = every_sink_output(protocol, events, show_secrets=True)
    assert any(form in shown for form in forms(secret))


# -- the grader's transcripts and reports ------------------------------------------------------------
@pytest.fixture(scope="module")
def scripted():
    """The grader's scripted server for each protocol, on 127.0.0.1, recording to one MemorySink."""
    from mailtrace.grading.faults import ServerScript
    from mailtrace.grading.grader import core_factory
    from mailtrace.grading.scripted import ScriptedServer
    from mailtrace.servers.lab import Lab

    with tempfile.TemporaryDirectory() as d:
        lab = Lab(directory=Path(d), users={USER: "alice"})
        lab.open_store()
        recorder, sink = Recorder(), MemorySink()
        recorder.add_sink(sink)
        servers = {p: ScriptedServer(p, core_factory(p, lab), ServerScript.from_dict({}), recorder)
                   for p in ("smtp", "pop3", "imap")}
        ports = {p: server.start() for p, server in servers.items()}
        try:
            yield ports, sink
        finally:
            for server in servers.values():
                server.stop()
            lab.store.close()


def graded_session(scripted, protocol: str, data: bytes, cuts: list[int]) -> list[Event]:
    """Send ``data`` (in pieces) to the scripted server as a student's client would; the
    session's recorded events once the server has recorded its close."""
    from mailtrace.transcript.event import Kind

    ports, sink = scripted
    first = len(sink.events)
    with socket.create_connection(("127.0.0.1", ports[protocol]), timeout=10) as s:
        for piece in chunked(data, cuts):
            s.sendall(piece)
        s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and s.recv(65536):
            pass
    session = sink.events[first].session
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = [e for e in sink.events[first:] if e.session == session]
        if events and events[-1].kind is Kind.CLOSE:
            return events
        time.sleep(0.01)
    raise AssertionError(f"the scripted {protocol} server never recorded the close")


def every_grade_output(protocol: str, events: list[Event], show_secrets: bool, where: Path) -> bytes:
    """What ``mailtrace grade`` and the class report write for a run with these events."""
    from rich.console import Console

    from mailtrace.grading import classroom
    from mailtrace.grading.exercise import load_exercise
    from mailtrace.grading.grader import score_run, weights
    from mailtrace.grading.report import Report, print_rich, to_gradescope, to_json, to_junit, to_text
    from mailtrace.grading.run import Run
    from mailtrace.grading.sandbox import ProgramResult

    exercise = load_exercise(f"{protocol}-client")
    scenario = exercise.scenarios[0]
    run = Run(exercise=exercise, scenario=scenario, variables={}, events=events,
              program=ProgramResult(argv=["client"], exit_code=0))
    result = score_run(run, weights(exercise), show_secrets=show_secrets)
    report = Report(exercise=exercise.name, submission="student", seed=1, scenarios=[result],
                    show_secrets=show_secrets)
    report.finish()
    term = io.StringIO()
    print_rich(report, Console(file=term, width=200, color_system=None))
    folder = where / ("shown" if show_secrets else "hidden")
    folder.mkdir(parents=True, exist_ok=True)
    links = classroom.write_ladders(folder, [("student", report)])
    classroom.write_html(folder / "class.html", exercise, [("student", report)], 1, links)
    pages = b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())
    return b"".join([to_text(report, verbose=True).encode(), to_json(report).encode(), to_junit(report).encode(),
                     to_gradescope(report).encode(), term.getvalue().encode(), pages])


@pytest.mark.parametrize("protocol", ["smtp", "pop3", "imap"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), secret=secrets_, cuts=st.lists(st.integers(min_value=0, max_value=10**6), max_size=4))
def test_a_password_never_reaches_a_grade_report(scripted, tmp_path_factory, protocol, data, secret, cuts):
    lines = data.draw(SESSIONS[protocol](secret))
    events = graded_session(scripted, protocol, "".join(lines).encode(), cuts)
    shown = every_grade_output(protocol, events, False, tmp_path_factory.mktemp("grade"))
    for form in forms(secret):
        assert form not in shown, f"{form!r} leaked from {lines!r}"


@pytest.mark.parametrize("protocol", ["smtp", "pop3", "imap"])
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), secret=secrets_)
def test_grade_show_secrets_shows_them(scripted, tmp_path_factory, protocol, data, secret):
    """``mailtrace grade --show-secrets``: the transcripts do keep the password (the test can fail)."""
    lines = data.draw(SESSIONS[protocol](secret))
    events = graded_session(scripted, protocol, "".join(lines).encode(), [])
    shown = every_grade_output(protocol, events, True, tmp_path_factory.mktemp("grade"))
    assert any(form in shown for form in forms(secret))
