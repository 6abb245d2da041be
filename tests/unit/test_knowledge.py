"""Knowledge (knowledge/<proto>.toml) and the protocol tables in code stay in sync, both ways.

Every protocol module that exposes ``COMMANDS``, ``REPLY_CODES``, ``VIOLATIONS`` and ``State``
is checked automatically (SMTP now; POP3 and IMAP as soon as they expose the same names).
Optional extras: ``KNOWN_COMMANDS`` (verbs documented beyond the table), ``DOCUMENTED_CODES``
(codes explained though never sent), ``DATA_VERBS`` (verbs of DATA events).
"""

from __future__ import annotations

import importlib
import re
import time

import pytest

from mailtrace import knowledge

RFC_SECTION = re.compile(r"RFC \d+ (§\d|Appendix [A-Z])")


def _modules():
    found = []
    for proto in ("smtp", "pop3", "imap"):
        try:
            module = importlib.import_module(f"mailtrace.protocols.{proto}")
        except ImportError:
            continue
        if all(hasattr(module, name) for name in ("COMMANDS", "REPLY_CODES", "VIOLATIONS", "State")):
            found.append(pytest.param(proto, module, id=proto))
    return found


MODULES = _modules()


@pytest.mark.parametrize("proto,module", MODULES)
def test_commands_both_ways(proto, module):
    table = set(knowledge.load(proto).get("commands", {}))
    allowed = set(module.COMMANDS) | set(getattr(module, "KNOWN_COMMANDS", ()))
    assert set(module.COMMANDS) - table == set(), "commands without knowledge"
    assert table - allowed == set(), "knowledge for commands the code does not know"


@pytest.mark.parametrize("proto,module", MODULES)
def test_replies_both_ways(proto, module):
    table = set(knowledge.load(proto).get("replies", {}))
    allowed = set(module.REPLY_CODES) | set(getattr(module, "DOCUMENTED_CODES", ()))
    assert set(module.REPLY_CODES) - table == set(), "reply codes without knowledge"
    assert table - allowed == set(), "knowledge for codes neither sent nor documented"
    assert set(getattr(module, "DOCUMENTED_CODES", ())) - table == set()


@pytest.mark.parametrize("proto,module", MODULES)
def test_states_both_ways_and_phases_exist(proto, module):
    tables = knowledge.load(proto)
    assert set(tables.get("states", {})) == {s.value for s in module.State}
    for entry in tables["states"].values():
        phase = entry.extra.get("phase")
        if phase:
            assert phase in tables.get("phases", {}), f"state {entry.key}: unknown phase {phase}"


@pytest.mark.parametrize("proto,module", MODULES)
def test_violations_both_ways(proto, module):
    own = set(knowledge.load(proto).get("violations", {}))
    common = set(knowledge.load("common").get("violations", {}))
    assert set(module.VIOLATIONS) - own - common == set(), "violation rules without knowledge"
    assert own - set(module.VIOLATIONS) == set(), "knowledge for rules the code never records"


@pytest.mark.parametrize("proto,module", MODULES)
def test_data_verbs(proto, module):
    if not hasattr(module, "DATA_VERBS"):
        pytest.skip("no DATA_VERBS")
    assert set(knowledge.load(proto).get("data", {})) == set(module.DATA_VERBS)


@pytest.mark.parametrize("proto,module", MODULES)
def test_status_codes_both_ways(proto, module):
    """The "codes" table: SMTP enhanced status codes, POP3 response codes (RFC 2449); with the
    "extensions" table (SMTP EHLO keywords) they are every info["code"] an event can carry."""
    codes = getattr(module, "CODES", None) or getattr(module, "RESPONSE_CODES", None)
    if codes is None:
        pytest.skip("no status-code table")
    tables = knowledge.load(proto)
    assert set(tables.get("codes", {})) | set(tables.get("extensions", {})) == set(codes)


def test_smtp_enhanced_codes_sent_are_the_documented_ones():
    import re as _re
    from pathlib import Path

    import mailtrace.protocols as pkg

    source = "".join(p.read_text() for p in (Path(pkg.__file__).parent / "smtp").glob("*.py"))
    from mailtrace.protocols.smtp import ENHANCED_CODES

    used = set(_re.findall(r'"([245]\.\d\.\d)"', source))
    assert used == set(ENHANCED_CODES)


@pytest.mark.parametrize("proto", [p for p in knowledge.protocols()])
def test_every_entry_bilingual_with_rfc_section(proto):
    for table, entries in knowledge.load(proto).items():
        for key, entry in entries.items():
            assert entry.meaning("en") and entry.texts.get("es", {}).get("meaning"), f"{proto} {table}.{key}"
            assert bool(entry.texts.get("en", {}).get("explain")) == bool(entry.texts.get("es", {}).get("explain")), \
                f"{proto} {table}.{key}: explain in one language only"
            if table not in ("events", "phases", "ui") and proto != "common" or entry.rfc:  # ui: web labels
                assert RFC_SECTION.search(entry.rfc), f"{proto} {table}.{key}: rfc {entry.rfc!r}"


def test_smtp_documents_the_common_codes():
    replies = knowledge.load("smtp")["replies"]
    for code in ("421", "450", "451", "452", "550", "551", "552", "553", "554", "555", "354", "220", "250"):
        assert code in replies


def test_smtp_events_emitted_in_practice_are_all_explained(tmp_path):
    """Drive the core through many sessions; every command, reply, state and note has an entry."""
    import base64

    from mailtrace.protocols.base import Pending, StartTLS
    from mailtrace.protocols.smtp import SmtpConfig, SmtpServerConnection
    from mailtrace.store.maildir import MaildirStore
    from mailtrace.transcript.event import Event, Kind

    store = MaildirStore(tmp_path, {"bob": "bob"}, fsync=False)
    sessions = [
        [b"HELO x\r\nMAIL FROM: a@b.c\r\nRCPT TO:<bob@lab.test>\r\nRCPT TO:<z@lab.test>\r\nRCPT TO:<q@x.org>\r\n"
         b"DATA\r\n\xc3\xb1\nx\r\n.\r\nVRFY b\r\nEXPN b\r\nHELP\r\nHELP X\r\nTURN\r\nFOO\r\nNOOP\r\nRSET\r\n"
         b"DATA\r\nQUIT\r\n"],
        [b"EHLO x\r\nSTARTTLS\r\n", b"EHLO y\r\nAUTH LOGIN\r\n" + base64.b64encode(b"bob") + b"\r\n*\r\nAUTH X\r\n"
         b"AUTH PLAIN =\r\nMAIL FROM:<a@b.c> SIZE=99999999999\r\nMAIL FROM:<a@b.c> X=1\r\nMAIL FROM:<> BODY=X\r\n"
         b"MAIL FROM:<>\r\nRCPT TO:<bob@lab.test>\r\nRCPT TO:<bob@lab.test>\r\n"
         b"DATA\r\n" + b"Q" * 600 + b"\r\n"],
        [b"EHLO x\r\nAUTH PLAIN " + base64.b64encode(b"\0bob\0bob") + b"\r\nMAIL FROM:<a@b.c> SIZE=1\r\n"
         b"RCPT TO:<bob@lab.test>\r\nDATA\r\n" + b"x" * 2000 + b"\r\n.\r\n"
         b"MAIL FROM:<>\r\nRCPT TO:<z@lab.test>\r\nDATA\r\n"],
    ]
    events: list[Event] = []
    for chunks in sessions:
        conn = SmtpServerConnection(SmtpConfig(tls_available=True, max_recipients=1, max_message_size=1000), store,
                                    clock=time.time, secure_channel=False)
        queue = conn.start()
        for chunk in chunks:
            queue += conn.receive(chunk)
            while queue:
                out = queue.pop(0)
                if isinstance(out, Pending):
                    queue[0:0] = out.resume(out.job())
                elif isinstance(out, StartTLS):
                    queue += conn.tls_started()
                elif isinstance(out, Event):
                    events.append(out)
        events += [o for o in conn.idle_timeout() if isinstance(o, Event)]
    missing = set()
    for e in events:
        if e.kind in (Kind.COMMAND, Kind.REPLY, Kind.DATA) and e.verb not in ("FOO", "") or e.kind is Kind.REPLY:
            if knowledge.entry_for(e) is None:
                missing.add((e.kind.value, e.verb, e.code))
        if e.state and knowledge.lookup("smtp", "states", e.state) is None:
            missing.add(("state", e.state))
        if e.response_code and not (knowledge.lookup("smtp", "codes", e.response_code)
                                       or knowledge.lookup("smtp", "extensions", e.response_code)):
            missing.add(("code", e.response_code))
        for note in e.notes:
            if knowledge.lookup("smtp", "violations", note.rule) is None:
                missing.add(("violation", note.rule))
    assert missing == set()
    seen_codes = {e.code for e in events if e.kind is Kind.REPLY}
    assert {"214", "220", "221", "235", "250", "252", "334", "354", "421", "500", "501", "502", "503", "504",
            "550", "552", "554", "555"} - seen_codes == set()
    store.close()


def test_smtp_ehlo_keywords_are_extensions_and_enhanced_codes_are_codes():
    """EHLO keywords ("250-PIPELINING") are what a server offers, not response codes: their own
    table, labelled "extension" by `mailtrace explain`; the "codes" table holds RFC 3463 codes."""
    from mailtrace.protocols.smtp.spec import EHLO_KEYWORDS, ENHANCED_CODES

    tables = knowledge.load("smtp")
    assert set(tables["extensions"]) == set(EHLO_KEYWORDS)
    assert set(tables["codes"]) == set(ENHANCED_CODES)
def test_counted_words_take_the_form_of_their_number():
    """``{n:one|other}`` in a knowledge text: the singular for 1 only (English and Spanish alike)."""
    assert knowledge.fill("{n} {n:session|sessions}", n=1) == "1 session"
    assert [knowledge.fill("{n} {n:sesión|sesiones}", n=n) for n in (0, 2)] == ["0 sesiones", "2 sesiones"]
    assert knowledge.fill("{n} {n:octet|octets}", n="1") == "1 octet"  # numbers already formatted ("1,024")
    assert knowledge.fill("{n} {n:octet|octets}", n="1,024") == "1,024 octets"
    for lang, text in (("en", "mailtrace sniff: 1 packet, 1 mail session, 1 gap."),
                       ("es", "mailtrace sniff: 1 paquete, 1 sesión de correo, 1 hueco.")):
        assert knowledge.phrase("cli", "sniff-stats", lang, packets=1, sessions=1, gaps=1) == text
