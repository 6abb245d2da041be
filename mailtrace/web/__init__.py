"""The live web view of the lab (``--web [HOST:]PORT`` on ``lab``, ``serve`` and ``proxy``).

Sessions as they happen (each a ladder diagram that grows line by line), the mailboxes and
their messages (header fields explained, the MIME tree encoded and decoded, text, sanitized
HTML, source), the life of each message across SMTP, POP3 and IMAP, and a JSON API under
``/api/`` (see the README).  Pieces:

* ``feed``: the transcript sink that keeps sessions for the page (cheap when nobody watches);
* ``server``: the aiohttp application on the lab's own event loop (imported only with --web);
* ``messages``, ``sanitize``: a stored message explained, and its HTML made inert;
* ``access``: classroom logins (``--admin``) and who may see what;
* ``texts``: the page's words, from ``knowledge/web.toml``, English and Spanish.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailtrace.web.feed import WebFeed


@dataclass
class WebSettings:
    """What ``--web`` and ``--admin`` asked for; ``feed`` is the sink to add to the recorder."""

    host: str
    port: int
    admin: str | None = None
    show_secrets: bool = False
    https: bool | None = None  # None: HTTPS exactly when the host is not loopback
    feed: WebFeed = field(default_factory=WebFeed)

    async def start(self, *, store=None, users=None, check_password=None, lang: str = "en", ssl_context=None):
        """Start the web server on the running loop; returns the ``WebView`` (``url``, ``stop()``)."""
        from mailtrace.web.access import Access
        from mailtrace.web.server import WebView

        access = Access(check_password=check_password, admin=self.admin)
        view = WebView(self.feed, access, store=store, users=users or (lambda: []), lang=lang,
                       show_secrets=self.show_secrets)
        await view.start(self.host, self.port, ssl_context)
        return view


async def start_for_lab(settings: WebSettings, lab):
    """The lab's web view: its store, its users, its passwords (``authenticate``'s one source).
    Off loopback it speaks HTTPS with the lab's certificate, so logins never cross the network
    in clear (``web_settings`` refuses --admin off loopback without TLS)."""
    from mailtrace.netaddr import is_loopback

    store = lab.store
    https = settings.https if settings.https is not None else not is_loopback(settings.host)
    ssl_context = lab.tls_context if https else None

    def check_password(user: str, password: str) -> bool:
        return bool(store.has_user(user) and store.check_password(user, password))

    return await settings.start(store=store, users=lambda: sorted(lab.users), check_password=check_password,
                                lang=lab.lang, ssl_context=ssl_context)
