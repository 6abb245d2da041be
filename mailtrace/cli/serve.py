"""``mailtrace serve smtp|pop3|imap``: run one lab server, with the live annotated transcript.

The running machinery (build the ``Lab``, start listeners, print the banner, stop on Ctrl-C)
is shared with ``mailtrace lab`` (``cli/lab.py``) and the test fixtures (``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import errno
import importlib.util
import re
import unicodedata
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import click

from mailtrace.netaddr import host_port, is_loopback
from mailtrace.servers.lab import DEFAULT_PORTS, DEFAULT_USERS, Lab

PROTOCOLS = ("smtp", "pop3", "imap")
USER_NAME = re.compile(r"^[^\W_][\w.-]{0,63}$")  # a directory name under mail/; may be "josé" (RFC 6531)
STOP_SECONDS = 5  # Ctrl-C / SIGTERM: the lab is down within this (plus closing the logs)
MAX_USERS_SHOWN = 5  # more users (a classroom's --users FILE): the banner does not list passwords


@dataclass(frozen=True)
class Endpoint:
    protocol: str  # "smtp", "pop3", "imap"
    host: str
    port: int  # 0: any free port (the banner shows the real one)
    implicit_tls: bool = False


def available_protocols() -> list[str]:
    """The protocols that have a lab server module (POP3 and IMAP may not exist yet)."""
    return [p for p in PROTOCOLS if importlib.util.find_spec(f"mailtrace.servers.{p}") is not None]


def parse_users(values: tuple[str, ...], *, hint: str = "--user", where: list[str] | None = None) -> dict[str, str]:
    """``NAME:PASSWORD`` options (split at the FIRST colon) -> {name: password}.

    User names are case-insensitive: kept in lower case (they name Maildir folders), and the
    servers match any case ("Dave@lab.test" in SMTP, "USER Dave" in POP3, "LOGIN Dave" in IMAP).
    The same name given twice (in any case) is an error, never a silent override.  ``hint`` and
    ``where`` (one "FILE:LINE" per value) say where a bad value came from."""
    if not values:
        return dict(DEFAULT_USERS)
    users: dict[str, str] = {}
    for index, value in enumerate(values):
        at = f"{where[index]}: " if where else ""
        name, colon, password = value.partition(":")
        name = unicodedata.normalize("NFC", name.strip()).lower()
        if not colon or not password:
            expected = "name,password (a password is missing)" if where else "NAME:PASSWORD"
            raise click.BadParameter(f"{at}{value!r}: expected {expected}", param_hint=hint)
        if not USER_NAME.match(name):
            raise click.BadParameter(f"{at}{name!r}: a user name is letters, digits, '.', '_' or '-'",
                                     param_hint=hint)
        if name in users:
            raise click.BadParameter(f"{at}{value.partition(':')[0]!r}: user {name!r} is given twice (user names "
                                     "are case-insensitive); give each user once", param_hint=hint)
        users[name] = password
    return users


def read_users_file(path: Path) -> dict[str, str]:
    """The accounts of a classroom (``--users FILE``): one student per account.

    CSV: ``name,password`` rows (a first row ``name,password`` is a header).  TOML: a table
    ``[users]`` of ``name = "password"``, or ``[[user]]`` entries with ``name`` and
    ``password``.  Names follow the ``--user`` rules (lower-cased, each once)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param_hint="--users") from None
    except UnicodeDecodeError:
        raise click.BadParameter(f"{path} is not UTF-8 text", param_hint="--users") from None
    pairs: list[tuple[str, str]] = []
    where: list[str] = []  # FILE:LINE of each pair (FILE for TOML)
    if path.suffix.lower() == ".toml":
        from mailtrace._compat import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise click.BadParameter(f"{path}: {exc}", param_hint="--users") from None
        table, entries = data.get("users", {}), data.get("user", [])
        if not isinstance(table, dict) or not isinstance(entries, list):
            raise click.BadParameter(f"{path}: expected [users] name = \"password\" or [[user]] entries",
                                     param_hint="--users")
        pairs += [(str(k), str(v)) for k, v in table.items()]
        where += [str(path)] * len(table)
        for entry in entries:
            if not isinstance(entry, dict) or "name" not in entry or "password" not in entry:
                raise click.BadParameter(f"{path}: each [[user]] needs name and password", param_hint="--users")
            pairs.append((str(entry["name"]), str(entry["password"])))
            where.append(str(path))
    else:
        import csv

        for number, row in enumerate(csv.reader(text.splitlines()), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if number == 1 and [c.strip().lower() for c in row[:2]] in (["name", "password"], ["user", "password"]):
                continue
            if len(row) < 2:
                raise click.BadParameter(f"{path}:{number}: expected name,password", param_hint="--users")
            pairs.append((row[0], row[1]))
            where.append(f"{path}:{number}")
    if not pairs:
        raise click.BadParameter(f"{path}: no accounts in it", param_hint="--users")
    return parse_users(tuple(f"{name.strip()}:{password}" for name, password in pairs), hint="--users", where=where)


def build_lab(directory: Path, users: dict[str, str], *, lang: str = "en", log: Path | None = None,
              text: Path | None = None, show_secrets: bool = False, tls: bool = True, live: bool = True,
              sinks: tuple = (), fresh: bool = False, limits: dict | None = None, allow_plaintext_auth: bool = False,
              log_dir: Path | None = None, tls_names: tuple[str, ...] = (), smtp_config: dict | None = None) -> Lab:
    """A ``Lab`` with its recorder's sinks (terminal, JSONL, text) and TLS context.

    ``smtp_config``: ``SmtpConfig`` fields the command line set (``--max-message-size``).

    ``fresh``: empty the mail store first (``--fresh``: each lab handout starts from no mail; the
    lab CA in tls/ is kept, so clients that trust it still do).
    Problems a user can fix (a folder that cannot be created, a log that cannot be written)
    become ``click.ClickException`` with the reason, never a traceback.
    """
    try:
        if fresh:
            empty_mail_store(directory)
        lab = _build_lab(directory, users, lang=lang, log=log, text=text, show_secrets=show_secrets, tls=tls,
                         live=live, sinks=sinks, limits=limits, allow_plaintext_auth=allow_plaintext_auth,
                         log_dir=log_dir, tls_names=tls_names)
        if smtp_config:
            lab.smtp_config = dict(smtp_config)  # read by servers.smtp.make_config
        return lab
    except OSError as exc:
        where = exc.filename or directory
        raise click.ClickException(f"cannot use {where}: {exc.strerror or exc}") from None


def _build_lab(directory: Path, users: dict[str, str], *, lang: str, log: Path | None, text: Path | None,
               show_secrets: bool, tls: bool, live: bool, sinks: tuple, limits: dict | None,
               allow_plaintext_auth: bool = False, log_dir: Path | None = None,
               tls_names: tuple[str, ...] = ()) -> Lab:
    from mailtrace.transcript.recorder import Recorder

    # what clients send must not drive the terminal or the text log (escape sequences)
    from mailtrace.proxy.safe import EscapingSink

    directory.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(sinks)
    live_sink = None
    if live:  # drawn by a thread of its own, coalesced in floods (mailtrace.transcript.live)
        from mailtrace.proxy.safe import escape_controls
        from mailtrace.transcript.live import stdout_view

        live_sink = stdout_view(lang, show_secrets, where=str(log) if log is not None else "",
                                      prepare=escape_controls)
        recorder.add_sink(live_sink)
    from mailtrace.transcript.background import BackgroundSink

    if log is not None:
        from mailtrace.transcript.jsonl import JsonlSink

        # written by a thread of its own: the servers' loop only queues the events
        jsonl_sink = BackgroundSink(JsonlSink(log, show_secrets=show_secrets, autoflush=False))
        recorder.add_sink(jsonl_sink)
    if text is not None:
        from mailtrace.transcript.text import TextSink

        recorder.add_sink(BackgroundSink(EscapingSink(TextSink(text, show_secrets=show_secrets, lang=lang,
                                                               autoflush=False))))
    tls_context = None
    if tls:
        from mailtrace.tls import server_context

        tls_context = server_context(directory, tls_names)  # the certificate names --host too
    from mailtrace.servers.limits import FDS_KEPT_FREE, ConnectionLimiter, Limits, raise_fd_limit

    fds = raise_fd_limit()
    limits = Limits(**(limits or {}))
    limits = dataclasses.replace(limits, max_connections=min(limits.max_connections, max(16, fds - FDS_KEPT_FREE)))
    lab = Lab(directory=directory, users=users, recorder=recorder, tls_context=tls_context, lang=lang,
              limiter=ConnectionLimiter(limits), allow_plaintext_auth=allow_plaintext_auth, show_secrets=show_secrets)
    lab.live_sink = live_sink
    lab.tls_names = tls_names  # (for lab workers: the same certificate names)
    if log is not None:  # lab workers append to it themselves (servers/workers.py)
        lab.jsonl_log = (jsonl_sink, log.resolve(), show_secrets)
    if log_dir is not None:
        from mailtrace.transcript.peruser import PerUserSink

        lab.session_users = {}
        recorder.add_sink(PerUserSink(log_dir, lab.session_users.get, show_secrets=show_secrets, lang=lang))
    lab.open_store()
    return lab


def empty_mail_store(directory: Path) -> None:
    """Remove the lab's mail store (``DIR/mail``), keeping ``DIR/tls`` (the lab CA)."""
    import shutil

    mail = directory / "mail"
    if mail.is_symlink() or mail.is_file():
        mail.unlink()
    elif mail.is_dir():
        shutil.rmtree(mail)


async def start_listeners(lab: Lab, endpoints: list[Endpoint]) -> list:
    """Start one listener per endpoint; on failure stop those already started and re-raise."""
    from mailtrace.servers.base import Listener, ListenerConfig
    from mailtrace.servers.lab import core_factory

    listeners = []
    factories: dict[str, object] = {}
    try:
        for ep in endpoints:
            if ep.protocol not in factories:
                factories[ep.protocol] = core_factory(ep.protocol, lab)
            listener = Listener(ListenerConfig(ep.protocol, ep.host, ep.port, ep.implicit_tls),
                                factories[ep.protocol], lab.recorder, lab.tls_context, lab.limiter,
                                lab.session_users)
            try:
                await listener.start()
            except OSError as exc:
                raise PortError(ep, exc) from exc
            listeners.append(listener)
    except BaseException:
        for listener in listeners:
            await listener.stop()
        raise
    return listeners


async def start_worker_lab(lab: Lab, endpoints: list[Endpoint], workers: int) -> tuple[list, object]:
    """``--workers N``: the listening sockets here, the servers in N worker processes
    (``mailtrace.servers.workers``).  Returns the listeners and the worker pool."""
    import asyncio

    from mailtrace.servers.base import ListenerConfig
    from mailtrace.servers.workers import HandoffListener, WorkerPool, settings_of

    configs = [ListenerConfig(ep.protocol, ep.host, ep.port, ep.implicit_tls) for ep in endpoints]
    pool = WorkerPool(lab, configs, workers, settings_of(lab))
    if lab.jsonl_log is not None:  # the header is written: from now on each worker appends its events
        sink = lab.jsonl_log[0]
        lab.recorder.remove_sink(sink)
        sink.close()
    listeners = []
    try:
        for index, (ep, config) in enumerate(zip(endpoints, configs)):
            listener = HandoffListener(config, index, pool, lab.limiter)
            try:
                await listener.start()
            except OSError as exc:
                raise PortError(ep, exc) from exc
            listeners.append(listener)
        try:
            await pool.start()
        except (RuntimeError, OSError, asyncio.TimeoutError) as exc:
            raise click.ClickException(f"the lab's worker processes did not start ({exc or type(exc).__name__}); "
                                       "--workers 0 runs the servers in this process") from None
    except BaseException:
        for listener in listeners:
            await listener.stop()
        raise
    for listener in listeners:
        listener.accept()
    return listeners, pool


class PortError(Exception):
    def __init__(self, endpoint: Endpoint, error: OSError) -> None:
        self.endpoint, self.error = endpoint, error
        super().__init__(self.say("en"))

    def say(self, lang: str) -> str:
        """The message in ``lang`` (``[cli.port-*]`` of common.toml)."""
        from mailtrace.knowledge import phrase

        key = {errno.EADDRINUSE: "port-in-use", errno.EACCES: "port-privileged",
               errno.EADDRNOTAVAIL: "port-not-here"}.get(self.error.errno, "port-failed")
        ep = self.endpoint
        return phrase("cli", key, lang, protocol=ep.protocol.upper(), port=ep.port, host=ep.host,
                      error=self.error.strerror or self.error)


def banner(lab: Lab, listeners: list, log: Path | None, text: Path | None) -> str:
    """What the lab prints when it starts, in the lab's language (``[cli]`` of common.toml)."""
    from mailtrace.knowledge import phrase

    lang = lab.lang

    def say(key: str, **fields: object) -> str:
        return phrase("cli", key, lang, **fields)

    lines = ["mailtrace lab: " + ", ".join(
        say("banner-implicit-on" if lst.config.implicit_tls else "banner-on", protocol=lst.config.protocol.upper(),
            address=host_port(lst.config.host, lst.port)) for lst in listeners)]
    for lst in listeners:
        host, port = lst.config.host, lst.port
        if lst.config.implicit_tls:
            hint = f"openssl s_client -quiet -crlf -connect {host_port(host, port)} -CAfile {lab.directory / 'tls' / 'ca.pem'}"
        else:
            hint = f"nc -C {host} {port}   " + say("banner-crlf")
        lines.append("  " + say("banner-connect", protocol=lst.config.protocol + ("s" if lst.config.implicit_tls else ""),
                                hint=hint))
    # The terminal is what a class sees on the projector: the passwords of accounts read from a
    # --users FILE are not shown (those typed with --user are on the command line already).
    hidden = set() if lab.show_secrets else lab.users_from_file & set(lab.users)
    if len(lab.users) <= MAX_USERS_SHOWN:
        users = ", ".join(u if u in hidden else f"{u} / {p}" for u, p in lab.users.items())
        addresses = ", ".join(f"{u}@{lab.local_domains[0]}" for u in lab.users)
        lines.append("  " + say("banner-users-no-passwords" if hidden else "banner-users", users=users,
                                addresses=addresses))
    else:  # a classroom
        lines.append("  " + say("banner-users-hidden", count=len(lab.users), domain=lab.local_domains[0]))
    lines.append("  " + say("banner-mail", mail=lab.mail_dir, user=next(iter(lab.users), "alice")))
    if log is not None:
        lines.append("  " + say("banner-jsonl", path=log))
    if text is not None:
        lines.append("  " + say("banner-text", path=text))
    if lab.tls_context is not None:
        lines.append("  " + say("banner-tls", ca=lab.directory / "tls" / "ca.pem"))
    lines.append("  " + say("banner-stop"))
    return "\n".join(lines)


class OneLineErrors:
    """The event loop's error handler: one line per kind of error, at most once every
    REPEAT_SECONDS (with how many were not shown), never a traceback.  Out of file
    descriptors (EMFILE), asyncio pauses accepting for a second and resumes by itself; the
    teacher sees one line a second instead of thousands of tracebacks (issue #11)."""

    REPEAT_SECONDS = 10.0

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, loop, context: dict) -> None:
        exc = context.get("exception")
        what = context.get("message", "error")
        if exc is not None:
            what += f": {type(exc).__name__}: {exc}"
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            what = "out of file descriptors: not accepting connections for a second (raise ulimit -n)"
        key = what[:120]
        now = time.monotonic()
        last, hidden = self._last.get(key, (-self.REPEAT_SECONDS, 0))
        if now - last < self.REPEAT_SECONDS:
            self._last[key] = (last, hidden + 1)
            return
        more = f" (and {hidden} more like it)" if hidden else ""
        print(f"mailtrace: {what}{more}".replace("\n", " "), file=sys.stderr, flush=True)
        self._last[key] = (now, 0)


def run_lab(lab: Lab, endpoints: list[Endpoint], *, log: Path | None, text: Path | None, web=None,
            workers: int = 0) -> None:
    """Start the listeners (and the web view, ``web``: a ``mailtrace.web.WebSettings``), print the
    banner, serve until Ctrl-C (or SIGTERM).  ``workers``: run the servers in that many worker
    processes (0: in this process)."""
    import asyncio  # here, not at the top: `mailtrace lab --help` stays fast

    for ep in endpoints:
        if not is_loopback(ep.host):
            from mailtrace.knowledge import phrase

            key = "not-loopback-plaintext-allowed" if lab.allow_plaintext_auth else "not-loopback"
            click.secho(phrase("cli", key, lab.lang, host=ep.host), fg="red", bold=True, err=True)
            break

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(OneLineErrors())
        pool = None
        if workers:
            listeners, pool = await start_worker_lab(lab, endpoints, workers)
        else:
            listeners = await start_listeners(lab, endpoints)
        view = None
        if web is not None:
            view = await start_web(web, lab, listeners)
        lines = banner(lab, listeners, log, text).splitlines()
        if view is not None:
            from mailtrace.knowledge import phrase

            lines.insert(-1, "  " + phrase("cli", "banner-web-admin" if web.admin else "banner-web", lab.lang,
                                           url=view.url, admin=web.admin))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        signalled: list[int] = []

        def stop_gracefully() -> None:
            stop.set()
            # The closing of hundreds of sessions must not wait on the live view's rendering
            # (the log files still get every event).
            if getattr(lab, "live_sink", None) is not None:
                lab.recorder.remove_sink(lab.live_sink)

        def on_signal(signum, frame) -> None:
            # A Python-level handler (not loop.add_signal_handler): it runs even while the
            # loop is busy with thousands of connections.  The loop is asked to stop; a
            # watchdog thread ends the process if that takes longer than STOP_SECONDS + 3.
            if signalled:  # a second Ctrl-C or SIGTERM: stop at once
                force_exit("a second signal")
            signalled.append(signum)
            loop.call_soon_threadsafe(stop_gracefully)
            watchdog = threading.Timer(STOP_SECONDS + 3, force_exit, args=("the stop deadline",))
            watchdog.daemon = True
            watchdog.start()

        def force_exit(why: str) -> None:
            with contextlib.suppress(Exception):
                lab.recorder.flush()
            print(f"mailtrace: stopped at once ({why}).", file=sys.stderr, flush=True)
            os._exit(0)

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(sig, on_signal)
            except (ValueError, OSError):  # not the main thread (tests): no signal handling
                pass
        # the banner only now: whoever reads it may stop the lab at once, and a signal must not
        # find the default disposition (SIGTERM killing it unlogged, or SIGINT still ignored)
        click.echo("\n".join(lines))
        sys.stdout.flush()
        try:
            await stop.wait()
        finally:
            if view is not None:
                await view.stop()
            # all listeners at once, within STOP_SECONDS whatever the clients do
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(lst.stop() for lst in listeners)), STOP_SECONDS)
            if pool is not None:  # the workers say goodbye to their clients; their last events come here
                await pool.stop()

    from mailtrace.knowledge import phrase

    try:
        from mailtrace.servers.loop import run

        run(main())
    except PortError as exc:
        if exc.error.errno in (errno.EADDRINUSE, errno.EACCES):
            flag = "--port" if len(endpoints) == 1 else f"--{exc.endpoint.protocol}{'s' if exc.endpoint.implicit_tls else ''}-port"
            if exc.endpoint.protocol == "web":
                flag = "--web"
            raise click.ClickException(exc.say(lab.lang) + phrase("cli", "port-choose", lab.lang, flag=flag))
        raise click.ClickException(exc.say(lab.lang) + phrase("cli", "port-check-host", lab.lang))
    except KeyboardInterrupt:
        pass
    finally:
        lab.recorder.close()
        if lab.live_sink is not None:  # detached from the recorder when stopping: still draw what it has
            lab.live_sink.close()
        if hasattr(lab.store, "close"):
            lab.store.close()
    from mailtrace.knowledge import phrase

    click.echo(phrase("cli", "stopped", lab.lang))


async def start_web(web, lab: Lab, listeners: list):
    """Start the web view (``--web``) on this loop; a port problem stops the listeners and says why."""
    from mailtrace.web import start_for_lab

    try:
        return await start_for_lab(web, lab)
    except OSError as exc:
        for listener in listeners:
            await listener.stop()
        raise PortError(Endpoint("web", web.host, web.port), exc) from exc


def web_settings(web: str | None, admin: str | None, users: dict[str, str], show_secrets: bool = False,
                 tls: bool = True):
    """``--web [HOST:]PORT`` and ``--admin NAME`` -> ``mailtrace.web.WebSettings`` (None without --web)."""
    if web is None:
        if admin is not None:
            raise click.UsageError("--admin names the web view's administrator: give --web too.")
        return None
    from mailtrace.cli.proxy import parse_hostport
    from mailtrace.web import WebSettings

    text = web.strip()
    host, port = ("127.0.0.1", int(text)) if text.isdigit() else parse_hostport(text, "--web")
    if port > 65535:
        raise click.BadParameter(f"{web!r}: a port is 0 to 65535", param_hint="--web")
    if admin is not None:
        admin = admin.strip().lower()
        if admin not in users:
            raise click.BadParameter(f"{admin!r} is not a lab user (give it with --user NAME:PASSWORD)",
                                     param_hint="--admin")
    if not is_loopback(host):
        if admin and not tls:
            raise click.UsageError(f"--web {web} with --admin would send the lab passwords in clear over the network: "
                                   "drop --no-tls (the web view then speaks HTTPS with the lab's certificate).")
        who = "can try to log in" if admin else "can read the lab's sessions and mail (give --admin NAME to require logins)"
        click.secho(f"WARNING: the web view listens on {host}, not loopback: anyone who can reach this machine {who}.",
                    fg="red", bold=True, err=True)
    return WebSettings(host, port, admin=admin, show_secrets=show_secrets)


def web_options(func):
    """``--web`` and ``--admin`` (``serve``, ``lab``)."""
    func = click.option("--admin", metavar="NAME", default=None,
                        help="Classroom web view: every user logs in with their lab account and sees only their "
                             "own sessions and mailbox; NAME (a lab user) sees everything.")(func)
    return click.option("--web", metavar="[HOST:]PORT", default=None,
                        help="Also serve the live web view (sessions, messages, JSON API) on this address "
                             "(127.0.0.1 unless a HOST is given; port 0: any free port).")(func)


class MessageSize(click.ParamType):
    """An SMTP message size limit: octets, or with a K, M or G suffix (1024-based): "50M"."""

    name = "SIZE"
    UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
    MINIMUM = 64 * 1024  # RFC 5321 §4.5.3.1.7: the limit "MUST BE at least 64K octets"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*(\d{1,20})\s*([KMG]?)(?:i?B)?\s*", str(value), re.IGNORECASE)
        if m is None:
            self.fail(f"{value!r}: give octets, or a number with K, M or G (e.g. 50M)", param, ctx)
        size = int(m.group(1)) * self.UNITS[m.group(2).upper()]
        if size < self.MINIMUM:
            self.fail(f"{value!r}: RFC 5321 §4.5.3.1.7 requires at least 64K octets", param, ctx)
        if len(str(size)) > 20:  # RFC 1870 §4: size-value ::= 1*20DIGIT
            self.fail(f"{value!r}: too large to advertise with SIZE (RFC 1870: at most 20 digits)", param, ctx)
        return size


#: ``--max-message-size``'s default, as the option takes it: protocols.smtp.spec.MAX_MESSAGE_SIZE,
#: which --help must not import (the SMTP package loads its observer and email);
#: tests/integration/test_cli_help.py checks that both agree.
MAX_MESSAGE_SIZE_DEFAULT = "10M"


def smtp_options(func):
    """``--max-message-size`` (``serve``, ``lab``)."""
    return click.option("--max-message-size", type=MessageSize(), default=MAX_MESSAGE_SIZE_DEFAULT,
                        show_default=True,
                        help="Largest message the SMTP server accepts, in octets or with K/M/G (e.g. 50M); "
                             "advertised with SIZE (RFC 1870), larger messages get 552.")(func)


class WorkerCount(click.ParamType):
    """``--workers``: a number of worker processes (0: none, the servers run in the lab's own
    process), or ``auto`` (one per core, at most 4)."""

    name = "N|auto"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == "auto":
            from mailtrace.servers.workers import default_workers

            return default_workers()
        if not text.isdigit() or int(text) > 64:
            self.fail(f"{value!r}: give a number of worker processes (0 to 64) or auto", param, ctx)
        return int(text)


WORKERS_DEFAULT = "0"


def common_options(func):
    """The options ``serve`` and ``lab`` share."""
    opts = [
        click.option("--workers", type=WorkerCount(), default=WORKERS_DEFAULT, show_default=True,
                     help="Run the servers in N worker processes (auto: one per core, at most 4) so the lab "
                          "uses every core; 0 runs them in this process. The live view and the logs stay here."),
        click.option("--host", default="127.0.0.1", show_default=True,
                     help="Address to bind. Anything but loopback prints a warning."),
        click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
                     default=Path("mailtrace-lab"), show_default=True, help="Lab directory (mail/, tls/)."),
        click.option("--user", "users", multiple=True, metavar="NAME:PASSWORD",
                     help="A lab user (repeatable; default alice:alice and bob:bob). The password is "
                          "everything after the first colon; the name is case-insensitive (kept in lower case)."),
        click.option("--log", type=click.Path(dir_okay=False, path_type=Path), help="Save the transcript as JSON Lines."),
        click.option("--text", type=click.Path(dir_okay=False, path_type=Path),
                     help="Save the transcript as plain text (S: / C: lines)."),
        click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True,
                     help="Language of the annotations."),
        click.option("--show-secrets", is_flag=True, help="Show and save passwords and AUTH payloads."),
        click.option("--no-tls", is_flag=True, help="No STARTTLS and no implicit-TLS ports."),
        click.option("--fresh", is_flag=True,
                     help="Start with an empty mail store (removes DIR/mail; keeps the lab CA in DIR/tls)."),
        click.option("--quiet", is_flag=True, help="No live view (scripted runs; --log and --text still "
                                                   "save every event)."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


@click.command(name="serve")
@click.argument("protocol", type=click.Choice(PROTOCOLS, case_sensitive=False))
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on (default: SMTP 2525, POP3 1100, IMAP 1430; 0: any free port).")
@click.option("--implicit-tls", is_flag=True, help="Speak TLS from the first byte (like ports 465/995/993).")
@smtp_options
@common_options
@web_options
def command(protocol: str, port: int | None, implicit_tls: bool, max_message_size: int, host: str, directory: Path,
            users: tuple[str, ...], log: Path | None, text: Path | None, lang: str, show_secrets: bool, no_tls: bool,
            fresh: bool, web: str | None, admin: str | None, quiet: bool, workers: int) -> None:
    """Start one lab server (smtp, pop3 or imap) on 127.0.0.1 and show the annotated dialogue.

    \b
    Examples:
      mailtrace serve smtp                      # then: nc -C 127.0.0.1 2525
      mailtrace serve smtp --port 0 --log s.jsonl --lang es
    """
    protocol = protocol.lower()
    if protocol not in available_protocols():
        raise click.ClickException(f"the {protocol.upper()} lab server is not available in this version yet.")
    if implicit_tls and no_tls:
        raise click.UsageError("--implicit-tls and --no-tls contradict each other.")
    if port is None:
        port = DEFAULT_PORTS[protocol][1 if implicit_tls else 0]
    user_table = parse_users(users)
    settings = web_settings(web, admin, user_table, show_secrets, tls=not no_tls)
    lab = build_lab(directory.resolve(), user_table, lang=lang, log=log, text=text,
                    show_secrets=show_secrets, tls=not no_tls, fresh=fresh, live=not quiet,
                    sinks=(settings.feed,) if settings else (), smtp_config={"max_message_size": max_message_size})
    run_lab(lab, [Endpoint(protocol, host, port, implicit_tls)], log=log, text=text, web=settings, workers=workers)
