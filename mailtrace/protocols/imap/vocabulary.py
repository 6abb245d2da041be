"""Everything the IMAP code can put in an event, for ``knowledge/imap.toml`` to explain.

A test (tests/test_knowledge_imap.py) checks both directions: every name here has a knowledge
entry in English and Spanish, and every knowledge entry names one of these.
"""

from __future__ import annotations

from mailtrace.protocols.imap.spec import COMMANDS, State

# Command verbs in events: the table, plus DONE (the line that ends IDLE, RFC 2177 §3).
COMMAND_VERBS = frozenset(COMMANDS) | {"DONE"}
# Status responses (RFC 3501 §7.1) and the continuation request "+" (§7.5): Event.code.
REPLY_CODES = frozenset({"OK", "NO", "BAD", "BYE", "PREAUTH", "+"})
# Untagged data responses (RFC 3501 §7.2-§7.4, RFC 2342): Event.verb of "*" lines.
RESPONSES = frozenset({"CAPABILITY", "LIST", "LSUB", "STATUS", "SEARCH", "FLAGS", "EXISTS", "RECENT",
                       "EXPUNGE", "FETCH", "NAMESPACE", "ID", "ESEARCH", "SORT", "THREAD", "ENABLED", "VANISHED"})
# Response codes in brackets (RFC 3501 §7.1, RFC 4315, RFC 5530): Event.info["code"].
RESPONSE_CODES = frozenset({"ALERT", "CAPABILITY", "PERMANENTFLAGS", "READ-ONLY", "READ-WRITE", "TRYCREATE",
                            "UIDNEXT", "UIDVALIDITY", "UNSEEN", "APPENDUID", "COPYUID", "TOOBIG", "NONEXISTENT",
                            "ALREADYEXISTS", "CANNOT", "SERVERBUG", "AUTHENTICATIONFAILED",
                            "AUTHORIZATIONFAILED", "BADCHARSET", "UNKNOWN-CTE", "HIGHESTMODSEQ", "MODIFIED", "CLOSED",
                            "UNAVAILABLE", "PRIVACYREQUIRED"})
# Violation rules (Note.rule) found by the core and the observer; COMMON_VIOLATIONS are
# explained in knowledge/common.toml (shared with SMTP and POP3).
COMMON_VIOLATIONS = frozenset({"starttls-injection"})
VIOLATIONS = frozenset({"tag-reuse", "wrong-state", "unquoted-specials", "literal-length-mismatch", "after-logout",
                        "bare-lf", "bad-tag", "line-too-long", "incomplete-command"}) | COMMON_VIOLATIONS
# Folded blocks: literals (Kind.LITERAL) and the AUTHENTICATE response line (Kind.DATA).
DATA_VERBS = frozenset({"literal", "AUTHENTICATE"})
STATES = frozenset(s.value for s in State)
