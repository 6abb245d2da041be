"""A POP3 session dropped without QUIT breaks no rule (RFC 1939 §6: it never enters UPDATE, so
nothing is deleted): the lab's POP3 core and the proxy's POP3 observer both record it as an
informative note with the same facts, and no renderer calls it a mistake."""

from __future__ import annotations

import poplib
import smtplib

from mailtrace import knowledge
from mailtrace.transcript.event import Kind
from mailtrace.transcript.live import _Tally
from mailtrace.transcript.text import render_text
from test_proxy_support import loop_thread, start_proxy, wait_closed  # noqa: F401 (fixture)


def test_core_and_observer_agree_on_the_dropped_session(lab_factory, loop_thread):  # noqa: F811
    lab = lab_factory(("smtp", "pop3"), tls=False)
    for n in range(3):
        with smtplib.SMTP("127.0.0.1", lab.port("smtp"), timeout=10) as client:
            client.sendmail("alice@lab.test", ["bob@lab.test"], f"Subject: {n}\r\n\r\nbody\r\n".encode())
    proxy, mem = loop_thread.run(start_proxy(lab.port("pop3"), protocol="pop3"))
    pop = poplib.POP3("127.0.0.1", proxy.port, timeout=10)
    pop.user("bob"), pop.pass_("bob")
    pop.dele(1), pop.dele(2), pop.rset(), pop.dele(3)  # RSET unmarks: one message is marked at the end
    pop.close()  # dropped: no QUIT
    wait_closed(mem, 1)
    lab.wait_for(lambda evs: [e for e in evs if e.kind is Kind.CLOSE and e.protocol == "pop3"])
    notes = {}
    for who, events in (("core", lab.events), ("observer", list(mem.events))):
        (event,) = [e for e in events if e.protocol == "pop3" and any(n.rule == "no-quit" for n in e.notes)]
        assert event.kind is Kind.VIOLATION and knowledge.mistakes(event) == []
        ann = knowledge.annotate(event, "en")
        assert ann.problems == () and ann.infos[0][1] == "RFC 1939 §6"
        assert ann.meaning == "What happened (no rule was broken):"
        notes[who] = ann.infos
        tally = _Tally()
        for e in events:
            if e.protocol == "pop3":
                tally.add(e)
        assert tally.mistakes == 0, who
        text = render_text([e for e in events if e.protocol == "pop3"], lang="en")
        assert "!!!" not in text and "ℹ The connection ended without QUIT" in text
    assert notes["core"] == notes["observer"]
    assert notes["core"][0][2] == "1 message(s) marked deleted were kept"
    assert len(lab.store.mailbox("bob").messages()) == 3  # nothing deleted
