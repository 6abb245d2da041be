"""`mailtrace explain`: knowledge for codes, commands and status words, in both languages."""

import os
import re
import subprocess

from click.testing import CliRunner

from mailtrace.cli import main
from mailtrace_cli import MAILTRACE


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
    for lang, body, header, concept in (("en", "BODY", "header", "(concept)"), ("es", "CUERPO", "cabecera", "(concepto)")):
        word = run("encoded-word", "--lang", lang)
        assert word.exit_code == 0 and concept in word.output and "=?UTF-8?Q?" in word.output
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


# --- as a user types it: the real program, `sys.executable -m mailtrace explain ...` -------------

def explain(*args):
    proc = subprocess.run([*MAILTRACE, "explain", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def labels(output: str) -> list[str]:
    """The "(label)" after each title line ("SMTP PIPELINING  (extension)")."""
    return re.findall(r"^\S+ \S.*?  \((.+)\)$", output, re.M)


def test_ehlo_keywords_are_extensions_not_response_codes():
    r = explain("smtp", "PIPELINING")
    assert r.returncode == 0 and labels(r.stdout) == ["extension"], r.stdout
    assert labels(explain("smtp", "5.1.1").stdout) == ["response code"]
    assert labels(explain("smtp", "PIPELINING", "--lang", "es").stdout) == ["extensión"]
    listing = explain("smtp").stdout
    codes = re.search(r"Response codes \(\d+\)\n(.*?)\n  \S", listing, re.S).group(1)
    extensions = re.search(r"Extension keywords \(\d+\)\n(.*?)\n  \S", listing, re.S).group(1)
    assert "5.1.1" in codes and "PIPELINING" not in codes and "STARTTLS" not in codes, listing
    assert "PIPELINING" in extensions and "5.1.1" not in extensions, listing


def test_commands_are_not_labelled_as_codes():
    assert labels(explain("imap", "IDLE").stdout) == ["command"]
    assert labels(explain("pop3", "UIDL").stdout) == ["command", "data"]


def test_bracketed_response_codes_are_found_with_or_without_brackets():
    for proto, word in (("pop3", "UTF8"), ("pop3", "IN-USE"), ("pop3", "SYS/TEMP"), ("imap", "TRYCREATE"),
                        ("imap", "UIDVALIDITY")):
        bracketed = explain(proto, f"[{word}]")
        assert bracketed.returncode == 0, bracketed.stderr
        assert labels(bracketed.stdout) == ["response code"], bracketed.stdout  # "[UTF8]" is only the code
        assert f"{proto.upper()} {word}  (response code)" in explain(proto, word).stdout
        assert f"{proto.upper()} {word}  (response code)" in explain(proto, f"[{word.lower()}]").stdout
    assert "IMAP UIDVALIDITY  (response code)" in explain("imap", "[UIDVALIDITY 3]").stdout  # as on the wire
    assert "IMAP TRYCREATE  (response code)" in explain("[TRYCREATE]").stdout  # no protocol named
    unknown = explain("pop3", "[NO-SUCH-CODE]")
    assert unknown.returncode != 0 and "nothing known" in unknown.stderr
