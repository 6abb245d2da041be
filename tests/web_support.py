"""Helpers for the web view's tests: a lab with its web view, plain HTTP, and sample mail."""

from __future__ import annotations

import base64
import json
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage

XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def start_web(runner, admin: str | None = None):
    """Start the web view of a ``conftest.LabRunner`` on its loop; returns the WebView."""
    from mailtrace.web import WebSettings, start_for_lab

    feed = runner.web_feed
    settings = WebSettings("127.0.0.1", 0, admin=admin, feed=feed)
    view = runner.call(start_for_lab(settings, runner.lab))
    runner.web_view = view
    return view


def stop_web(runner) -> None:
    view = getattr(runner, "web_view", None)
    if view is not None:
        runner.call(view.stop())
        runner.web_view = None


def make_web_lab(lab_factory, admin: str | None = None, users: dict | None = None):
    from mailtrace.web.feed import WebFeed

    feed = WebFeed()
    runner = lab_factory(("smtp", "pop3", "imap"), tls=False, sinks=(feed,), users=users)
    runner.web_feed = feed
    start_web(runner, admin)
    return runner


def get(url: str, auth: tuple[str, str] | None = None, raw: bool = False):
    """GET with urllib: (status, headers, body as JSON or bytes)."""
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            body = resp.read()
            status, headers = resp.status, resp.headers
    except urllib.error.HTTPError as exc:
        body, status, headers = exc.read(), exc.code, exc.headers
    if raw or not headers.get("Content-Type", "").startswith("application/json"):
        return status, headers, body
    return status, headers, json.loads(body)


def send_mail(port: int, sender: str, to: str, subject: str, text: str = "Hello", html: str | None = None,
              login: tuple[str, str] | None = None) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        if login:
            smtp.login(*login)
        smtp.send_message(msg)
