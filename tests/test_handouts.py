"""Run the command blocks of the course notes and lab handouts against a fresh lab.

Every handout (``labs/*/README.md`` and ``README.es.md``, ``course_notes.md`` and
``course_notes.es.md``) marks its runnable blocks with an HTML comment on the line just before
the fenced block.  The comment is invisible when the Markdown is rendered::

    <!-- test: KIND [key="value" ...] -->
    ```
    ...
    ```

Kinds:

``lab``
    The block is the ``mailtrace lab ...`` command a student types in terminal 1.  The test
    starts that command itself (fresh directory, ephemeral ports appended) and keeps it
    running for the rest of the handout.  If a handout has no ``lab`` block, a plain
    ``mailtrace lab`` is started the first time a block needs one.
``run``
    A shell script (bash, ``set -e``, no pipefail: as a student's shell), run in the handout's working directory.  Attributes:
    ``expect="text"`` (repeatable; must appear in stdout+stderr), ``exit="N"`` (expected exit
    status, default 0), ``timeout="S"``, ``retry="N"`` (a read-only block that reads a file
    another process is still writing is re-run up to N times, 0.5 s apart).  A block marked ``<!-- test: output -->`` right after
    it holds the output the student should see: each non-blank line of it must appear, in
    order, in the command's output (``…`` in a line matches any text).
``background``
    A long-running command (a proxy, a second server, a sniffer) started in the background
    and stopped when the handout ends.  ``wait-port="N"`` waits until that port accepts;
    ``wait-seconds="S"`` gives a program with no port (tcpdump) time to start.
``nc PROTO``
    An interactive session typed into ``nc -C 127.0.0.1 PORT`` (PROTO is smtp, pop3 or imap;
    the port is the lab's).  Lines ``C: ...`` are what the student types (without ``C:``),
    lines ``S: ...`` are what the server answers.  The test sends the client lines (CRLF, or
    bare LF with ``eol="lf"``) and checks every server line in order: ``…`` in a line matches
    any text, a line that is only ``S: …`` stands for any number of omitted lines.  Other
    attributes: ``session="name"`` keeps the connection open so that a later block with the
    same name continues it (e.g. IMAP IDLE while mail arrives from another terminal);
    ``log-expect="text"`` (repeatable) must appear in the lab's live transcript afterwards;
    ``port="N"`` connects to another documented port (e.g. a proxy's) instead of the lab's.
``skip reason="..."``
    Not run here (a GUI client, a real server on the Internet); reported as skipped with that
    reason.
``pending reason="..."``
    Waits for a feature that has not landed; reported as skipped, "not implemented yet".

``slow="why"`` on any marker marks that block's test ``slow`` (it still runs in CI).
Any marker may say ``needs="..."`` (space separated): ``cli:NAME`` (the ``mailtrace NAME``
subcommand exists), ``flag:NAME:--flag`` (it has that flag), ``server:pop3`` (that lab server
exists), ``knowledge:smtp`` (its annotations exist), ``tool:swaks`` (that program is installed), ``root`` (capture privileges).  A missing
subcommand or server is reported as "not implemented yet"; a missing tool or privilege as
skipped with the reason.  ``mailtrace NAME`` in a block and the protocol of an ``nc`` block
add their needs automatically, so a block starts being tested the day its feature lands.

A leading ``sudo`` is dropped when the tests run as root.  The documented ports (2525, 1100, 1430, the TLS ports 4465, 9950, 9930 and the proxy ports
10025, 10026, 10110, 10143) are rewritten to free ephemeral ports, fresh for each handout.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

MARKER = re.compile(r"^<!--\s*test:\s*(?P<body>.*?)\s*-->\s*$")
ATTR = re.compile(r'([\w-]+)="([^"]*)"')
FENCE = re.compile(r"^(```+|~~~+)")

# Ports the handouts use, as a student types them.
LAB_PORTS = {"smtp": 2525, "pop3": 1100, "imap": 1430, "smtps": 4465, "pop3s": 9950, "imaps": 9930}
PROXY_PORTS = (10025, 10026, 10110, 10143)
DOC_PORTS = tuple(LAB_PORTS.values()) + PROXY_PORTS
# `mailtrace lab` flags for each port, used when the lab's --help lists them.
LAB_PORT_FLAGS = {"smtp": "--smtp-port", "pop3": "--pop3-port", "imap": "--imap-port",
                  "smtps": "--smtps-port", "pop3s": "--pop3s-port", "imaps": "--imaps-port"}
# "mailtrace lab: SMTP on 127.0.0.1:2525, POP3 on ..., implicit-TLS SMTP on 127.0.0.1:4465, ..."
BANNER_PORT = re.compile(r"(implicit-TLS )?(SMTP|POP3|IMAP) on 127\.0\.0\.1:(\d+)")
WILDCARD = "…"
TURN_TIMEOUT = 10.0  # generous: CI machines are slow and shared


def handout_paths() -> list[Path]:
    paths = [ROOT / "course_notes.md", ROOT / "course_notes.es.md"]
    paths += sorted((ROOT / "labs").glob("*/README*.md"))
    return [p for p in paths if p.exists()]


# --------------------------------------------------------------------------- parsing

@dataclasses.dataclass
class Block:
    path: Path
    line: int  # 1-based line of the marker
    kind: str
    args: list[str]
    attrs: dict[str, list[str]]
    lang: str  # the fence's info string
    text: str
    output: str | None = None  # the following `output` block, for `run`

    def attr(self, name: str, default: str = "") -> str:
        values = self.attrs.get(name)
        return values[-1] if values else default

    @property
    def ident(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}:{self.kind}"


def parse_marker(body: str) -> tuple[str, list[str], dict[str, list[str]]]:
    attrs: dict[str, list[str]] = {}
    for key, value in ATTR.findall(body):
        attrs.setdefault(key, []).append(value)
    words = ATTR.sub("", body).split()
    if not words:
        raise ValueError(f"empty test marker: {body!r}")
    return words[0], words[1:], attrs


def parse_blocks(path: Path) -> list[Block]:
    """Every marked block of a Markdown file, in order (``output`` blocks folded into their run)."""
    lines = path.read_text("utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i].strip())
        if not m:
            i += 1
            continue
        marker_line = i + 1
        kind, args, attrs = parse_marker(m.group("body"))
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        fence = FENCE.match(lines[j].strip()) if j < len(lines) else None
        if not fence:
            raise ValueError(f"{path}:{marker_line}: a test marker must be followed by a fenced block")
        info = lines[j].strip()[len(fence.group(1)):].strip()
        k = j + 1
        body: list[str] = []
        while k < len(lines) and not lines[k].strip().startswith(fence.group(1)):
            body.append(lines[k])
            k += 1
        if k >= len(lines):
            raise ValueError(f"{path}:{marker_line}: unterminated fenced block")
        block = Block(path, marker_line, kind, args, attrs, info, "\n".join(body) + "\n")
        if kind == "output":
            if not blocks or blocks[-1].kind != "run" or blocks[-1].output is not None:
                raise ValueError(f"{path}:{marker_line}: an output block must follow a run block")
            blocks[-1].output = block.text
        else:
            blocks.append(block)
        i = k + 1
    return blocks


KINDS = {"lab", "run", "background", "nc", "skip", "pending"}


def all_blocks() -> list[Block]:
    return [b for p in handout_paths() for b in parse_blocks(p)]


# --------------------------------------------------------------------------- needs

def _cli_exists(name: str) -> bool:
    return importlib.util.find_spec(f"mailtrace.cli.{name}") is not None


def _server_exists(proto: str) -> bool:
    return importlib.util.find_spec(f"mailtrace.servers.{proto}") is not None


_HELP_CACHE: dict[str, str] = {}


def cli_help(*words: str) -> str:
    key = " ".join(words)
    if key not in _HELP_CACHE:
        proc = subprocess.run([str(VENV_BIN / "mailtrace"), *words, "--help"], capture_output=True,
                              text=True, timeout=60, env=_env())
        _HELP_CACHE[key] = proc.stdout + proc.stderr
    return _HELP_CACHE[key]


def block_needs(block: Block) -> list[str]:
    needs = " ".join(block.attrs.get("needs", [])).split()
    for name in re.findall(r"(?<![\w/.-])mailtrace +([a-z]+)", block.text):
        needs.append(f"cli:{name}")
    if block.kind == "nc":
        proto = block.args[0] if block.args else "smtp"
        if not block.attr("port"):
            needs += ["cli:lab", f"server:{proto}"]
    if block.kind == "lab":
        needs.append("server:smtp")
    if block.kind in ("run", "background"):
        # A block that talks to the lab's ports or reads its Maildirs needs the lab.
        used = {name for name, port in LAB_PORTS.items() if re.search(rf"(?<![\d.]){port}(?!\d)", block.text)}
        if used or "mailtrace-lab" in block.text:
            needs += ["cli:lab", "server:smtp"]
            needs += [f"server:{name}" for name in ("pop3", "imap") if name in used or name + "s" in used]
    return needs


def missing_need(needs: list[str]) -> str | None:
    """The reason a block cannot run here, or None."""
    for need in needs:
        what, _, rest = need.partition(":")
        if what == "cli" and not _cli_exists(rest):
            return f"not implemented yet: mailtrace {rest}"
        if what == "server" and not _server_exists(rest):
            return f"not implemented yet: the {rest} lab server"
        if what == "flag":
            cmd, _, flag = rest.partition(":")
            if not _cli_exists(cmd.split()[0]):
                return f"not implemented yet: mailtrace {cmd}"
            if flag not in cli_help(*cmd.split()):
                return f"not implemented yet: mailtrace {cmd} {flag}"
        if what == "knowledge" and not (ROOT / "mailtrace" / "knowledge" / f"{rest}.toml").exists():
            return f"not implemented yet: the {rest} annotations (mailtrace/knowledge/{rest}.toml)"
        if what == "tool" and shutil.which(rest) is None:
            return f"{rest} is not installed"
        if what == "root" and os.geteuid() != 0:
            return "needs capture privileges (root or CAP_NET_RAW)"
    return None


# --------------------------------------------------------------------------- the lab per handout

def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"  # rich must not wrap the transcript
    env["NO_COLOR"] = "1"
    env["TERM"] = "dumb"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("MAILTRACE_LANG", None)
    return env


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
        self.lab_log = workdir / ".lab-output.txt"
        self.background: list[tuple[subprocess.Popen, Path]] = []
        self.sessions: dict[str, Session] = {}

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
        argv = [str(VENV_BIN / "mailtrace"), *words[1:], *extra]
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
            for tls, proto, port in BANNER_PORT.findall(banner):
                found[proto.lower() + ("s" if tls else "")] = int(port)
            time.sleep(0.05)
        if "smtp" not in found:
            raise AssertionError("the lab's banner did not say its ports\n--- lab output ---\n" + self.lab_output())
        for name, port in found.items():
            self.ports[LAB_PORTS[name]] = port
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
    got = [normalise(line) for line in output.splitlines()]
    pos = 0
    for want in block.output.splitlines():
        want = normalise(want)
        if not want:
            continue
        rx = line_regex(want)
        while pos < len(got) and not rx.search(got[pos]):
            pos += 1
        assert pos < len(got), (f"{block.ident}: the output shown in the handout is not what the command prints:"
                                f" missing line {want!r}\n--- output ---\n{output}")
        pos += 1


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
        assert snippet in handout.lab_output(), f"{block.ident}: {snippet!r} is not in the lab's transcript"


# --------------------------------------------------------------------------- the tests

def _blocks_for_tests() -> list[Block]:
    try:
        return all_blocks()
    except ValueError as exc:  # a malformed handout fails loudly, below
        pytest.fail(str(exc), pytrace=False)
        raise


_HANDOUTS: dict[Path, Handout] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_handouts():
    yield
    for handout in _HANDOUTS.values():
        handout.close()
    _HANDOUTS.clear()


def handout_for(block: Block, tmp_path_factory: pytest.TempPathFactory) -> Handout:
    # One fresh lab per handout: close the previous handout's processes first.
    if block.path not in _HANDOUTS:
        for other in list(_HANDOUTS.values()):
            other.close()
        _HANDOUTS.clear()
        name = re.sub(r"[^\w]+", "-", str(block.path.relative_to(ROOT)))
        _HANDOUTS[block.path] = Handout(block.path, tmp_path_factory.mktemp(name))
    return _HANDOUTS[block.path]


def test_every_marker_is_well_formed():
    """Parsing every handout fails loudly on a malformed marker or an unknown kind."""
    blocks = all_blocks()
    assert blocks, "no marked blocks found"
    for block in blocks:
        assert block.kind in KINDS, f"{block.ident}: unknown marker kind {block.kind!r}"
        if block.kind == "nc":
            assert block.args and block.args[0] in ("smtp", "pop3", "imap"), f"{block.ident}: nc needs a protocol"
        if block.kind in ("skip", "pending"):
            assert block.attr("reason"), f"{block.ident}: a {block.kind} marker needs reason=\"...\""
        if block.kind == "lab":
            assert block.text.strip().startswith("mailtrace lab"), f"{block.ident}: not a mailtrace lab command"


def _params() -> list:
    """Every block as a test; ``slow="why"`` on a marker makes it ``@pytest.mark.slow``."""
    return [pytest.param(b, id=b.ident, marks=[pytest.mark.slow] if b.attr("slow") else [])
            for b in all_blocks()]


@pytest.mark.parametrize("block", _params())
def test_handout_block(block: Block, tmp_path_factory: pytest.TempPathFactory) -> None:
    if block.kind == "skip":
        pytest.skip(block.attr("reason"))
    if block.kind == "pending":
        pytest.skip("not implemented yet: " + block.attr("reason"))
    reason = missing_need(block_needs(block))
    if reason:
        pytest.skip(reason)
    handout = handout_for(block, tmp_path_factory)
    try:
        _run_block(handout, block)
    except AssertionError as exc:
        if handout.lab is not None and handout.lab.poll() is not None:
            raise AssertionError(f"{exc}\n--- the lab exited with status {handout.lab.returncode}; its output ---\n"
                                 + handout.lab_output()[-3000:]) from None
        raise


def _run_block(handout: Handout, block: Block) -> None:
    if block.kind == "lab":
        handout.start_lab(block.text)
    elif block.kind == "run":
        run_script(handout, block)
    elif block.kind == "background":
        wait = block.attr("wait-port")
        handout.ensure_lab()
        handout.start_background(block.text, int(wait) if wait else None)
        time.sleep(float(block.attr("wait-seconds", "0")))
    elif block.kind == "nc":
        run_nc(handout, block)
    else:
        raise AssertionError(f"{block.ident}: unknown marker kind {block.kind!r}")
