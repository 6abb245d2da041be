"""Shared fixtures: a real lab (listeners on 127.0.0.1 port 0) running in a background thread.

    def test_something(lab):                 # SMTP only, STARTTLS available
        smtplib.SMTP("127.0.0.1", lab.port("smtp"))
        lab.store.mailbox("bob").messages()
        lab.wait_for(lambda events: ...)    # the MemorySink's events, once the server has them

    def test_other(lab_factory):             # any protocols, users, TLS, overrides
        lab = lab_factory(("pop3", "smtp"), users={"carol": "pw"}, tls=False)
        lab.port("pop3"); lab.tls_port("pop3")

The lab runs its asyncio loop in a daemon thread, so tests drive it with ordinary blocking
clients (smtplib, poplib, imaplib, subprocesses like swaks and curl).  Everything is stopped
when the test ends.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path
from typing import Callable, Iterable

import pytest

from mailtrace.transcript.event import Event, Kind
from mailtrace.transcript.recorder import MemorySink


class LabRunner:
    """Lab servers on ephemeral ports in a background event loop."""

    def __init__(self, directory: Path, protocols: Iterable[str] = ("smtp",), *, users: dict | None = None,
                 tls: bool = True, implicit_tls: bool = False, sinks: tuple = (), lab_attrs: dict | None = None,
                 factory_overrides: dict | None = None, limits: dict | None = None) -> None:
        from mailtrace.cli.serve import build_lab

        self.directory = directory
        self.protocols = tuple(protocols)
        self.sink = MemorySink()
        self.lab = build_lab(directory, dict(users or {"alice": "alice", "bob": "bob"}), tls=tls, live=False,
                             sinks=(self.sink, *sinks), limits=limits)
        for name, value in (lab_attrs or {}).items():
            setattr(self.lab, name, value)
        self.factory_overrides = factory_overrides or {}
        self.implicit_tls = implicit_tls and tls
        self.listeners: dict[tuple[str, bool], object] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="mailtrace-lab", daemon=True)
        self._thread.start()
        self.call(self._start())

    @property
    def store(self):
        return self.lab.store

    @property
    def events(self) -> list[Event]:
        return list(self.sink.events)

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        from mailtrace.servers.base import Listener, ListenerConfig
        from mailtrace.servers.lab import core_factory

        for proto in self.protocols:
            overrides = self.factory_overrides.get(proto, {})
            if overrides:
                module = __import__(f"mailtrace.servers.{proto}", fromlist=["make_core_factory"])
                factory = module.make_core_factory(self.lab, **overrides)
            else:
                factory = core_factory(proto, self.lab)
            modes = (False, True) if self.implicit_tls else (False,)
            for implicit in modes:
                listener = Listener(ListenerConfig(proto, "127.0.0.1", 0, implicit), factory, self.lab.recorder,
                                    self.lab.tls_context, self.lab.limiter)
                await listener.start()
                self.listeners[(proto, implicit)] = listener

    def port(self, protocol: str = "smtp") -> int:
        return self.listeners[(protocol, False)].port

    def tls_port(self, protocol: str = "smtp") -> int:
        return self.listeners[(protocol, True)].port

    def client_tls_context(self):
        from mailtrace.tls import client_context

        return client_context(self.directory)

    def wait_for(self, predicate: Callable[[list[Event]], object], timeout: float = 10.0):
        """Poll the recorded events until ``predicate(events)`` is truthy; return its value."""
        from waiting import wait_until

        try:
            return wait_until(lambda: predicate(self.events), timeout, what="events")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last ones: {self.events[-5:]}") from None

    def wait_closed(self, sessions: int = 1, timeout: float = 10.0) -> list[Event]:
        """Wait until ``sessions`` sessions have recorded their close event."""
        return self.wait_for(lambda evs: len([e for e in evs if e.kind is Kind.CLOSE]) >= sessions and evs, timeout)

    def stop(self) -> None:
        if getattr(self, "_stopped", False):  # a test stopped it already; teardown calls again
            return
        self._stopped = True

        async def _stop():
            for listener in self.listeners.values():
                await listener.stop()

        try:
            self.call(_stop(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.lab.recorder.close()
            if hasattr(self.lab.store, "close"):
                self.lab.store.close()


@pytest.fixture
def lab_factory(tmp_path):
    """Start labs: ``lab_factory(("smtp", "pop3"), users=..., tls=..., implicit_tls=...)``."""
    runners: list[LabRunner] = []

    def make(protocols: Iterable[str] = ("smtp",), **kw) -> LabRunner:
        directory = tmp_path / f"lab{len(runners)}"
        runner = LabRunner(directory, protocols, **kw)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.stop()


@pytest.fixture
def lab(lab_factory) -> LabRunner:
    """An SMTP lab server (users alice/alice and bob/bob, STARTTLS available)."""
    return lab_factory(("smtp",))


def need(tool: str) -> str:
    """The path of an external program, or skip the test with a clear reason."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (apt-get install {tool})")
    return path


@pytest.fixture(scope="session")
def defective(tmp_path_factory) -> dict:
    """Every defective client of tests/defects.py by name ("smtp/no_quit.py" -> Path): the mutants
    written once per session from today's reference solutions, the hand-written ones in place."""
    from defects import write_all

    return write_all(tmp_path_factory.mktemp("defective"))
