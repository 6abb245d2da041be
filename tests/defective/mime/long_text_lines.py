# DEFECTIVE on purpose (mutation test): must lose points on mime.line-length and nowhere else.
#!/usr/bin/env python3
"""Reference solution of the mime-compose exercise: build an RFC 5322 / MIME message by hand.

    python mime_compose.py --from ADDR --to ADDR --subject TEXT --text-file PATH
                           [--attach FILE]... --out PATH
"""

import argparse
import base64
import mimetypes
import os
import quopri
import sys
import uuid
from email.header import Header
from email.utils import formatdate


def encode_subject(subject):
    try:
        subject.encode("ascii")
        return subject
    except UnicodeEncodeError:
        return Header(subject, "utf-8").encode(linesep="\r\n")  # RFC 2047 encoded-words, folded with CRLF


def text_part(text):
    """Headers and body lines of the text part: 7bit when it can, quoted-printable otherwise."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    ascii_ok = all(ord(c) < 128 for c in text)
    if ascii_ok:
        return ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit"], lines
    data = "\r\n".join(lines).encode("utf-8") + b"\r\n"
    encoded = quopri.encodestring(data).decode("ascii").replace("\r\n", "\n").replace("=0D\n", "\n")
    body = encoded.rstrip("\n").split("\n")
    return ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"], body


def base64_lines(data):
    encoded = base64.b64encode(data).decode("ascii")
    return [encoded[i:i + 76] for i in range(0, len(encoded), 76)]


def main():
    p = argparse.ArgumentParser(description="Write a MIME message.")
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--text-file", required=True)
    p.add_argument("--attach", action="append", default=[])
    p.add_argument("--out", required=True)
    args = p.parse_args()

    try:
        with open(args.text_file, encoding="utf-8") as f:
            text = f.read()
        files = []
        for path in args.attach:
            with open(path, "rb") as f:
                files.append((os.path.basename(path), f.read()))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    headers = [
        f"From: {args.sender}",
        f"To: {args.to}",
        f"Subject: {encode_subject(args.subject)}",
        f"Date: {formatdate(localtime=True)}",
        f"Message-ID: <{uuid.uuid4().hex}@{args.sender.split('@')[-1] or 'localhost'}>",
        "MIME-Version: 1.0",
    ]
    part_headers, part_body = text_part(text)
    if not files:
        lines = headers + part_headers + [""] + part_body
    else:
        boundary = f"=_mailtrace_{uuid.uuid4().hex}"  # "=_" never appears in base64 or QP text
        lines = headers + [f'Content-Type: multipart/mixed; boundary="{boundary}"', "",
                           "This is a multi-part message in MIME format.", f"--{boundary}"]
        lines += part_headers + [""] + part_body
        for name, data in files:
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            lines += [f"--{boundary}", f'Content-Type: {ctype}; name="{name}"',
                      f'Content-Disposition: attachment; filename="{name}"',
                      "Content-Transfer-Encoding: base64", ""]
            lines += base64_lines(data)
        lines.append(f"--{boundary}--")
    with open(args.out, "wb") as f:
        f.write("".join(line + "\r\n" for line in lines).encode("ascii"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
