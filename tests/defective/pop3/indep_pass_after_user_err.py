# DEFECTIVE on purpose (mutation test): must lose points on pop3.stops-after-error and nowhere else.
# Written by the independent tester:
# ignores the reply to USER and sends PASS anyway.  Finding F5 of the independent grader review (commit messages cite it by that id).
"""POP3 client, style A: makefile/readline, STAT, DELE right after each write."""
import argparse
import os
import socket
import sys


class Gone(Exception):
    pass


def status(f):
    line = f.readline()
    if not line.endswith(b"\n"):
        raise Gone("connection closed by the server")
    return line.rstrip(b"\r\n").decode("utf-8", "replace")


def multiline(f):
    data = bytearray()
    while True:
        line = f.readline()
        if not line.endswith(b"\n"):
            raise Gone("connection closed in the middle of a message")
        if line == b".\r\n":
            return bytes(data)
        if line.startswith(b"."):
            line = line[1:]
        data += line


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--delete", action="store_true")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    try:
        s = socket.create_connection((a.server, a.port), timeout=10)
    except OSError as e:
        print("cannot connect: %s" % e, file=sys.stderr)
        return 2
    f = s.makefile("rb")

    def cmd(text):
        s.sendall(text.encode() + b"\r\n")
        return status(f)

    def quit_():
        try:
            cmd("QUIT")
        except (OSError, Gone):
            pass

    try:
        g = status(f)
        if not g.startswith("+OK"):
            print("server says: " + g, file=sys.stderr)
            quit_()
            return 2
        r = cmd("USER " + a.user)
        r = cmd("PASS " + a.password)
        if not r.startswith("+OK"):
            print("PASS refused: " + r, file=sys.stderr)
            quit_()
            return 1
        r = cmd("STAT")
        if not r.startswith("+OK"):
            print("STAT failed: " + r, file=sys.stderr)
            quit_()
            return 1
        count = int(r.split()[1])
        for n in range(1, count + 1):
            r = cmd("RETR %d" % n)
            if not r.startswith("+OK"):
                print("RETR %d failed: %s" % (n, r), file=sys.stderr)
                continue
            msg = multiline(f)
            with open(os.path.join(a.out, "%d.eml" % n), "wb") as out:
                out.write(msg)
            if a.delete:
                r = cmd("DELE %d" % n)
                if not r.startswith("+OK"):
                    print("DELE %d failed: %s" % (n, r), file=sys.stderr)
        r = cmd("QUIT")
        if not r.startswith("+OK"):
            print("QUIT: " + r, file=sys.stderr)
            return 1
        return 0
    except socket.timeout:
        print("the server stopped answering", file=sys.stderr)
        try:
            s.sendall(b"QUIT\r\n")
        except OSError:
            pass
        return 1
    except (Gone, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    finally:
        s.close()


if __name__ == "__main__":
    sys.exit(main())
