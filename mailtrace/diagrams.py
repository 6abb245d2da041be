"""State diagrams of SMTP, POP3 and IMAP, drawn from the knowledge data (Graphviz DOT).

The course notes show one picture per protocol.  Nothing in them is drawn by hand: the states
(and SMTP's phases) come from ``knowledge/<protocol>.toml``, the arrows from
``knowledge/diagrams/transitions.toml``, and ``tests/unit/test_diagrams.py`` replays every arrow
on the real server core, so a picture cannot show a transition the server does not make.

    python -m mailtrace.diagrams     # rewrite knowledge/diagrams/*.dot and, with Graphviz, *.svg
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mailtrace._compat import tomllib
from mailtrace.knowledge import load

TRANSITIONS = Path(__file__).parent / "knowledge" / "diagrams" / "transitions.toml"
START, END = "(start)", "(closed)"  # the two pseudo-states: connection opened / closed


@dataclass(frozen=True)
class Transition:
    source: str  # a state of knowledge/<protocol>.toml, or START
    target: str  # a state, or END
    label: str  # what makes it happen: command and reply ("PASS: +OK")
    label_es: str  # the same in Spanish ("" when the label is only protocol words)
    path: tuple[str, ...]  # client lines that bring a new session to ``source`` (for the test)
    send: tuple[str, ...]  # the client lines of the transition itself
    eof: bool = False  # the transition is the client closing the connection
    verbs: tuple[str, ...] = ()  # SMTP, IMAP: the rows of <protocol>.spec.TRANSITIONS the arrow draws (verb x outcome)
    outcomes: tuple[str, ...] = ()


def transitions(protocol: str) -> list[Transition]:
    with open(TRANSITIONS, "rb") as f:
        rows = tomllib.load(f).get(protocol, [])
    return [Transition(r["from"], r["to"], r["label"], r.get("label_es", ""), tuple(r.get("path", ())),
                       tuple(r.get("send", ())), bool(r.get("eof", False)), tuple(r.get("verbs", ())),
                       tuple(r.get("outcomes", ()))) for r in rows]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(protocol: str, lang: str = "en") -> str:
    """The DOT source of ``protocol``'s diagram, state names as in the RFC, phases in ``lang``."""
    knowledge = load(protocol)
    states = list(knowledge.get("states", {}))
    phases = knowledge.get("phases", {})
    lines = [f"digraph {protocol} {{", "  rankdir=LR;", '  node [shape=box, style="rounded", fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];',
             f'  {_quote(START)} [shape=point, width=0.15];', f'  {_quote(END)} [shape=doublecircle, label="", width=0.15];']
    if phases:  # SMTP: the states grouped by the lecture's three phases
        for number, (phase, entry) in enumerate(phases.items()):
            members = [s for s in states if knowledge["states"][s].extra.get("phase") == phase]
            lines.append(f"  subgraph cluster_{number} {{ label={_quote(entry.meaning(lang))}; "
                         "labeljust=l; style=dashed; " + " ".join(_quote(s) + ";" for s in members) + " }")
    else:
        lines += [f"  {_quote(s)};" for s in states]
    for t in transitions(protocol):
        label = t.label_es if lang == "es" and t.label_es else t.label
        lines.append(f"  {_quote(t.source)} -> {_quote(t.target)} [label={_quote(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(out_dir: Path, protocols: tuple[str, ...] = ("smtp", "pop3", "imap")) -> list[Path]:
    """Write ``<protocol>-<lang>.dot`` (and ``.svg`` when Graphviz' ``dot`` is installed)."""
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for protocol in protocols:
        for lang in ("en", "es"):
            source = dot(protocol, lang)
            dot_path = out_dir / f"{protocol}-{lang}.dot"
            dot_path.write_text(source)
            written.append(dot_path)
            if shutil.which("dot"):
                svg = subprocess.run(["dot", "-Tsvg"], input=source.encode(), capture_output=True, check=True).stdout
                stamp = f"<!-- drawn from {dot_path.name}, sha256 {source_hash(source)} -->\n".encode()
                svg_path = out_dir / f"{protocol}-{lang}.svg"
                svg_path.write_bytes(stamp + svg)
                written.append(svg_path)
    return written


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


if __name__ == "__main__":
    for path in render(TRANSITIONS.parent):
        print(path)
    sys.exit(0)
