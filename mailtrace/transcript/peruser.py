"""Per-user transcripts for a classroom lab (``mailtrace lab --log-dir DIR``).

Each session is filed under the lab user it belongs to, so a teacher can hand each student
their own dialogues: ``DIR/<user>/<run>.txt`` (S:/C: lines) and ``DIR/<user>/<run>.jsonl``
(``mailtrace show`` reads it), one pair per run of the lab.  Who a session belongs to is
known only once the client logs in (or, for SMTP without AUTH, names a lab user as its
envelope sender): the server shell tells this sink through ``user_of(session_id)``; the
events before that are held (at most ``MAX_HELD`` per session) and written with the rest.
Sessions that never name a user go to ``DIR/_anonymous/``.  Secrets are redacted as in
every other sink unless ``show_secrets``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

from mailtrace.transcript.event import Event, Kind

ANONYMOUS = "_anonymous"
MAX_HELD = 2000  # events of one session held while its user is unknown (bounded memory)
_SAFE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class PerUserSink:
    def __init__(self, directory: str | Path, user_of: Callable[[str], str | None], *, show_secrets: bool = False,
                 lang: str = "en") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.user_of = user_of
        self.show_secrets = show_secrets
        self.lang = lang
        self.run = time.strftime("%Y%m%d-%H%M%S")
        self._sinks: dict[str, list] = {}
        self._owner: dict[str, str] = {}  # session id -> user (decided)
        self._held: dict[str, list[Event]] = {}

    def _for(self, user: str) -> list:
        sinks = self._sinks.get(user)
        if sinks is None:
            from mailtrace.proxy.safe import EscapingSink
            from mailtrace.transcript.jsonl import JsonlSink
            from mailtrace.transcript.text import TextSink

            folder = self.directory / (user if _SAFE.match(user) else ANONYMOUS)
            folder.mkdir(exist_ok=True)
            sinks = [JsonlSink(folder / f"{self.run}.jsonl", show_secrets=self.show_secrets, autoflush=False),
                     EscapingSink(TextSink(folder / f"{self.run}.txt", show_secrets=self.show_secrets, lang=self.lang,
                                           autoflush=False))]
            self._sinks[user] = sinks
        return sinks

    def _write(self, user: str, events: list[Event]) -> None:
        for sink in self._for(user):
            for event in events:
                sink.handle(event)

    def handle(self, event: Event) -> None:
        sid = event.session
        user = self._owner.get(sid) or self.user_of(sid)
        closing = event.kind is Kind.CLOSE
        if user is None:
            held = self._held.setdefault(sid, [])
            held.append(event)
            if closing or len(held) >= MAX_HELD:
                self._owner[sid] = ANONYMOUS
                self._write(ANONYMOUS, self._held.pop(sid))
            if closing:
                self._owner.pop(sid, None)
            return
        self._owner[sid] = user
        self._write(user, [*self._held.pop(sid, []), event])
        if closing:
            self._owner.pop(sid, None)

    def flush(self) -> None:
        for sinks in self._sinks.values():
            for sink in sinks:
                sink.flush()

    def close(self) -> None:
        for sid, held in list(self._held.items()):
            self._write(ANONYMOUS, held)
        self._held.clear()
        for sinks in self._sinks.values():
            for sink in sinks:
                sink.close()
        self._sinks.clear()
