"""The state diagrams of the course notes: drawn from data, and every arrow true of the cores.

Each row of knowledge/diagrams/transitions.toml is replayed on the real server core (the lab's
own factory, a real Maildir store); the DOT and SVG files in knowledge/diagrams/ must be what
``python -m mailtrace.diagrams`` makes of the data today.
"""

from __future__ import annotations

import shutil
import ssl

import pytest

from mailtrace import diagrams
from mailtrace.knowledge import load

from conversation import Conversation, lab_core

PROTOCOLS = ("smtp", "pop3", "imap")
FOLDER = diagrams.TRANSITIONS.parent


ROWS = [pytest.param(p, t, id=f"{p}:{t.source}->{t.target}:{'/'.join(t.send) or 'eof' if t.eof else '/'.join(t.send)}")
        for p in PROTOCOLS for t in diagrams.transitions(p)]


@pytest.mark.parametrize("protocol, t", ROWS)
def test_each_arrow_is_what_the_core_does(protocol, t, tmp_path):
    # the lab's own core, its Maildir store; SMTP offers STARTTLS only with a certificate
    # configured (the arrow needs no handshake)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH) if protocol == "smtp" else None
    session = Conversation(lab_core(protocol, tmp_path, tls_context=tls))
    if t.source == diagrams.START:
        assert session.state == t.target
        return
    session.lines(*t.path)
    assert session.state == t.source, f"the path {t.path} does not reach {t.source!r}"
    assert not session.closed or t.target == diagrams.END
    session.lines(*t.send)
    if t.eof:  # the client went away: the session ends where it was (POP3: UPDATE never entered)
        session.eof()
        assert session.state == t.source
        return
    if t.target == diagrams.END:
        assert session.closed
    else:
        assert session.state == t.target  # (a state such as logout or UPDATE comes with the close)


def test_smtp_arrows_are_the_rows_of_the_transition_table():
    """Each SMTP arrow draws rows of ``smtp.spec.TRANSITIONS`` (from its state, its verbs and
    outcomes lead to its target), and each row of the table is drawn by some arrow: the picture
    in the notes, the server core and the observer read one table."""
    from mailtrace.protocols.smtp.spec import TRANSITIONS, State
    from mailtrace.protocols.spec import Outcome

    drawn = set()
    for t in diagrams.transitions("smtp"):
        if t.target == diagrams.END:  # the connection closing after 221/421: no reply, no row
            continue
        source = State.GREETING if t.source == diagrams.START else State(t.source)
        assert t.verbs and t.outcomes, f"{t.source}->{t.target}: name the table rows (verbs, outcomes)"
        for verb in t.verbs:
            for outcome in t.outcomes:
                row = TRANSITIONS.row(source, verb, Outcome(outcome))
                assert row is not None, f"{t.source} {verb!r} {outcome}: no row in TRANSITIONS"
                assert row.target is State(t.target), f"{t.source} {verb!r} {outcome}: the table says {row.target}"
                drawn.add(row)
    assert [row.label for row in TRANSITIONS.rows if row not in drawn] == [], "rows of the table with no arrow"


def test_imap_arrows_are_the_rows_of_its_transition_table():
    """Each IMAP arrow draws rows of ``imap.spec.TRANSITIONS`` (from its state, its commands
    answered with its outcomes lead to its target), and each row, from each of its states, is
    drawn: the picture, the server core and the observer read one table."""
    from mailtrace.protocols.imap.spec import TRANSITIONS, State
    from mailtrace.protocols.spec import Outcome

    drawn = set()
    for t in diagrams.transitions("imap"):
        if diagrams.START in (t.source, t.target) or t.target == diagrams.END:  # greeting; the close after BYE
            continue
        assert t.verbs and t.outcomes, f"{t.source}->{t.target}: name the table rows (verbs, outcomes)"
        for verb in t.verbs:
            for outcome in t.outcomes:
                row = TRANSITIONS.row(State(t.source), verb, Outcome(outcome))
                assert row is not None, f"{t.source} {verb} {outcome}: no row in TRANSITIONS"
                assert row.target is State(t.target), f"{t.source} {verb} {outcome}: the table says {row.target}"
                drawn.add((row, State(t.source)))
    undrawn = [f"{row.label} from {source.value}" for row in TRANSITIONS.rows for source in row.sources
               if (row, source) not in drawn]
    assert undrawn == [], "rows of the table with no arrow"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_state_of_the_knowledge_is_drawn_and_reached(protocol):
    states = set(load(protocol)["states"])
    rows = diagrams.transitions(protocol)
    targets = {t.target for t in rows}
    named = {t.source for t in rows} | targets
    assert named - {diagrams.START, diagrams.END} <= states, "an arrow names a state the knowledge does not have"
    unreached = states - targets - {"greeting"}  # SMTP's "greeting": before the 220, the connection itself
    assert not unreached, f"states with no arrow into them: {sorted(unreached)}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("lang", ["en", "es"])
def test_the_committed_pictures_are_drawn_from_todays_data(protocol, lang):
    source = diagrams.dot(protocol, lang)
    dot_file = FOLDER / f"{protocol}-{lang}.dot"
    assert dot_file.read_text() == source, "run: python -m mailtrace.diagrams"
    svg = (FOLDER / f"{protocol}-{lang}.svg").read_text()
    assert f"sha256 {diagrams.source_hash(source)}" in svg.splitlines()[0], "run: python -m mailtrace.diagrams"
    assert "<svg" in svg


def test_smtp_phases_are_titled_in_each_language():
    assert 'label="Handshake"' in diagrams.dot("smtp", "en")
    es = diagrams.dot("smtp", "es")
    assert load("smtp")["phases"]["transfer"].meaning("es") in es


@pytest.mark.skipif(not shutil.which("dot"), reason="Graphviz (dot) is not installed")
def test_render_writes_dot_and_svg(tmp_path):
    written = {p.name for p in diagrams.render(tmp_path, ("pop3",))}
    assert written == {"pop3-en.dot", "pop3-en.svg", "pop3-es.dot", "pop3-es.svg"}
    assert "TRANSACTION" in (tmp_path / "pop3-en.svg").read_text()


def test_the_notes_show_each_picture_in_their_language():
    root = FOLDER.parents[2]
    for notes, lang in (("course_notes.md", "en"), ("course_notes.es.md", "es")):
        import re

        images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (root / notes).read_text())
        pictures = [i for i in images if "diagrams/" in i]
        assert sorted(pictures) == sorted(f"mailtrace/knowledge/diagrams/{p}-{lang}.svg" for p in PROTOCOLS)
        for image in images:
            assert (root / image).is_file(), f"{notes}: {image} does not exist"



def test_pop3_arrows_are_what_the_spec_says():
    """Each POP3 arrow's verbs and outcomes lead where ``pop3.spec`` says (``after_reply`` on
    TRANSITIONS; ``closes`` for an arrow to the end), self-loops included, and every row of
    TRANSITIONS is drawn: the picture, the core and the observer read one table."""
    from mailtrace.protocols.pop3 import spec

    drawn = set()
    for t in diagrams.transitions("pop3"):
        for verb in t.verbs:
            for name in t.outcomes:
                result, source = spec.Outcome(name), spec.State(t.source)
                after = spec.after_reply(source, verb, result, True)
                if t.target == diagrams.END:  # the server answers, then closes (QUIT from AUTHORIZATION)
                    assert spec.closes(verb, result, True) and after is source, (t.source, verb, name)
                else:
                    assert after is spec.State(t.target), f"{t.source} {verb} {name}: the spec says {after}"
                drawn.add(spec.TRANSITIONS.row(source, verb, result))
    assert [row.label for row in spec.TRANSITIONS.rows if row not in drawn] == [], "rows of the table with no arrow"
