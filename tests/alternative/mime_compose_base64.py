"""A correct mime-compose in another style: base64 for every part, an unquoted boundary,
Q-encoded subject, no preamble, unquoted parameters."""
import argparse
import base64
import mimetypes
import os
import random
import string
import time
from email.header import Header


def b64(data):
    text = base64.b64encode(data).decode()
    return [text[i:i + 60] for i in range(0, len(text), 60)]


ap = argparse.ArgumentParser()
ap.add_argument("--from", dest="frm"); ap.add_argument("--to"); ap.add_argument("--subject")
ap.add_argument("--text-file"); ap.add_argument("--attach", action="append", default=[]); ap.add_argument("--out")
a = ap.parse_args()
text = open(a.text_file, "rb").read()
subject = a.subject if a.subject.isascii() else Header(a.subject, "utf-8", header_name="Subject").encode(linesep="\r\n")
stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
msgid = "<%d.%s@compose.example>" % (time.time_ns(), "".join(random.choices(string.ascii_lowercase, k=8)))
head = ["MIME-Version: 1.0", "Date: " + stamp, "Message-ID: " + msgid, "From: " + a.frm, "To: " + a.to,
        "Subject: " + subject]
textpart = ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64", ""] + b64(text)
if not a.attach:
    lines = head + textpart
else:
    bnd = "b1_" + "".join(random.choices(string.ascii_letters + string.digits, k=30))
    lines = head + ["Content-Type: multipart/mixed; boundary=" + bnd, "", "--" + bnd] + textpart
    for path in a.attach:
        name = os.path.basename(path)
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        lines += ["--" + bnd, "Content-Type: " + ctype, "Content-Transfer-Encoding: base64",
                  "Content-Disposition: attachment; filename=\"" + name + "\"", ""] + b64(open(path, "rb").read())
    lines += ["--" + bnd + "--"]
open(a.out, "wb").write(("\r\n".join(lines) + "\r\n").encode())
