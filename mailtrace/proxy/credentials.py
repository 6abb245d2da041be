"""Decode credentials for the annotation: the user is shown, the password as *** by default.

Students should *see* that AUTH PLAIN and LOGIN are only base64 (RFC 4616 §2: ``[authzid] NUL
authcid NUL passwd``; the LOGIN mechanism sends the user name and the password as two base64
lines after 334 challenges, RFC 4954 §4), that POP3 USER/PASS (RFC 1939 §7) and IMAP LOGIN
(RFC 3501 §6.2.3) send the password in clear, and why STARTTLS matters.

``CredentialDecoder`` follows one session's events and rewrites the *shown* form
(``Event.redacted``) of each secret line: ``AUTH PLAIN ***  [user "alice", password ***]``.
With ``show_secrets`` the password appears decoded too.  ``raw`` (the wire bytes) is never
touched.  It runs on live proxy events and again when a saved transcript is shown.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import replace

from mailtrace.proxy.messages import message
from mailtrace.transcript.event import Event, Kind, Side

HIDDEN = "***"
SASL_MECHS = ("PLAIN", "LOGIN")  # the mechanisms whose payload carries the password itself
_IMAP_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"|(\S+)')


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _decorated(text: str) -> bool:
    return text.endswith("]") and "  [" in text


CREDENTIAL_VERBS = ("AUTH", "AUTHENTICATE", "PASS", "LOGIN")  # the lines this module decorates


def split_decoration(event: Event, payload: bytes) -> tuple[bytes, str]:
    """Undo the decoration for exports that must carry wire-like bytes (pcap):
    ``b'PASS ***  [password ***]\r\n'`` -> ``(b'PASS ***\r\n', 'password ***')``.
    Lines of other verbs, and undecorated lines, come back unchanged with an empty note."""
    if event.side is not Side.CLIENT or event.verb.upper() not in CREDENTIAL_VERBS:
        return payload, ""
    body = payload[:-2] if payload.endswith(b"\r\n") else payload
    text = _str(body)
    if not _decorated(text):
        return payload, ""
    visible, _, decoded = text.rpartition("  [")
    return visible.encode("utf-8") + payload[len(body):], decoded[:-1]


def _str(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


class CredentialDecoder:
    """Per session: feed every event in order, get it back with a decoded ``redacted`` form."""

    def __init__(self, protocol: str, show_secrets: bool = False, lang: str = "en") -> None:
        self.protocol = protocol
        self.show = show_secrets
        self.lang = lang
        self._mech = ""  # SASL mechanism whose payload lines are awaited
        self._step = 0  # LOGIN: 0 user next, 1 password next

    def _secret(self, value: str) -> str:
        return repr(value)[1:-1] if self.show else HIDDEN

    def _shown(self, event: Event, visible: str, decoded: str) -> Event:
        line = f"{visible}  [{decoded}]\r\n"
        return replace(event, redacted=line.encode("utf-8"))

    def feed(self, event: Event) -> Event:
        if event.side is Side.SERVER and event.kind is Kind.REPLY:
            # a challenge keeps the exchange going (334 RFC 4954 §4, "+" RFC 5034 §4 / RFC 3501 §7.5)
            if self._mech and event.code not in ("334", "+"):
                self._mech, self._step = "", 0
            return event
        if event.side is not Side.CLIENT or event.kind not in (Kind.COMMAND, Kind.DATA):
            return event
        if not self._mech:
            up = event.raw.upper()
            if b"AUTH" not in up and b"PASS" not in up and b"LOGIN" not in up:
                return event  # (no verb decoded below: AUTH, AUTHENTICATE, PASS, LOGIN) without decoding the line
        text = event.text(show_secrets=True)
        if _decorated(text):  # already decoded (a transcript saved without secrets)
            return event
        if self._mech:
            return self._payload(event, text)
        words = text.split()
        if self.protocol == "imap" and len(words) >= 2:
            words = words[1:]  # drop the tag
        if not words:
            return event
        verb = words[0].upper()
        if verb in ("AUTH", "AUTHENTICATE") and len(words) >= 2:
            return self._auth(event, text, words)
        if verb == "PASS" and self.protocol in ("pop3", "tcp", ""):
            password = text.split(" ", 1)[1] if " " in text else ""
            return self._shown(event, "PASS " + self._secret(password),
                               message("decoded-password", self.lang, password=self._secret(password)))
        if verb == "LOGIN" and self.protocol == "imap":
            return self._imap_login(event, text)
        return event

    def _auth(self, event: Event, text: str, words: list[str]) -> Event:
        mech = words[1].upper()
        if mech not in SASL_MECHS:
            return event
        prefix = text[: text.upper().find(words[1].upper()) + len(words[1])]
        if len(words) >= 3 and words[2] != "=":
            self._mech, self._step = mech, 0
            decoded = self._decode(mech, words[2])
            shown = prefix + " " + (words[2] if self.show else HIDDEN)
            return self._shown(event, shown, decoded)
        self._mech, self._step = mech, 0
        return event

    def _payload(self, event: Event, text: str) -> Event:
        if text.strip() == "*":  # the client cancels (RFC 4954 §4)
            self._mech, self._step = "", 0
            return event
        decoded = self._decode(self._mech, text)
        return self._shown(event, text if self.show else HIDDEN, decoded)

    def _decode(self, mech: str, payload: str) -> str:
        if payload.strip() == HIDDEN:  # what an export without --show-secrets wrote (pcap, JSONL)
            if mech == "LOGIN":
                self._step += 1  # still the user name first, then the password
            return message("redacted-payload", self.lang)
        data = _b64(payload)
        if data is None:
            return message("not-base64", self.lang)
        if mech == "PLAIN":
            parts = data.split(b"\x00")
            if len(parts) != 3:
                return message("not-plain", self.lang)
            authz, user, password = (_str(p) for p in parts)
            return message("decoded-plain-authz" if authz else "decoded-plain", self.lang, user=user, authz=authz,
                           password=self._secret(password))
        # LOGIN: first the user name, then the password
        step, self._step = self._step, self._step + 1
        if step == 0:
            return message("decoded-login-user", self.lang, user=_str(data))
        return message("decoded-login-password", self.lang, password=self._secret(_str(data)))

    def _imap_login(self, event: Event, text: str) -> Event:
        args = [m.group(1) if m.group(1) is not None else m.group(2) for m in _IMAP_ARG.finditer(text.encode())]
        if len(args) < 4:
            return event
        user, password = _str(args[2]), _str(args[3])
        visible = " ".join(_str(a) for a in args[:3]) + " " + (self._secret(password) if self.show else HIDDEN)
        return self._shown(event, visible, message("decoded-login", self.lang, user=user, password=self._secret(password)))
