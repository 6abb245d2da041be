"""`mailtrace explain`: knowledge for codes, commands and status words, in both languages."""

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
