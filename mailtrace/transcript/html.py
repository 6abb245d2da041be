"""A transcript as one self-contained HTML page: a ladder (sequence) diagram.

Client on the left, server on the right, one arrow per line with its text; reply classes are
coloured like the terminal view (2xx/+OK/OK green, 3xx/+ cyan, 4xx/NO yellow, 5xx/-ERR/BAD red,
RFC 5321 §4.2.1); the annotation from ``mailtrace.knowledge`` sits beside each arrow; the time
between turns is shown on the left; a band marks each phase or state; DATA bodies and IMAP
literals are folded in ``<details>``; violations are highlighted.  Above each ladder a timeline
(``timeline``) draws the session on a real time axis and numbers its round trips, so what
PIPELINING saves is visible.  CSS, SVG and the few lines of JS are inline: the file opens
offline and loads nothing from the network.

``HtmlSink`` is the page as a transcript sink, like ``JsonlSink`` and ``TextSink``: it keeps each
session's events (a ladder needs the whole session) and writes the page when closed.  The page's
own words are data: ``[view]`` of knowledge/common.toml, in English and Spanish.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import IO, Iterable

from mailtrace import knowledge
from mailtrace.transcript.event import Event, Kind, Peer, Side
from mailtrace.transcript.filesink import FileSink
from mailtrace.transcript.timeline import round_trips, timeline_svg

UI_KEYS = ("client", "server", "session", "expand", "collapse", "annotations", "octets", "lines", "title", "closed",
           "started", "events", "legend", "timeline", "round_trip", "round_trips", "caption",
           "mark_open", "mark_close", "mark_tls", "mark_gap")


def ui_words(lang: str) -> dict[str, str]:
    """The page's own words in ``lang`` (``[view]`` of knowledge/common.toml)."""
    return {key: knowledge.phrase("view", key, lang) for key in UI_KEYS}


SLOW_TURN = 1.0  # seconds: a pause this long is highlighted
NEWLINE = b"\n"
SASL_VERBS = ("AUTH", "AUTHENTICATE")  # their DATA lines are one base64 SASL response each (RFC 4954 §4)

CSS = """
:root{--c2s:#1f5fbf;--ok:#1b7f3a;--more:#087f8c;--tmp:#a36b00;--err:#c0262d;--bg:#fbfbfd;--lane:#9aa5b1}
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;background:var(--bg);color:#1d232a}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.5em 0 .4em}
.toolbar button{margin-right:.5em;font:inherit;padding:.2em .7em;border:1px solid #b8c0c8;border-radius:4px;background:#fff;cursor:pointer}
.legend{color:#5b6570;font-size:.9em}
.ladder{display:grid;grid-template-columns:5.5em 1.5em minmax(18em,2fr) 1.5em minmax(14em,1.5fr);align-items:stretch;
 border:1px solid #dde2e7;background:#fff;margin-bottom:1em}
.ladder>div{padding:2px 6px;min-height:1.7em}
.head{font-weight:600;background:#eef1f5;border-bottom:1px solid #dde2e7;text-align:center}
.head.ends{grid-column:2/5;display:flex;justify-content:space-between}.head.ends>span{text-align:left}.head.ends>span+span{text-align:right}
.lane{border-left:3px solid transparent;position:relative}
.lane.c::after,.lane.s::after{content:"";position:absolute;top:0;bottom:0;left:50%;border-left:2px solid var(--lane)}
.dt{color:#6b7580;font-variant-numeric:tabular-nums;text-align:right;font-size:.85em;padding-top:.35em!important}
.dt.slow{color:var(--tmp);font-weight:600}
.msg{position:relative;border-bottom:2px solid currentColor;font-family:ui-monospace,Menlo,Consolas,monospace;
 white-space:pre-wrap;word-break:break-all;padding-bottom:1px!important}
.msg.c2s{color:var(--c2s);text-align:left}.msg.s2c{text-align:right}
.msg.c2s::after{content:"";position:absolute;right:-2px;bottom:-6px;border:5px solid transparent;border-left:9px solid currentColor}
.msg.s2c::before{content:"";position:absolute;left:-2px;bottom:-6px;border:5px solid transparent;border-right:9px solid currentColor}
.r2{color:var(--ok)}.r3{color:var(--more)}.r4{color:var(--tmp)}.r5{color:var(--err)}.r0{color:#333}
.ann{color:#3c4650;font-size:.9em}.ann .rfc{color:#7a848e;white-space:nowrap}
.band{grid-column:1/-1;background:#eef3fb;color:#1f3f73;font-weight:600;border-top:1px solid #c9d6ea;border-bottom:1px solid #c9d6ea;padding-left:1em!important}
.note{grid-column:2/5;text-align:center;font-style:italic;color:#555}
.note.tls{color:#7b2c9e;background:#f6eefb}.note.gap{color:#8a5a00;background:#fff6df}.note.viol{color:#a4161a;background:#fdecec}
.note.info{color:#1f3f73;background:#eef3fb}
.viol-row{background:#fdecec}.prob{color:#a4161a;font-weight:600;display:block}.info{color:#1f3f73;display:block}
details summary{cursor:pointer;font-style:italic}details pre{margin:.3em 0;max-height:30em;overflow:auto;background:#f6f7f9;color:#222;
 border:1px solid #e1e4e8;padding:.4em;text-align:left;font-size:.9em}
.hide-ann .ann>*{display:none}
.timeline{margin:.5em 0 1em;max-width:100%;overflow-x:auto}.timeline figcaption{color:#5b6570;font-size:.9em;max-width:60em}
.timeline svg{display:block;max-width:100%;height:auto;background:#fff;border:1px solid #dde2e7}
.rt{display:block;color:#1f3f73;font-size:.8em}
"""

JS = """
function setAll(open){document.querySelectorAll('details').forEach(function(d){d.open=open;});}
function toggleAnn(){document.body.classList.toggle('hide-ann');}
"""


def _reply_class(code: str) -> str:
    if not code:
        return "r0"
    if code[0] == "2" or code in ("+OK", "OK", "PREAUTH"):
        return "r2"
    if code[0] == "3" or code == "+":
        return "r3"
    if code[0] == "4" or code == "NO":
        return "r4"
    if code[0] == "5" or code in ("-ERR", "BAD", "BYE"):
        return "r5"
    return "r0"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _annotation(event: Event, lang: str) -> tuple[str, bool]:
    ann = knowledge.annotate(event, lang)
    parts = []
    if ann.meaning:
        parts.append(f"<span>{_e(ann.meaning)}</span>" + (f" <span class=rfc>{_e(ann.rfc)}</span>" if ann.rfc else ""))
    for meaning, rfc, detail in ann.problems:
        parts.append(f"<span class=prob>⚠ {_e(meaning)}" + (f" [{_e(detail)}]" if detail else "")
                     + (f" <span class=rfc>{_e(rfc)}</span>" if rfc else "") + "</span>")
    for meaning, rfc, detail in ann.infos:  # what happened, no rule broken
        parts.append(f"<span class=info>ℹ {_e(meaning)}" + (f" [{_e(detail)}]" if detail else "")
                     + (f" <span class=rfc>{_e(rfc)}</span>" if rfc else "") + "</span>")
    return " ".join(parts), bool(ann.problems)


def _session_html(events: list[Event], lang: str, show_secrets: bool) -> str:
    ui = ui_words(lang)
    first = events[0]
    peer = first.peer if first.kind is Kind.OPEN and first.peer is not None else Peer()
    out = [f"<h2>{_e(ui['session'])} {_e(first.session)} · {_e(first.protocol.upper())}</h2>",
           timeline_svg(events, _reply_class, ui), "<div class=ladder>",
           "<div class=head></div>",
           f"<div class='head ends'><span>{_e(ui['client'])}<br><small>{_e(peer.client)}</small></span>"
           f"<span>{_e(ui['server'])}<br><small>{_e(peer.server)}</small></span></div>",
           f"<div class=head>{_e(ui['annotations'])}</div>"]
    phase = None
    last_t = 0.0
    trips = round_trips(events)
    for i, event in enumerate(events):
        if event.state and event.kind is not Kind.CLOSE:
            heading = knowledge.state_heading(event.protocol, event.state, lang)
            if heading and heading[1] != phase:
                phase = heading[1]
                out.append(f"<div class=band>{_e(heading[0])}</div>")
        dt = event.t - last_t
        last_t = event.t
        slow = " slow" if dt >= SLOW_TURN else ""
        starts_trip = trips[i] and event.side is Side.CLIENT and (i == 0 or trips[i - 1] != trips[i])
        badge = f"<span class=rt>↻ {trips[i]}</span>" if starts_trip else ""
        dt_cell = f"<div class='dt{slow}' title='t = {event.t:.6f} s'>+{dt:.3f}{badge}</div>"
        ann_html, bad = _annotation(event, lang)
        if event.kind in (Kind.OPEN, Kind.CLOSE, Kind.TLS, Kind.GAP, Kind.VIOLATION):
            cls = {"tls": "tls", "gap": "gap", "violation": "viol"}.get(event.kind.value, "")
            if event.kind is Kind.VIOLATION and not bad:
                cls = "info"  # only informative notes: no rule was broken
            if event.kind is Kind.OPEN:
                text = f"● {peer.client} → {peer.server}"
            elif event.kind is Kind.CLOSE:
                reason = knowledge.close_reason(event, lang)
                text = f"● {ui['closed']}" + (f": {reason}" if reason else "")
            elif event.kind is Kind.GAP:
                text = "◆ " + (event.text(show_secrets) or knowledge.annotate(event, lang).meaning)
                if event.missing:
                    text += f" ({event.missing} {ui['octets']})"
            elif event.kind is Kind.VIOLATION and not bad:
                text = "ℹ " + knowledge.annotate(event, lang).meaning
            else:
                mark = knowledge.tls_mark(event, lang) if event.kind is Kind.TLS else ""
                text = "◆ " + (mark or event.text(show_secrets) or (event.tls.detail if event.tls else "") or knowledge.annotate(event, lang).meaning)
            out.append(dt_cell + f"<div class='note {cls}'>{_e(text)}</div><div class=ann>{ann_html}</div>")
            continue
        c2s = event.side is Side.CLIENT
        colour = "" if c2s else _reply_class(event.code)
        row = " viol-row" if bad else ""
        if event.kind is Kind.DATA and event.verb.upper() in SASL_VERBS and event.shown(show_secrets).count(NEWLINE) <= 1:
            content = _e(event.text(show_secrets))  # one SASL response line: show its decoded user, no fold
        elif event.kind in (Kind.DATA, Kind.LITERAL):
            body = event.shown(show_secrets)
            what = (event.verb or event.kind.value).upper()
            summary = f"{what}: {event.octets:,} {ui['octets']}, {body.count(NEWLINE):,} {ui['lines']}"
            content = (f"<details><summary>{_e(summary)}</summary><pre>"
                       f"{_e(body.decode('utf-8', errors='backslashreplace'))}</pre></details>")
        else:
            content = _e(event.text(show_secrets))
        direction = "c2s" if c2s else "s2c"
        out.append(f"{dt_cell}<div class='lane c{row}'></div><div class='msg {direction} {colour}{row}'>{content}</div>"
                   f"<div class='lane s{row}'></div><div class='ann{row}'>{ann_html}</div>")
    out.append("</div>")
    return "\n".join(out)


def render_html(events: Iterable[Event], *, lang: str = "en", show_secrets: bool = False, title: str = "") -> str:
    ui = ui_words(lang)
    sessions: dict[str, list[Event]] = {}
    for event in events:
        sessions.setdefault(event.session, []).append(event)
    body = [_session_html(evs, lang, show_secrets) for evs in sessions.values() if evs]
    heading = title or ui["title"]
    return (f"<!DOCTYPE html>\n<html lang={lang}><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{_e(heading)}</title><style>{CSS}</style><script>{JS}</script></head><body>"
            f"<h1>{_e(heading)}</h1><p class=legend>{_e(ui['legend'])}</p>"
            f"<p class=toolbar><button onclick='setAll(true)'>{_e(ui['expand'])}</button>"
            f"<button onclick='setAll(false)'>{_e(ui['collapse'])}</button>"
            f"<button onclick='toggleAnn()'>{_e(ui['annotations'])}</button></p>"
            + "\n".join(body) + "</body></html>\n")


class HtmlSink(FileSink):
    """Writes the events as one HTML page (``render_html``) when closed.

    Unlike the line-by-line sinks it must hold the events until then: the page groups each
    session's lines into one ladder, and sessions of a lab or a capture interleave.
    """

    def __init__(self, target: str | Path | IO[str], *, lang: str = "en", show_secrets: bool = False,
                 title: str = "") -> None:
        super().__init__(target, autoflush=False)
        self.lang = lang
        self.show_secrets = show_secrets
        self.title = title
        self.events: list[Event] = []
        self._done = False

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._file.write(render_html(self.events, lang=self.lang, show_secrets=self.show_secrets, title=self.title))
            self._file.flush()
        super().close()
