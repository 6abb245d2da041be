"""The live view (mailtrace.transcript.live): drawn off the servers' thread, coalesced in floods,
while the other sinks keep every event; the cheap ANSI writer draws what rich would."""

from __future__ import annotations

import io
import re
import signal
import smtplib
import threading
import time

from rich.console import Console

from mailtrace.transcript.event import Event, Kind, Note, Peer, Side
from mailtrace.transcript.live import LiveView
from mailtrace.transcript.recorder import MemorySink, Recorder
from mailtrace.transcript.terminal import TerminalSink

SUMMARY = re.compile(r"… ([\d,]+) events in the last .* not shown: ([\d,]+) sessions opened \((.*)\), ([\d,]+) "
                     r"mistakes; every event is in t\.jsonl")


def assert_all_accounted_for(text: str, total: int, sessions: int, mistakes: int) -> None:
    """Every event is drawn or summed up in a "not shown" line, and so is every session opened
    and every mistake."""
    drawn = sum(1 for line in text.splitlines() if re.search(r"^\s*\S+\s+\d+\.\d{3} ", line))
    summaries = [SUMMARY.search(line) for line in text.splitlines() if "not shown" in line]
    assert summaries and all(summaries), text[-2000:]
    assert drawn + sum(int(m.group(1).replace(",", "")) for m in summaries) == total
    shown_opens = text.count("● SMTP") + text.count("● POP3")
    assert shown_opens + sum(int(m.group(2)) for m in summaries) == sessions
    shown_mistakes = len(re.findall(r"^\s*\S+\s+\d+\.\d{3} ◆", text, re.M))
    assert shown_mistakes + sum(int(m.group(4)) for m in summaries) == mistakes


def noop(i: int) -> Event:
    return Event(side=Side.CLIENT, kind=Kind.COMMAND, verb="NOOP", raw=f"NOOP {i}\r\n".encode())


def view(detail: int, lang: str = "en") -> tuple[LiveView, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    return LiveView(TerminalSink(console, lang=lang), where="t.jsonl", detail_per_second=detail), out


def test_a_trickle_is_drawn_in_full_and_the_recorder_thread_never_draws():
    live, out = view(detail=1000)
    drawn_by: set[str] = set()
    real = live.terminal.ansi

    def spy(event):
        drawn_by.add(threading.current_thread().name)
        return real(event)

    live.terminal.ansi = spy
    rec = Recorder([live])
    s = rec.session("smtp", client="127.0.0.1:1", server="127.0.0.1:2")
    for i in range(20):
        s.record(noop(i))
    s.close()
    rec.close()
    text = out.getvalue()
    assert all(f"C → NOOP {i}" in text for i in range(20))
    assert "● closed" in text and "not shown" not in text
    assert drawn_by == {"mailtrace-live-view"}


def test_a_flood_is_summed_up_and_the_log_sink_keeps_every_event():
    live, out = view(detail=10)
    memory = MemorySink()
    rec = Recorder([live, memory])
    sessions = [rec.session("smtp" if k % 2 else "pop3") for k in range(30)]
    for k, s in enumerate(sessions):
        for i in range(10):
            s.record(noop(k * 100 + i))
        s.violation("bare-lf")
        s.close()
    rec.close()
    total = len(memory.events)
    assert total == 30 * 13  # open, 10 NOOP, a violation, close: the other sinks get everything
    assert_all_accounted_for(out.getvalue(), total, sessions=30, mistakes=30)


def test_summary_in_spanish():
    live, out = view(detail=1, lang="es")
    rec = Recorder([live])
    s = rec.session("imap")
    for i in range(5):
        s.record(noop(i))
    rec.close()
    assert "eventos de los últimos" in out.getvalue() and "todos los eventos están en t.jsonl" in out.getvalue()


def test_ansi_writer_draws_the_same_text_as_rich():
    events = [
        Event(side=Side.NONE, kind=Kind.OPEN, session="smtp-1", protocol="smtp", peer=Peer(client="a", server="b")),
        Event(side=Side.SERVER, kind=Kind.REPLY, session="smtp-1", protocol="smtp", raw=b"220 lab.test ESMTP\r\n",
              code="220", state="ready"),
        Event(side=Side.CLIENT, kind=Kind.COMMAND, session="smtp-1", protocol="smtp", raw=b"HELO x\n", verb="HELO",
              notes=(Note("bare-lf", "line 1"),)),
        Event(side=Side.CLIENT, kind=Kind.DATA, session="smtp-1", protocol="smtp", verb="DATA",
              raw=b"Subject: x\r\n\r\n" + b"body\r\n" * 40 + b".\r\n"),
    ]
    plain_rich, plain_ansi = TerminalSink(Console(file=io.StringIO(), width=300, color_system=None)), \
        TerminalSink(Console(file=io.StringIO(), width=300, color_system=None))
    for e in events:
        plain_rich.handle(e)
    assert "".join(plain_ansi.ansi(e) for e in events) == plain_rich.console.file.getvalue()
    coloured = TerminalSink(Console(file=io.StringIO(), width=300, force_terminal=True, color_system="256"))
    text = "".join(coloured.ansi(e) for e in events)
    assert "\x1b[" in text and re.sub(r"\x1b\[[0-9;]*m", "", text) == plain_rich.console.file.getvalue()


def test_serve_quiet_shows_no_dialogue_but_logs_it(tmp_path):
    from test_cli_serve import start

    log = tmp_path / "q.jsonl"
    proc, ports, _ = start(["serve", "smtp", "--port", "0", "--dir", "lab", "--no-tls", "--quiet", "--log", str(log)],
                           tmp_path)
    try:
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as client:
            client.sendmail("a@example.org", ["bob@lab.test"], b"Subject: q\r\n\r\nquiet\r\n")
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert b"MAIL FROM" not in out.upper() and b"stopped" in out
    assert "MAIL FROM:<A@EXAMPLE.ORG>" in log.read_text().upper()


def test_background_log_writer_keeps_order_and_is_complete_at_close(tmp_path):
    from mailtrace.transcript.background import BackgroundSink
    from mailtrace.transcript.jsonl import JsonlSink, read_jsonl

    path = tmp_path / "bg.jsonl"
    sink = BackgroundSink(JsonlSink(path, autoflush=False))
    rec = Recorder([sink])
    sessions = [rec.session("smtp") for _ in range(50)]
    for i in range(20):
        for s in sessions:
            s.record(noop(i))
    for s in sessions:
        s.close()
    rec.close()
    events = list(read_jsonl(path))
    assert len(events) == 50 * 22
    for s in sessions:
        mine = [e for e in events if e.session == s.id]
        assert [e.seq for e in mine] == list(range(22)) and mine[-1].kind is Kind.CLOSE


def test_a_terminal_that_is_gone_stops_the_view_and_nothing_more_is_queued():
    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    live = LiveView(TerminalSink(Console(file=io.StringIO(), color_system=None)), file=Closed())
    rec = Recorder([live])
    s = rec.session("smtp")
    s.record(noop(1))
    live._thread.join(5)  # the first write fails: the thread ends
    assert not live._thread.is_alive()
    for i in range(100):
        s.record(noop(i))
    assert len(live._queue) == 0
    rec.close()


def test_close_waits_for_a_slow_view_to_draw_everything_it_has():
    # A starved machine makes the view's thread slow; the process ends right after close(), so
    # close() must wait while the thread still makes progress (it once gave up after 1 s and the
    # last lines were lost).  Here each line takes 50 ms to prepare: 40 lines take 2 s.
    out = io.StringIO()

    def slow(event):
        time.sleep(0.05)  # stands for a thread that gets little CPU
        return event

    live = LiveView(TerminalSink(Console(file=out, width=200, color_system=None)), prepare=slow, where="t.jsonl")
    for i in range(40):
        live.handle(noop(i))
    live.close()
    assert not live._thread.is_alive()
    assert all(f"C → NOOP {i}" in out.getvalue() for i in range(40))


def test_a_terminal_that_takes_no_output_is_given_up_and_the_dropped_events_are_counted(capsys):
    # Ctrl-S, or a pipe nobody reads: write() blocks.  close() gives up after `stall` seconds
    # without progress and says on standard error how many events were not shown.
    blocked = threading.Event()
    release = threading.Event()

    class Paused(io.StringIO):
        def write(self, text):
            blocked.set()
            release.wait(60)
            return super().write(text)

    live = LiveView(TerminalSink(Console(file=io.StringIO(), color_system=None)), file=Paused(), where="t.jsonl")
    live.handle(noop(1))
    assert blocked.wait(30)  # the first batch is stuck in write()
    for i in range(7):
        live.handle(noop(i))
    try:
        live.close(stall=0.2)
        assert live._thread.is_alive()
        assert "8 events not shown: the terminal took no more output; every event is in t.jsonl" in capsys.readouterr().err
    finally:
        release.set()
        live._thread.join(30)


def test_a_lab_workers_counts_are_summed_up_with_the_events_it_sent_whole():
    # A lab worker (--workers) sends the view only the events of its budget, and counts the rest
    # (DetailBudget); the view draws and sums up as if it had had them all.
    from mailtrace.transcript.live import DetailBudget

    now = [0.0]
    budget = DetailBudget(per_second=7, clock=lambda: now[0])
    live, out = view(detail=10)
    whole = MemorySink()

    class Worker:  # what the worker's link does with each event
        def handle(self, event: Event) -> None:
            if budget.wanted(event):
                live.handle(event)
                whole.handle(event)

        def close(self) -> None:
            pass

    memory = MemorySink()
    rec = Recorder([Worker(), memory])
    for k in range(30):
        now[0] = k * 0.25  # four sessions a second: the budget starts over every fourth
        s = rec.session("smtp" if k % 2 else "pop3")
        for i in range(10):
            s.record(noop(k * 100 + i))
        s.violation("bare-lf")
        s.close()
        if k % 3 == 2:
            tally = budget.take_tally()
            if tally is not None:
                live.add_tally(tally)
    tally = budget.take_tally()
    if tally is not None:
        live.add_tally(tally)
    rec.close()
    live.close()
    total = len(memory.events)
    assert total == 30 * 13
    assert 0 < len(whole.events) < total  # (some events were only counted)
    assert_all_accounted_for(out.getvalue(), total, sessions=30, mistakes=30)
    # the sessions whose close was only counted are forgotten by the view all the same
    assert live.terminal._colour == {} and live.terminal._phase == {}
