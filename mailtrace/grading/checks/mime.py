"""mime-compose checks: the message file the program wrote (RFC 5322, RFC 2045/2046/2047)."""

from __future__ import annotations

import email
import email.policy
import mimetypes
import re
from dataclasses import replace
from email.utils import parsedate_to_datetime

from mailtrace.grading.checks import Outcome, check, fail, ok

MAX_LINE = 998  # RFC 5322 §2.1.1: "Each line of characters MUST be no more than 998 characters"
BASE64_LINE = 76  # RFC 2045 §6.8: "lines of no more than 76 characters"


def _output(run) -> bytes | None:
    return run.files.get(run.variables.get("arg_out", ""))


def _missing(run) -> Outcome:
    return fail(f"the message written to {run.variables.get('arg_out')}",
                f"no such file ({run.program.status_text()}; stderr: {run.stderr.strip()[-200:]!r})")


def _parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.compat32)


def _line_no(data: bytes, index: int) -> int:
    return data.count(b"\n", 0, index) + 1


@check("mime.crlf", "Every line ends in CRLF", "RFC 5322 §2.1")
def crlf(run) -> Outcome:
    data = _output(run)
    if data is None:
        return _missing(run)
    for i, b in enumerate(data):
        if b == 0x0A and (i == 0 or data[i - 1] != 0x0D):
            return fail("CRLF (\\r\\n) at the end of every line (write the file in binary mode)",
                        f"line {_line_no(data, i)} ends in a bare LF")
        if b == 0x0D and (i + 1 >= len(data) or data[i + 1] != 0x0A):
            return fail("CRLF at the end of every line", f"a bare CR on line {_line_no(data, i)}")
    return ok()


@check("mime.line-length", "No line longer than 998 characters", "RFC 5322 §2.1.1")
def line_length(run) -> Outcome:
    data = _output(run)
    if data is None:
        return _missing(run)
    for n, line in enumerate(data.replace(b"\r\n", b"\n").split(b"\n"), 1):
        if len(line) > MAX_LINE:
            return fail("lines of at most 998 characters (quoted-printable soft line breaks or base64 for long "
                        "text lines)", f"line {n} has {len(line)} characters")
    return ok()


@check("mime.7bit", "7-bit clean: non-ASCII subject as RFC 2047, non-ASCII text encoded", "RFC 2047 §2; RFC 2045 §6")
def seven_bit(run) -> Outcome:
    data = _output(run)
    if data is None:
        return _missing(run)
    for i, b in enumerate(data):
        if b > 127:
            head = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
            where = "the header (an RFC 2047 encoded-word: =?utf-8?b?...?=)" if i < len(head) else \
                "a body part (quoted-printable or base64, with its charset)"
            return fail("only ASCII octets in the file", f"a raw 8-bit octet on line {_line_no(data, i)}, in {where}")
    return ok()


@check("mime.headers", "From, To, Subject, Date, Message-ID and MIME-Version", "RFC 5322 §3.6; RFC 2045 §4")
def headers(run) -> Outcome:
    data = _output(run)
    if data is None:
        return _missing(run)
    m = _parse(data)
    missing = [h for h in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version") if m.get(h) is None]
    if missing:
        return fail("From, To, Subject, Date, Message-ID and MIME-Version", f"missing: {', '.join(missing)}")
    try:
        parsedate_to_datetime(m["Date"])
    except (TypeError, ValueError, IndexError):
        return fail("a Date in RFC 5322 format (email.utils.formatdate)", f"Date: {m['Date']}", rfc="RFC 5322 §3.3")
    if not re.fullmatch(r"\s*<[^<>@\s]+@[^<>@\s]+>\s*", m["Message-ID"] or ""):
        return fail("Message-ID: <unique@domain>", f"Message-ID: {m['Message-ID']}", rfc="RFC 5322 §3.6.4")
    from mailtrace.grading.checks.smtp import _decoded_header

    subject = _decoded_header(m["Subject"])
    if subject.strip() != run.variables.get("arg_subject", "").strip():
        return fail(f"Subject: {run.variables.get('arg_subject')}", f"Subject (decoded): {subject}")
    for h, arg in (("From", "arg_from"), ("To", "arg_to")):
        want = run.variables.get(arg, "")
        want = want[0] if isinstance(want, list) else want
        if want.lower() not in (m.get(h) or "").lower():
            return fail(f"{h}: {want}", f"{h}: {m.get(h)}")
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


@check("mime.structure", "text/plain alone, or multipart/mixed: the text first, one part per file",
       "RFC 2046 §5.1.1, §5.1.3")
def structure(run) -> Outcome:
    data = _output(run)
    if data is None:
        return _missing(run)
    m = _parse(data)
    attachments = run.variables.get("arg_attach", [])
    if not attachments:
        if m.get_content_type() != "text/plain":
            return fail("Content-Type: text/plain (no attachment)", f"Content-Type: {m.get_content_type()}")
        return ok()
    if m.get_content_type() != "multipart/mixed" or not m.is_multipart():
        return fail("Content-Type: multipart/mixed; boundary=...", f"Content-Type: {m.get('Content-Type')}")
    boundary = m.get_boundary() or ""
    clash = _boundary_collision(run, data, m)
    if clash is not None:
        return fail("a boundary that appears nowhere in the content (random, e.g. uuid.uuid4().hex, and checked "
                    "against the text)", f"the text has the line {clash[:80]!r}, which the boundary "
                    f"{boundary!r} turns into a part delimiter", rfc="RFC 2046 §5.1.1")
    body = data.split(b"\r\n\r\n", 1)[-1]
    if (b"--" + boundary.encode() + b"--") not in body:
        return fail(f"the closing delimiter --{boundary}-- after the last part", "it is missing", rfc="RFC 2046 §5.1.1")
    parts = m.get_payload()
    if len(parts) != 1 + len(attachments):
        return fail(f"{1 + len(attachments)} parts (the text, then one per --attach)", f"{len(parts)} parts")
    if parts[0].get_content_type() != "text/plain":
        return fail("the first part is the text/plain body", f"the first part is {parts[0].get_content_type()}")
    return ok()


@check("mime.text", "The text arrives as given (decoded)", "RFC 2045 §6")
def text(run) -> Outcome | None:
    data = _output(run)
    if data is None:
        return _missing(run)
    m = _parse(data)
    if _boundary_collision(run, data, m) is not None:
        return None  # the boundary cuts the text: mime.structure's business
    part = _body_part(m)
    if part is None:
        return fail("a text part", "no text part")
    got, want = _norm(_text_of(part)), _norm(run.variables.get("arg_text_file_text", ""))
    if got != want:
        for i, (a, b) in enumerate(zip(got, want)):
            if a != b:
                return fail(f"text line {i + 1}: {b[:80]!r}", f"{a[:80]!r}")
        return fail(f"{len(want)} text lines", f"{len(got)} text lines")
    return ok()


@check("mime.attachments", "Each file as a base64 attachment part with its name and type", "RFC 2045 §6.8; RFC 2183")
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
            return fail(f"a part for {name}", "it is missing")
        p = p if p is not None else parts[i]
        disp = (p.get("Content-Disposition") or "").lower()
        if not disp.startswith("attachment") or p.get_param("filename", header="content-disposition") != name:
            return fail(f'Content-Disposition: attachment; filename="{name}"',
                        f"Content-Disposition: {p.get('Content-Disposition')}", rfc="RFC 2183 §2")
        raw_disp = " ".join((p.get("Content-Disposition") or "").split())
        if re.search(r"(?i)\bfilename=(?!\")", raw_disp):
            # the statement asks for a quoted-string: a name with a space or one of ()<>@,;:\"/[]?=
            # is not a token (RFC 2045 §5.1), so an unquoted filename= breaks on such names
            return fail(f'Content-Disposition: attachment; filename="{name}" (the name in double quotes)',
                        f"Content-Disposition: {raw_disp}", rfc="RFC 2183 §2; RFC 2045 §5.1")
        if (p.get("Content-Transfer-Encoding") or "").strip().lower() != "base64":
            return fail(f"{name} encoded in base64", f"Content-Transfer-Encoding: {p.get('Content-Transfer-Encoding')}")
        raw = p.get_payload(decode=False)
        longest = max((len(x) for x in raw.splitlines()), default=0) if isinstance(raw, str) else 0
        if longest > BASE64_LINE and not too_long:
            # a rule broken, but nothing in transit breaks below 998 octets: part of the points
            return replace(fail(f"{name} in base64 lines of at most {BASE64_LINE} characters "
                                "(base64.encodebytes, or cut b64encode's output)",
                                f"a base64 line of {longest} characters", rfc="RFC 2045 §6.8"), fraction=0.5)
        want_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if p.get_content_type() != want_type:
            return fail(f"Content-Type: {want_type} for {name}", f"Content-Type: {p.get_content_type()}")
        if p.get_payload(decode=True) != run.inputs.get(name):
            return fail(f"{name} decodes to the original {len(run.inputs.get(name, b''))} octets",
                        f"it decodes to {len(p.get_payload(decode=True) or b'')} different octets")
    return ok()
