"""Plain-text transcripts in the lecture's layout::

    S: 220 lab.test ESMTP mailtrace
    C: HELO crepes.fr
    S: 250 Hello crepes.fr, pleased to meet you

Sessions are separated by a heading line; a DATA body or IMAP literal is written in full
(it is part of the dialogue) unless ``fold`` is set, in which case one summary line stands for it.
While two or more sessions are open at once (Thunderbird opens several IMAP connections, an
MTA a second SMTP session for a bounce) their lines interleave, so each line then starts with
its session's name, as JSONL and ``mailtrace show`` label every event::

    [imap-1] C: a3 IDLE
    [imap-2] C: b1 SELECT INBOX
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Iterable

from mailtrace import knowledge
from mailtrace.transcript.event import Event, Kind, Peer, Side
from mailtrace.transcript.filesink import FileSink


def format_event(event: Event, *, show_secrets: bool = False, fold: bool = False, lang: str = "en",
                 annotate: bool = False) -> list[str]:
    """The text lines for one event (empty for events that carry no dialogue)."""
    if event.kind is Kind.OPEN:
        peer = event.peer or Peer()
        return [knowledge.phrase("view", "session-open", lang, session=event.session, protocol=event.protocol,
                                 client=peer.client, server=peer.server)]
    if event.kind is Kind.CLOSE:
        reason = knowledge.close_reason(event, lang)
        return [knowledge.phrase("view", "session-closed-why" if reason else "session-closed", lang,
                                 session=event.session, reason=reason)]
    lines: list[str] = []
    prefix = {Side.CLIENT: "C: ", Side.SERVER: "S: "}.get(event.side, "   ")
    if event.kind in (Kind.DATA, Kind.LITERAL) and fold:
        lines.append(prefix + knowledge.phrase("view", "folded-short", lang, what=knowledge.phrase("view", event.kind.value, lang),
                                               octets=event.octets))
    elif event.kind in (Kind.DATA, Kind.LITERAL):
        body = event.shown(show_secrets).decode("utf-8", errors="backslashreplace")
        for line in body.splitlines():
            lines.append(prefix + line)
        if event.size >= 0 and event.size > len(event.raw):
            lines.append(prefix + knowledge.phrase("view", "not-recorded", lang, octets=event.size - len(event.raw)))
    elif event.kind in (Kind.TLS, Kind.GAP, Kind.VIOLATION):
        ann = knowledge.annotate(event, lang)
        text = (knowledge.tls_mark(event, lang) if event.kind is Kind.TLS else "") or (event.text(show_secrets) if event.raw else "")
        kind = "note" if event.kind is Kind.VIOLATION and event.notes and not ann.problems else event.kind.value
        lines.append(f"*** {knowledge.phrase('view', kind, lang)}: {text or ann.meaning}")
    else:
        lines.append(prefix + event.text(show_secrets))
    if annotate:
        ann = knowledge.annotate(event, lang)
        if ann.meaning and event.kind in (Kind.COMMAND, Kind.REPLY):
            lines[-1] += f"    # {ann.meaning}" + (f" ({ann.rfc})" if ann.rfc else "")
    ann = knowledge.annotate(event, lang)
    for meaning, rfc, detail in ann.problems:
        lines.append(f"!!! {meaning}" + (f" [{detail}]" if detail else "") + (f" ({rfc})" if rfc else ""))
    for meaning, rfc, detail in ann.infos:  # what happened, no rule broken
        lines.append(f"ℹ {meaning}" + (f" [{detail}]" if detail else "") + (f" ({rfc})" if rfc else ""))
    return lines


class SessionLabels:
    """Tracks the open sessions; gives the "[session] " label of an event of a session that has
    overlapped another.  It keeps its label until it closes: once the others have closed, an
    unlabelled line after "--- session pop3-25 closed" would read as pop3-25's."""

    def __init__(self) -> None:
        self._open: set[str] = set()
        self._labelled: set[str] = set()  # open sessions that have overlapped another

    def label(self, event: Event) -> str:
        if not event.session:
            return ""
        if event.kind is Kind.CLOSE:
            self._open.discard(event.session)
            self._labelled.discard(event.session)
            return ""
        if event.session not in self._open:  # an OPEN, or a session whose OPEN came before this sink
            self._open.add(event.session)
            if len(self._open) == 2:  # the first overlap: both get labels (later ones: the newcomer;
                self._labelled |= self._open  # the others have theirs already)
            elif len(self._open) > 2:
                self._labelled.add(event.session)
        if event.kind is Kind.OPEN or event.session not in self._labelled:
            return ""
        return f"[{event.session}] "


class TextSink(FileSink):
    def __init__(self, target: str | Path | IO[str], show_secrets: bool = False, lang: str = "en",
                 autoflush: bool = True) -> None:
        super().__init__(target, autoflush)
        self.show_secrets = show_secrets
        self.lang = lang
        self._labels = SessionLabels()

    def handle(self, event: Event) -> None:
        label = self._labels.label(event)
        for line in format_event(event, show_secrets=self.show_secrets, lang=self.lang):
            self._file.write(label + line + "\n")
        self._written(event)


def render_text(events: Iterable[Event], **kw) -> str:
    out: list[str] = []
    labels = SessionLabels()
    for event in events:
        label = labels.label(event)
        out.extend(label + line for line in format_event(event, **kw))
    return "\n".join(out) + ("\n" if out else "")
