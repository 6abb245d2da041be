"""The SMTP server's command handlers: one function per verb, (session, command) -> Reply.

Theory of operation
-------------------
RFC 5321 §4.1.1 defines the commands and §4.2.4 the replies for mistakes:

    "500 ... syntax error, command unrecognized"; "501 ... syntax error in parameters or
    arguments"; "502 ... command not implemented"; "503 ... bad sequence of commands";
    "504 ... command parameter not implemented"

The core (``server.py``) looks the verb up in ``spec.COMMANDS``, answers 500 (unknown), 502
(``spec.NOT_IMPLEMENTED``) or 503 (a state the verb is not allowed in: :func:`wrong_state`),
and only then calls the handler in ``HANDLERS``, which checks the argument (501), updates the
:class:`Session` (the facts the client gave: its name, the sender, the recipients...) and
returns a reply.  A handler never changes the protocol state: the core does that from the
reply, through ``spec.TRANSITIONS``.  A handler may add ``Note``s (violations) to the command.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from dataclasses import dataclass, field
from typing import Callable

from mailtrace.protocols.smtp.spec import (
    AUTH_MECHANISMS, CLEARTEXT_AUTH, COMMANDS, DATA_NO_RECIPIENT, SEQUENCE_ERRORS, Reply,
    SmtpConfig, State, Store, data_without_recipient,
)
from mailtrace.protocols.smtp.syntax import (
    Attempts, Command, Path, PathError, declared_body, path_notes, read_path, unquoted_local,
)
from mailtrace.transcript.event import Note


@dataclass
class Transaction:
    """One mail transaction (§3.3): MAIL, RCPT..., DATA."""

    sender: str | None = None
    recipients: list[str] = field(default_factory=list)
    rejected: int = 0  # RCPTs refused (DATA then gets 554, §4.1.1.4)
    body_8bitmime: bool = False  # MAIL ... BODY=8BITMIME (RFC 6152)
    smtputf8: bool = False  # MAIL ... SMTPUTF8 (RFC 6531 §3.4): UTF-8 addresses and headers


@dataclass
class Sasl:
    """An AUTH exchange under way (RFC 4954 §4): the mechanism and the responses so far."""

    mechanism: str
    responses: list[str] = field(default_factory=list)


@dataclass
class Session:
    """What the server knows about one client, read and written by the handlers."""

    config: SmtpConfig
    store: Store
    state: State = State.GREETING  # set by the core only, from spec.TRANSITIONS
    client_address: str = ""  # "127.0.0.1:51234" (for Received:)
    tls: bool = False  # encrypted from the first byte (implicit TLS) or after STARTTLS
    secure_channel: bool = True  # loopback or TLS: plaintext AUTH acceptable
    helo: str = ""  # the name the client gave in HELO/EHLO
    esmtp: bool = False  # EHLO (not HELO): extensions and PIPELINING in effect
    user: str = ""  # authenticated user (AUTH)
    attempts: Attempts = field(default_factory=Attempts)  # for LEFT_WITHOUT_MAIL (syntax.Attempts)
    rcpt_in_group: bool = False  # an RCPT came in the pipelined group of the current command
    transaction: Transaction = field(default_factory=Transaction)
    sasl: Sasl | None = None

    def new_transaction(self) -> None:
        self.transaction = Transaction()

    def forget_client(self) -> None:
        """RFC 3207 §4.2: after STARTTLS "the server MUST discard any knowledge obtained from the client"."""
        self.helo, self.esmtp, self.user = "", False, ""
        self.new_transaction()


Handler = Callable[[Session, Command], Reply]


def _helo(session: Session, cmd: Command, esmtp: bool) -> Reply:
    arg = cmd.arg
    if not arg or " " in arg or not arg.isprintable():  # §4.1.1.1: a Domain or address literal, no CTLs
        return Reply("501", f"Syntax: {cmd.verb} hostname", "5.5.4")
    # §4.1.4: HELO/EHLO in a session "is equivalent to" RSET plus the greeting
    session.new_transaction()
    session.helo, session.esmtp = arg, esmtp
    session.attempts.introduced = True
    peer = session.client_address.rsplit(":", 1)[0] if session.client_address else ""
    first = f"{session.config.hostname} Hello {arg}" + (f" [{peer}]" if peer else "")
    if not esmtp:
        return Reply("250", first + ", pleased to meet you")
    lines = [first, "PIPELINING", f"SIZE {session.config.max_message_size}", "8BITMIME", "SMTPUTF8",
             "ENHANCEDSTATUSCODES", "HELP"]
    if session.config.tls_available and not session.tls:
        lines.append("STARTTLS")
    if session.secure_channel or not session.config.tls_required_for_auth:
        lines.append("AUTH " + " ".join(AUTH_MECHANISMS))
    return Reply("250", tuple(lines))


def helo(session: Session, cmd: Command) -> Reply:
    return _helo(session, cmd, esmtp=False)


def ehlo(session: Session, cmd: Command) -> Reply:
    return _helo(session, cmd, esmtp=True)


def _parse_path(cmd: Command, keyword: str, role: str, bad_address: str) -> Path | Reply:
    """The path after "FROM:"/"TO:" (its notes added to the command), or the 501 to send:
    5.5.4 when the keyword is missing, ``bad_address`` (5.1.7 sender, 5.1.3 recipient;
    RFC 3463 §3.2) when the address is malformed."""
    try:
        path = read_path(cmd.verb, cmd.arg)
    except PathError as exc:
        if cmd.arg[:len(keyword) + 1].upper() != keyword + ":":
            return Reply("501", f"Syntax: {cmd.verb} {keyword}:<address>", "5.5.4")
        return Reply("501", f"Bad {role} address syntax ({exc})", bad_address)
    cmd.notes.extend(path_notes(path))
    cmd.path = path  # the transcript's arguments are read from it (syntax.command_args)
    return path


def mail(session: Session, cmd: Command) -> Reply:
    path = _parse_path(cmd, "FROM", "sender", "5.1.7")
    if isinstance(path, Reply):
        return path
    for key, value in path.params:
        if not session.esmtp:  # parameters are ESMTP: not after HELO (§4.1.1.2, §2.2.1)
            return Reply("555", "MAIL FROM parameters not recognized (use EHLO)", "5.5.4")
        if key == "SIZE":  # RFC 1870 §6.2
            if value is None or not value.isdigit():
                return Reply("501", "Bad SIZE parameter", "5.5.4")
            if int(value) > session.config.max_message_size:
                return Reply("552", "Message size exceeds fixed maximum message size", "5.3.4")
        elif key == "BODY":  # RFC 6152 §2
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                return Reply("501", "Bad BODY parameter (7BIT or 8BITMIME)", "5.5.4")
        elif key == "SMTPUTF8":  # RFC 6531 §3.4: "it MUST not accept a value"
            if value is not None:
                return Reply("501", "SMTPUTF8 takes no value", "5.5.4")
        elif key == "AUTH":  # RFC 4954 §5: accepted, not trusted
            continue
        else:
            return Reply("555", f"MAIL FROM parameter {key} not recognized", "5.5.4")
    bits8, utf8 = declared_body(path.params)
    if path.internationalized and not utf8:  # RFC 6531 §3.5: 550 and X.6.7 for MAIL
        return Reply("550", "Non-ASCII addresses not permitted for that sender (use MAIL FROM:<...> SMTPUTF8)",
                     "5.6.7")
    session.transaction = Transaction(sender=path.address, body_8bitmime=bits8, smtputf8=utf8)
    return Reply("250", "OK", "2.1.0")


def rcpt(session: Session, cmd: Command) -> Reply:
    path = _parse_path(cmd, "TO", "recipient", "5.1.3")
    if isinstance(path, Reply):
        return path
    transaction, config = session.transaction, session.config
    if path.params:
        return Reply("555", "RCPT TO parameters not recognized", "5.5.4")
    if path.internationalized and not transaction.smtputf8:  # RFC 6531 §3.5: 553 and X.6.7 for RCPT
        transaction.rejected += 1
        return Reply("553", "Non-ASCII addresses not permitted for that recipient (use MAIL FROM:<...> SMTPUTF8)",
                     "5.6.7")
    domain = path.domain.lower() or config.local_domains[0]  # <postmaster> has no domain
    if domain not in config.local_domains:
        transaction.rejected += 1  # no open relay: the lab delivers only to its own domains
        return Reply("550", f"Relay access denied: {path.domain} is not a local domain", "5.7.1")
    user = unicodedata.normalize("NFC", unquoted_local(path.local)).lower()  # "josé" composed or not: one user
    if user == "postmaster" and config.postmaster:  # §4.5.1: postmaster MUST be accepted
        user = config.postmaster
    if not session.store.has_user(user):
        transaction.rejected += 1
        return Reply("550", f"No such user here: {path.address}", "5.1.1")
    recipient = f"{user}@{domain}"
    if recipient not in transaction.recipients:  # the same mailbox twice gets one copy
        if len(transaction.recipients) >= config.max_recipients:
            return Reply("452", "Too many recipients", "4.5.3")
        transaction.recipients.append(recipient)
    return Reply("250", "OK", "2.1.5")


def data(session: Session, cmd: Command) -> Reply:
    if cmd.arg:
        return Reply("501", "Syntax: DATA (no arguments)", "5.5.4")
    return Reply("354", "End data with <CR><LF>.<CR><LF>")


def rset(session: Session, cmd: Command) -> Reply:
    if cmd.arg:
        return Reply("501", "Syntax: RSET (no arguments)", "5.5.4")
    session.new_transaction()
    return Reply("250", "OK", "2.0.0")


def noop(session: Session, cmd: Command) -> Reply:
    return Reply("250", "OK", "2.0.0")  # §4.1.1.9: a parameter string is ignored


def quit_(session: Session, cmd: Command) -> Reply:
    if cmd.arg:
        return Reply("501", "Syntax: QUIT (no arguments)", "5.5.4")
    cmd.notes += session.attempts.quit_notes()  # greeted, then left without trying MAIL
    return Reply("221", f"{session.config.hostname} closing connection", "2.0.0")


def vrfy(session: Session, cmd: Command) -> Reply:
    if not cmd.arg:
        return Reply("501", "Syntax: VRFY address", "5.5.4")
    # §3.5.3: 252 when the server will not say whether the user exists (no address harvesting)
    return Reply("252", "Cannot VRFY user, but will accept message and attempt delivery", "2.0.0")


def expn(session: Session, cmd: Command) -> Reply:
    return Reply("502", "EXPN not implemented (mailing lists are not disclosed)", "5.5.1")


def help_(session: Session, cmd: Command) -> Reply:
    if cmd.arg:
        spec = COMMANDS.get(cmd.arg.upper())
        if spec is None:
            return Reply("504", f"HELP topic unknown: {cmd.arg}", "5.5.1")
        return Reply("214", spec.syntax, "2.0.0")
    verbs = " ".join(COMMANDS)
    return Reply("214", ("Commands supported:", verbs, "Try HELP <command>, or: mailtrace explain smtp <command>"),
                 "2.0.0")


def starttls(session: Session, cmd: Command) -> Reply:
    if cmd.arg:
        return Reply("501", "Syntax: STARTTLS (no arguments)", "5.5.4")
    if session.tls:  # RFC 3207 §4: not twice
        return Reply("503", "Error: TLS already active", "5.5.1")
    if not session.config.tls_available:
        return Reply("502", "Error: STARTTLS not available (no certificate)", "5.5.1")
    session.new_transaction()  # RFC 3207 §4.2: after the handshake the client starts over with EHLO
    return Reply("220", "Ready to start TLS", "2.0.0")


# --- AUTH (RFC 4954) -------------------------------------------------------------------------
def auth(session: Session, cmd: Command) -> Reply:
    if session.user:
        return Reply("503", "Error: already authenticated", "5.5.1")
    if not session.esmtp:
        return Reply("503", "Error: send EHLO first (AUTH is an ESMTP extension)", "5.5.1")
    mechanism, _, initial = cmd.arg.partition(" ")
    mechanism = mechanism.upper()
    if not mechanism:
        return Reply("501", "Syntax: AUTH mechanism [initial-response]", "5.5.4")
    if mechanism not in AUTH_MECHANISMS:
        return Reply("504", f"Unrecognized authentication type {mechanism}", "5.5.4")
    if not session.secure_channel:
        cmd.notes.append(Note(CLEARTEXT_AUTH, f"AUTH {mechanism}"))
        if session.config.tls_required_for_auth:
            # RFC 4954 §6: "the selected authentication mechanism may only be used when the
            # underlying SMTP connection is encrypted"
            return Reply("538", "Encryption required for requested authentication mechanism: STARTTLS first",
                         "5.7.11")
    session.sasl = Sasl(mechanism)
    if initial:
        if initial == "=":  # RFC 4954 §4: "=" is an empty initial response
            session.sasl.responses.append("")
        else:
            try:
                session.sasl.responses.append(base64.b64decode(initial, validate=True).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                session.sasl = None
                return Reply("501", "Error: cannot decode the initial response", "5.5.2")
    return _sasl_step(session)


def auth_response(session: Session, content: bytes) -> Reply:
    """One line the client sent after a 334 (RFC 4954 §4): base64, or "*" to cancel."""
    if content == b"*":
        return _sasl_done(session, Reply("501", "Authentication cancelled", "5.7.0"))
    try:
        decoded = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        return _sasl_done(session, Reply("501", "Error: cannot decode response", "5.5.2"))
    assert session.sasl is not None  # the core is in State.AUTH only after a 334
    session.sasl.responses.append(decoded.decode("utf-8", errors="replace"))
    return _sasl_step(session)


def _sasl_step(session: Session) -> Reply:
    """The next challenge (334) or the verdict (235 / 535 / 501)."""
    assert session.sasl is not None
    responses = session.sasl.responses
    if session.sasl.mechanism == "PLAIN":  # RFC 4616 §2: [authzid] NUL authcid NUL passwd
        if not responses:
            return Reply("334", "")
        parts = responses[0].split("\0")
        if len(parts) != 3:
            return _sasl_done(session, Reply("501", "Error: malformed PLAIN response", "5.5.2"))
        authzid, authcid, passwd = parts
        if authzid and authzid.lower() != authcid.lower():  # acting as another user
            return _sasl_done(session, Reply(
                "535", "Authentication credentials invalid (no authorization as another user)", "5.7.8"))
        return _sasl_check(session, authcid, passwd)
    # LOGIN (draft-murchison-sasl-login): "Username:" then "Password:", base64
    if len(responses) < 2:
        return Reply("334", ("VXNlcm5hbWU6", "UGFzc3dvcmQ6")[len(responses)])
    return _sasl_check(session, responses[0], responses[1])


def _sasl_check(session: Session, user: str, password: str) -> Reply:
    user = user.lower()
    if session.store.has_user(user) and session.store.check_password(user, password):
        session.user = user
        return _sasl_done(session, Reply("235", "Authentication successful", "2.7.0"))
    return _sasl_done(session, Reply("535", "Authentication credentials invalid", "5.7.8"))


def _sasl_done(session: Session, reply: Reply) -> Reply:
    session.sasl = None
    return reply


def logged_in(session: Session, reply: Reply) -> str:
    """Who a 235 logged in (the reply event's ``user``: the web view's user column); else ""."""
    return session.user if reply.status == "235" else ""


# --- the wrong state -------------------------------------------------------------------------
def wrong_state(session: Session, cmd: Command) -> Reply:
    """A verb in a state ``spec.COMMANDS`` does not allow it in: 503 with a text that says what
    should have come first (§4.1.4), or, for DATA with no accepted recipient, 503 / 554
    ("no valid recipients", §4.1.1.4 allows either)."""
    state = session.state
    if cmd.verb == "DATA" and data_without_recipient(state, session.rcpt_in_group):
        cmd.notes.append(Note(DATA_NO_RECIPIENT))
    if cmd.verb == "DATA" and state is State.MAIL and session.transaction.rejected:
        return Reply("554", "No valid recipients", "5.5.1")
    if state is State.GREETED:
        return Reply("503", "Error: send HELO/EHLO first", "5.5.1")
    return Reply("503", SEQUENCE_ERRORS.get((cmd.verb, state)) or SEQUENCE_ERRORS.get((cmd.verb, None))
                 or "Error: bad sequence of commands", "5.5.1")


#: verb -> handler; the states where each is allowed come from ``spec.COMMANDS`` only.
HANDLERS: dict[str, Handler] = {
    "HELO": helo, "EHLO": ehlo, "MAIL": mail, "RCPT": rcpt, "DATA": data, "RSET": rset, "NOOP": noop,
    "QUIT": quit_, "HELP": help_, "VRFY": vrfy, "EXPN": expn, "STARTTLS": starttls, "AUTH": auth,
}
assert HANDLERS.keys() == COMMANDS.keys()
