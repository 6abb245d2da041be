"""``mailtrace explain``: print the knowledge for a reply code, a command or a rule."""

from __future__ import annotations

import click

from mailtrace import knowledge

TABLE_ORDER = ("replies", "commands", "responses", "states", "violations", "codes", "extensions", "phases", "data",
               "events", "headers", "concepts")
NOT_PROTOCOLS = ("common", "web")  # knowledge files that name no protocol (web: the web view's labels)


def _bare_code(key: str) -> str | None:
    """The response code inside brackets, as it appears on the wire: "[IN-USE]" -> "IN-USE",
    "[UIDVALIDITY 3]" -> "UIDVALIDITY" (RFC 2449 §3, RFC 3501 §7.1); None when not bracketed."""
    if len(key) > 2 and key.startswith("[") and key.endswith("]") and key[1:-1].strip():
        return key[1:-1].split()[0]
    return None


def _find(protocol: str | None, key: str) -> list[knowledge.Entry]:
    protos = [protocol] if protocol else [p for p in knowledge.protocols() if p not in NOT_PROTOCOLS] + ["common"]
    code = _bare_code(key)
    tables, key = (("codes",), code) if code else (TABLE_ORDER, key)  # "[UTF8]" can only be a response code
    found = []
    for proto in protos:
        for table in tables:
            entries = knowledge.load(proto).get(table, {})
            entry = entries.get(key) or entries.get(key.upper()) or entries.get(key.lower())  # header fields: lower
            if entry is not None:
                found.append(entry)
    return found


# the tables listed by ``mailtrace explain PROTOCOL`` (no topic), in this order
TOPIC_TABLES = ("commands", "replies", "responses", "codes", "extensions", "states", "phases", "data", "violations",
                "headers", "concepts")


def _entry_name(table: str, lang: str) -> str:
    """What one entry of a knowledge table is called ("reply", "extension"...), from
    ``knowledge/common.toml`` ``[explain-entry.TABLE]``."""
    entry = knowledge.lookup("common", "explain-entry", table)
    return entry.meaning(lang) if entry else table


def _heading(key: str, lang: str, **fields) -> str:
    """A word of the topic list, from ``knowledge/common.toml`` ``[explain.KEY]``."""
    entry = knowledge.lookup("common", "explain", key)
    return entry.meaning(lang).format(**fields) if entry else key


def _print_indented(console, text: str, indent: int) -> None:
    """``text`` wrapped to the terminal with every line, continuation lines too, indented."""
    import textwrap

    pad = " " * indent
    for paragraph in text.splitlines() or [""]:
        console.print(textwrap.fill(paragraph, width=max(console.width, 40), initial_indent=pad,
                                    subsequent_indent=pad, break_on_hyphens=False) or pad,
                      markup=False, soft_wrap=True)


def _list_topics(console, protocol: str, lang: str) -> None:
    tables = knowledge.load(protocol)
    console.print(f"[bold]{protocol.upper()}[/bold]: " + _heading("topics", lang, protocol=protocol), soft_wrap=True)
    for table in TOPIC_TABLES:
        keys = list(tables.get(table, {}))
        if not keys:
            continue
        _print_indented(console, f"{_heading(table, lang)} ({len(keys)})", 2)
        _print_indented(console, ", ".join(keys), 4)
    console.print()


@click.command(name="explain", context_settings={"ignore_unknown_options": True})
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
@click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True, help="Language of the explanation.")
def command(words: tuple[str, ...], lang: str) -> None:
    """Explain a reply code, a command, a state or a mistake.

    \b
    Examples:
      mailtrace explain 354
      mailtrace explain smtp RCPT
      mailtrace explain pop3 -ERR
      mailtrace explain imap FETCH
      mailtrace explain Received          # a header field of a message
      mailtrace explain smtp              # every topic and mistake id it knows
    """
    from rich.console import Console

    protocols = [p for p in knowledge.protocols() if p not in NOT_PROTOCOLS]
    if not words or (len(words) == 1 and words[0].lower() in protocols):
        console = Console(highlight=False)
        for proto in [words[0].lower()] if words else protocols:
            _list_topics(console, proto, lang)
        return
    protocol = None
    if len(words) >= 2 and words[0].lower() in knowledge.protocols():
        protocol, words = words[0].lower(), words[1:]
    key = " ".join(words)
    entries = _find(protocol, key)
    if not entries:
        known = ", ".join(p for p in knowledge.protocols() if p not in NOT_PROTOCOLS)
        raise click.ClickException(f"nothing known about {key!r}" + (f" in {protocol}" if protocol else "")
                                   + f". Try a reply code (354), or a protocol and a command ({known}).")
    console = Console(highlight=False)
    for entry in entries:
        title = f"{entry.protocol.upper()} {entry.key}"
        console.print(f"[bold]{title}[/bold]  [dim]({_entry_name(entry.table, lang)})[/dim]")
        if entry.extra.get("syntax"):
            console.print(f"  [cyan]{entry.extra['syntax']}[/cyan]", markup=True)
        _print_indented(console, entry.meaning(lang), 2)
        if entry.explain(lang):
            _print_indented(console, entry.explain(lang), 2)
        if entry.rfc:
            console.print(f"  [dim]{entry.rfc}[/dim]")
        console.print()
