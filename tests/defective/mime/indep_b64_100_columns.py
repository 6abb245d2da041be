# DEFECTIVE on purpose (mutation test): must lose points on mime.attachments and nowhere else.
# Written by the independent tester.
# Finding F13 of the independent grader review (commit messages cite it by that id).
#!/usr/bin/env python3
# MIME composer, style B: 7bit text when it is ASCII with short lines, otherwise base64;
# a preamble and an epilogue; boundary derived from a hash of the content; headers in
# another order; base64 attachments in 64-character lines; a hand-made encoded-word.
import argparse, base64, hashlib, mimetypes, os, sys, time, random
from email.utils import formatdate

def encoded_word(s):
    if all(ord(ch) < 128 for ch in s):
        return s
    # one encoded-word per chunk of characters, each word <= 75 chars (RFC 2047 §2)
    words, chunk = [], ""
    for ch in s:
        if len(base64.b64encode((chunk + ch).encode("utf-8"))) > 45:
            words.append(chunk); chunk = ""
        chunk += ch
    words.append(chunk)
    return "\r\n ".join("=?UTF-8?B?%s?=" % base64.b64encode(w.encode("utf-8")).decode() for w in words)

def b64lines(data, width=64):
    enc = base64.b64encode(data).decode("ascii")
    return [enc[i:i + width] for i in range(0, len(enc), width)]

ap = argparse.ArgumentParser()
ap.add_argument("--from", dest="frm", required=True)
ap.add_argument("--to", required=True)
ap.add_argument("--subject", required=True)
ap.add_argument("--text-file", required=True)
ap.add_argument("--attach", action="append", default=[])
ap.add_argument("--out", required=True)
o = ap.parse_args()

raw = open(o.text_file, "rb").read()
text = raw.decode("utf-8").replace("\r\n", "\n")
lines = text.split("\n")
if lines and lines[-1] == "":
    lines.pop()
if text.isascii() and all(len(l) <= 900 for l in lines):
    tpart_h = ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit"]
    tpart_b = lines
else:
    tpart_h = ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: base64"]
    tpart_b = b64lines("\n".join(lines).replace("\n", "\r\n").encode("utf-8") + b"\r\n", 76)

attachments = []
for path in o.attach:
    data = open(path, "rb").read()
    fname = os.path.basename(path)
    ct, _ = mimetypes.guess_type(fname)
    attachments.append((fname, ct or "application/octet-stream", data))

h = hashlib.sha1(raw + b"".join(d for _, _, d in attachments) + str(time.time()).encode()).hexdigest()
boundary = "----part_" + h
out = []
out.append("MIME-Version: 1.0")
out.append("Date: " + formatdate())
out.append("Message-ID: <%s.%d@%s>" % (h[:16], random.randint(0, 10**9), "b.compose.invalid"))
out.append("To: " + o.to)
out.append("From: " + o.frm)
out.append("Subject: " + encoded_word(o.subject))
if not attachments:
    out += tpart_h
    out.append("")
    out += tpart_b
else:
    out.append('Content-Type: multipart/mixed;\r\n boundary="%s"' % boundary)
    out.append("")
    out.append("This is a multi-part message in MIME format.")
    out.append("--" + boundary)
    out += tpart_h
    out.append("")
    out += tpart_b
    for fname, ct, data in attachments:
        out.append("--" + boundary)
        out.append('Content-Type: %s; name="%s"' % (ct, fname))
        out.append("Content-Transfer-Encoding: base64")
        out.append('Content-Disposition: attachment; filename="%s"' % fname)
        out.append("")
        out += b64lines(data, 100)
    out.append("--" + boundary + "--")
    out.append("end of message")
with open(o.out, "wb") as f:
    f.write(("\r\n".join(out) + "\r\n").encode("ascii"))
