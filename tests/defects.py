"""The table of defective clients: each is a reference solution with one defect, written at test
time (the ``defective`` fixture of tests/conftest.py) into a temporary folder.

Each entry of MUTANTS: (exercise, name, the check(s) it must lose points on, joined by "+",
[(old, new), ...]).  Every replacement must apply exactly once, so a change to a solution that
breaks a mutant fails the tests at once instead of leaving a stale copy.  To read one as a
student's program:

    python tests/defects.py smtp/no_quit.py        # prints it
    python tests/defects.py --write DIR            # writes them all under DIR

STANDALONE lists the defective clients written by hand (not near-copies of a solution): they
stay committed under tests/defective/.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDWRITTEN = Path(__file__).resolve().parent / "defective"
SOLUTIONS = {"smtp-client": "solutions/smtp-client/smtp_client.py", "pop3-client": "solutions/pop3-client/pop3_client.py",
             "imap-client": "solutions/imap-client/imap_client.py", "mime-compose": "solutions/mime-compose/mime_compose.py"}

MUTANTS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    ("smtp-client", "smtp/bare_lf.py", "smtp.crlf", [
        ('self.sock.sendall(line.encode("ascii") + b"\\r\\n")', 'self.sock.sendall(line.encode("ascii") + b"\\n")'),
        ('return "".join(("." + line if line.startswith(".") else line) + "\\r\\n" for line in lines)',
         'return "".join(("." + line if line.startswith(".") else line) + "\\n" for line in lines)'),
        ('+ b".\\r\\n")', '+ b".\\n")'),
    ]),
    ("smtp-client", "smtp/no_dot_stuffing.py", "smtp.dot-stuffing", [
        ('return "".join(("." + line if line.startswith(".") else line) + "\\r\\n" for line in lines)',
         'return "".join(line + "\\r\\n" for line in lines)'),
    ]),
    ("smtp-client", "smtp/no_brackets.py", "smtp.angle-brackets", [
        ('conn.command(f"MAIL FROM:<{args.sender}>")', 'conn.command(f"MAIL FROM:{args.sender}")'),
        ('conn.command(f"RCPT TO:<{rcpt}>")', 'conn.command(f"RCPT TO:{rcpt}")'),
    ]),
    ("smtp-client", "smtp/single_recv.py", "smtp.whole-reply", [
        ('''        lines = []
        while True:
            line = self.read_line()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]) if line[:3].isdigit() else 0, lines''',
         '''        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            raise ServerGone("the server stopped answering (timed out)")
        if not data:
            raise ServerGone("the server closed the connection")
        text = data.decode("utf-8", "replace")
        lines = text.split("\\r\\n")
        return int(text[:3]) if text[:3].isdigit() else 0, lines'''),
    ]),
    ("smtp-client", "smtp/no_multiline.py", "smtp.multiline", [
        ('''            if len(line) < 4 or line[3] != "-":
                return''', '''            if True:
                return'''),
    ]),
    ("smtp-client", "smtp/ignores_errors.py", "smtp.stops-after-error", [
        ('''        if code != 250:
            print(f"error: sender refused: {lines[-1]}", file=sys.stderr)
            quit_quietly(conn)
            return 1''', '''        mail_refused = code != 250
        if mail_refused:
            print(f"error: sender refused: {lines[-1]}", file=sys.stderr)'''),
        ('''        if not accepted:
            quit_quietly(conn)
            return 1
        code, lines = conn.command("DATA")''', '''        code, lines = conn.command("DATA")
        if not accepted or mail_refused:
            quit_quietly(conn)
            return 1'''),
    ]),
    ("smtp-client", "smtp/temporary_is_ok.py", "smtp.exit-status", [
        ("            if code in (250, 251):\n", "            if code < 500:  # only 5xx is an error...\n"),
    ]),
    ("smtp-client", "smtp/no_quit.py", "smtp.quit", [
        ('''    try:
        conn.command("QUIT")
    except''', '''    try:
        pass
    except'''),
    ]),
    ("smtp-client", "smtp/wrong_exit_code.py", "smtp.exit-status", [
        ("return 3 if rejected else 0", "return 0"),
    ]),
    ("smtp-client", "smtp/no_timeout.py", "smtp.timeout", [
        ("    sock.settimeout(TIMEOUT)\n", "    sock.settimeout(None)\n"),
    ]),
    ("smtp-client", "smtp/no_helo_fallback.py", "smtp.helo-fallback", [
        ('''        if code in (500, 502):
            code, lines = conn.command(f"HELO {socket.gethostname() or 'localhost'}")
''', ""),
    ]),
    ("smtp-client", "smtp/missing_headers.py", "smtp.headers", [
        ('''        f"Date: {formatdate(localtime=True)}",
        f"Message-ID: <{uuid.uuid4().hex}@{sender.split('@')[-1] or 'localhost'}>",
''', ""),
    ]),
    ("smtp-client", "smtp/raw_8bit.py", "smtp.7bit", [
        ('''        subject.encode("ascii")
        return subject''', '''        return subject'''),
        ('''        body.encode("ascii")
        body_lines = text_lines''', '''        body_lines = text_lines'''),
        ('.encode("ascii")\n                          + b".\\r\\n")', '.encode("utf-8")\n                          + b".\\r\\n")'),
    ]),
    ("smtp-client", "smtp/no_wait.py", "smtp.waits-for-reply", [
        ('''        code, lines = conn.read_reply()
        if code != 220:''', '''        conn.send_line(f"EHLO {socket.gethostname() or 'localhost'}")
        code, lines = conn.read_reply()
        if code != 220:'''),
        ('''        code, lines = conn.command(f"EHLO {socket.gethostname() or 'localhost'}")''',
         '''        code, lines = conn.read_reply()'''),
    ]),
    ("smtp-client", "smtp/uses_smtplib.py", "policy.imports", [
        ("import argparse\n", "import argparse\nimport smtplib  # noqa: F401  (only imported: still banned)\n"),
    ]),
    # -- POP3 ------------------------------------------------------------------------------------
    ("pop3-client", "pop3/no_unstuffing.py", "pop3.unstuffing", [
        ('lines.append(line[1:] if line.startswith(b".") else line)', "lines.append(line)"),
    ]),
    ("pop3-client", "pop3/lf_endings.py", "pop3.message-bytes", [
        ('return b"".join(x + b"\\r\\n" for x in lines)', 'return b"".join(x + b"\\n" for x in lines)'),
    ]),
    ("pop3-client", "pop3/bare_lf.py", "pop3.crlf", [
        ('self.sock.sendall(line.encode("utf-8") + b"\\r\\n")', 'self.sock.sendall(line.encode("utf-8") + b"\\n")'),
    ]),
    # no QUIT in POP3 is two faults the lab teaches apart: no polite close (pop3.quit) and, in
    # the --delete scenario, DELEs never committed (pop3.delete, RFC 1939 §6; issue #13)
    ("pop3-client", "pop3/no_quit.py", "pop3.quit+pop3.delete", [
        ('''        ok, status = conn.command("QUIT")
        if not ok:
            print(f"error: QUIT failed (deletions not committed): {status}", file=sys.stderr)
            return 1
        return 0''', "        return 0"),
        ('''    try:
        conn.command("QUIT")
    except''', '''    try:
        pass
    except'''),
    ]),
    ("pop3-client", "pop3/ignores_err.py", "pop3.stops-after-error", [
        ('''        for cmd in (f"USER {args.user}", f"PASS {args.password}"):
            ok, status = conn.command(cmd)
            if not ok:
                print(f"error: login refused: {status}", file=sys.stderr)
                quit_quietly(conn)
                return 1
        ok, status = conn.command("STAT")
        if not ok:''', '''        refused = False
        for cmd in (f"USER {args.user}", f"PASS {args.password}"):
            ok, status = conn.command(cmd)
            if not ok:
                print(f"error: login refused: {status}", file=sys.stderr)
                refused = True
        ok, status = conn.command("STAT")
        if refused:
            quit_quietly(conn)
            return 1
        if not ok:'''),
    ]),
    ("pop3-client", "pop3/wrong_exit_code.py", "pop3.exit-status", [
        ('''                print(f"error: login refused: {status}", file=sys.stderr)
                quit_quietly(conn)
                return 1''', '''                print(f"error: login refused: {status}", file=sys.stderr)
                quit_quietly(conn)
                return 2'''),
    ]),
    ("pop3-client", "pop3/no_timeout.py", "pop3.timeout", [
        ("    sock.settimeout(TIMEOUT)\n", "    sock.settimeout(None)\n"),
    ]),
    ("pop3-client", "pop3/single_recv.py", "pop3.whole-reply", [
        ('''        self.sock.sendall(line.encode("utf-8") + b"\\r\\n")
        status = self.read_line().decode("utf-8", "replace")''', '''        self.sock.sendall(line.encode("utf-8") + b"\\r\\n")
        try:
            chunk = self.sock.recv(65536)  # the status line, and maybe some of the body
        except OSError as exc:
            raise ServerGone(str(exc))
        if not chunk:
            raise ServerGone("the server closed the connection")
        status, _, self.buffer = (self.buffer + chunk).partition(b"\\r\\n")
        status = status.decode("utf-8", "replace")'''),
    ]),
    ("pop3-client", "pop3/no_wait.py", "pop3.waits-for-reply", [
        ('''        greeting = conn.read_line().decode("utf-8", "replace")''',
         '''        conn.sock.sendall(f"USER {args.user}\\r\\n".encode())  # saves a round trip...
        greeting = conn.read_line().decode("utf-8", "replace")'''),
        ('''        for cmd in (f"USER {args.user}", f"PASS {args.password}"):
            ok, status = conn.command(cmd)''', '''        status = conn.read_line().decode("utf-8", "replace")
        for cmd in (None, f"PASS {args.password}"):
            ok, status = (status.startswith("+OK"), status) if cmd is None else conn.command(cmd)'''),
    ]),
    ("pop3-client", "pop3/ends_at_any_dot.py", "pop3.unstuffing", [
        ('''            if line == b".":
                return''', '''            if line.startswith(b"."):
                return'''),
    ]),
    ("pop3-client", "pop3/ignores_delete.py", "pop3.delete", [
        ("            if args.delete:\n", "            if False:\n"),
    ]),
    ("pop3-client", "pop3/uses_poplib.py", "policy.imports", [
        ("import argparse\n", "import argparse\nfrom poplib import POP3  # noqa: F401\n"),
    ]),
    # -- IMAP ------------------------------------------------------------------------------------
    ("imap-client", "imap/tag_reuse.py", "imap.unique-tags", [
        ('        tag = f"A{self.counter:04d}"', '        tag = "A001"'),
    ]),
    ("imap-client", "imap/literal_by_line.py", "imap.literals", [
        ('''            literals.append(self.read_bytes(int(m.group(1))))
            text += b"\\r\\n" + self.read_line()''', '''            body = []
            while True:  # the message ends at the line ")"
                line = self.read_line()
                if line == b")":
                    break
                body.append(line)
            literals.append(b"".join(x + b"\\r\\n" for x in body))
            text += b"\\r\\n)"'''),
    ]),
    ("imap-client", "imap/literal_one_recv.py", "imap.literals", [
        ('''    def read_bytes(self, n):
        while len(self.buffer) < n:
            self._fill()''', '''    def read_bytes(self, n):
        if len(self.buffer) < n:
            self.buffer += self.sock.recv(n - len(self.buffer))  # recv(n) returns n octets...'''),
    ]),
    ("imap-client", "imap/unquoted.py", "imap.quoting", [
        ('conn.command(f"LOGIN {quote(args.user)} {quote(args.password)}")',
         'conn.command(f"LOGIN {args.user} {args.password}")'),
        ("{'SELECT' if args.mark_seen else 'EXAMINE'} {quote(args.mailbox)}",
         "{'SELECT' if args.mark_seen else 'EXAMINE'} {args.mailbox}"),
    ]),
    ("imap-client", "imap/no_logout.py", "imap.logout", [
        ('''    try:
        conn.command("LOGOUT")
    except''', '''    try:
        pass
    except'''),
    ]),
    ("imap-client", "imap/ignores_no.py", "imap.stops-after-error", [
        ('''        try:
            conn.command(f"LOGIN {quote(args.user)} {quote(args.password)}")
            conn.command(f"{'SELECT' if args.mark_seen else 'EXAMINE'} {quote(args.mailbox)}")
        except Refused as exc:
            print(f"error: {exc}", file=sys.stderr)
            logout_quietly(conn)
            return 1''', '''        failed = None
        for cmd in (f"LOGIN {quote(args.user)} {quote(args.password)}",
                    f"{'SELECT' if args.mark_seen else 'EXAMINE'} {quote(args.mailbox)}"):
            try:
                conn.command(cmd)
            except Refused as exc:
                print(f"error: {exc}", file=sys.stderr)
                failed = failed or exc
        if failed:
            logout_quietly(conn)
            return 1'''),
    ]),
    ("imap-client", "imap/wrong_exit_code.py", "imap.exit-status", [
        ('''            print(f"error: {exc}", file=sys.stderr)
            logout_quietly(conn)
            return 1
        found''', '''            print(f"error: {exc}", file=sys.stderr)
            logout_quietly(conn)
            return 0
        found'''),
    ]),
    ("imap-client", "imap/no_timeout.py", "imap.timeout", [
        ("    sock.settimeout(TIMEOUT)\n", "    sock.settimeout(None)\n"),
    ]),
    ("imap-client", "imap/single_recv.py", "imap.whole-reply", [
        ('''    def read_line(self):
        while b"\\r\\n" not in self.buffer:
            self._fill()''', '''    def read_line(self):
        if b"\\r\\n" not in self.buffer:
            self._fill()  # one recv() is one line
            if b"\\r\\n" not in self.buffer:
                self.buffer += b"\\r\\n"'''),
    ]),
    ("imap-client", "imap/fetch_marks_seen.py", "imap.flags", [
        ("{'SELECT' if args.mark_seen else 'EXAMINE'}", "SELECT"),
        ('conn.command(f"UID FETCH {uid} BODY.PEEK[]")', 'conn.command(f"UID FETCH {uid} BODY[]")'),
    ]),
    ("imap-client", "imap/ignores_unseen_only.py", "imap.selection", [
        ('conn.command("UID SEARCH UNSEEN" if args.unseen_only else "UID SEARCH ALL")', 'conn.command("UID SEARCH ALL")'),
    ]),
    ("imap-client", "imap/assumes_order.py", "imap.untagged", [
        ('''        uids = []
        for text, _ in found:
            if text.upper().startswith(b"* SEARCH"):
                uids += [int(x) for x in text.split()[2:]]''', '''        uids = [int(x) for x in found[0][0].split()[2:]]  # the answer is the first line'''),
        ('''            for text, literals in conn.command(f"UID FETCH {uid} BODY.PEEK[]"):
                if b" FETCH " in text.upper() and literals:
                    with open(os.path.join(args.out, f"{uid}.eml"), "wb") as f:
                        f.write(literals[0])''', '''            text, literals = conn.command(f"UID FETCH {uid} BODY.PEEK[]")[0]
            with open(os.path.join(args.out, f"{uid}.eml"), "wb") as f:
                f.write(literals[0] if literals else b"")'''),
    ]),
    ("imap-client", "imap/bare_lf.py", "imap.crlf", [
        ('self.sock.sendall(f"{tag} {line}\\r\\n".encode("utf-8"))', 'self.sock.sendall(f"{tag} {line}\\n".encode("utf-8"))'),
    ]),
    ("imap-client", "imap/uses_imaplib.py", "policy.imports", [
        ("import argparse\n", "import argparse\nimport imaplib  # noqa: F401\n"),
    ]),
    # -- mime-compose ----------------------------------------------------------------------------
    ("mime-compose", "mime/lf_endings.py", "mime.crlf", [
        ('f.write("".join(line + "\\r\\n" for line in lines).encode("ascii"))',
         'f.write("".join(line + "\\n" for line in lines).encode("ascii"))'),
    ]),
    ("mime-compose", "mime/unwrapped_base64.py", "mime.line-length", [
        ("    return [encoded[i:i + 76] for i in range(0, len(encoded), 76)]", "    return [encoded]"),
    ]),
    ("mime-compose", "mime/long_text_lines.py", "mime.line-length", [
        ("    ascii_ok = all(ord(c) < 128 for c in text) and all(len(x) <= 998 for x in lines)",
         "    ascii_ok = all(ord(c) < 128 for c in text)"),
    ]),
    ("mime-compose", "mime/raw_utf8.py", "mime.7bit", [
        ('''        subject.encode("ascii")
        return subject''', '''        return subject'''),
        ('''    ascii_ok = all(ord(c) < 128 for c in text) and all(len(x) <= 998 for x in lines)
    if ascii_ok:
        return ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit"], lines''',
         '''    if all(len(x) <= 998 for x in lines):
        return ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"], lines'''),
        ('f.write("".join(line + "\\r\\n" for line in lines).encode("ascii"))',
         'f.write("".join(line + "\\r\\n" for line in lines).encode("utf-8"))'),
    ]),
    ("mime-compose", "mime/missing_headers.py", "mime.headers", [
        ('''        f"Date: {formatdate(localtime=True)}",
        f"Message-ID: <{uuid.uuid4().hex}@{args.sender.split('@')[-1] or 'localhost'}>",
''', ""),
    ]),
    ("mime-compose", "mime/no_closing_boundary.py", "mime.structure", [
        ('        lines.append(f"--{boundary}--")\n', ""),
    ]),
    ("mime-compose", "mime/no_filename.py", "mime.attachments", [
        ("""                      f'Content-Disposition: attachment; filename="{name}"',\n""",
         """                      'Content-Disposition: attachment',\n"""),
    ]),
    ("mime-compose", "mime/uses_email_mime.py", "policy.imports", [
        ("import argparse\n", "import argparse\nfrom email.mime.text import MIMEText  # noqa: F401\n"),
    ]),
]


#: defective clients written from scratch (not generated): (exercise, file, the check it must lose on)
STANDALONE: list[tuple[str, str, str]] = [
    ("pop3-client", "pop3/one_recv_per_command.py", "pop3.whole-reply"),
    ("imap-client", "imap/one_recv_per_command.py", "imap.whole-reply"),
    # written by the independent tester (the independent grader review)
    ("pop3-client", "pop3/indep_retr_one_recv.py", "pop3.whole-reply"),
    ("smtp-client", "smtp/indep_greeting_single_line.py", "smtp.multiline"),
    ("imap-client", "imap/indep_names_by_seqnum.py", "imap.selection"),
    ("smtp-client", "smtp/indep_no_crlf_before_final_dot.py", "smtp.body"),
    ("smtp-client", "smtp/indep_helo_only.py", "smtp.helo-fallback"),
    ("mime-compose", "mime/indep_b64_100_columns.py", "mime.attachments"),
    ("mime-compose", "mime/indep_text_part_last.py", "mime.structure"),
    ("mime-compose", "mime/indep_constant_boundary.py", "mime.structure"),
    ("smtp-client", "smtp/indep_pipelines_without_pipelining.py", "smtp.waits-for-reply"),
    ("pop3-client", "pop3/indep_pass_after_user_err.py", "pop3.stops-after-error"),
]


class StaleDefect(AssertionError):
    """A replacement of the table no longer applies exactly once to today's solution."""


def apply_edits(text: str, edits: list[tuple[str, str]], name: str) -> str:
    """``text`` with each (old, new) replacement made; each ``old`` must occur exactly once."""
    for old, new in edits:
        n = text.count(old)
        if n != 1:
            raise StaleDefect(f"{name}: the replacement is found {n} times in the solution: {old[:60]!r}")
        text = text.replace(old, new)
    return text


def mutant_source(name: str, table: list | None = None) -> str:
    """The source of the mutant ``name`` ("smtp/no_quit.py"): today's solution with its edits."""
    exercise, _, check, edits = next(m for m in (table or MUTANTS) if m[1] == name)
    text = apply_edits((ROOT / SOLUTIONS[exercise]).read_text("utf-8"), edits, name)
    return f"# DEFECTIVE on purpose (mutation test): must lose points on {check} and nowhere else.\n" + text


def write_all(folder: Path) -> dict[str, Path]:
    """Write every mutant under ``folder``; return {name: path} for them and the hand-written ones."""
    paths: dict[str, Path] = {}
    for _, name, _, _ in MUTANTS:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(mutant_source(name), "utf-8")
        paths[name] = path
    for _, name, _ in STANDALONE:
        paths[name] = HANDWRITTEN / name
    return paths


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"] and len(sys.argv) == 3:
        for name, path in write_all(Path(sys.argv[2])).items():
            print(path)
    elif len(sys.argv) == 2:
        sys.stdout.write(mutant_source(sys.argv[1]))
    else:
        raise SystemExit(__doc__)
