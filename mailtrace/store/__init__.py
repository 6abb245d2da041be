"""The Maildir store shared by the lab servers: see ``mailtrace.store.maildir``."""
