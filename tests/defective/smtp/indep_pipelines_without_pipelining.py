# DEFECTIVE on purpose (mutation test): must lose points on smtp.waits-for-reply and nowhere else.
# Written by the independent tester:
# sends MAIL and every RCPT in one write even when PIPELINING is not advertised.  Finding F2 of
# the independent grader review (the replies of the earlier commands were dropped: 5 checks lost).
# SMTP client, style D (= B, but no wait for QUIT's reply after a timeout): recv() loop with a byte buffer; pipelines MAIL+RCPT when the server
# advertises PIPELINING (RFC 2920); no RSET; quoted-printable body; Message-ID from time+pid.
import argparse, os, quopri, socket, sys, time
from email import utils
from email.header import Header

class ConnectionGone(Exception):
    pass

class SMTPConn:
    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), 10)
        self.s.settimeout(10)
        self.buf = b""

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line.decode("latin-1")
            chunk = self.s.recv(1024)
            if chunk == b"":
                raise ConnectionGone("the server closed the connection")
            self.buf += chunk

    def reply(self):
        lines = []
        while True:
            l = self._line()
            lines.append(l)
            if not (len(l) > 3 and l[3] == "-"):
                return int(l[:3]), "\n".join(lines)

    def send(self, text):
        self.s.sendall(text.encode() + b"\r\n")

    def command(self, text):
        self.send(text)
        return self.reply()

    def quit(self):
        try:
            self.command("QUIT")
        except Exception:
            pass
        self.s.close()


def make_message(sender, rcpts, subject, body):
    if subject.isascii():
        subj = subject
    else:
        subj = Header(subject, "utf-8").encode()
    h = []
    h.append("Date: %s" % utils.formatdate())
    h.append("From: <%s>" % sender)
    h.append("To: %s" % ", ".join("<%s>" % r for r in rcpts))
    h.append("Message-ID: <%d.%d@%s>" % (time.time_ns(), os.getpid(), "student.lab"))
    h.append("Subject: %s" % subj)
    text = body.replace("\r\n", "\n")
    if text.isascii():
        bl = text.split("\n")
        if bl and bl[-1] == "":
            bl.pop()
    else:
        h.append("MIME-Version: 1.0")
        h.append('Content-Type: text/plain; charset="utf-8"')
        h.append("Content-Transfer-Encoding: quoted-printable")
        qp = quopri.encodestring(text.encode("utf-8")).decode("ascii")
        bl = qp.split("\n")
        if bl and bl[-1] == "":
            bl.pop()
    data = b""
    for line in h + [""] + bl:
        if line[:1] == ".":
            line = "." + line
        data += line.encode("ascii") + b"\r\n"
    return data + b".\r\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server"); ap.add_argument("--port", type=int)
    ap.add_argument("--from", dest="frm"); ap.add_argument("--to", action="append", default=[])
    ap.add_argument("--subject", default=""); ap.add_argument("--body-file")
    a = ap.parse_args()
    body = open(a.body_file, encoding="utf-8").read()
    msg = make_message(a.frm, a.to, a.subject, body)

    try:
        c = SMTPConn(a.server, a.port)
    except OSError as err:
        sys.stderr.write("Could not connect: %s\n" % err)
        sys.exit(2)
    try:
        code, text = c.reply()
        if code // 100 != 2:
            sys.stderr.write("Greeting refused: %s\n" % text)
            c.quit()
            sys.exit(2)
        code, text = c.command("EHLO " + socket.gethostname().split(".")[0] if False else "EHLO student")
        pipelining = True  # faster!
        if code in (500, 502):
            code, text = c.command("HELO student")
        elif code == 250:
            pass
        if code != 250:
            sys.stderr.write("Server refused greeting: %s\n" % text)
            c.quit(); sys.exit(1)

        if pipelining:
            c.s.sendall(("MAIL FROM:<%s>\r\n" % a.frm).encode()
                        + b"".join(("RCPT TO:<%s>\r\n" % r).encode() for r in a.to))
            mail_reply = c.reply()
            rcpt_replies = [c.reply() for r in a.to]
        else:
            mail_reply = c.command("MAIL FROM:<%s>" % a.frm)
            rcpt_replies = []
            if mail_reply[0] == 250:
                for r in a.to:
                    rcpt_replies.append(c.command("RCPT TO:<%s>" % r))
        if mail_reply[0] != 250:
            sys.stderr.write("Sender refused: %s\n" % mail_reply[1])
            c.quit(); sys.exit(1)
        ok = 0
        bad = []
        for r, (code, text) in zip(a.to, rcpt_replies):
            if code // 100 == 2:
                ok += 1
            else:
                bad.append(r)
                sys.stderr.write("Recipient refused: %s (%s)\n" % (r, text))
        if ok == 0:
            sys.stderr.write("All recipients refused\n")
            c.quit(); sys.exit(1)
        code, text = c.command("DATA")
        if code != 354:
            sys.stderr.write("DATA refused: %s\n" % text)
            c.quit(); sys.exit(1)
        c.s.sendall(msg)
        code, text = c.reply()
        if code != 250:
            sys.stderr.write("Message refused: %s\n" % text)
            c.quit(); sys.exit(1)
        c.quit()
        sys.exit(3 if bad else 0)
    except socket.timeout:
        sys.stderr.write("Timeout: the server did not answer\n")
        try:
            c.send("QUIT")  # do not wait for the reply of a server that went silent
        except OSError:
            pass
        sys.exit(1)
    except (ConnectionGone, OSError) as err:
        sys.stderr.write("Connection problem: %s\n" % err)
        sys.exit(1)

main()
