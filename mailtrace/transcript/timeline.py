"""The session on a time axis (inline SVG for the HTML ladder): where the waiting is, and how many
round trips the dialogue took.

Time runs downwards, client lane on the left, server lane on the right.  Each line of the
dialogue is an arrow that leaves its sender when mailtrace saw it and reaches the other side
when that side next spoke (a pipelined command does not count: it did not wait): the latest
moment it can have arrived.  A client that waits for every
reply draws a zigzag, one *round trip* per command; a client that pipelines (RFC 2920 §3.1:
MAIL, RCPT... DATA sent as one group) draws a fan, several commands and one wait.  Each round
trip (a client turn and the replies before the client's next turn) is shaded and numbered.

The axis is real time, except that lines closer than ``MIN_GAP`` pixels are spread apart so each
arrow can be seen; the tick marks follow the same spreading.  Everything is inline: the page
still loads nothing.
"""

from __future__ import annotations

import html
import math

from mailtrace.transcript.event import Event, Kind, Side

PAYLOAD = (Kind.COMMAND, Kind.REPLY, Kind.DATA, Kind.LITERAL)
MARKS = (Kind.OPEN, Kind.CLOSE, Kind.TLS, Kind.GAP)
WIDTH = 640
AXIS_X, CLIENT_X, SERVER_X = 64, 140, 600
TOP = 30
SPAN = 520  # pixels for the whole session's duration, before spreading
MIN_GAP = 9  # pixels between two lines, at least
COLOURS = {"c2s": "#1f5fbf", "r2": "#1b7f3a", "r3": "#087f8c", "r4": "#a36b00", "r5": "#c0262d", "r0": "#333",
           "mark": "#7b2c9e"}


NOT_WAITED = ("before-reply", "same-segment", "mid-line", "mid-reply")  # the grader's Event.arrived


def waited(event: Event) -> bool:
    """Did the client wait for the previous reply before sending this line?  Unknown: yes.  The
    lab's SMTP core marks a command that was already buffered ``pipelined``; the grader's
    scripted servers say how each line ``arrived`` (``mailtrace.grading.scripted``)."""
    return not event.pipelined and event.arrived not in NOT_WAITED


def round_trips(events: list[Event]) -> list[int]:
    """For each event, the number of the round trip it belongs to (0: before the client's first
    line, e.g. the greeting).  A round trip starts with each client line that follows a server
    line, unless the line was sent without waiting for that reply: a lab server's transcript lists
    each reply right after its command, and its SMTP core marks a command that was already waiting
    in the buffer ``pipelined``; a capture or the proxy lists the group first anyway."""
    out, current, last = [], 0, None
    for event in events:
        if event.kind in PAYLOAD and event.side in (Side.CLIENT, Side.SERVER):
            if event.side is Side.CLIENT and last is not Side.CLIENT and (waited(event) or current == 0):
                current += 1
            last = event.side
        out.append(current)
    return out


def _positions(times: list[float]) -> list[float]:
    duration = max(times[-1] - times[0], 1e-3) if times else 1e-3
    scale = SPAN / duration
    ys, prev = [], None
    for t in times:
        y = TOP + (t - times[0]) * scale
        if prev is not None and y < prev + MIN_GAP:
            y = prev + MIN_GAP
        ys.append(y)
        prev = y
    return ys


def _y_at(t: float, times: list[float], ys: list[float]) -> float:
    """Where time ``t`` sits on the spread axis (linear between the lines around it)."""
    for i in range(1, len(times)):
        if t <= times[i]:
            t0, t1, y0, y1 = times[i - 1], times[i], ys[i - 1], ys[i]
            return y0 if t1 == t0 else y0 + (t - t0) / (t1 - t0) * (y1 - y0)
    return ys[-1]


def _ticks(duration: float) -> tuple[float, str]:
    """A round tick step for the axis, and the unit of its labels."""
    raw = max(duration, 1e-3) / 6
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return step, ("ms" if duration < 2 else "s")


def _label(event: Event) -> str:
    if event.kind in (Kind.DATA, Kind.LITERAL):
        return f"{(event.verb or event.kind.value).upper()} ({event.octets} o)"
    if event.side is Side.SERVER:
        return event.code or event.verb
    return event.verb or event.text()[:12]


def timeline_svg(events: list[Event], reply_class, words: dict) -> str:
    """The ``<figure>`` with the SVG; ``reply_class(code)`` colours replies like the ladder;
    ``words`` has 'timeline', 'caption', 'round_trip', 'round_trips' and 'mark_<kind>' (a mark's
    tooltip: mark_open, mark_close...) in the page's language."""
    shown = [e for e in events if e.kind in PAYLOAD + MARKS]
    if not any(e.kind in PAYLOAD for e in shown):
        return ""
    times = [e.t for e in shown]
    ys = _positions(times)
    trips = round_trips(shown)
    height = int(ys[-1] + TOP)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {WIDTH} {height}' width='{WIDTH}' "
             f"height='{height}' role='img' font-family='ui-monospace,Menlo,Consolas,monospace' font-size='10'>",
             "<defs>" + "".join(
                 f"<marker id='a-{name}' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' markerHeight='7' "
                 f"orient='auto-start-reverse'><path d='M0,0L10,5L0,10z' fill='{colour}'/></marker>"
                 for name, colour in COLOURS.items()) + "</defs>"]
    # round trips, shaded: from the first client line of each to the start of the next
    starts = [(n, ys[i]) for i, n in enumerate(trips) if n and (i == 0 or trips[i - 1] != n)]
    for k, (n, y0) in enumerate(starts):
        y1 = starts[k + 1][1] if k + 1 < len(starts) else ys[-1] + MIN_GAP / 2
        fill = "#eef3fb" if n % 2 else "#f7f9fc"
        parts.append(f"<rect x='{AXIS_X + 2}' y='{y0 - 4:.1f}' width='{SERVER_X - AXIS_X + 16}' "
                     f"height='{max(y1 - y0, MIN_GAP):.1f}' fill='{fill}'><title>{html.escape(words['round_trip'])} {n}</title></rect>"
                     f"<text x='{AXIS_X + 6}' y='{y0 + 6:.1f}' fill='#1f3f73'>↻ {n}</text>")
    # the axis, with round ticks
    duration = times[-1] - times[0]
    step, unit = _ticks(duration)
    parts.append(f"<line x1='{AXIS_X}' y1='{TOP}' x2='{AXIS_X}' y2='{ys[-1]:.1f}' stroke='#9aa5b1'/>")
    tick = 0.0
    while tick <= duration + 1e-9:
        y = _y_at(times[0] + tick, times, ys)
        value = tick * 1000 if unit == "ms" else tick
        text = f"{value:g} {unit}"
        parts.append(f"<line x1='{AXIS_X - 4}' y1='{y:.1f}' x2='{AXIS_X}' y2='{y:.1f}' stroke='#9aa5b1'/>"
                     f"<text x='{AXIS_X - 6}' y='{y + 3:.1f}' text-anchor='end' fill='#6b7580'>{text}</text>")
        tick += step
    for x, who in ((CLIENT_X, words["client"]), (SERVER_X, words["server"])):
        parts.append(f"<line x1='{x}' y1='{TOP - 6}' x2='{x}' y2='{ys[-1] + 6:.1f}' stroke='#9aa5b1' stroke-width='2'/>"
                     f"<text x='{x}' y='{TOP - 12}' text-anchor='middle' font-weight='bold' fill='#1d232a'>"
                     f"{html.escape(who)}</text>")
    # the arrows: from the sender when seen, to the other side when it next spoke
    last_label_y = -100.0
    for i, event in enumerate(shown):
        y = ys[i]
        if event.kind in MARKS:
            mark = words.get("mark_" + event.kind.value, event.kind.value)  # "connection opened"...
            parts.append(f"<line x1='{CLIENT_X}' y1='{y:.1f}' x2='{SERVER_X}' y2='{y:.1f}' stroke='{COLOURS['mark']}' "
                         f"stroke-dasharray='4 3'><title>{html.escape(mark)} t={event.t:.6f} s</title></line>")
            continue
        c2s = event.side is Side.CLIENT
        other = Side.SERVER if c2s else Side.CLIENT
        end = next((ys[j] for j in range(i + 1, len(shown)) if shown[j].side is other and shown[j].kind in PAYLOAD
                    and waited(shown[j])), y + MIN_GAP / 2)
        name = "c2s" if c2s else reply_class(event.code)
        x1, x2 = (CLIENT_X, SERVER_X) if c2s else (SERVER_X, CLIENT_X)
        title = html.escape(f"{event.text()[:80]}  (t = {event.t:.6f} s)")
        parts.append(f"<line x1='{x1}' y1='{y:.1f}' x2='{x2}' y2='{end:.1f}' stroke='{COLOURS[name]}' stroke-width='1.5' "
                     f"marker-end='url(#a-{name})'><title>{title}</title></line>")
        if y - last_label_y >= 10:
            anchor, lx = ("start", CLIENT_X + 6) if c2s else ("end", SERVER_X - 6)
            parts.append(f"<text x='{lx}' y='{y - 2:.1f}' text-anchor='{anchor}' fill='{COLOURS[name]}'>"
                         f"{html.escape(_label(event))}</text>")
            last_label_y = y
    parts.append("</svg>")
    total = max(trips) if trips else 0
    caption = (f"<figcaption><b>{html.escape(words['timeline'])}</b> · {total} {html.escape(words['round_trips'])} · "
               f"{duration * 1000:.1f} ms. {html.escape(words['caption'])}</figcaption>")
    return f"<figure class=timeline>{caption}{''.join(parts)}</figure>"
