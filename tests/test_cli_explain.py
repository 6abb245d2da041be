"""`mailtrace explain`: knowledge for codes, commands and status words, in both languages."""

import re

from click.testing import CliRunner

from mailtrace.cli import main


def run(*args):
    return CliRunner().invoke(main, ["explain", *args])


def test_reply_code():
    r = run("354")
    assert r.exit_code == 0 and "SMTP 354" in r.output and "(reply)" in r.output and "RFC 5321" in r.output


def test_command_in_spanish():
    r = run("smtp", "RCPT", "--lang", "es")
    assert r.exit_code == 0 and "destinatario" in r.output


def test_status_word_that_looks_like_an_option():
    r = run("pop3", "-ERR")
    assert r.exit_code == 0 and "POP3 -ERR" in r.output


def test_unknown_word_is_a_clear_error():
    r = run("no-such-thing")
    assert r.exit_code != 0 and "nothing known" in r.output and "Traceback" not in r.output


def test_8bitmime_smtputf8_and_encoded_words_are_told_apart_in_both_languages():
    """Issue 19: the three ways of non-ASCII text in mail, each entry pointing at the others."""
    for lang, body, header in (("en", "BODY", "header"), ("es", "CUERPO", "cabecera")):
        word = run("encoded-word", "--lang", lang)
        assert word.exit_code == 0 and "(concept)" in word.output and "=?UTF-8?Q?" in word.output
        assert "8BITMIME" in word.output and "SMTPUTF8" in word.output
        eight = run("8BITMIME", "--lang", lang)
        assert eight.exit_code == 0 and "SMTPUTF8" in eight.output and "encoded-word" in eight.output
        note = run("8bit-header-without-smtputf8", "--lang", lang)
        assert note.exit_code == 0 and body in note.output and header in note.output.lower()


def test_protocol_alone_lists_its_topics_and_mistake_ids():
    from mailtrace import knowledge

    for proto in ("smtp", "pop3", "imap"):
        r = run(proto)
        assert r.exit_code == 0, r.output
        flat = " ".join(r.output.split())
        tables = knowledge.load(proto)
        for key in [*tables["commands"], *tables["violations"]]:  # the mistake ids, as `explain PROTO ID` takes them
            assert re.search(r"(?<![\w-])" + re.escape(key) + r"(?![\w-])", flat), (proto, key)
        assert "Mistakes, by id" in r.output
        some_mistake = next(iter(tables["violations"]))
        assert run(proto, some_mistake).exit_code == 0
    es = run("pop3", "--lang", "es")
    assert es.exit_code == 0 and "Comandos" in es.output and "Errores, por identificador" in es.output


def test_no_words_lists_every_protocol():
    r = run()
    assert r.exit_code == 0 and all(p in r.output for p in ("SMTP:", "POP3:", "IMAP:"))


def test_continuation_lines_are_indented():
    r = CliRunner(env={"COLUMNS": "50"}).invoke(main, ["explain", "smtp", "MAIL"])
    assert r.exit_code == 0
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines[0].startswith("SMTP MAIL") and len(lines) > 5  # the explanation wrapped at 50 columns
    assert all(line.startswith("  ") for line in lines if not line.startswith("SMTP ")), r.output  # titles aside
    r = CliRunner(env={"COLUMNS": "50"}).invoke(main, ["explain", "imap"])
    body = [line for line in r.output.splitlines() if line.strip()][1:]
    assert body and all(line.startswith("  ") for line in body), r.output
    headings = [line for line in body if re.fullmatch(r"  \S.* \(\d+\)", line)]
    assert len(headings) >= 5  # commands, replies, responses, codes, states, ..., mistakes
    assert all(line.startswith("    ") for line in body if line not in headings), r.output
