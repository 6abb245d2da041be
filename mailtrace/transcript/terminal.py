"""The live terminal view of a transcript (rich).

One line per event::

    smtp-1 ── handshake ──────────────────────────────
    smtp-1  0.000 S ← 220 lab.test ESMTP mailtrace        Service ready (RFC 5321 §4.2.3)
    smtp-1  0.412 C → HELO crepes.fr                      Client says hello ... (RFC 5321 §4.1.1.1)
    smtp-1  1.020 C → [message body: 1,234 octets, 27 lines]
             ! Bare LF: lines must end in CRLF (RFC 5321 §2.3.8)

Client lines point right (→), server lines left (←); reply classes are coloured (2xx green,
3xx cyan, 4xx yellow, 5xx red; +OK/-ERR and OK/NO/BAD alike).  A DATA body or IMAP literal is
folded into one summary line.  A heading is printed when a session enters a new phase or state.
When stdout is not a terminal rich writes no colour codes, so the transcript can be piped.
"""

from __future__ import annotations

from rich.color import ColorSystem
from rich.console import Console
from rich.style import Style
from rich.text import Text

from mailtrace import knowledge
from mailtrace.transcript.event import Event, Kind, Peer, Side

SESSION_COLOURS = ("cyan", "magenta", "blue", "green", "yellow", "bright_cyan", "bright_magenta", "bright_blue")
TEXT_WIDTH = 48  # the annotation column starts after this many characters of dialogue


def reply_style(code: str) -> str:
    """Colour of a reply by its class (RFC 5321 §4.2.1 for SMTP; +OK/-ERR; OK/NO/BAD)."""
    if not code:
        return "white"
    first = code[0]
    if first == "2" or code in ("+OK", "OK", "PREAUTH"):
        return "green"
    if first == "3" or code == "+":
        return "cyan"
    if first == "4" or code == "NO":
        return "yellow"
    if first == "5" or code in ("-ERR", "BAD", "BYE"):
        return "red"
    return "white"


FOLD_ABOVE = 120  # a DATA block or literal longer than this (or of several lines) is folded


def _is_short(event: Event, show_secrets: bool) -> bool:
    """One short line (an AUTH response, a user-name literal) is shown, not folded."""
    body = event.shown(show_secrets)
    return event.size < 0 and len(body) <= FOLD_ABOVE and body.rstrip(b"\r\n").count(b"\n") == 0


Line = list[tuple[str, str]]  # one screen line: (text, rich style name) pieces


class TerminalSink:
    """The live view's renderer.  ``lines()`` decides what to show (pieces of text and style
    names); ``render()`` makes rich ``Text`` of them (``mailtrace show``, tests), ``ansi()``
    writes them straight as terminal escape codes, with no rich rendering per line (the
    live view, ``mailtrace.transcript.live``, where thousands of lines a second may come)."""

    def __init__(self, console: Console | None = None, *, lang: str = "en", show_secrets: bool = False,
                 annotate: bool = True) -> None:
        self.console = console or Console(highlight=False)
        self.lang = lang
        self.show_secrets = show_secrets
        self.annotate = annotate
        self._phase: dict[str, str] = {}
        self._colour: dict[str, str] = {}
        self._next_colour = 0
        self._sgr: dict[str, tuple[str, str]] = {}  # style name -> (escape before, escape after)

    def _session_style(self, session: str) -> str:
        colour = self._colour.get(session)
        if colour is None:
            colour = self._colour[session] = SESSION_COLOURS[self._next_colour % len(SESSION_COLOURS)]
            self._next_colour += 1
        return colour

    def forget(self, session: str) -> None:
        """The session ended: drop what the view kept about it (its phase and colour)."""
        self._phase.pop(session, None)
        self._colour.pop(session, None)

    def lines(self, event: Event) -> list[Line]:
        """The screen lines for one event, as (text, style) pieces."""
        out: list[Line] = []
        sess_style = self._session_style(event.session)
        label = (f"{event.session:>8} ", sess_style)
        if event.kind is Kind.CLOSE:
            self.forget(event.session)
        elif event.state:
            heading = knowledge.state_heading(event.protocol, event.state, self.lang)
            if heading and self._phase.get(event.session) != heading[1]:
                self._phase[event.session] = heading[1]
                out.append([label, (f"── {heading[0]} ", f"bold {sess_style}"), ("─" * 30, sess_style)])
        line: Line = [label, (f"{event.t:7.3f} ", "dim")]
        ann = knowledge.annotate(event, self.lang)
        if event.kind is Kind.OPEN:
            peer = event.peer or Peer()
            line.append((f"● {event.protocol.upper()} {peer.client} → {peer.server}", "bold"))
            if ann.meaning:
                line.append((f"   {ann.meaning}", "dim"))
        elif event.kind is Kind.CLOSE:
            reason = knowledge.close_reason(event, self.lang)
            line.append(("● " + knowledge.phrase("view", "closed", self.lang) + (f" ({reason})" if reason else ""), "bold"))
        elif event.kind in (Kind.TLS, Kind.GAP, Kind.VIOLATION):
            style = {"tls": "bold magenta", "gap": "bold yellow", "violation": "bold red"}[event.kind.value]
            if event.kind is Kind.VIOLATION and not ann.problems:
                style = "bold cyan"  # only informative notes: nothing was done wrong
            mark = knowledge.tls_mark(event, self.lang) if event.kind is Kind.TLS else ""
            line.append((f"◆ {mark or event.text(self.show_secrets) or ann.meaning}", style))
        else:
            client = event.side is Side.CLIENT
            line.append(("C → " if client else "S ← ", "bold blue" if client else "bold green"))
            if event.kind in (Kind.DATA, Kind.LITERAL) and not _is_short(event, self.show_secrets):
                body = event.shown(self.show_secrets)
                what = event.verb.lower() if event.verb else knowledge.phrase("view", event.kind.value, self.lang)
                newlines = body.count(b"\n")
                text = knowledge.phrase("view", "folded", self.lang, what=what, octets=f"{event.octets:,}",
                                        lines=f"{newlines:,}")
                line.append((text, "italic"))
            else:
                text = event.text(self.show_secrets)
                line.append((text, "bold white" if client else reply_style(event.code)))
            if self.annotate and ann.meaning:
                line.append((" " * max(1, TEXT_WIDTH - len(text)), ""))
                line.append((ann.meaning + (f" ({ann.rfc})" if ann.rfc else ""), "dim"))
        out.append(line)
        for meaning, rfc, detail in ann.problems:
            out.append([(" " * 17, ""), ("! " + meaning, "bold red"), (f" [{detail}]" if detail else "", "red"),
                        (f" ({rfc})" if rfc else "", "dim red")])
        for meaning, rfc, detail in ann.infos:  # what happened, no rule broken: not in red
            out.append([(" " * 17, ""), ("ℹ " + meaning, "cyan"), (f" [{detail}]" if detail else "", "cyan"),
                        (f" ({rfc})" if rfc else "", "dim")])
        return out

    def render(self, event: Event) -> list[Text]:
        """The rich lines for one event (also used by ``mailtrace show``)."""
        return [Text.assemble(*line) for line in self.lines(event)]

    def ansi(self, event: Event) -> str:
        """The lines for one event as a string with terminal escape codes (none when the
        console has no colour: a pipe, a file, NO_COLOR), each line ending in a newline."""
        return "".join(self.ansi_line(line) for line in self.lines(event))

    def ansi_line(self, line: Line) -> str:
        parts = []
        for text, style in line:
            if not text:
                continue
            codes = self._sgr.get(style)
            if codes is None:
                codes = self._sgr[style] = self._codes(style)
            parts.append(codes[0] + text + codes[1])
        parts.append("\n")
        return "".join(parts)

    def _codes(self, style: str) -> tuple[str, str]:
        system = _COLOR_SYSTEMS.get(self.console.color_system or "")
        if not style or system is None or self.console.no_color:
            return "", ""
        before, _, after = Style.parse(style).render("\0", color_system=system).partition("\0")
        return before, after

    def handle(self, event: Event) -> None:
        for text in self.render(event):
            self.console.print(text, soft_wrap=True)

    def close(self) -> None:
        pass


_COLOR_SYSTEMS = {"standard": ColorSystem.STANDARD, "256": ColorSystem.EIGHT_BIT,
                  "truecolor": ColorSystem.TRUECOLOR, "windows": ColorSystem.WINDOWS}


class AnsiTerminalSink(TerminalSink):
    """The same lines, written straight to the console's file with ``ansi()`` (no rich
    rendering per line): ``mailtrace show`` of a large capture prints much faster."""

    def handle(self, event: Event) -> None:
        self.console.file.write(self.ansi(event))

    def close(self) -> None:
        self.console.file.flush()
