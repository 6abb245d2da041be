"""Commands valid in any state or before login (RFC 3501 §6.1, §6.2), NAMESPACE and IDLE.

CAPABILITY, NOOP and LOGOUT work in every state (§6.1).  STARTTLS, AUTHENTICATE and LOGIN move
the connection from "not authenticated" to "authenticated" (§6.2).  IDLE (RFC 2177 §3): "The
IDLE command is sent from the client to the server when the client is ready to accept
unsolicited mailbox update messages.  The server requests a response to the IDLE command using
the continuation ("+") response.  The IDLE command remains active until the client responds to
the continuation, and as long as an IDLE command is active, the server is now free to send
untagged EXISTS, EXPUNGE, and other messages at any time." DONE ends it.
"""

from __future__ import annotations

import base64
import binascii

from mailtrace import __version__
from mailtrace.protocols.imap import wire
from mailtrace.protocols.imap.server import Mode
from mailtrace.protocols.imap.lexer import ParseError, T
from mailtrace.protocols.imap.spec import REDACTED, State
from mailtrace.transcript.event import Event, Kind, Note, Side

# RFC 4616 §2: authzid, authcid and passwd are each at most 255 octets.
MAX_SASL_FIELD = 255
# RFC 2971 §3.3: "Field strings MUST NOT be longer than 30 octets.  Value strings MUST NOT be
# longer than 1024 octets.  Implementations MUST NOT send more than 30 field-value pairs."
MAX_ID_FIELD, MAX_ID_VALUE, MAX_ID_PAIRS = 30, 1024, 30
# What we tell a client that sends ID (RFC 2971 §3.2): the program's name and version.
SERVER_ID = (("name", "mailtrace"), ("vendor", "mailtrace lab"))


def capability(conn, cmd) -> None:
    cmd.args.end()
    conn.untagged(b"CAPABILITY " + " ".join(conn.capabilities()).encode(), "CAPABILITY")
    conn.done(cmd, "OK", "CAPABILITY completed")


def noop(conn, cmd) -> None:
    cmd.args.end()
    conn.done(cmd, "OK", "NOOP completed")


def logout(conn, cmd) -> None:
    cmd.args.end()
    # §6.1.3: "The server MUST send a BYE untagged response before the (tagged) OK response"
    conn.untagged_status("BYE", "mailtrace IMAP server logging out")
    conn.done(cmd, "OK", "LOGOUT completed")
    conn.logout()


def starttls(conn, cmd) -> None:
    cmd.args.end()
    if not conn.config.tls_available or conn.tls_active:
        conn.done(cmd, "BAD", "STARTTLS is not available" + (" (TLS is already on)" if conn.tls_active else ""))
        return
    # §6.2.1: "the client MUST discard cached information about server capabilities"
    conn.done(cmd, "OK", "Begin TLS negotiation now")
    conn.start_tls()
    # Anything the client sent after STARTTLS in plaintext is dropped, never run as if it had
    # come over TLS (the STARTTLS injection of CVE-2011-0411; RFC 3207 §4.2, RFC 2595 §3.1).
    injected = conn.discard_input()
    if injected:
        conn.emit(Event(side=Side.CLIENT, kind=Kind.VIOLATION, protocol="imap", raw=injected, tag=cmd.tag,
                        state=conn.state.value, notes=(Note("starttls-injection", f"{len(injected)} octets dropped"),)))


def login(conn, cmd) -> None:
    user = cmd.args.text_astring("user name")
    password = cmd.args.astring("password").decode("utf-8", "replace")
    cmd.args.end()
    if _privacy_required(conn, cmd):
        return
    _authenticate(conn, cmd, user, password)


def _privacy_required(conn, cmd) -> bool:
    """LOGINDISABLED (RFC 3501 §6.2.3): NO [PRIVACYREQUIRED] (RFC 5530 §3) until STARTTLS."""
    if conn.login_disabled:
        conn.done(cmd, "NO", "plaintext authentication disallowed on a non-secure connection: STARTTLS first",
                  code="PRIVACYREQUIRED")
        return True
    return False


def _authenticate(conn, cmd, user: str, password: str) -> None:
    if not conn.store.has_user(user) and conn.store.has_user(user.lower()):
        user = user.lower()  # lab user names are lower case; "LOGIN Dave" is dave (as SMTP's Dave@)
    if conn.store.has_user(user) and conn.store.check_password(user, password):
        conn.user = user
        conn.done(cmd, "OK", f"{cmd.name} completed, now in the authenticated state",
                  code="CAPABILITY " + " ".join(conn.capabilities(State.AUTHENTICATED)), user=user)
    else:
        # RFC 5530 §3 AUTHENTICATIONFAILED; same answer for unknown users and bad passwords
        conn.done(cmd, "NO", "invalid user name or password", code="AUTHENTICATIONFAILED")


def authenticate(conn, cmd) -> None:
    mechanism = cmd.args.atom("SASL mechanism").upper()
    initial = None
    if not cmd.args.at_end():
        initial = cmd.args.atom("initial response")  # RFC 4959 SASL-IR form
    cmd.args.end()
    if mechanism != "PLAIN":
        conn.done(cmd, "NO", f'SASL mechanism "{mechanism}" is not supported (only PLAIN)')
        return
    if _privacy_required(conn, cmd):
        return
    if initial is not None:
        _sasl_plain(conn, cmd, initial.encode())
        return
    conn.continuation("", cmd.name)  # §6.2.2: an empty challenge for PLAIN

    def response(line: bytes) -> None:
        conn.record(Side.CLIENT, Kind.DATA, line, verb="AUTHENTICATE", tag=cmd.tag, redacted=REDACTED + b"\r\n",
                    notes=() if line.endswith(b"\r\n") else (Note("bare-lf"),))
        _sasl_plain(conn, cmd, line.strip())

    conn.pending = response


def _sasl_plain(conn, cmd, data: bytes) -> None:
    if data == b"*":  # §6.2.2: "If the client wishes to cancel an authentication exchange"
        conn.done(cmd, "BAD", "AUTHENTICATE cancelled")
        return
    try:
        decoded = base64.b64decode(data if data != b"=" else b"", validate=True)
    except (binascii.Error, ValueError):
        conn.done(cmd, "BAD", "the SASL response is not valid base64")
        return
    fields = decoded.split(b"\x00")
    if len(fields) != 3 or any(len(f) > MAX_SASL_FIELD for f in fields):
        conn.done(cmd, "BAD", "a PLAIN response is authzid NUL authcid NUL passwd (RFC 4616 §2)")
        return
    authzid, authcid, passwd = (f.decode("utf-8", "replace") for f in fields)
    if authzid and authzid != authcid:
        conn.done(cmd, "NO", "authorization as another user is not allowed", code="AUTHORIZATIONFAILED")
        return
    _authenticate(conn, cmd, authcid, passwd)


def namespace(conn, cmd) -> None:
    cmd.args.end()
    # RFC 2342 §5: personal namespace "" with the hierarchy delimiter; no other or shared ones.
    delim = conn.store.HIERARCHY_DELIMITER.encode()
    conn.untagged(b'NAMESPACE (("" "' + delim + b'")) NIL NIL', "NAMESPACE")
    conn.done(cmd, "OK", "NAMESPACE completed")


def idle(conn, cmd) -> None:
    cmd.args.end()
    conn.sync_view(allow_expunge=True, force=True, then=lambda: start_idling(conn, cmd))


def start_idling(conn, cmd) -> None:
    """After the news so far: "+ idling", then updates as they come until DONE (RFC 2177 §3)."""
    conn.continuation("idling", cmd.name)
    conn.mode = Mode.IDLE

    def done_line(line: bytes) -> None:
        ok = line.rstrip(b"\r\n").upper() == b"DONE"
        conn.record(Side.CLIENT, Kind.COMMAND, line, verb="DONE", tag=cmd.tag,
                    notes=() if line.endswith(b"\r\n") else (Note("bare-lf"),))
        conn.mode = Mode.COMMAND
        if ok:
            conn.done(cmd, "OK", "IDLE terminated")
        else:
            conn.done(cmd, "BAD", "expected DONE to end IDLE (RFC 2177 §3)")

    conn.pending = done_line


def id_(conn, cmd) -> None:
    """RFC 2971 §3.1: "ID" with a list of field/value pairs (or NIL); the server "MUST send a
    tagged ID response" -- an untagged ``* ID (...)`` with its own pairs -- then OK."""
    tok = cmd.args.peek()
    pairs = 0
    if tok is not None and tok.kind is T.ATOM and tok.value.upper() == b"NIL":
        cmd.args.next("NIL")
    else:
        cmd.args.open_paren("ID parameter list (or NIL)")
        while not cmd.args.close_paren_if_next():
            field = cmd.args.string("ID field")
            value = cmd.args.next("ID value")
            if value.kind is T.ATOM and value.value.upper() != b"NIL" or value.kind in (T.LPAREN, T.RPAREN):
                raise ParseError(f"an ID value is a string or NIL, not {value.describe()}")
            pairs += 1
            if len(field) > MAX_ID_FIELD or len(value.value) > MAX_ID_VALUE or pairs > MAX_ID_PAIRS:
                raise ParseError(f"ID allows {MAX_ID_PAIRS} pairs, fields of {MAX_ID_FIELD} octets and "
                                 f"values of {MAX_ID_VALUE} (RFC 2971 §3.3)")
    cmd.args.end()
    fields = SERVER_ID + (("version", __version__),)
    conn.untagged(b"ID (" + b" ".join(wire.string(k) + b" " + wire.string(v) for k, v in fields) + b")", "ID")
    conn.done(cmd, "OK", "ID completed")



def enable(conn, cmd) -> None:
    """RFC 5161 §3.1: "The ENABLE command takes a list of capability names, and requests the
    server to enable the named extensions" -- unknown ones are ignored; the untagged ENABLED
    lists those this command enabled.  Here: UTF8=ACCEPT (RFC 6855 §3)."""
    names = []
    while not cmd.args.at_end():
        names.append(cmd.args.atom("capability name").upper())
    if not names:
        raise ParseError("ENABLE needs at least one capability name (RFC 5161 §3.1)")
    enabled = []
    for name in dict.fromkeys(names):
        if name == "UTF8=ACCEPT" and not conn.utf8:
            conn.utf8 = True
            enabled.append(name)
        elif name == "CONDSTORE" and not conn.condstore:  # RFC 7162 §3.1
            conn.condstore = True
            enabled.append(name)
        elif name == "QRESYNC" and not conn.qresync:  # RFC 7162 §3.2.3 (it implies CONDSTORE)
            conn.qresync = conn.condstore = True
            enabled.append(name)
    conn.untagged(b"ENABLED" + b"".join(b" " + n.encode() for n in enabled), "ENABLED")
    conn.done(cmd, "OK", "ENABLE completed")
