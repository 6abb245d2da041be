"""A throwaway Postfix instance (``postfix -c DIR``) that relays everything into the lab.

Everything lives in one temporary folder (removed at the end): the configuration (main.cf, master.cf), the queue,
the data directory and the log (``maillog_file``, read by the tests).  It listens on nothing
(mail is submitted with Postfix's own ``sendmail``), sends only to ``relayhost`` (the lab on
127.0.0.1) and is stopped by the fixture even when the test fails.  Root only: Postfix's
master runs as root and drops to the ``postfix`` user.

    with PostfixInstance(lab.port("smtp"), tls="secure", ca_file=lab_ca) as mta:
        mta.sendmail(message, sender="alice@lab.test", recipients=["bob@lab.test"])
        mta.wait_log(lambda log: "status=sent" in log)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

#: The Postfix services this instance needs (no smtpd: nothing listens), none chrooted.
MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def main_cf(root: Path, relay_port: int, tls: str, ca_file: Path | None) -> str:
    """main.cf: alice's MTA (mta.example) relaying every message to the lab on 127.0.0.1."""
    lines = [
        "compatibility_level = 3.6",
        f"queue_directory = {root / 'queue'}",
        f"data_directory = {root / 'data'}",
        f"maillog_file = {root / 'maillog'}",
        f"maillog_file_prefixes = {root}",  # the default allows /var and /dev/stdout only
        "mail_owner = postfix",
        "setgid_group = postdrop",
        "myhostname = mta.example",
        "mydomain = mta.example",
        "myorigin = $myhostname",
        "mydestination =",  # nothing is delivered here: every message goes to the relayhost
        "inet_interfaces = loopback-only",
        "inet_protocols = ipv4",
        "master_service_disable = inet",  # no smtpd listener at all
        f"relayhost = [127.0.0.1]:{relay_port}",
        "smtputf8_enable = yes",
        "alias_maps =",
        "alias_database =",
        "biff = no",
        "delay_warning_time = 0",
        "minimal_backoff_time = 1s",
        "maximal_backoff_time = 2s",
        "queue_run_delay = 1s",
        "message_size_limit = 20480000",
        "smtp_tls_loglevel = 1",
    ]
    if tls in ("secure", "secure-default"):
        lines += ["smtp_tls_security_level = secure", f"smtp_tls_CAfile = {ca_file}"]
    if tls == "secure":
        # The lab's certificate names lab.test; relayhost [127.0.0.1] is matched against
        # "127.0.0.1" by default (hostname mismatch), so name the certificate's host.
        lines += ["smtp_tls_secure_cert_match = lab.test"]
    if tls == "none":
        lines += ["smtp_tls_security_level = none"]
    return "\n".join(lines) + "\n"


class PostfixInstance:
    def __init__(self, relay_port: int, *, tls: str = "none", ca_file: Path | None = None) -> None:
        # Postfix's daemons run as the postfix user: their folder must be reachable by it,
        # which pytest's private (0700) tmp_path is not; a 0755 folder of our own is.
        root = Path(tempfile.mkdtemp(prefix="mailtrace-postfix-"))
        root.chmod(0o755)
        self.root = root
        self.config = root / "etc"
        self.maillog = root / "maillog"
        self.postfix = shutil.which("postfix") or "/usr/sbin/postfix"
        self.sendmail_path = shutil.which("sendmail") or "/usr/sbin/sendmail"
        for sub in ("etc", "queue", "data"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if ca_file is not None:  # read by the smtp client as the postfix user
            shutil.copyfile(ca_file, self.config / "lab-ca.pem")
            ca_file = self.config / "lab-ca.pem"
        (self.config / "main.cf").write_text(main_cf(root, relay_port, tls, ca_file))
        (self.config / "master.cf").write_text(MASTER_CF)
        shutil.chown(root / "data", "postfix")
        self.maillog.touch()

    def run(self, *args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(args, input=stdin, capture_output=True, timeout=timeout, check=False)

    def start(self) -> None:
        result = self.run(self.postfix, "-c", str(self.config), "start")
        if result.returncode != 0:
            raise RuntimeError(f"postfix start failed: {result.stderr.decode(errors='replace')}{self.log()}")

    def stop(self) -> None:
        """Stop the instance; if its master is still there after that, kill it by its PID."""
        try:
            self._stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _stop(self) -> None:
        self.run(self.postfix, "-c", str(self.config), "stop")
        pid_file = self.root / "queue" / "pid" / "master.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "PostfixInstance":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def sendmail(self, message: bytes, sender: str, recipients: list[str]) -> None:
        """Submit like a user agent: Postfix's sendmail (postdrop -> pickup -> cleanup -> qmgr)."""
        result = self.run(self.sendmail_path, "-C", str(self.config), "-i", "-f", sender, "--", *recipients,
                          stdin=message)
        if result.returncode != 0:
            raise RuntimeError(f"sendmail failed: {result.stderr.decode(errors='replace')}")

    def log(self) -> str:
        return self.maillog.read_text(errors="replace")

    def wait_log(self, predicate: Callable[[str], object], timeout: float = 60.0):
        """Poll the maillog until ``predicate(text)`` holds (a bounded wait, not a sleep)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            value = predicate(text)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting in the Postfix log:\n{text[-3000:]}")
            time.sleep(0.05)

    def queue_empty(self) -> bool:
        result = self.run(shutil.which("postqueue") or "/usr/sbin/postqueue", "-c", str(self.config), "-p")
        return b"Mail queue is empty" in result.stdout
