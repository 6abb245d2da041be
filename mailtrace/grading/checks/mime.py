"""mime-compose checks: the message file the program wrote (RFC 5322, RFC 2045/2046/2047)."""

from __future__ import annotations

import email
import email.policy
import mimetypes
import re
from dataclasses import replace
from email.utils import parsedate_to_datetime

from mailtrace.grading.checks import Outcome, check, ok, said

MAX_LINE = 998  # RFC 5322 §2.1.1: "Each line of characters MUST be no more than 998 characters"
BASE64_LINE = 76  # RFC 2045 §6.8: "lines of no more than 76 characters"


def _output(run) -> bytes | None:
    return run.files.get(run.variables.get("arg_out", ""))


def _missing(run) -> Outcome:
    return said(run, "mime.no-file", out=run.variables.get("arg_out"), status=run.program.status_text(run.lang),
                stderr=run.stderr.strip()[-200:])


def _parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.compat32)


def _line_no(data: bytes, index: int) -> int:
    return data.count(b"\n", 0, index) + 1


@check("mime.crlf", "RFC 5322 §2.1")
def crlf(run) -> Outcome:
    data = _output(run)
    if data is None:
        return _missing(run)
    for i, b in enumerate(data):
        if b == 0x0A and (i == 0 or data[i - 1] != 0x0D):
            return said(run, "mime.crlf.bare-lf", line=_line_no(data, i))
        if b == 0x0D and (i + 1 >= len(data) or data[i + 1] != 0x0A):
            return said(run, "mime.crlf.bare-cr", line=_line_no(data, i))
    return ok()


@check("mime.line-length", "RFC 5322 §2.1.1")
def line_length(run) -> Outcome:
    data = _output(run)
    if data is None:
        return _missing(run)
    for n, line in enumerate(data.replace(b"\r\n", b"\n").split(b"\n"), 1):
        if len(line) > MAX_LINE:
            return said(run, "mime.line-length.long", line=n, length=len(line))
    return ok()


@check("mime.7bit", "RFC 2047 §2; RFC 2045 §6")
def seven_bit(run) -> Outcome:
    data = _output(run)
    if data is None:
        return _missing(run)
    for i, b in enumerate(data):
        if b > 127:
            head = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
            return said(run, "mime.7bit.header" if i < len(head) else "mime.7bit.body", line=_line_no(data, i))
    return ok()


@check("mime.headers", "RFC 5322 §3.6; RFC 2045 §4")
def headers(run) -> Outcome:
    data = _output(run)
    if data is None:
        return _missing(run)
    m = _parse(data)
    missing = [h for h in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version") if m.get(h) is None]
    if missing:
        return said(run, "headers.missing", fields="From, To, Subject, Date, Message-ID, MIME-Version",
                    missing=", ".join(missing))
    try:
        parsedate_to_datetime(m["Date"])
    except (TypeError, ValueError, IndexError):
        return said(run, "headers.bad-date", rfc="RFC 5322 §3.3", date=m["Date"])
    if not re.fullmatch(r"\s*<[^<>@\s]+@[^<>@\s]+>\s*", m["Message-ID"] or ""):
        return said(run, "headers.message-id", rfc="RFC 5322 §3.6.4", value=m["Message-ID"])
    from mailtrace.grading.checks.smtp import _decoded_header

    subject = _decoded_header(m["Subject"])
    if subject.strip() != run.variables.get("arg_subject", "").strip():
        return said(run, "headers.subject", want=run.variables.get("arg_subject"), got=subject)
    for h, arg in (("From", "arg_from"), ("To", "arg_to")):
        want = run.variables.get(arg, "")
        want = want[0] if isinstance(want, list) else want
        if want.lower() not in (m.get(h) or "").lower():
            return said(run, "headers.address", field=h, want=want, got=m.get(h))
    return ok()


def _text_of(part) -> str:
    payload = part.get_payload(decode=True) or b""
    try:
        return payload.decode(part.get_content_charset() or "us-ascii")
    except (LookupError, UnicodeDecodeError):
        return payload.decode("utf-8", "replace")


def _norm(text: str) -> list[str]:
    return text.replace("\r\n", "\n").rstrip("\n").split("\n")


def _body_part(m):
    """The text body: the message itself, or its first text/plain part that is not an attachment
    (wherever it is: the order of the parts is mime.structure's business)."""
    if not m.is_multipart():
        return m
    parts = [p for p in m.get_payload() if not isinstance(p, str)]
    for p in parts:
        if p.get_content_type() == "text/plain" and \
                not (p.get("Content-Disposition") or "").lower().startswith("attachment"):
            return p
    return parts[0] if parts else None


def _boundary_collision(run, data: bytes, m) -> str | None:
    """A text line that starts with the boundary delimiter and went into the message as it is
    (RFC 2046 §5.1.1: the boundary "must not appear inside any of the encapsulated parts")."""
    boundary = m.get_boundary() if m.is_multipart() else None
    if not boundary:
        return None
    lines = set(data.split(b"\r\n"))
    for line in run.variables.get("arg_text_file_text", "").splitlines():
        if line.startswith("--" + boundary) and line.encode("utf-8", "replace") in lines:
            return line
    return None


@check("mime.structure",
       "RFC 2046 §5.1.1, §5.1.3")
def structure(run) -> Outcome:
    data = _output(run)
    if data is None:
        return _missing(run)
    m = _parse(data)
    attachments = run.variables.get("arg_attach", [])
    if not attachments:
        if m.get_content_type() != "text/plain":
            return said(run, "mime.structure.not-plain", ctype=m.get_content_type())
        return ok()
    if m.get_content_type() != "multipart/mixed" or not m.is_multipart():
        return said(run, "mime.structure.not-multipart", ctype=m.get("Content-Type"))
    boundary = m.get_boundary() or ""
    clash = _boundary_collision(run, data, m)
    if clash is not None:
        return said(run, "mime.structure.boundary-clash", rfc="RFC 2046 §5.1.1", line=clash[:80], boundary=boundary)
    body = data.split(b"\r\n\r\n", 1)[-1]
    if (b"--" + boundary.encode() + b"--") not in body:
        return said(run, "mime.structure.no-close", rfc="RFC 2046 §5.1.1", boundary=boundary)
    parts = m.get_payload()
    if len(parts) != 1 + len(attachments):
        return said(run, "mime.structure.parts", want=1 + len(attachments), got=len(parts))
    if parts[0].get_content_type() != "text/plain":
        return said(run, "mime.structure.first", ctype=parts[0].get_content_type())
    return ok()


@check("mime.text", "RFC 2045 §6")
def text(run) -> Outcome | None:
    data = _output(run)
    if data is None:
        return _missing(run)
    m = _parse(data)
    if _boundary_collision(run, data, m) is not None:
        return None  # the boundary cuts the text: mime.structure's business
    part = _body_part(m)
    if part is None:
        return said(run, "mime.text.no-part")
    got, want = _norm(_text_of(part)), _norm(run.variables.get("arg_text_file_text", ""))
    if got != want:
        for i, (a, b) in enumerate(zip(got, want)):
            if a != b:
                return said(run, "mime.text.line", n=i + 1, want=b[:80], got=a[:80])
        return said(run, "mime.text.count", want=len(want), got=len(got))
    return ok()


@check("mime.attachments", "RFC 2045 §6.8; RFC 2183")
def attachments(run) -> Outcome | None:
    data = _output(run)
    if data is None:
        return _missing(run)
    m = _parse(data)
    if _boundary_collision(run, data, m) is not None:
        return None  # the boundary cuts the parts: mime.structure's business
    files = run.variables.get("arg_attach", [])
    # base64 not cut into lines at all goes over 998 somewhere: mime.line-length's business
    too_long = any(len(x) > MAX_LINE for x in data.split(b"\r\n"))
    body = _body_part(m)
    parts = [p for p in m.get_payload() if p is not body and not isinstance(p, str)] if m.is_multipart() else []
    for i, name in enumerate(files):
        # matched by file name (their order is mime.structure's business), else by position
        p = next((q for q in parts if q.get_param("filename", header="content-disposition") == name), None)
        if p is None and i >= len(parts):
            return said(run, "mime.attachments.missing", name=name)
        p = p if p is not None else parts[i]
        disp = (p.get("Content-Disposition") or "").lower()
        if not disp.startswith("attachment") or p.get_param("filename", header="content-disposition") != name:
            return said(run, "mime.attachments.disposition", rfc="RFC 2183 §2", name=name,
                        got=p.get("Content-Disposition"))
        raw_disp = " ".join((p.get("Content-Disposition") or "").split())
        if re.search(r"(?i)\bfilename=(?!\")", raw_disp):
            # the statement asks for a quoted-string: a name with a space or one of ()<>@,;:\"/[]?=
            # is not a token (RFC 2045 §5.1), so an unquoted filename= breaks on such names
            return said(run, "mime.attachments.unquoted", rfc="RFC 2183 §2; RFC 2045 §5.1", name=name, got=raw_disp)
        if (p.get("Content-Transfer-Encoding") or "").strip().lower() != "base64":
            return said(run, "mime.attachments.not-base64", name=name, cte=p.get("Content-Transfer-Encoding"))
        raw = p.get_payload(decode=False)
        longest = max((len(x) for x in raw.splitlines()), default=0) if isinstance(raw, str) else 0
        if longest > BASE64_LINE and not too_long:
            # a rule broken, but nothing in transit breaks below 998 octets: part of the points
            return replace(said(run, "mime.attachments.long-lines", rfc="RFC 2045 §6.8", name=name, limit=BASE64_LINE,
                                length=longest), fraction=0.5)
        want_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if p.get_content_type() != want_type:
            return said(run, "mime.attachments.type", want=want_type, name=name, got=p.get_content_type())
        if p.get_payload(decode=True) != run.inputs.get(name):
            return said(run, "mime.attachments.content", name=name, size=len(run.inputs.get(name, b"")),
                        got=len(p.get_payload(decode=True) or b""))
    return ok()
