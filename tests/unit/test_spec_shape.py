"""Issue #10: smtp/spec.py, pop3/spec.py and imap/spec.py have the same shape: the same names
for the same things, so a student (and the observer, grader and web view) reads them the same way."""

from types import MappingProxyType

import pytest

from mailtrace.protocols.imap import spec as imap
from mailtrace.protocols.pop3 import spec as pop3
from mailtrace.protocols.smtp import spec as smtp
from mailtrace.protocols.spec import CommandSpec, TransitionTable

CONFIGS = {smtp: smtp.SmtpConfig, pop3: pop3.Pop3Config, imap: imap.ImapConfig}


@pytest.mark.parametrize("spec", [smtp, pop3, imap], ids=["smtp", "pop3", "imap"])
def test_every_spec_names_the_protocol_its_states_commands_transitions_and_limits(spec):
    assert spec.PROTOCOL == spec.__name__.split(".")[-2]
    assert isinstance(spec.COMMANDS, MappingProxyType)
    assert all(isinstance(row, CommandSpec) and row.rfc for row in spec.COMMANDS.values())
    assert set(spec.COMMANDS) <= spec.KNOWN_COMMANDS
    assert isinstance(spec.TRANSITIONS, TransitionTable)
    assert {row.target for row in spec.TRANSITIONS.rows} <= set(spec.State)
    for name in ("MAX_COMMAND_LINE", "IDLE_TIMEOUT", "DATA_VERBS", "REPLY_CODES", "VIOLATIONS", "outcome", "wire"):
        assert hasattr(spec, name), name
    config = CONFIGS[spec]()
    assert (config.hostname, config.idle_timeout) == ("lab.test", spec.IDLE_TIMEOUT) and config.implementation
    assert hasattr(config, "tls_available") and hasattr(config, "tls_required_for_auth")


@pytest.mark.parametrize("spec", [smtp, pop3], ids=["smtp", "pop3"])
def test_the_same_names_in_every_spec(spec):
    assert spec.PROTOCOL == spec.__name__.split(".")[-2]
    assert isinstance(spec.COMMANDS, MappingProxyType)
    assert set(spec.COMMANDS) <= spec.KNOWN_COMMANDS
    for name in ("MAX_COMMAND_LINE", "IDLE_TIMEOUT", "MAX_BAD_COMMANDS", "DATA_VERBS", "DOCUMENTED_CODES",
                 "REPLY_CODES", "TRANSITIONS", "VIOLATIONS", "State"):
        assert hasattr(spec, name), name


@pytest.mark.parametrize("spec", [smtp, pop3, imap], ids=["smtp", "pop3", "imap"])
def test_every_server_cuts_off_a_client_after_the_same_number_of_bad_commands(spec):
    config = CONFIGS[spec]()
    assert (config.idle_timeout, config.max_bad_commands) == (spec.IDLE_TIMEOUT, spec.MAX_BAD_COMMANDS)
    assert spec.MAX_BAD_COMMANDS == 20
    assert config.implementation


@pytest.mark.parametrize("spec", [smtp, pop3], ids=["smtp", "pop3"])
def test_rows_state_the_same_facts_under_the_same_keys(spec):
    for verb, row in spec.COMMANDS.items():
        assert {"starts_tls", "closes"} <= set(row.extra), verb
    assert [v for v, row in spec.COMMANDS.items() if row.extra["starts_tls"]] == [
        "STARTTLS" if spec is smtp else "STLS"]
    assert [v for v, row in spec.COMMANDS.items() if row.extra["closes"]] == ["QUIT"]


def test_starts_tls_is_a_2xx_to_the_row_that_says_so():
    assert smtp.starts_tls("STARTTLS", smtp.outcome("220"))
    assert not smtp.starts_tls("STARTTLS", smtp.outcome("454"))
    assert not smtp.starts_tls("EHLO", smtp.outcome("250"))
