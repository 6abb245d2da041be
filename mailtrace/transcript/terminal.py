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

from rich.console import Console
from rich.text import Text

from mailtrace import knowledge
from mailtrace.transcript.event import Event, Kind, Side

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


class TerminalSink:
    def __init__(self, console: Console | None = None, *, lang: str = "en", show_secrets: bool = False,
                 annotate: bool = True) -> None:
        self.console = console or Console(highlight=False)
        self.lang = lang
        self.show_secrets = show_secrets
        self.annotate = annotate
        self._phase: dict[str, str] = {}
        self._colour: dict[str, str] = {}

    def _session_style(self, session: str) -> str:
        if session not in self._colour:
            self._colour[session] = SESSION_COLOURS[len(self._colour) % len(SESSION_COLOURS)]
        return self._colour[session]

    def render(self, event: Event) -> list[Text]:
        """The rich lines for one event (also used by ``mailtrace show``)."""
        out: list[Text] = []
        sess_style = self._session_style(event.session)
        label = Text(f"{event.session:>8} ", style=sess_style)
        if event.kind is Kind.CLOSE:
            self._phase.pop(event.session, None)
        elif event.state:
            heading = knowledge.state_heading(event.protocol, event.state, self.lang)
            if heading and self._phase.get(event.session) != heading[1]:
                self._phase[event.session] = heading[1]
                out.append(Text.assemble(label, (f"── {heading[0]} ", f"bold {sess_style}"), ("─" * 30, sess_style)))
        line = label.copy()
        line.append(f"{event.t:7.3f} ", style="dim")
        ann = knowledge.annotate(event, self.lang)
        if event.kind is Kind.OPEN:
            info = event.info
            line.append(f"● {event.protocol.upper()} {info.get('client', '')} → {info.get('server', '')}", style="bold")
            if ann.meaning:
                line.append(f"   {ann.meaning}", style="dim")
        elif event.kind is Kind.CLOSE:
            reason = event.info.get("reason", "")
            line.append("● closed" + (f" ({reason})" if reason else ""), style="bold")
        elif event.kind in (Kind.TLS, Kind.GAP, Kind.VIOLATION):
            style = {"tls": "bold magenta", "gap": "bold yellow", "violation": "bold red"}[event.kind.value]
            line.append(f"◆ {event.text(self.show_secrets) or ann.meaning}", style=style)
        else:
            arrow = "C →" if event.side is Side.CLIENT else "S ←"
            if event.side is Side.CLIENT:
                style = "bold white"
            else:
                style = reply_style(event.code)
            line.append(f"{arrow} ", style="bold blue" if event.side is Side.CLIENT else "bold green")
            if event.kind in (Kind.DATA, Kind.LITERAL) and not _is_short(event, self.show_secrets):
                body = event.shown(self.show_secrets)
                lines = body.count(b"\n")
                what = event.verb.lower() if event.verb else event.kind.value
                shown = f"[{what}: {event.octets:,} octets, {lines:,} lines]"
                line.append(shown, style="italic")
                width = len(shown)
            else:
                text = event.text(self.show_secrets)
                line.append(text, style=style)
                width = len(text)
            if self.annotate and ann.meaning:
                pad = max(1, TEXT_WIDTH - width)
                line.append(" " * pad)
                line.append(ann.meaning + (f" ({ann.rfc})" if ann.rfc else ""), style="dim")
        out.append(line)
        for meaning, rfc, detail in ann.problems:
            out.append(Text.assemble(
                (" " * 17, ""),
                ("! " + meaning, "bold red"),
                (f" [{detail}]" if detail else "", "red"),
                (f" ({rfc})" if rfc else "", "dim red"),
            ))
        return out

    def handle(self, event: Event) -> None:
        for text in self.render(event):
            self.console.print(text, soft_wrap=True)

    def close(self) -> None:
        pass
