"""Data randomised per run, from a seed: addresses, subjects, bodies, passwords, mailbox fixtures.

A program that prints what the examples printed (hard-coded output) fails, because every run
draws new values; the seed is in the report and the same seed reproduces the same run.  Each
scenario draws from its own generator (``Random(f"{seed}/{exercise}/{scenario}")``), so adding
a scenario does not change the data of the others.
"""

from __future__ import annotations

import base64
import random
import string
from email.utils import format_datetime
from datetime import datetime, timezone

DOMAIN = "lab.test"
FIRST = ["ana", "luis", "marta", "jorge", "lucia", "pablo", "irene", "sergio", "nuria", "diego", "elena", "raul"]
LAST = ["garcia", "lopez", "martin", "sanchez", "perez", "gomez", "ruiz", "diaz", "moreno", "navarro"]
WORDS = ("network packet router switch socket header envelope mailbox relay queue protocol segment window "
         "latency bandwidth frame checksum gateway domain server client message reply").split()
UTF8_WORDS = ["café", "señal", "niño", "corazón", "pingüino", "Ünïcode", "€uro", "日本", "ñandú", "acción"]


def rng_for(seed: int, exercise: str, scenario: str) -> random.Random:
    return random.Random(f"{seed}/{exercise}/{scenario}")


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _nonce(rng: random.Random, n: int = 6) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def variables(rng: random.Random) -> dict:
    """The placeholders every scenario may use."""
    people = rng.sample([(f, l) for f in FIRST for l in LAST], 5)
    v: dict = {}
    v["sender"] = f"{people[0][0]}.{people[0][1]}@{rng.choice(['uni.example', 'campus.example', 'mail.example'])}"
    for i in range(1, 4):
        f, l = people[i]
        v[f"rcpt{i}"] = f"{f}{rng.randint(1, 99)}@{DOMAIN}"
    v["subject"] = f"{_words(rng, 3).capitalize()} {_nonce(rng)}"
    v["subject_utf8"] = f"{rng.choice(UTF8_WORDS).capitalize()} {_words(rng, 2)} {rng.choice(UTF8_WORDS)} {_nonce(rng)}"
    lines = [f"{_words(rng, rng.randint(4, 9)).capitalize()}." for _ in range(rng.randint(3, 6))]
    v["body"] = "\n".join(lines + [f"-- {people[0][0]} {_nonce(rng)}"]) + "\n"
    dotted = list(lines)
    dotted.insert(1, f".{_words(rng, 2)} starts with a dot {_nonce(rng)}")
    dotted.insert(3, f"..two dots {_nonce(rng)}")
    dotted.append(f". {_words(rng, 2)}")
    v["body_dots"] = "\n".join(dotted) + "\n"
    v["body_utf8"] = "\n".join(lines[:2] + [f"{rng.choice(UTF8_WORDS)} {_words(rng, 3)} {rng.choice(UTF8_WORDS)}."]) + "\n"
    v["long_line"] = " ".join(rng.choice(WORDS) for _ in range(260))  # > 998 octets
    v["body_long"] = lines[0] + "\n" + v["long_line"] + "\n" + lines[1] + "\n"
    v["user"] = f"{people[4][0]}{rng.randint(10, 99)}"
    v["password"] = f"{_nonce(rng, 4)}-{_nonce(rng, 4)}"
    v["password_tricky"] = f'my "secret" pass\\{_nonce(rng, 4)}'
    v["mailbox_space"] = f"Old Mail {rng.randint(2000, 2024)}"
    v["attachment_name"] = f"capture-{_nonce(rng, 4)}.bin"
    v["attachment"] = bytes(rng.getrandbits(8) for _ in range(rng.randint(800, 1500)))  # base64 > 998 chars
    v["image_name"] = f"diagram-{_nonce(rng, 4)}.png"
    v["image"] = b"\x89PNG\r\n\x1a\n" + bytes(rng.getrandbits(8) for _ in range(rng.randint(300, 600)))
    v["nonce"] = _nonce(rng)
    return v


# -- mailbox fixtures (POP3, IMAP) ----------------------------------------------------------------
def _headers(rng: random.Random, subject: str, extra: list[str] = ()) -> list[str]:
    f, l = rng.choice(FIRST), rng.choice(LAST)
    date = datetime(2025, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59),
                    tzinfo=timezone.utc)
    return [f"From: {f.capitalize()} {l.capitalize()} <{f}.{l}@uni.example>", f"To: student@{DOMAIN}",
            f"Subject: {subject}", f"Date: {format_datetime(date)}",
            f"Message-ID: <{_nonce(rng, 12)}@uni.example>", *extra]


def message(kind: str, rng: random.Random) -> bytes:
    """One fixture message in wire form (CRLF).  Kinds: plain, dots, utf8, binary, tagged, big."""
    subject = f"{_words(rng, 3).capitalize()} {_nonce(rng)}"
    body_lines = [f"{_words(rng, rng.randint(4, 10)).capitalize()}." for _ in range(rng.randint(2, 5))]
    extra: list[str] = []
    if kind == "plain":
        pass
    elif kind == "dots":
        # RFC 1939 §3 / RFC 5321 §4.5.2: lines starting with "." are byte-stuffed on the wire
        body_lines = [body_lines[0], f".{_words(rng, 2)} {_nonce(rng)}", ".", f"..{_words(rng, 2)}", "",
                      f". {_words(rng, 3)}", body_lines[-1]]
    elif kind == "utf8":
        extra = ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
        body_lines = [f"{rng.choice(UTF8_WORDS)} {_words(rng, 3)} {rng.choice(UTF8_WORDS)}." for _ in range(3)]
    elif kind == "binary":
        boundary = f"=_b{_nonce(rng, 12)}"
        payload = base64.encodebytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(600, 1200)))).decode()
        extra = ["MIME-Version: 1.0", f'Content-Type: multipart/mixed; boundary="{boundary}"']
        latin = bytes(rng.choice(range(0xA0, 0x100)) for _ in range(12))
        body = ("\r\n".join(_headers(rng, subject, extra)) + "\r\n\r\n"
                + f"--{boundary}\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
                + "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + latin + b"\r\n" + (
                    f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                    f'Content-Disposition: attachment; filename="data-{_nonce(rng, 4)}.bin"\r\n'
                    "Content-Transfer-Encoding: base64\r\n\r\n" + payload.replace("\n", "\r\n")
                    + f"--{boundary}--\r\n").encode()
        return body
    elif kind == "tagged":
        # a literal whose text looks like protocol responses (RFC 3501 §4.3: literals are octets)
        body_lines = [body_lines[0], "A0003 OK FETCH completed", "* 5 EXISTS", ")", f"a1 OK {_nonce(rng)}",
                      "+OK 3 messages", ".", body_lines[-1]]
    elif kind == "big":
        body_lines = [f"{i:05d} {_words(rng, 10)}" for i in range(rng.randint(900, 1100))]
    else:
        raise ValueError(f"unknown fixture message kind {kind!r}")
    lines = _headers(rng, subject, extra) + [""] + body_lines
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
