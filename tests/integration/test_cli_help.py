"""`mailtrace --help` and every subcommand's --help, run as a user runs them: they import nothing
heavy (the event loop, TLS, scapy, the web server, rich, the grader, the protocol cores...), and
every option says what it does."""

from __future__ import annotations

import re
import subprocess
import sys

import click
import pytest

from mailtrace.cli import SUBCOMMANDS, main
from mailtrace_cli import MAILTRACE

#: what a help screen must never load (module prefixes): each costs tens of milliseconds or more
#: (mailtrace.protocols.base, a few dataclasses the proxy's fallback observer names, is light)
HEAVY = ("asyncio", "ssl", "scapy", "aiohttp", "cryptography", "rich", "email", "concurrent",
         "mailtrace.grading.grader", "mailtrace.store", "mailtrace.protocols.smtp", "mailtrace.protocols.pop3",
         "mailtrace.protocols.imap", "mailtrace.capture", "mailtrace.web", "mailtrace.servers.smtp",
         "mailtrace.servers.pop3", "mailtrace.servers.imap")


def commands() -> list[tuple[str, ...]]:
    """Every command path: (), ("lab",), ..., ("exercises", "copy")."""
    ctx = click.Context(main)
    paths: list[tuple[str, ...]] = [()]
    for name in SUBCOMMANDS:
        paths.append((name,))
        cmd = main.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            paths += [(name, sub) for sub in cmd.list_commands(ctx)]
    return paths


def command_of(path: tuple[str, ...]) -> click.Command:
    cmd, ctx = main, click.Context(main)
    for name in path:
        cmd = cmd.get_command(ctx, name)
    return cmd


def imported(path: tuple[str, ...]) -> tuple[str, set[str]]:
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "mailtrace", *path, "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    names = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", res.stderr, re.MULTILINE))
    assert "mailtrace.cli" in names  # the report was read
    return res.stdout, names


@pytest.mark.parametrize("path", commands(), ids=lambda p: " ".join(p) or "mailtrace")
def test_help_imports_nothing_heavy(path):
    out, names = imported(path)
    assert out.startswith("Usage:")
    heavy = sorted(n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY))
    assert heavy == [], heavy


@pytest.mark.parametrize("path", commands(), ids=lambda p: " ".join(p) or "mailtrace")
def test_every_option_has_help_text_shown(path):
    options = [p for p in command_of(path).params if isinstance(p, click.Option) and not p.hidden]
    missing = [p.opts for p in options if not (p.help or "").strip()]
    assert missing == [], f"options without help: {missing}"
    shown = " ".join(subprocess.run([*MAILTRACE, *path, "--help"], capture_output=True, text=True,
                                    timeout=60).stdout.split())
    for p in options:  # the first words of each help text, as --help prints them (wrapped)
        words = " ".join(p.help.split()[:4]).replace("\b", "").strip()
        assert words in shown, (p.opts, words)


def test_the_message_size_default_shown_is_the_smtp_servers():
    """`lab`/`serve` --help shows --max-message-size's default without importing the SMTP package."""
    from mailtrace.cli.serve import MAX_MESSAGE_SIZE_DEFAULT, MessageSize
    from mailtrace.protocols.smtp.spec import MAX_MESSAGE_SIZE

    assert MessageSize().convert(MAX_MESSAGE_SIZE_DEFAULT, None, None) == MAX_MESSAGE_SIZE
    for cmd in (("lab",), ("serve", "smtp")):
        shown = " ".join(subprocess.run([*MAILTRACE, *cmd, "--help"], capture_output=True, text=True,
                                        timeout=60).stdout.split())
        assert f"[default: {MAX_MESSAGE_SIZE_DEFAULT}]" in shown, cmd
