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
    ``cleanup="command"`` is run when the handout ends, whatever happened (it stops a daemon
    the block starts, such as a Postfix instance).
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

The machinery lives in ``test_handouts_blocks.py`` (parsing, needs) and
``test_handouts_support.py`` (the lab, nc sessions, shell blocks).  A leading ``sudo`` is dropped when the tests run as root.  The documented ports (2525, 1100, 1430, the TLS ports 4465, 9950, 9930 and the proxy ports
10025, 10026, 10110, 10143) are rewritten to free ephemeral ports, fresh for each handout.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from test_handouts_blocks import KINDS, ROOT, Block, all_blocks, block_needs, cli_help, missing_need
from test_handouts_support import Handout, run_nc, run_script

# --------------------------------------------------------------------------- the tests

_HANDOUTS: dict[Path, Handout] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_handouts():
    yield
    for handout in _HANDOUTS.values():
        handout.close()
    _HANDOUTS.clear()


_FOLDERS: dict[str, Path] = {}


def handout_folder(path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where a handout is followed.  A student follows labs 1, 2, ... in order in ONE folder
    (the lab's store, mailtrace-lab/, persists between them), so the labs of one language share
    a folder, in the order pytest collects them (by name); the course notes get their own."""
    if path.parent.parent == ROOT / "labs":
        key = "labs-" + ("es" if path.name.endswith(".es.md") else "en")
    else:
        key = re.sub(r"[^\w]+", "-", str(path.relative_to(ROOT)))
    if key not in _FOLDERS:
        _FOLDERS[key] = tmp_path_factory.mktemp(key)
    return _FOLDERS[key]


def handout_for(block: Block, tmp_path_factory: pytest.TempPathFactory) -> Handout:
    # One lab per handout: close the previous handout's processes first.
    if block.path not in _HANDOUTS:
        for other in list(_HANDOUTS.values()):
            other.close()
        _HANDOUTS.clear()
        _HANDOUTS[block.path] = Handout(block.path, handout_folder(block.path, tmp_path_factory))
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



def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(where, subcommand, options) for every ``mailtrace SUB ...`` line of every block, run or not."""
    found = []
    for block in all_blocks():
        text = block.text.replace("\\\n", " ")
        for line in text.splitlines():
            for m in re.finditer(r"(?<![\w/.-])mailtrace\s+([a-z]+)([^|;&#\n]*)", line):
                options = [word.split("=")[0] for word in m.group(2).split() if word.startswith("-")]
                found.append((block.ident, m.group(1), options))
    return found


def test_documented_commands_and_options_exist():
    """Every subcommand and option the handouts use exists, also in blocks the tests skip here."""
    from mailtrace.cli import SUBCOMMANDS

    commands = documented_commands()
    assert commands
    for where, sub, options in commands:
        assert sub in SUBCOMMANDS, f"{where}: 'mailtrace {sub}' is not a mailtrace command"
        help_text = cli_help(sub)
        for option in options:
            assert re.search(rf"(^|[\s,]){re.escape(option)}([\s,/=]|$)", help_text, re.M), (
                f"{where}: 'mailtrace {sub}' has no option {option}")
