"""Copying submissions in and collecting outputs out, without trusting the tree.

Everything here walks a tree with an explicit stack (no recursion: a tree 3,000 folders deep
is just refused past ``max_depth``), never follows a symbolic link, opens only regular files
(``O_NOFOLLOW | O_NONBLOCK``, then ``fstat``: a FIFO, socket or device left by a program can
neither hang nor fool the grader) and stops at fixed bounds of size, count and depth.  What was
refused is returned as notes, which the report shows.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024
SKIP_NAMES = ("__pycache__",)


@dataclass(frozen=True)
class Bounds:
    max_bytes: int = 5 * MiB  # all regular files together
    max_files: int = 1000
    max_depth: int = 24  # folders below the root
    file_bytes: int = 5 * MiB  # one file


class TreeError(Exception):
    """The tree is over a bound that makes grading it meaningless (too big, too many files)."""


@dataclass
class Walked:
    files: list[str] = field(default_factory=list)  # relative paths of the regular files copied/read
    notes: list[str] = field(default_factory=list)  # what was refused, and why


def _read_regular(path: str, limit: int) -> bytes | None:
    """The bytes of ``path`` if it is a regular file (never a FIFO, device or link), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, size = [], 0
        while size < limit:
            chunk = os.read(fd, min(65536, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _inside(root: str, link_dir: str, target: str) -> bool:
    """Does a relative link target, read from ``link_dir``, stay under ``root`` (lexically)?"""
    if os.path.isabs(target):
        return False
    resolved = os.path.normpath(os.path.join(link_dir, target))
    return resolved == root or resolved.startswith(root.rstrip("/") + "/")


def _say(lang: str, key: str, **fields) -> str:
    """A note or refusal in the report's language (``files.*`` of knowledge/messages/grading.toml)."""
    from mailtrace.grading.checks import text

    return text(f"files.{key}", lang, **fields)


def walk(root: Path, bounds: Bounds, deadline: float | None = None, skip_hidden: bool = True, lang: str = "en"):
    """Yield ``(relative path, lstat result)`` of every entry under ``root``, breadth first.

    Raises nothing for the tree's shape: entries past ``max_depth`` are skipped (a note says so
    through the ``notes`` list attribute of the generator's caller, see :func:`copy_tree`).
    """
    stack: list[tuple[str, int]] = [("", 0)]
    while stack:
        if deadline is not None and time.monotonic() > deadline:
            yield None, _say(lang, "deadline")
            return
        rel_dir, depth = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel_dir)) as it:
                entries = sorted((e.name for e in it))
        except OSError as exc:
            yield None, _say(lang, "unreadable", path=rel_dir or ".", error=exc.strerror)
            continue
        for name in entries:
            if name in SKIP_NAMES or (skip_hidden and name.startswith(".")):
                continue
            rel = os.path.join(rel_dir, name) if rel_dir else name
            try:
                st = os.lstat(os.path.join(root, rel))
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if depth + 1 > bounds.max_depth:
                    yield None, _say(lang, "too-deep", path=rel, depth=bounds.max_depth)
                    continue
                stack.append((rel, depth + 1))
            yield rel, st


def copy_tree(source: Path, dest: Path, bounds: Bounds = Bounds(), deadline: float | None = None,
              skip_hidden: bool = True, lang: str = "en") -> Walked:
    """Copy ``source`` (a file or folder) into the existing folder ``dest``: regular files and
    folders only; a link is copied as a link only when it stays inside the submission, any other
    link is refused; everything else (FIFOs, sockets, devices) is refused.  Raises
    :class:`TreeError` over the size or count bounds."""
    out = Walked()
    source = Path(source)
    if not source.is_dir():
        data = _read_regular(str(source), bounds.file_bytes + 1)
        if data is None:
            raise TreeError(_say(lang, "not-regular", path=source.name))
        if len(data) > bounds.file_bytes:
            raise TreeError(_say(lang, "file-too-large", path=source.name, mib=bounds.file_bytes // MiB))
        (dest / source.name).write_bytes(data)
        out.files.append(source.name)
        return out
    root = os.path.realpath(source)
    total = 0
    for rel, st in walk(Path(root), bounds, deadline, skip_hidden, lang):
        if rel is None:
            out.notes.append(st)
            continue
        target = dest / rel
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            target.mkdir(exist_ok=True)
        elif stat.S_ISLNK(mode):
            link = os.readlink(os.path.join(root, rel))
            if _inside(root, os.path.dirname(os.path.join(root, rel)), link):
                os.symlink(link, target)
            else:
                out.notes.append(_say(lang, "link-out", path=rel, target=link))
        elif stat.S_ISREG(mode):
            if len(out.files) >= bounds.max_files:
                raise TreeError(_say(lang, "too-many", count=bounds.max_files))
            data = _read_regular(os.path.join(root, rel), bounds.file_bytes + 1)
            if data is None:
                out.notes.append(_say(lang, "unreadable-file", path=rel))
                continue
            total += len(data)
            if len(data) > bounds.file_bytes or total > bounds.max_bytes:
                raise TreeError(_say(lang, "too-large", mib=bounds.max_bytes // MiB))
            target.write_bytes(data)
            os.chmod(target, 0o755 if mode & 0o111 else 0o644)
            out.files.append(rel)
        else:
            out.notes.append(_say(lang, "special-refused", path=rel))
    return out


def collect(workdir: Path, skip: set[str], max_total: int, max_depth: int = 16,
            deadline: float | None = None, lang: str = "en") -> tuple[dict[str, bytes], list[str]]:
    """What a program left in ``workdir``: ``{relative path: bytes}`` for regular files
    (folders as ``"path/": b""``), at most ``max_total`` bytes; the notes say what was left out."""
    out: dict[str, bytes] = {}
    notes: list[str] = []
    total = 0
    bounds = Bounds(max_depth=max_depth, max_bytes=max_total, file_bytes=max_total)
    for rel, st in walk(workdir, bounds, deadline, skip_hidden=False, lang=lang):
        if rel is None:
            notes.append(st)
            continue
        if rel in skip:
            continue
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            out[rel + "/"] = b""
        elif stat.S_ISREG(mode):
            if total + st.st_size > max_total:
                notes.append(_say(lang, "left-out", path=rel, mib=max_total // MiB))
                continue
            data = _read_regular(os.path.join(workdir, rel), max_total - total)
            if data is not None:
                out[rel] = data
                total += len(data)
        elif not stat.S_ISLNK(mode):
            notes.append(_say(lang, "special-unread", path=rel))
    return out, notes


def remove_tree(path: Path) -> None:
    """Remove a tree of any depth (``rm`` walks with directory descriptors; shutil recurses)."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    rm = shutil.which("rm")
    if rm:
        subprocess.run([rm, "-rf", "--one-file-system", "--", str(path)], capture_output=True, check=False,
                       timeout=120)
        if not os.path.lexists(path):
            return
    try:
        shutil.rmtree(path, ignore_errors=True)
    except RecursionError:
        pass
