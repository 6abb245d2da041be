"""The SMTP command table: for each verb, the states that accept it and its handler.

Theory of operation
-------------------
RFC 5321 §4.1.1 defines the commands and §4.2.4 the replies for mistakes:

    "500 ... syntax error, command unrecognized"; "501 ... syntax error in parameters or
    arguments"; "502 ... command not implemented"; "503 ... bad sequence of commands";
    "504 ... command parameter not implemented"

Dispatch is by table (``COMMANDS``): the core looks the verb up, answers 500 (unknown) or 502
(``NOT_IMPLEMENTED``), checks the current state against ``Spec.states`` (503 otherwise) and
only then calls the handler, which checks the argument (501) and returns a ``Reply``.
A handler may change the connection's state and add ``Note``s (violations) to the command.
"""

from __future__ import annotations

import base64
import binascii

from mailtrace.protocols.smtp_states import NO_TRANSACTION, NOT_IMPLEMENTED, Spec, State
import unicodedata

from mailtrace.protocols.smtp_syntax import (
    CLEARTEXT_AUTH, DATA_NO_RECIPIENT, EHLO_KEYWORDS, EIGHT_BIT_HEADER, LEFT_WITHOUT_MAIL, MISSING_BRACKETS, Path, PathError, Reply, SPACE_AFTER_COLON,
    parse_path,
)
from mailtrace.transcript.event import Note

ANY_LINE_STATE = frozenset({State.GREETED, State.READY, State.MAIL, State.RCPT, State.DONE})
AUTH_MECHANISMS = ("PLAIN", "LOGIN")  # RFC 4954 §4; plaintext: acceptable on loopback or TLS


def _helo(conn, arg: str, esmtp: bool) -> Reply:
    verb = "EHLO" if esmtp else "HELO"
    if not arg or " " in arg or not arg.isprintable():  # §4.1.1.1: a Domain or address literal, no CTLs
        return Reply(501, f"Syntax: {verb} hostname", "5.5.4")
    # §4.1.4: HELO/EHLO in a session "is equivalent to" RSET plus the greeting
    conn._reset_transaction()
    conn.helo, conn.esmtp = arg, esmtp
    conn.introduced = True
    conn._set(State.READY)
    peer = conn.client_address.rsplit(":", 1)[0] if conn.client_address else ""
    first = f"{conn.config.hostname} Hello {arg}" + (f" [{peer}]" if peer else "")
    if not esmtp:
        return Reply(250, first + ", pleased to meet you")
    lines = [first, "PIPELINING", f"SIZE {conn.config.max_message_size}", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
             "HELP"]
    if conn.config.tls_available and not conn.tls:
        lines.append("STARTTLS")
    if conn.secure_channel or not conn.config.tls_required_for_auth:
        lines.append("AUTH " + " ".join(AUTH_MECHANISMS))
    return Reply(250, tuple(lines))


def helo(conn, arg: str) -> Reply:
    return _helo(conn, arg, esmtp=False)


def ehlo(conn, arg: str) -> Reply:
    return _helo(conn, arg, esmtp=True)


def _path_notes(conn, path) -> None:
    for rule, detail in path.notes:
        conn._notes.append(Note(rule, detail))


def _parse_path(conn, arg: str, keyword: str, role: str, bad_address: str) -> Path | Reply:
    """The path after "FROM:"/"TO:" (its notes added to the command), or the 501 to send:
    5.5.4 when the keyword is missing, ``bad_address`` (5.1.7 sender, 5.1.3 recipient;
    RFC 3463 §3.2) when the address is malformed."""
    try:
        path = parse_path(arg, keyword, allow_null=keyword == "FROM")  # §4.1.1.2: only MAIL takes <>
    except PathError as exc:
        verb = "MAIL" if keyword == "FROM" else "RCPT"
        if arg[:len(keyword) + 1].upper() != keyword + ":":
            return Reply(501, f"Syntax: {verb} {keyword}:<address>", "5.5.4")
        return Reply(501, f"Bad {role} address syntax ({exc})", bad_address)
    _path_notes(conn, path)
    return path


def mail(conn, arg: str) -> Reply:
    path = _parse_path(conn, arg, "FROM", "sender", "5.1.7")
    if isinstance(path, Reply):
        return path
    bits8 = utf8 = False
    for key, value in path.params:
        if not conn.esmtp:  # parameters are ESMTP: not after HELO (§4.1.1.2, §2.2.1)
            return Reply(555, "MAIL FROM parameters not recognized (use EHLO)", "5.5.4")
        if key == "SIZE":  # RFC 1870 §6.2
            if value is None or not value.isdigit():
                return Reply(501, "Bad SIZE parameter", "5.5.4")
            if int(value) > conn.config.max_message_size:
                return Reply(552, "Message size exceeds fixed maximum message size", "5.3.4")
        elif key == "BODY":  # RFC 6152 §2
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                return Reply(501, "Bad BODY parameter (7BIT or 8BITMIME)", "5.5.4")
            bits8 = value.upper() == "8BITMIME"
        elif key == "SMTPUTF8":  # RFC 6531 §3.4: "it MUST not accept a value"
            if value is not None:
                return Reply(501, "SMTPUTF8 takes no value", "5.5.4")
            utf8 = True
        elif key == "AUTH":  # RFC 4954 §5: accepted, not trusted
            continue
        else:
            return Reply(555, f"MAIL FROM parameter {key} not recognized", "5.5.4")
    if path.internationalized and not utf8:  # RFC 6531 §3.5: 550 and X.6.7 for MAIL
        return Reply(550, "Non-ASCII addresses not permitted for that sender (use MAIL FROM:<...> SMTPUTF8)",
                     "5.6.7")
    conn._reset_transaction()
    conn.sender = path.address
    conn.body_8bitmime = bits8
    conn.smtputf8 = utf8
    conn._set(State.MAIL)
    return Reply(250, "OK", "2.1.0")


def rcpt(conn, arg: str) -> Reply:
    path = _parse_path(conn, arg, "TO", "recipient", "5.1.3")
    if isinstance(path, Reply):
        return path
    if path.params:
        return Reply(555, "RCPT TO parameters not recognized", "5.5.4")
    if path.internationalized and not conn.smtputf8:  # RFC 6531 §3.5: 553 and X.6.7 for RCPT
        conn.rejected += 1
        return Reply(553, "Non-ASCII addresses not permitted for that recipient (use MAIL FROM:<...> SMTPUTF8)",
                     "5.6.7")
    domain = path.domain.lower() or conn.config.local_domains[0]  # <postmaster> has no domain
    if domain not in conn.config.local_domains:
        conn.rejected += 1  # no open relay: the lab delivers only to its own domains
        return Reply(550, f"Relay access denied: {path.domain} is not a local domain", "5.7.1")
    user = unicodedata.normalize("NFC", path.local).lower()  # "josé" composed or not is one user
    if user == "postmaster" and conn.config.postmaster:  # §4.5.1: postmaster MUST be accepted
        user = conn.config.postmaster
    if not conn.store.has_user(user):
        conn.rejected += 1
        return Reply(550, f"No such user here: {path.address}", "5.1.1")
    recipient = f"{user}@{domain}"
    if recipient not in conn.recipients:  # the same mailbox twice gets one copy
        if len(conn.recipients) >= conn.config.max_recipients:
            return Reply(452, "Too many recipients", "4.5.3")
        conn.recipients.append(recipient)
    conn._set(State.RCPT)
    return Reply(250, "OK", "2.1.5")


def data(conn, arg: str) -> Reply:
    if arg:
        return Reply(501, "Syntax: DATA (no arguments)", "5.5.4")
    conn._set(State.DATA)
    conn.enter_data()
    return Reply(354, "End data with <CR><LF>.<CR><LF>")


def data_without_recipient(conn, arg: str) -> Reply:
    """DATA in state MAIL: §4.1.1.4 allows 503 or 554 ("no valid recipients").

    A DATA pipelined in the same group as its RCPTs is no mistake when they were all refused:
    the client could not know, and RFC 2920 §3.1 has it send DATA and read 554 (every real MTA
    does so).  Only a DATA sent with no RCPT in its group, or after the refusals came, is one."""
    if not conn.rcpt_in_group:
        conn._notes.append(Note(DATA_NO_RECIPIENT))
    if conn.state is not State.MAIL:
        return Reply(503, "Error: need MAIL command", "5.5.1")
    if conn.rejected:
        return Reply(554, "No valid recipients", "5.5.1")
    return Reply(503, "Error: need RCPT command", "5.5.1")


def rset(conn, arg: str) -> Reply:
    if arg:
        return Reply(501, "Syntax: RSET (no arguments)", "5.5.4")
    conn._reset_transaction()
    if conn.state is not State.GREETED:
        conn._set(State.READY)
    return Reply(250, "OK", "2.0.0")


def noop(conn, arg: str) -> Reply:
    return Reply(250, "OK", "2.0.0")  # §4.1.1.9: a parameter string is ignored


def quit_(conn, arg: str) -> Reply:
    if arg:
        return Reply(501, "Syntax: QUIT (no arguments)", "5.5.4")
    if conn.introduced and not conn.mail_commands:  # greeted, then left without trying MAIL
        conn._notes.append(Note(LEFT_WITHOUT_MAIL))
    conn._set(State.CLOSED)
    return Reply(221, f"{conn.config.hostname} closing connection", "2.0.0")


def vrfy(conn, arg: str) -> Reply:
    if not arg:
        return Reply(501, "Syntax: VRFY address", "5.5.4")
    # §3.5.3: 252 when the server will not say whether the user exists (no address harvesting)
    return Reply(252, "Cannot VRFY user, but will accept message and attempt delivery", "2.0.0")


def expn(conn, arg: str) -> Reply:
    return Reply(502, "EXPN not implemented (mailing lists are not disclosed)", "5.5.1")


def help_(conn, arg: str) -> Reply:
    if arg:
        spec = COMMANDS.get(arg.upper())
        if spec is None:
            return Reply(504, f"HELP topic unknown: {arg}", "5.5.1")
        return Reply(214, spec.syntax, "2.0.0")
    verbs = " ".join(COMMANDS)
    return Reply(214, ("Commands supported:", verbs, "Try HELP <command>, or: mailtrace explain smtp <command>"),
                 "2.0.0")


def starttls(conn, arg: str) -> Reply:
    if arg:
        return Reply(501, "Syntax: STARTTLS (no arguments)", "5.5.4")
    if conn.tls:  # RFC 3207 §4: not twice
        return Reply(503, "Error: TLS already active", "5.5.1")
    if not conn.config.tls_available:
        return Reply(502, "Error: STARTTLS not available (no certificate)", "5.5.1")
    conn._reset_transaction()
    conn._set(State.GREETED)  # RFC 3207 §4.2: after the handshake the client starts over with EHLO
    return Reply(220, "Ready to start TLS", "2.0.0")


def auth(conn, arg: str) -> Reply | None:
    if conn.user:
        return Reply(503, "Error: already authenticated", "5.5.1")
    if not conn.esmtp:
        return Reply(503, "Error: send EHLO first (AUTH is an ESMTP extension)", "5.5.1")
    mechanism, _, initial = arg.partition(" ")
    mechanism = mechanism.upper()
    if not mechanism:
        return Reply(501, "Syntax: AUTH mechanism [initial-response]", "5.5.4")
    if mechanism not in AUTH_MECHANISMS:
        return Reply(504, f"Unrecognized authentication type {mechanism}", "5.5.4")
    if not conn.secure_channel:
        conn._notes.append(Note(CLEARTEXT_AUTH, f"AUTH {mechanism}"))
        if conn.config.tls_required_for_auth:
            # RFC 4954 §6: "the selected authentication mechanism may only be used when the
            # underlying SMTP connection is encrypted"
            return Reply(538, "Encryption required for requested authentication mechanism: STARTTLS first",
                         "5.7.11")
    responses: list[str] = []
    if initial:
        if initial == "=":  # RFC 4954 §4: "=" is an empty initial response
            responses.append("")
        else:
            try:
                responses.append(base64.b64decode(initial, validate=True).decode("utf-8", errors="replace"))
            except (binascii.Error, ValueError):
                return Reply(501, "Error: cannot decode the initial response", "5.5.2")
    conn._auth_prior = conn.state
    conn._auth_step(mechanism, responses)
    return None  # _auth_step replied (334, 235, 535 or 501)


COMMANDS: dict[str, Spec] = {
    "HELO": Spec(ANY_LINE_STATE, helo, "HELO <domain>"),
    "EHLO": Spec(ANY_LINE_STATE, ehlo, "EHLO <domain>"),
    "MAIL": Spec(NO_TRANSACTION, mail, "MAIL FROM:<reverse-path> [SIZE=<n>] [BODY=7BIT|8BITMIME] [SMTPUTF8]"),
    "RCPT": Spec(frozenset({State.MAIL, State.RCPT}), rcpt, "RCPT TO:<forward-path>"),
    "DATA": Spec(frozenset({State.RCPT}), data, "DATA, then the message, then a line with only '.'"),
    "RSET": Spec(ANY_LINE_STATE, rset, "RSET"),
    "NOOP": Spec(ANY_LINE_STATE, noop, "NOOP [<string>]"),
    "QUIT": Spec(ANY_LINE_STATE, quit_, "QUIT"),
    "HELP": Spec(ANY_LINE_STATE, help_, "HELP [<command>]"),
    "VRFY": Spec(ANY_LINE_STATE, vrfy, "VRFY <user or mailbox>"),
    "EXPN": Spec(ANY_LINE_STATE, expn, "EXPN <mailing list>"),
    "STARTTLS": Spec(frozenset({State.GREETED, State.READY, State.DONE}), starttls, "STARTTLS"),
    "AUTH": Spec(NO_TRANSACTION, auth, "AUTH PLAIN|LOGIN [<initial-response>]"),
}

#: DATA in state MAIL (a MAIL without accepted RCPT) has its own answer (§4.1.1.4).
SPECIAL_SEQUENCE = {("DATA", state): data_without_recipient for state in (State.MAIL, State.READY, State.DONE)}

#: The text of a 503 by (verb, state) or (verb, any state) (§4.1.4; GREETED: "send HELO/EHLO first").
SEQUENCE_ERRORS = {
    ("MAIL", None): "Error: nested MAIL command",
    ("RCPT", None): "Error: need MAIL command",
    ("DATA", State.MAIL): "Error: need RCPT command",
    ("DATA", None): "Error: need MAIL command",
    ("STARTTLS", None): "Error: STARTTLS not allowed during a mail transaction",
    ("AUTH", None): "Error: AUTH not allowed during a mail transaction",
}

#: Every reply code the server core can send (knowledge must explain each one).
REPLY_CODES = frozenset({"214", "220", "221", "235", "250", "252", "334", "354", "421", "451", "452", "500",
                         "501", "502", "503", "504", "535", "538", "550", "552", "553", "554", "555"})

#: Common codes the lab never sends but a student meets elsewhere (proxy, pcap): documented too.
DOCUMENTED_CODES = frozenset({"251", "450", "551", "553"}) | frozenset(
    {"421", "450", "451", "452", "550", "551", "552", "553", "554", "555"})

#: Verbs with a knowledge entry: the table plus the known-but-unimplemented ones (502).
KNOWN_COMMANDS = frozenset(COMMANDS) | NOT_IMPLEMENTED

#: Verbs of DATA events: the message body and AUTH response lines.
DATA_VERBS = frozenset({"DATA", "AUTH"})

#: Every enhanced status code (RFC 3463) the server core can send (knowledge table "codes").
ENHANCED_CODES = frozenset({"2.0.0", "2.1.0", "2.1.5", "2.7.0", "4.3.0", "4.3.2", "4.4.2", "4.5.3", "4.7.0", "5.1.1", "5.1.3",
                            "5.1.7", "5.3.4", "5.5.1", "5.6.7", "5.5.2", "5.5.4", "5.7.0", "5.7.1", "5.7.8"})

#: The knowledge table "codes": enhanced status codes and EHLO keywords (Event.info["code"]).
CODES = ENHANCED_CODES | EHLO_KEYWORDS

#: Every violation rule the server core or the observer can record.
VIOLATIONS = frozenset({"bare-lf", "bare-cr", "line-too-long", SPACE_AFTER_COLON, MISSING_BRACKETS,
                        "before-greeting", "no-pipelining", "pipelining-group", "8bit-without-8bitmime",
                        DATA_NO_RECIPIENT, CLEARTEXT_AUTH, "bad-reply", "starttls-injection", EIGHT_BIT_HEADER,
                        LEFT_WITHOUT_MAIL})
