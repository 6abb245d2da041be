"""The web view's HTTP server and JSON API, on the lab's own asyncio loop (aiohttp).

aiohttp is the HTTP library: it runs in the loop the lab servers already run in (no thread,
no second loop, no hand-written HTTP), serves the live channel as server-sent events with a
plain ``StreamResponse``, and is imported only when ``--web`` is given.

Routes (all GET, read-only, but the login form):

    /                                   the page (static/index.html, app.js, app.css)
    /api/me                             who is looking, the language, the UI texts
    /api/sessions                       session summaries (?protocol=, ?user=, ?mistakes=1)
    /api/sessions/{id}                  one session: summary and its events, annotated
    /api/sessions/{id}/ladder           its ladder diagram (transcript.html), an HTML fragment
    /api/sessions/{id}/download/{fmt}   jsonl, txt, html or pcap (the transcript exporters)
    /api/stream                         server-sent events: a "session" event per changed session
    /api/mailboxes                      [{user, mailbox, messages}]
    /api/mailboxes/{user}/messages      ?mailbox=INBOX: the messages (From, To, Subject, Date, flags)
    /api/messages/{user}/{uid}          ?mailbox=: headers explained, MIME tree, text, life
    /api/messages/{user}/{uid}/raw      the source as stored (text/plain)
    /api/messages/{user}/{uid}/html     the HTML part, sanitized, for a sandboxed iframe
"""

from __future__ import annotations

import asyncio
import io
import json
from importlib import resources
from typing import Callable

from aiohttp import web

from mailtrace import knowledge
from mailtrace.web import messages as msgs
from mailtrace.web.access import COOKIE, Access
from mailtrace.web.feed import WebFeed
from mailtrace.web.texts import pick_language, ui_texts

# The page loads only its own files; HTML parts live in a sandboxed frame of their own.
APP_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
           "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# An HTML part: no script, no remote load of any kind, an opaque origin (sandbox).
PART_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'self'"
STATIC = {"app.js": "application/javascript", "app.css": "text/css", "index.html": "text/html"}
SSE_PING = 15.0  # seconds between keep-alive comments on the live channel
DOWNLOADS = {"jsonl": "application/x-ndjson", "txt": "text/plain", "html": "text/html",
             "pcap": "application/vnd.tcpdump.pcap"}
PUBLIC = ("/login", "/static/")
SUMMARY_CACHE = 20000  # message summaries kept (From, To, Subject, Date) so listings do not reread files
LADDER_MAX_EVENTS = 2000  # lines of a live ladder: a browser watching a long session stays cheap for the lab


class WebView:
    """The web server of one lab (or proxy): ``await start(host, port)``, then ``url``."""

    def __init__(self, feed: WebFeed, access: Access, *, store=None, users: Callable[[], list[str]] = list,
                 lang: str = "en", show_secrets: bool = False) -> None:
        self.feed = feed
        self.access = access
        self.store = store
        self.users = users
        self.lang = lang
        self.show_secrets = show_secrets
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.host = ""
        self.scheme = "http"
        self._streams: set[asyncio.Queue] = set()
        self._summaries: dict[tuple[str, str, str], dict] = {}  # (user, mailbox, Maildir key): a message never changes
        self.app = self._make_app()

    # -- life cycle -----------------------------------------------------------------------------
    async def start(self, host: str, port: int, ssl_context=None) -> None:
        """Listen on host:port (HTTPS with ``ssl_context``: the lab's certificate off loopback)."""
        self.feed.loop = asyncio.get_running_loop()
        self.scheme = "https" if ssl_context is not None else "http"
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, ssl_context=ssl_context)
        await site.start()
        sock = site._server.sockets[0]  # port 0: the port the system chose
        self.host, self.port = host, sock.getsockname()[1]

    @property
    def url(self) -> str:
        from mailtrace.netaddr import host_port

        return f"{self.scheme}://{host_port(self.host, self.port)}/"

    async def stop(self) -> None:
        for queue in list(self._streams):
            queue.put_nowait(None)  # live channels end now, not after a timeout
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # -- the application ------------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        r = app.router
        r.add_get("/", self.page)
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_get("/static/ladder.css", self.ladder_css)
        r.add_get("/static/{name}", self.static)
        r.add_get("/api/me", self.me)
        r.add_get("/api/sessions", self.sessions)
        r.add_get("/api/sessions/{sid}", self.session)
        r.add_get("/api/sessions/{sid}/ladder", self.ladder)
        r.add_get("/api/sessions/{sid}/download/{fmt}", self.download)
        r.add_get("/api/stream", self.stream)
        r.add_get("/api/mailboxes", self.mailboxes)
        r.add_get("/api/mailboxes/{user}/messages", self.messages)
        r.add_get("/api/messages/{user}/{uid}", self.message)
        r.add_get("/api/messages/{user}/{uid}/raw", self.raw)
        r.add_get("/api/messages/{user}/{uid}/html", self.html_part)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        """Who is asking (cookie or HTTP Basic), refuse strangers in classroom mode, and set the
        security headers on every answer."""
        viewer = self.access.user_of_token(request.cookies.get(COOKIE)) or \
            self.access.user_of_basic(request.headers.get("Authorization"))
        request["viewer"] = viewer
        request["lang"] = pick_language(request, self.lang)
        if self.access.login_required and viewer is None and not request.path.startswith(PUBLIC):
            if request.path.startswith("/api/"):
                resp = web.json_response({"error": "login required"}, status=401,
                                         headers={"WWW-Authenticate": 'Basic realm="mailtrace lab"'})
            else:
                resp = _redirect("/login")
        else:
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                _secure(exc.headers)
                raise
        _secure(resp.headers)
        return resp

    # -- page, static files, login --------------------------------------------------------------
    def _static_text(self, name: str) -> str:
        return resources.files("mailtrace.web").joinpath("static", name).read_text("utf-8")

    async def page(self, request: web.Request) -> web.Response:
        html = self._static_text("index.html").replace("{{lang}}", request["lang"])
        return web.Response(text=html, content_type="text/html")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(text=self._static_text(name), content_type=STATIC[name])

    async def ladder_css(self, request: web.Request) -> web.Response:
        from mailtrace.transcript.html import CSS

        return web.Response(text=CSS, content_type="text/css")

    async def login_page(self, request: web.Request) -> web.Response:
        html = self._static_text("login.html")
        t = ui_texts(request["lang"])
        for key in ("login_title", "login_user", "login_password", "login_button", "login_failed", "login_hint"):
            html = html.replace("{{" + key + "}}", _escape(t.get(key, key)))
        html = html.replace("{{lang}}", request["lang"]).replace(
            "{{failed}}", "" if request.query.get("failed") is None else "failed")
        return web.Response(text=html, content_type="text/html")

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        user = self.access.authenticate(str(form.get("user", "")), str(form.get("password", "")))
        if user is None:
            return _redirect("/login?failed")
        resp = _redirect("/")
        resp.set_cookie(COOKIE, self.access.token(user), httponly=True, samesite="Strict", path="/")
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        resp = _redirect("/login" if self.access.login_required else "/")
        resp.del_cookie(COOKIE, path="/")
        return resp

    async def me(self, request: web.Request) -> web.Response:
        viewer = request["viewer"]
        return web.json_response({"user": viewer, "admin": self.access.sees_all(viewer),
                                  "login": self.access.login_required, "lang": request["lang"],
                                  "mailboxes": self.store is not None, "texts": ui_texts(request["lang"])})

    # -- sessions -------------------------------------------------------------------------------
    def _visible(self, request: web.Request, sid: str):
        summary = self.feed.sessions.get(sid)
        if summary is None or not self.access.may_see_session(request["viewer"], summary.owners()):
            raise web.HTTPNotFound(text=json.dumps({"error": "no such session"}), content_type="application/json")
        return summary

    async def sessions(self, request: web.Request) -> web.Response:
        q = request.query
        out = []
        for summary in list(self.feed.sessions.values()):
            if not self.access.may_see_session(request["viewer"], summary.owners()):
                continue
            if q.get("protocol") and summary.protocol != q["protocol"]:
                continue
            if q.get("user") and summary.user != q["user"]:
                continue
            if q.get("mistakes") in ("1", "true", "yes") and not summary.violations:
                continue
            out.append(summary.to_json(request["lang"]))
        return web.json_response(out)

    async def session(self, request: web.Request) -> web.Response:
        from mailtrace.transcript.jsonl import event_to_dict

        summary = self._visible(request, request.match_info["sid"])
        lang = request["lang"]
        events = []
        for event in self.feed.session_events(summary.id):
            d = event_to_dict(event, self.show_secrets)
            ann = knowledge.annotate(event, lang)
            d["meaning"], d["rfc"] = ann.meaning, ann.rfc
            d["problems"] = [{"meaning": m, "rfc": r, "detail": det} for m, r, det in ann.problems]
            d["infos"] = [{"meaning": m, "rfc": r, "detail": det} for m, r, det in ann.infos]  # no rule broken
            if event.reason is not None:  # CLOSE, GAP: said in the viewer's language
                d["reason"] = knowledge.close_reason(event, lang)
            events.append(d)
        return web.json_response({"session": summary.to_json(lang), "events": events})

    async def ladder(self, request: web.Request) -> web.Response:
        from mailtrace.transcript.html import _session_html

        summary = self._visible(request, request.match_info["sid"])
        events = self.feed.session_events(summary.id)
        note = ""
        if len(events) > LADDER_MAX_EVENTS:  # a long session: its latest lines (the downloads have it all)
            note = f"<p class=hint>… {len(events) - LADDER_MAX_EVENTS} {_escape(ui_texts(request['lang'])['earlier'])}</p>"
            events = events[-LADDER_MAX_EVENTS:]
        text = note + (_session_html(events, request["lang"], self.show_secrets) if events else "")
        return web.Response(text=text, content_type="text/html")

    async def download(self, request: web.Request) -> web.Response:
        summary = self._visible(request, request.match_info["sid"])
        fmt = request.match_info["fmt"]
        if fmt not in DOWNLOADS:
            raise web.HTTPNotFound()
        events = self.feed.session_events(summary.id)
        body = await asyncio.to_thread(self._export, events, fmt, request["lang"])
        name = f"{summary.id}.{fmt}"
        return web.Response(body=body, content_type=DOWNLOADS[fmt],
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def _export(self, events: list, fmt: str, lang: str) -> bytes:
        """The same exporters as ``mailtrace show`` and ``--log/--text``."""
        if fmt == "jsonl":
            from mailtrace.transcript.jsonl import JsonlSink

            out = io.StringIO()
            sink = JsonlSink(out, show_secrets=self.show_secrets)
            for event in events:
                sink.handle(event)
            return out.getvalue().encode("utf-8")
        if fmt == "txt":
            from mailtrace.transcript.text import render_text

            return render_text(events, show_secrets=self.show_secrets, lang=lang).encode("utf-8")
        if fmt == "html":
            from mailtrace.transcript.html import render_html

            return render_html(events, lang=lang, show_secrets=self.show_secrets).encode("utf-8")
        from mailtrace.capture.export import export

        out = io.BytesIO()
        export(events, out, show_secrets=self.show_secrets, lang=lang)
        return out.getvalue()

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``event: session`` with a summary each time one changes."""
        viewer = request["viewer"]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "Content-Security-Policy": APP_CSP})
        await resp.prepare(request)
        queue: asyncio.Queue = asyncio.Queue()
        self._streams.add(queue)

        lang = request["lang"]

        def in_viewer_language(update: dict) -> dict:
            out = {k: v for k, v in update.items() if not k.startswith("_")}
            if update.get("_close"):
                out["close_reason"] = knowledge.close_reason(update["_close"], lang)
            return out

        def changed(updates: list[dict]) -> None:
            seen = [in_viewer_language(u) for u in updates if self.access.may_see_session(viewer, u["_owners"])]
            if seen:
                queue.put_nowait(seen)

        unsubscribe = self.feed.subscribe(changed)
        try:
            await resp.write(b": mailtrace live channel\n\n")
            while True:
                try:
                    batch = await asyncio.wait_for(queue.get(), SSE_PING)
                except asyncio.TimeoutError:
                    await resp.write(b": ping\n\n")
                    continue
                if batch is None:
                    break
                await resp.write(b"event: sessions\ndata: " + json.dumps(batch).encode() + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            unsubscribe()
            self._streams.discard(queue)
        return resp

    # -- mailboxes and messages -----------------------------------------------------------------
    def _user(self, request: web.Request) -> str:
        user = request.match_info["user"]
        if self.store is None or user not in self.users() or not self.access.may_see_user(request["viewer"], user):
            raise web.HTTPNotFound(text=json.dumps({"error": "no such user"}), content_type="application/json")
        return user

    async def mailboxes(self, request: web.Request) -> web.Response:
        if self.store is None:
            return web.json_response([])
        users = [u for u in self.users() if self.access.may_see_user(request["viewer"], u)]
        return web.json_response(await asyncio.to_thread(self._mailboxes, users))

    def _mailboxes(self, users: list[str]) -> list[dict]:
        out = []
        for user in users:
            try:
                names = self.store.list_mailboxes(user)
            except Exception:  # noqa: BLE001 - a user without a Maildir yet
                continue
            for name in names:
                try:
                    count = len(self.store.mailbox(user, name).messages())
                except Exception:  # noqa: BLE001
                    continue
                out.append({"user": user, "mailbox": name, "messages": count})
        return out

    async def messages(self, request: web.Request) -> web.Response:
        user = self._user(request)
        mailbox = request.query.get("mailbox", "INBOX")
        return web.json_response(await asyncio.to_thread(self._listing, user, mailbox))

    def _listing(self, user: str, mailbox: str) -> list[dict]:
        try:
            box = self.store.mailbox(user, mailbox)
        except Exception:  # noqa: BLE001 - no such mailbox
            raise web.HTTPNotFound(text=json.dumps({"error": "no such mailbox"}), content_type="application/json")
        out = []
        for info in box.messages():
            cached = (user, mailbox, info.key)
            head = self._summaries.get(cached)
            if head is None:
                try:
                    head = msgs.summary(box.read(info.uid)[:64 * 1024])
                except (KeyError, OSError):
                    continue  # removed meanwhile
                if len(self._summaries) >= SUMMARY_CACHE:
                    self._summaries.clear()
                self._summaries[cached] = head
            out.append({"uid": info.uid, "key": info.key, "size": info.size, "flags": sorted(info.flags),
                        "internaldate": info.internaldate, **head})
        return out

    def _read(self, request: web.Request) -> tuple[str, str, int, bytes, object]:
        user = self._user(request)
        mailbox = request.query.get("mailbox", "INBOX")
        try:
            uid = int(request.match_info["uid"])
            box = self.store.mailbox(user, mailbox)
            return user, mailbox, uid, box.read(uid), box.get(uid)
        except (ValueError, KeyError, OSError, Exception):  # noqa: BLE001 - every failure is "not found"
            raise web.HTTPNotFound(text=json.dumps({"error": "no such message"}), content_type="application/json")

    async def message(self, request: web.Request) -> web.Response:
        user, mailbox, uid, raw, info = await asyncio.to_thread(self._read, request)
        data = await asyncio.to_thread(msgs.explain, raw, request["lang"])
        life = []
        for entry in self.feed.life_of(user, mailbox, uid):
            summary = self.feed.sessions.get(entry.session)
            if summary is None or not self.access.may_see_session(request["viewer"], summary.owners()):
                continue
            life.append({"session": entry.session, "seq": entry.seq, "t": entry.t, "protocol": entry.protocol,
                         "verb": entry.verb, "action": entry.label, "started": summary.started,
                         "client": summary.client, "user": summary.user})
        data.update({"user": user, "mailbox": mailbox, "uid": uid, "key": info.key, "flags": sorted(info.flags),
                     "internaldate": info.internaldate, "life": life})
        return web.json_response(data)

    async def raw(self, request: web.Request) -> web.Response:
        *_, raw, _info = await asyncio.to_thread(self._read, request)
        return web.Response(body=raw, content_type="text/plain", charset="utf-8",
                            headers={"Content-Security-Policy": PART_CSP})

    async def html_part(self, request: web.Request) -> web.Response:
        *_, raw, _info = await asyncio.to_thread(self._read, request)
        safe = await asyncio.to_thread(msgs.safe_html, raw)
        if safe is None:
            raise web.HTTPNotFound()
        page = f"<!DOCTYPE html><html><head><meta charset=utf-8></head><body>{safe}</body></html>"
        return web.Response(text=page, content_type="text/html", headers={"Content-Security-Policy": PART_CSP})


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _secure(headers) -> None:
    headers.setdefault("Content-Security-Policy", APP_CSP)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers.setdefault("Cache-Control", "no-store")


def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


async def start_web(feed: WebFeed, access: Access, host: str, port: int, **kw) -> WebView:
    view = WebView(feed, access, **kw)
    await view.start(host, port)
    return view

