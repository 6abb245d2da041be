"""The command table: every command, the states it is allowed in, its handler (RFC 3501 §6).

Rendered by ``mailtrace explain`` and kept in sync with ``knowledge/imap.toml`` by a test.
"""

from __future__ import annotations

from mailtrace.protocols.imap import commands_list as lst
from mailtrace.protocols.imap import commands_mailbox as mb
from mailtrace.protocols.imap import commands_selected as sel
from mailtrace.protocols.imap import commands_session as ses
from mailtrace.protocols.imap.states import ANY, AUTH, AUTHENTICATED_ONLY, NOT_AUTH, SELECTED, CommandSpec

COMMANDS: dict[str, CommandSpec] = {
    "CAPABILITY": CommandSpec(ANY, ses.capability, "RFC 3501 §6.1.1"),
    "NOOP": CommandSpec(ANY, ses.noop, "RFC 3501 §6.1.2"),
    "LOGOUT": CommandSpec(ANY, ses.logout, "RFC 3501 §6.1.3"),
    "STARTTLS": CommandSpec(NOT_AUTH, ses.starttls, "RFC 3501 §6.2.1"),
    "AUTHENTICATE": CommandSpec(NOT_AUTH, ses.authenticate, "RFC 3501 §6.2.2"),
    "LOGIN": CommandSpec(NOT_AUTH, ses.login, "RFC 3501 §6.2.3"),
    "SELECT": CommandSpec(AUTH, mb.select, "RFC 3501 §6.3.1"),
    "EXAMINE": CommandSpec(AUTH, mb.examine, "RFC 3501 §6.3.2"),
    "CREATE": CommandSpec(AUTH, mb.create, "RFC 3501 §6.3.3"),
    "DELETE": CommandSpec(AUTH, mb.delete, "RFC 3501 §6.3.4"),
    "RENAME": CommandSpec(AUTH, mb.rename, "RFC 3501 §6.3.5"),
    "SUBSCRIBE": CommandSpec(AUTH, mb.subscribe, "RFC 3501 §6.3.6"),
    "UNSUBSCRIBE": CommandSpec(AUTH, mb.unsubscribe, "RFC 3501 §6.3.7"),
    "LIST": CommandSpec(AUTH, lst.list_, "RFC 3501 §6.3.8"),
    "LSUB": CommandSpec(AUTH, lst.lsub, "RFC 3501 §6.3.9"),
    "STATUS": CommandSpec(AUTH, mb.status, "RFC 3501 §6.3.10"),
    "APPEND": CommandSpec(AUTH, mb.append, "RFC 3501 §6.3.11"),
    "NAMESPACE": CommandSpec(AUTH, ses.namespace, "RFC 2342 §5"),
    "ID": CommandSpec(ANY, ses.id_, "RFC 2971 §3.1"),
    "ENABLE": CommandSpec(AUTHENTICATED_ONLY, ses.enable, "RFC 5161 §3.1"),
    "IDLE": CommandSpec(AUTH, ses.idle, "RFC 2177 §3"),
    "CHECK": CommandSpec(SELECTED, sel.check, "RFC 3501 §6.4.1"),
    "CLOSE": CommandSpec(SELECTED, sel.close, "RFC 3501 §6.4.2"),
    "UNSELECT": CommandSpec(SELECTED, sel.unselect, "RFC 3691 §2"),
    "EXPUNGE": CommandSpec(SELECTED, sel.expunge, "RFC 3501 §6.4.3"),
    "SEARCH": CommandSpec(SELECTED, sel.do_search, "RFC 3501 §6.4.4"),
    "FETCH": CommandSpec(SELECTED, sel.do_fetch, "RFC 3501 §6.4.5"),
    "STORE": CommandSpec(SELECTED, sel.do_store, "RFC 3501 §6.4.6"),
    "COPY": CommandSpec(SELECTED, sel.copy, "RFC 3501 §6.4.7"),
    "MOVE": CommandSpec(SELECTED, sel.move, "RFC 6851 §3.1"),
    "UID FETCH": CommandSpec(SELECTED, sel.do_fetch, "RFC 3501 §6.4.8"),
    "UID SEARCH": CommandSpec(SELECTED, sel.do_search, "RFC 3501 §6.4.8"),
    "UID STORE": CommandSpec(SELECTED, sel.do_store, "RFC 3501 §6.4.8"),
    "UID COPY": CommandSpec(SELECTED, sel.copy, "RFC 3501 §6.4.8"),
    "UID MOVE": CommandSpec(SELECTED, sel.move, "RFC 6851 §3.2"),
    "UID EXPUNGE": CommandSpec(SELECTED, sel.expunge, "RFC 4315 §2.1"),
    "SORT": CommandSpec(SELECTED, sel.do_sort, "RFC 5256 §3"),
    "UID SORT": CommandSpec(SELECTED, sel.do_sort, "RFC 5256 §3"),
    "THREAD": CommandSpec(SELECTED, sel.do_thread, "RFC 5256 §3"),
    "UID THREAD": CommandSpec(SELECTED, sel.do_thread, "RFC 5256 §3"),
}
