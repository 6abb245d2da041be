"""mailtrace: a teaching lab toolkit for e-mail protocols (SMTP, POP3, IMAP)."""

__version__ = "0.1.0"
