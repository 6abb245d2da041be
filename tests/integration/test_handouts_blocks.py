"""Handout tests, part 1: the marked blocks of the Markdown handouts and what each one needs.

See ``test_handouts.py`` for the marker convention.  This module has no tests of its own.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
from mailtrace_cli import MAILTRACE, shim_dir

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
# (--lang es: "SMTP en 127.0.0.1:2525, ..., SMTP con TLS implícito en 127.0.0.1:4465, ...")
BANNER_PORT = re.compile(r"(implicit-TLS )?(SMTP|POP3|IMAP)( con TLS implícito)? (?:on|en) 127\.0\.0\.1:(\d+)")
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

def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{shim_dir()}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"  # rich must not wrap the transcript
    env["NO_COLOR"] = "1"
    env["TERM"] = "dumb"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("MAILTRACE_LANG", None)
    return env




def _cli_exists(name: str) -> bool:
    return importlib.util.find_spec(f"mailtrace.cli.{name}") is not None


def _server_exists(proto: str) -> bool:
    return importlib.util.find_spec(f"mailtrace.servers.{proto}") is not None


_HELP_CACHE: dict[str, str] = {}


def cli_help(*words: str) -> str:
    key = " ".join(words)
    if key not in _HELP_CACHE:
        proc = subprocess.run([*MAILTRACE, *words, "--help"], capture_output=True,
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


