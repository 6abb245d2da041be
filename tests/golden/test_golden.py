"""Golden sessions: one recorded session per protocol (the lab driven by smtplib, poplib and
imaplib), saved in tests/golden/ as the JSONL transcript and as the text `mailtrace show`
renders from it.  Both were reviewed by eye once; a change to what the servers say, record or
annotate shows up here as a readable diff.

What varies from run to run is normalised before comparing: ports, times, the POP3 APOP
timestamp, IMAP's UIDVALIDITY, the queue id and Maildir file names, imaplib's random tag prefix.

After an intended change (new annotations, a new JSONL version), rewrite them with one command
and review the diff:

    MAILTRACE_REGEN_GOLDEN=1 .venv/bin/python -m pytest -q tests/golden/test_golden.py
"""

from __future__ import annotations

import imaplib
import io
import json
import os
import poplib
import re
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from mailtrace.transcript.jsonl import JsonlSink

GOLDEN = Path(__file__).resolve().parent
REGEN = os.environ.get("MAILTRACE_REGEN_GOLDEN") == "1"
PROTOCOLS = ("smtp", "pop3", "imap")

#: the message every session carries (fixed headers: no date or id of the day)
MESSAGE = (b"From: Alice <alice@lab.test>\r\nTo: Bob <bob@lab.test>\r\nSubject: golden\r\n"
           b"Date: Mon, 02 Jan 2023 10:00:00 +0000\r\nMessage-ID: <golden@lab.test>\r\n\r\n"
           b"Hello Bob,\r\n.a line that starts with a dot\r\nbye\r\n")


def smtp_session(lab) -> dict:
    with smtplib.SMTP("127.0.0.1", lab.port("smtp"), local_hostname="client.test", timeout=10) as s:
        s.ehlo()
        s.sendmail("alice@lab.test", ["bob@lab.test"], MESSAGE)
        s.noop()
    return {}


def pop3_session(lab) -> dict:
    lab.store.deliver("alice", MESSAGE)
    pop = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=10)
    pop.user("alice")
    pop.pass_("alice")
    pop.stat()
    pop.list()
    pop.retr(1)
    pop.dele(1)
    pop.quit()
    return {}


def imap_session(lab) -> dict:
    lab.store.deliver("alice", MESSAGE)
    imap = imaplib.IMAP4("127.0.0.1", lab.port("imap"), timeout=10)
    imap.login("alice", "alice")
    imap.select("INBOX")
    imap.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    imap.store("1", "+FLAGS", "\\Seen")
    imap.logout()
    return {"tag_prefix": imap.tagpre.decode()}


SESSIONS = {"smtp": smtp_session, "pop3": pop3_session, "imap": imap_session}


#: keys whose values are the time of the run (wherever they are in a line) or the writer's version
VOLATILE = {"created": "CREATED", "tool": "mailtrace", "t": 0.0, "started": 0.0}


def normalise(text: str, tag_prefix: str = "") -> str:
    """The JSONL with what varies between runs replaced by fixed words."""
    def fixed(value, key=""):
        if isinstance(value, dict):
            return {k: fixed(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [fixed(v) for v in value]
        return VOLATILE.get(key, value)

    lines = [json.dumps(fixed(json.loads(line)), ensure_ascii=False, sort_keys=True) for line in text.splitlines()]
    text = "\n".join(lines) + "\n"
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    text = re.sub(r"<\d+\.\d+@[\w.-]+>", "<APOP-TIMESTAMP>", text)  # RFC 1939 §7: process id and clock
    text = re.sub(r"UIDVALIDITY \d+", "UIDVALIDITY N", text)
    text = re.sub(r"queued as [0-9a-f]+\.\d+", "queued as QUEUE-ID", text)
    text = re.sub(r"\d+\.M\d+P\d+Q\d+\.[^,\\\"/]+", "MAILDIR-NAME", text)  # time.Mmicro Ppid Qn.host
    if tag_prefix:
        text = re.sub(rf"\b{tag_prefix}(\d+)\b", r"TAG\1", text)
    return text


def recorded(lab, extra: dict) -> str:
    out = io.StringIO()
    sink = JsonlSink(out)
    for event in lab.wait_closed(1):
        sink.handle(event)
    return normalise(out.getvalue(), extra.get("tag_prefix", ""))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_recorded_session_is_the_golden_one(protocol, lab_factory):
    lab = lab_factory((protocol,), tls=False)
    text = recorded(lab, SESSIONS[protocol](lab))
    golden = GOLDEN / f"{protocol}.jsonl"
    if REGEN:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
        pytest.skip(f"rewrote {golden.name}: review the diff")
    assert text == golden.read_text(encoding="utf-8"), \
        f"the {protocol} session changed: review, then MAILTRACE_REGEN_GOLDEN=1 (see this file's docstring)"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_golden_session_renders_as_the_golden_text(protocol):
    env = dict(os.environ, COLUMNS="100", NO_COLOR="1")
    shown = subprocess.run([sys.executable, "-m", "mailtrace", "show", str(GOLDEN / f"{protocol}.jsonl"),
                            "--format", "text"], capture_output=True, text=True, env=env, timeout=60)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    golden = GOLDEN / f"{protocol}.txt"
    if REGEN:
        golden.write_text(shown.stdout, encoding="utf-8")
        pytest.skip(f"rewrote {golden.name}: review the diff")
    assert shown.stdout == golden.read_text(encoding="utf-8"), \
        f"`mailtrace show` renders the {protocol} session differently: review, then MAILTRACE_REGEN_GOLDEN=1"
