"""Handout tests, part 2: a fresh lab per handout, scripted nc sessions, shell blocks.

See ``test_handouts.py`` for the marker convention.  This module has no tests of its own.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from mailtrace_cli import MAILTRACE
from test_handouts_blocks import (PROXY_PORTS, BANNER_PORT, DOC_PORTS, LAB_PORT_FLAGS, LAB_PORTS, ROOT, TURN_TIMEOUT,
                                  WILDCARD, Block, _env, cli_help)

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited with status {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"port {port} did not open within {timeout} s")


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Handout:
    """The state one handout's blocks share: a working directory, ports, the lab, sessions."""

    def __init__(self, path: Path, workdir: Path) -> None:
        self.path = path
        self.workdir = workdir
        self.ports = {doc: free_port() for doc in DOC_PORTS}
        self.lab: subprocess.Popen | None = None
        # several handouts may share one folder (the labs, in order): one output file each
        self.lab_log = workdir / f".lab-output-{path.parent.name}-{path.stem}.txt"
        self.background: list[tuple[subprocess.Popen, Path]] = []
        self.sessions: dict[str, Session] = {}
        self.cleanups: list[str] = []  # ``cleanup="..."`` commands, run when the handout ends

    def rewrite(self, text: str) -> str:
        pattern = r"(?<![\d.])(" + "|".join(str(p) for p in DOC_PORTS) + r")(?![\d])"
        text = re.sub(pattern, lambda m: str(self.ports[int(m.group(1))]), text)
        if os.geteuid() == 0:  # students type sudo; as root (CI) it is not needed, nor maybe installed
            text = re.sub(r"(?m)^(\s*)sudo\s+", r"\1", text)
        return text

    def start_lab(self, command: str = "mailtrace lab") -> None:
        if self.lab is not None:
            raise AssertionError("the lab was already started in this handout")
        words = shlex.split(self.rewrite(command.strip()))
        assert words[:2] == ["mailtrace", "lab"], f"a lab block must start with 'mailtrace lab': {command!r}"
        help_text = cli_help("lab")
        # The lab picks free ports itself (port 0) and its banner says which: no race with other
        # programs between choosing a port and binding it.
        extra: list[str] = []
        for name, flag in LAB_PORT_FLAGS.items():
            if flag in help_text and flag not in words:
                extra += [flag, "0"]
        argv = [*MAILTRACE, *words[1:], *extra]
        out = open(self.lab_log, "wb")
        self.lab = subprocess.Popen(argv, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=_env(), start_new_session=True)
        deadline = time.monotonic() + 20
        found: dict[str, int] = {}
        while time.monotonic() < deadline and "smtp" not in found:
            if self.lab.poll() is not None:
                raise AssertionError(f"the lab exited with status {self.lab.returncode}\n--- lab output ---\n"
                                     + self.lab_output())
            complete_lines = self.lab_output().split("\n")[:-1]  # the last one may still be written
            banner = next((line for line in complete_lines if BANNER_PORT.search(line)), "")
            for tls, proto, tls_es, port in BANNER_PORT.findall(banner):
                found[proto.lower() + ("s" if tls or tls_es else "")] = int(port)
            time.sleep(0.05)
        if "smtp" not in found:
            raise AssertionError("the lab's banner did not say its ports\n--- lab output ---\n" + self.lab_output())
        for name, port in found.items():
            self.ports[LAB_PORTS[name]] = port
        # The ports picked for the handout's proxies were free when picked, but the lab (port 0)
        # may have taken one of them since: pick again, so a proxy never "starts" on a lab port.
        taken = set(found.values())
        for doc in PROXY_PORTS:
            for _ in range(20):  # bounded
                if self.ports[doc] not in taken:
                    break
                self.ports[doc] = free_port()
            taken.add(self.ports[doc])
        for name in ("smtp", "pop3", "imap"):
            if name in found:
                wait_port(found[name], self.lab)

    def ensure_lab(self) -> None:
        if self.lab is None:
            self.start_lab()

    def lab_output(self) -> str:
        try:
            return ANSI.sub("", self.lab_log.read_text("utf-8", errors="replace"))
        except FileNotFoundError:
            return ""

    def start_background(self, command: str, wait: int | None) -> None:
        log = self.workdir / f".background-{len(self.background)}.txt"
        proc = subprocess.Popen(["bash", "-c", "exec " + self.rewrite(command.strip())], cwd=self.workdir,
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=_env(), start_new_session=True)
        self.background.append((proc, log))
        if wait is not None:
            try:
                wait_port(self.ports.get(wait, wait), proc)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n--- output ---\n{log.read_text('utf-8', 'replace')}") from None

    def close(self) -> None:
        for command in reversed(self.cleanups):  # e.g. stop a daemon a block started, even after a failure
            try:
                subprocess.run(["bash", "-c", command], cwd=self.workdir, env=_env(), capture_output=True,
                               timeout=60, stdin=subprocess.DEVNULL, check=False)
            except subprocess.TimeoutExpired:
                pass
        self.cleanups.clear()
        for session in self.sessions.values():
            session.close()
        procs = [p for p, _ in self.background] + ([self.lab] if self.lab else [])
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a student stops it
                except ProcessLookupError:
                    pass
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# --------------------------------------------------------------------------- nc sessions

def line_regex(pattern: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(piece) for piece in pattern.split(WILDCARD)), re.S)


def glob_state(patterns: list[str], lines: list[str]) -> tuple[bool, bool]:
    """(full, viable): do ``lines`` match all of ``patterns`` / could more lines still match?

    A pattern that is only ``…`` matches any number of lines; ``…`` inside a line matches any text.
    """
    n = len(patterns)
    states = {0}

    def close(st: set[int]) -> set[int]:
        out = set(st)
        for s in sorted(st):
            k = s
            while k < n and patterns[k] == WILDCARD:
                k += 1
                out.add(k)
        return out

    states = close(states)
    for line in lines:
        nxt: set[int] = set()
        for s in states:
            if s < n and patterns[s] == WILDCARD:
                nxt.add(s)
            elif s < n and line_regex(patterns[s]).fullmatch(line):
                nxt.add(s + 1)
        states = close(nxt)
        if not states:
            return False, False
    return n in states, True


POP3_MULTILINE = {"CAPA", "RETR", "TOP"}
POP3_MULTILINE_NOARG = {"LIST", "UIDL"}


class Session:
    def __init__(self, proto: str, port: int) -> None:
        self.proto = proto
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TURN_TIMEOUT)
        self.buffer = b""
        self.last_command = ""

    def send(self, line: str, eol: bytes) -> None:
        self.sock.sendall(line.encode("utf-8") + eol)
        if line.strip():
            self.last_command = line

    def read_line(self, deadline: float) -> str | None:
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                chunk = b""
            if not chunk:
                if self.buffer:
                    line, self.buffer = self.buffer, b""
                    return line.decode("utf-8", "backslashreplace")
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "backslashreplace")

    def complete(self, lines: list[str]) -> bool:
        """Does the last line read end a response (for a turn that ends with ``S: …``)?"""
        last = lines[-1]
        if self.proto == "smtp":
            return bool(re.match(r"\d{3}( |$)", last))
        if self.proto == "pop3":
            words = self.last_command.split()
            verb = words[0].upper() if words else ""
            multi = verb in POP3_MULTILINE or (verb in POP3_MULTILINE_NOARG and len(words) == 1)
            if multi and lines[0].startswith("+OK"):
                return last == "."
            return last.startswith(("+OK", "-ERR", "+ ", "."))
        tag = self.last_command.split()[0] if self.last_command.split() else "*"
        return last.startswith((tag + " ", "+")) or (tag == "*" and last.startswith("* "))

    def expect(self, patterns: list[str], where: str) -> None:
        lines: list[str] = []
        deadline = time.monotonic() + TURN_TIMEOUT
        while True:
            full, viable = glob_state(patterns, lines)
            if not viable:
                break
            if full and lines and (patterns[-1] != WILDCARD or self.complete(lines)):
                return
            line = self.read_line(deadline)
            if line is None:
                break
            lines.append(line)
        shown_expected = "\n".join("S: " + p for p in patterns)
        shown_got = "\n".join("S: " + line for line in lines) or "(nothing)"
        raise AssertionError(f"{where}: the server's answer differs from the handout\n"
                             f"--- expected ---\n{shown_expected}\n--- received ---\n{shown_got}")

    def close(self) -> None:
        """Close as nc does at Ctrl-D: half-close, then wait (briefly) for the server to close too,
        so that the server has finished with the session (e.g. released a POP3 lock) before the
        next block connects."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                if not self.sock.recv(65536):
                    break
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def run_nc(handout: Handout, block: Block) -> None:
    proto = block.args[0] if block.args else "smtp"
    name = block.attr("session")
    session = handout.sessions.get(name) if name else None
    if session is None:
        doc_port = int(block.attr("port") or LAB_PORTS[proto])
        if not block.attr("port"):
            handout.ensure_lab()
        session = Session(proto, handout.ports.get(doc_port, doc_port))
        if name:
            handout.sessions[name] = session
    eol = b"\n" if block.attr("eol") == "lf" else b"\r\n"
    turns: list[tuple[list[str], list[str], int]] = []  # (client lines, server patterns, line no)
    for offset, raw in enumerate(block.text.splitlines()):
        if not raw.strip():
            continue
        prefix, text = raw[:3], raw[3:]
        if raw.strip() in ("C:", "S:"):
            prefix, text = raw.strip() + " ", ""
        if prefix not in ("C: ", "S: "):
            raise AssertionError(f"{block.ident}: line {raw!r} of an nc block starts with neither 'C: ' nor 'S: '")
        if prefix == "C: ":
            if not turns or turns[-1][1]:
                turns.append(([], [], block.line + 2 + offset))
            turns[-1][0].append(text)
        else:
            if not turns:
                turns.append(([], [], block.line + 2 + offset))
            turns[-1][1].append(text)
    try:
        for client, server, lineno in turns:
            for text in client:
                session.send(text, eol)
            if server:
                session.expect(server, f"{block.path.relative_to(ROOT)}:{lineno}")
    finally:
        if not name:
            session.close()
    for snippet in block.attrs.get("log-expect", []):
        deadline = time.monotonic() + TURN_TIMEOUT
        while snippet not in handout.lab_output() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert snippet in handout.lab_output(), (
            f"{block.ident}: {snippet!r} is not in the lab's transcript\n--- lab output ---\n"
            + handout.lab_output()[-4000:])


# --------------------------------------------------------------------------- run blocks

def normalise(text: str) -> str:
    return re.sub(r"[ \t]+", " ", ANSI.sub("", text)).strip()


def check_output(block: Block, output: str) -> None:
    """The handout's output block against what the command printed.

    The block may start and end anywhere in the output, but between two of its lines nothing may
    be left out unless the block says so with a line holding only ``…`` (a student comparing
    line by line must see where lines were skipped)."""
    got = [line for line in (normalise(x) for x in output.splitlines()) if line]
    pos = 0
    first, gap = True, False
    for want in block.output.splitlines():
        want = normalise(want)
        if not want:
            continue
        if want == WILDCARD:
            gap = True
            continue
        rx = line_regex(want)
        if first or gap:
            while pos < len(got) and not rx.search(got[pos]):
                pos += 1
            assert pos < len(got), (f"{block.ident}: the output shown in the handout is not what the command prints:"
                                    f" missing line {want!r}\n--- output ---\n{output}")
        else:
            assert pos < len(got) and rx.search(got[pos]), (
                f"{block.ident}: the output shown in the handout is not what the command prints: expected "
                f"{want!r} as the next line, got {got[pos] if pos < len(got) else '(end of output)'!r}; if the "
                f"handout leaves lines out here, mark it with a line '…'\n--- output ---\n{output}")
        pos += 1
        first, gap = False, False


def run_script(handout: Handout, block: Block) -> None:
    """Run a ``run`` block; ``retry="N"`` re-runs a read-only block (one that reads a file another
    process is still writing, such as a proxy's transcript) up to N times, 0.5 s apart."""
    tries = int(block.attr("retry", "0")) + 1
    for attempt in range(tries):
        try:
            return _run_script_once(handout, block)
        except AssertionError:
            if attempt == tries - 1:
                raise
            time.sleep(0.5)


def _run_script_once(handout: Handout, block: Block) -> None:
    script = handout.rewrite(block.text)
    if block.attr("cleanup"):  # registered before the block runs: a half-started daemon is stopped too
        handout.cleanups.append(handout.rewrite(block.attr("cleanup")))
    if any(str(p) in block.text for p in DOC_PORTS) or "mailtrace-lab" in block.text:
        handout.ensure_lab()
    timeout = float(block.attr("timeout", "60"))
    try:
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=handout.workdir,
                              capture_output=True, text=True, timeout=timeout, env=_env(),
                              stdin=subprocess.DEVNULL, errors="replace")
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{block.ident}: did not finish within {timeout} s:\n{script}") from None
    output = ANSI.sub("", proc.stdout + proc.stderr)
    want_exit = int(block.attr("exit", "0"))
    assert proc.returncode == want_exit, (
        f"{block.ident}: exit status {proc.returncode}, expected {want_exit}\n--- script ---\n{script}"
        f"--- output ---\n{output}")
    for snippet in block.attrs.get("expect", []):
        assert snippet in output, f"{block.ident}: {snippet!r} not in the output\n--- output ---\n{output}"
    if block.output is not None:
        check_output(block, output)
    for snippet in block.attrs.get("log-expect", []):
        # the live view is drawn by a thread of its own, in batches: wait for the line to appear
        deadline = time.monotonic() + TURN_TIMEOUT
        while snippet not in handout.lab_output() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert snippet in handout.lab_output(), f"{block.ident}: {snippet!r} is not in the lab's transcript"


