# Written by the independent tester, from the contract
# only (the independent grader review): a correct client in another style; it must score full marks.
#!/usr/bin/env python3
"""MIME composer, style C: email.header for a folded multi-word subject; MIME-Version with a
comment (RFC 2045 §4 allows it); a boundary using the special characters RFC 2046 §5.1.1 allows
("'()+_,-./:=?"), quoted; Content-Type name= and RFC 2231 filename*= for non-ASCII names;
text as quoted-printable only when needed, otherwise 7bit; Content-Disposition before
Content-Type; an inline text part with its own Content-Disposition."""
import argparse
import base64
import mimetypes
import os
import quopri
import sys
import uuid
from email.header import Header
from email.utils import formatdate
from urllib.parse import quote


def fold_subject(s):
    if s.isascii() and len(s) < 900:
        return s
    return Header(s, "utf-8", header_name="Subject").encode(linesep="\r\n")


def text_part(text):
    text = text.replace("\r\n", "\n")
    if text.isascii() and all(len(l) <= 76 for l in text.split("\n")):
        body = text.replace("\n", "\r\n")
        cte, cs = "7bit", "us-ascii"
    else:
        body = quopri.encodestring(text.encode("utf-8")).decode("ascii").replace("\n", "\r\n")
        cte, cs = "quoted-printable", "utf-8"
    if not body.endswith("\r\n"):
        body += "\r\n"
    return ("Content-Type: text/plain; charset=%s; format=fixed\r\n"
            "Content-Transfer-Encoding: %s\r\n" % (cs, cte)), body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--from", dest="sender", required=True)
    ap.add_argument("--to", required=True)
    ap.add_argument("--subject", required=True)
    ap.add_argument("--text-file", required=True)
    ap.add_argument("--attach", action="append", default=[])
    ap.add_argument("--out", required=True)
    o = ap.parse_args()
    th, tb = text_part(open(o.text_file, "rb").read().decode("utf-8"))
    head = ("Message-ID: <%s@c.example>\r\nSubject: %s\r\nFrom: %s\r\nTo: %s\r\nDate: %s\r\n"
            "MIME-Version: 1.0 (hand-made)\r\n" % (uuid.uuid4(), fold_subject(o.subject), o.sender,
                                                   o.to, formatdate(localtime=True)))
    if not o.attach:
        msg = head + th + "\r\n" + tb
    else:
        boundary = "=_(c)'mime+x,y-z./:=?" + uuid.uuid4().hex
        parts = ["Content-Disposition: inline\r\n" + th + "\r\n" + tb]
        for path in o.attach:
            name = os.path.basename(path)
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            data = base64.encodebytes(open(path, "rb").read()).decode("ascii").replace("\n", "\r\n")
            if name.isascii():
                disp = 'attachment;\r\n filename="%s"' % name
                nparam = '; name="%s"' % name
            else:
                disp = "attachment;\r\n filename*=utf-8''%s" % quote(name)
                nparam = ""
            parts.append("Content-Disposition: %s\r\nContent-Type: %s%s\r\n"
                         "Content-Transfer-Encoding: base64\r\n\r\n%s" % (disp, ctype, nparam, data))
        msg = head + 'Content-Type: multipart/mixed;\r\n\tboundary="%s"\r\n\r\n' % boundary
        for part in parts:
            msg += "--%s\r\n%s" % (boundary, part)
        msg += "--%s--\r\n" % boundary
    with open(o.out, "wb") as f:
        f.write(msg.encode("ascii"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
