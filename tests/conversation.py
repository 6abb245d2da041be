"""One way to talk to any sans-I/O server core in a test (SMTP, POP3, IMAP): bytes in, every
output kept, each ``Pending`` store job run at once (``protocols.base.settle``: what the asyncio
shell does, without threads).

A script, read like a transcript: ``>`` is what the client sends (CRLF added), ``<`` the start
of the next line the server sends.  Server lines the script does not list before the next ``>``
are not checked (the rest of a multi-line reply), so list only what the test is about:

    conv = converse(core, "<220 ", ">EHLO x", "<250-lab.test", ">MAIL FROM:<a@x>", "<250 ")
    conv.events, conv.sent, conv.closed, conv.state

Or step by step, any chunking (``chunk=1``: byte by byte, as a slow network delivers):

    conv = Conversation(core, chunk=1)
    reply = conv.send(b"NOOP\\r\\n")          # the bytes the core answered
    conv.lines("USER alice", "PASS pw")     # CRLF added to each

``lab_core(protocol, directory)`` builds the core the lab itself runs (its factory, a real
Maildir store) for tests that want the whole lab configuration.
"""

from __future__ import annotations

from pathlib import Path

from mailtrace.protocols.base import Close, Send, settle
from mailtrace.transcript.event import Event, Kind


class Conversation:
    """A core and everything it output so far."""

    def __init__(self, core, *, chunk: int = 0, start: bool = True) -> None:
        self.core = core
        self.chunk = chunk
        self.outputs: list = []
        if start:
            self._take(self.core.start())

    def _take(self, outputs) -> list:
        done = settle(list(outputs))
        self.outputs += done
        return done

    def send(self, data: bytes, chunk: int | None = None) -> bytes:
        """Feed ``data`` (in pieces of ``chunk`` bytes, default the conversation's; 0: whole);
        return the bytes the core sent back."""
        step = (self.chunk if chunk is None else chunk) or max(1, len(data))
        got: list = []
        for i in range(0, len(data), step):
            got += self._take(self.core.receive(data[i:i + step]))
        return b"".join(o.data for o in got if isinstance(o, Send))

    def lines(self, *lines: str | bytes) -> bytes:
        """Send each line with CRLF, one after the other; return everything sent back."""
        return b"".join(self.send((x.encode() if isinstance(x, str) else x) + b"\r\n") for x in lines)

    def eof(self) -> bytes:
        """The client went away."""
        return b"".join(o.data for o in self._take(self.core.eof()) if isinstance(o, Send))

    @property
    def sent(self) -> bytes:
        """Every byte the core sent, from the greeting on."""
        return b"".join(o.data for o in self.outputs if isinstance(o, Send))

    @property
    def events(self) -> list[Event]:
        return [o for o in self.outputs if isinstance(o, Event)]

    @property
    def closed(self) -> bool:
        return any(isinstance(o, Close) for o in self.outputs)

    @property
    def state(self) -> str:
        """The state the last event recorded (the core's own name for it)."""
        return [e for e in self.events if e.state][-1].state

    def codes(self) -> list[str]:
        """The code of each reply (the last line only of a multi-line SMTP reply)."""
        return [e.code for e in self.events if e.kind is Kind.REPLY and e.raw[3:4] != b"-"]

    def notes(self) -> list[str]:
        """The rules of every violation note, in order."""
        return [n.rule for e in self.events for n in e.notes]


def converse(core, *script: str, chunk: int = 0, start: bool = True) -> Conversation:
    """Play ``script`` (``>`` client line, ``<`` start of the next server line) against ``core``;
    fail with the transcript so far at the first server line that does not match."""
    conv = Conversation(core, chunk=chunk, start=start)
    transcript: list[str] = []
    unread = _lines(conv.sent)
    for step in script:
        kind, text = step[:1], step[1:]
        if kind == ">":
            transcript += [f"C: {x}" for x in text.split("\r\n")]
            unread = _lines(conv.send(text.encode("utf-8") + b"\r\n"))
        elif kind == "<":
            if not unread:
                raise AssertionError(f"expected {text!r}, the server sent nothing more\n" + "\n".join(transcript))
            line = unread.pop(0)
            transcript.append(f"S: {line}")
            if not line.startswith(text):
                raise AssertionError(f"expected a line starting {text!r}, got {line!r}\n" + "\n".join(transcript))
        else:
            raise ValueError(f"a script step starts with > (client) or < (server): {step!r}")
    return conv


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").split("\r\n")[:-1] if data else []


def lab_core(protocol: str, directory: Path, client: str = "127.0.0.1:50000", tls_context=None):
    """The core the lab runs for ``protocol`` (its factory and Maildir store under ``directory``;
    with ``tls_context`` it offers STARTTLS/STLS)."""
    from mailtrace.servers.base import ConnectionContext
    from mailtrace.servers.lab import Lab, core_factory

    lab = Lab(directory=directory, tls_context=tls_context)
    return core_factory(protocol, lab)(ConnectionContext(client, "127.0.0.1:25", False))
