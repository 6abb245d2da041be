"""What the web view costs the SMTP lab server (run by hand, not a test).

    python tests/bench/bench_web.py [--seconds 3] [--rounds 3] [--sessions 1,10] [--size 1024]

Three SMTP lab servers run side by side, each in its own process, all with fsync and the
JSONL log on (as bench_smtp.py):

* ``plain``: no web view (``mailtrace lab`` without --web);
* ``web``: with ``--web``, nobody watching (the feed keeps the sessions; no browser);
* ``watched``: with ``--web`` and one headless Chromium on the page, receiving every live
  update of the list of sessions, as a projected screen would.

The load (bench_smtp.py's polite client: MAIL, RCPT, DATA, body, ".") alternates between the
three servers, the best of the rounds is kept, and the messages per second are printed with
the ratios against ``plain`` measured in the same run.  The goal (issue #15): ``web`` costs
nothing measurable and ``watched`` is at most 10% slower than ``plain``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from bench_smtp import cpu_seconds, load  # noqa: E402

KINDS = ("plain", "web", "watched")


async def serve(directory: Path, web: bool) -> None:
    from mailtrace.servers.base import Listener, ListenerConfig
    from mailtrace.servers.lab import Lab
    from mailtrace.servers.smtp import make_core_factory
    from mailtrace.store.maildir import MaildirStore
    from mailtrace.transcript.jsonl import JsonlSink
    from mailtrace.transcript.recorder import Recorder

    users = {"alice": "alice", "bob": "bob"}
    sinks: list = [JsonlSink(directory / "transcript.jsonl", autoflush=False)]
    settings = None
    if web:
        from mailtrace.web import WebSettings

        settings = WebSettings("127.0.0.1", 0)
        sinks.append(settings.feed)
    lab = Lab(directory=directory, users=users, recorder=Recorder(sinks))
    lab.store = MaildirStore(directory / "mail", users)
    listener = Listener(ListenerConfig("smtp", "127.0.0.1", 0), make_core_factory(lab), lab.recorder)
    await listener.start()
    web_port = 0
    if settings is not None:
        from mailtrace.web import start_for_lab

        web_port = (await start_for_lab(settings, lab)).port
    print(listener.port, web_port, flush=True)
    await asyncio.Event().wait()


def start_server(kind: str, directory: Path) -> tuple[subprocess.Popen, int, int]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(directory)], stdout=subprocess.PIPE,
                            text=True)
    smtp_port, web_port = (int(x) for x in proc.stdout.readline().split())
    return proc, smtp_port, web_port


def open_browser(url: str):
    """Headless Chromium on the page (selenium + chromium-driver), or exit with the reason."""
    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver_path:
        sys.exit("bench_web: needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    profile = tempfile.mkdtemp(prefix="bench-web-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.get(url)
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    return driver, profile


def sink_cost(sessions: int = 1000) -> None:
    """The feed's cost per event beside the JSONL sink's (both in this process, same events)."""
    import io
    import time

    from mailtrace.transcript.event import Event, Kind, Peer, Side
    from mailtrace.transcript.jsonl import JsonlSink
    from mailtrace.web.feed import WebFeed

    events = []
    for n in range(sessions):
        sid = f"smtp-{n}"
        events.append(Event(side=Side.NONE, kind=Kind.OPEN, session=sid, protocol="smtp", peer=Peer(started=1.0)))
        for i in range(20):
            events.append(Event(side=Side.CLIENT, kind=Kind.COMMAND, session=sid, protocol="smtp", verb="MAIL",
                                raw=b"MAIL FROM:<bench@client.test>\r\n", state="mail", seq=i + 1, t=i / 1000))
        events.append(Event(side=Side.NONE, kind=Kind.CLOSE, session=sid, protocol="smtp"))
    cost = {}
    for name, sink in (("feed", WebFeed()), ("jsonl", JsonlSink(io.StringIO(), autoflush=False))):
        start = time.perf_counter()
        for event in events:
            sink.handle(event)
        cost[name] = (time.perf_counter() - start) / len(events) * 1e6
    print(f"sink cost per event: web feed {cost['feed']:.2f} us, JSONL log {cost['jsonl']:.2f} us "
          f"(ratio {cost['feed'] / cost['jsonl']:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sessions", default="1,10")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--serve", nargs=2, metavar=("KIND", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        try:
            asyncio.run(serve(Path(args.serve[1]), args.serve[0] != "plain"))
        except KeyboardInterrupt:
            pass
        return
    sessions = [int(x) for x in args.sessions.split(",")]
    sink_cost()
    print(f"SMTP lab server, fsync and JSONL log on; {args.size}-octet messages; best of {args.rounds} x "
          f"{args.seconds:g} s per point; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'sessions':>8} {'plain msg/s':>12} {'web msg/s':>10} {'watched msg/s':>14} {'web/plain':>10} "
          f"{'watched/plain':>14}   {'CPU ms/msg plain':>16} {'web':>6} {'watched':>8}")
    driver = profile = None
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        procs, ports = {}, {}
        try:
            for kind in KINDS:
                directory = Path(tmp) / kind
                directory.mkdir()
                procs[kind], ports[kind], web_port = start_server(kind, directory)
                if kind == "watched":
                    driver, profile = open_browser(f"http://127.0.0.1:{web_port}/")
            for n in sessions:
                rate: dict = {}
                cpu: dict = {}
                for _ in range(args.rounds):
                    for kind in KINDS:
                        cpu0 = cpu_seconds(procs[kind].pid)
                        r, count = asyncio.run(load(ports[kind], n, args.size, args.seconds))
                        ms = (cpu_seconds(procs[kind].pid) - cpu0) / max(count, 1) * 1000
                        rate[kind] = max(r, rate.get(kind, 0.0))
                        cpu[kind] = min(ms, cpu.get(kind, float("inf")))
                shown = driver.execute_script("return document.querySelectorAll('#sessions-table tbody tr').length")
                base = rate["plain"] or 1
                print(f"{n:>8} {rate['plain']:>12.0f} {rate['web']:>10.0f} {rate['watched']:>14.0f} "
                      f"{rate['web'] / base:>10.2f} {rate['watched'] / base:>14.2f}   {cpu['plain']:>16.2f} "
                      f"{cpu['web']:>6.2f} {cpu['watched']:>8.2f}   (browser lists {shown} sessions)", flush=True)
        finally:
            if driver is not None:
                driver.quit()
                shutil.rmtree(profile, ignore_errors=True)
            for proc in procs.values():
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
