# DEFECTIVE on purpose (mutation test): must lose points on mime.structure and nowhere else.
# Written by the independent tester.
# Finding F6 of the independent grader review (commit messages cite it by that id).
#!/usr/bin/env python3
"""MIME composer, style A: text always quoted-printable (quopri), random boundary checked
against the content, RFC 2231 filename when non-ASCII."""
import argparse
import base64
import mimetypes
import os
import quopri
import secrets
import sys
from email.header import Header
from email.utils import formatdate, make_msgid


def crlf(text):
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def qp(text):
    data = text.replace("\r\n", "\n").encode("utf-8")
    enc = quopri.encodestring(data, quotetabs=False).decode("ascii")
    return crlf(enc)


def filename_param(name):
    if name.isascii():
        return 'filename="%s"' % name.replace("\\", "\\\\").replace('"', '\\"')
    from urllib.parse import quote
    return "filename*=utf-8''" + quote(name, safe="")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--text-file", required=True)
    p.add_argument("--attach", action="append", default=[])
    p.add_argument("--out", required=True)
    a = p.parse_args()

    with open(a.text_file, encoding="utf-8") as f:
        text = f.read()
    subject = a.subject if a.subject.isascii() else Header(a.subject, "utf-8").encode()
    head = [
        "From: " + a.sender,
        "To: " + a.to,
        "Subject: " + subject,
        "Date: " + formatdate(localtime=True),
        "Message-ID: " + make_msgid(domain="compose.example"),
        "MIME-Version: 1.0",
    ]
    text_headers = [
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
    ]
    text_body = qp(text)
    if not text_body.endswith("\r\n"):
        text_body += "\r\n"

    if not a.attach:
        msg = "\r\n".join(head + text_headers) + "\r\n\r\n" + text_body
    else:
        parts = []
        for path in a.attach:
            name = os.path.basename(path)
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            with open(path, "rb") as f:
                b64 = base64.encodebytes(f.read()).decode("ascii")
            parts.append(
                "Content-Type: %s\r\nContent-Disposition: attachment; %s\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n%s" % (ctype, filename_param(name), crlf(b64)))
        everything = text_body + "".join(parts)
        boundary = "frontier"
        msg = "\r\n".join(head) + '\r\nContent-Type: multipart/mixed; boundary="%s"\r\n\r\n' % boundary
        msg += "--%s\r\n%s\r\n\r\n%s" % (boundary, "\r\n".join(text_headers), text_body)
        for part in parts:
            msg += "--%s\r\n%s" % (boundary, part)
        msg += "--%s--\r\n" % boundary
    with open(a.out, "wb") as f:
        f.write(msg.encode("ascii"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
