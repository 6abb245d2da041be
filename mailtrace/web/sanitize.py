"""HTML parts made inert before the web view shows them.

An HTML part is someone else's markup: it may carry scripts, event handlers
(``onerror=``), forms, frames, remote images that tell the sender the mail was read, and
CSS that loads from the network.  Two walls stand between it and the viewer:

1. this allowlist sanitizer: only plain formatting tags and a few harmless attributes are
   kept; ``script``, ``style``, ``iframe``, ``object`` ... are dropped *with their content*;
   every ``on*`` attribute, every URL but ``http(s):``/``mailto:`` links and ``cid:``/
   ``data:image`` pictures is dropped; everything else is re-escaped by us;
2. the page that shows it is served with ``Content-Security-Policy: default-src 'none';
   sandbox`` and sits in an ``<iframe sandbox>`` without ``allow-scripts``, so even markup
   that slipped through could run nothing and load nothing.

The parser is the standard library's ``html.parser`` (tokenizing only; the decisions are here).
"""

from __future__ import annotations

import html
from html.parser import HTMLParser

ALLOWED_TAGS = frozenset("""a abbr b blockquote br caption center cite code col colgroup dd del div dl dt em
font h1 h2 h3 h4 h5 h6 hr i img ins kbd li ol p pre q s small span strike strong sub sup table tbody td
tfoot th thead tr tt u ul""".split())
VOID_TAGS = frozenset({"br", "hr", "img", "col"})
DROP_WITH_CONTENT = frozenset({"script", "style", "iframe", "object", "embed", "applet", "noscript", "template",
                               "svg", "math", "title", "head", "frameset", "frame", "textarea", "select", "xmp"})
ALLOWED_ATTRS = frozenset({"href", "src", "alt", "title", "width", "height", "align", "valign", "colspan",
                           "rowspan", "color", "face", "size", "dir", "lang", "border", "cellpadding",
                           "cellspacing"})
LINK_SCHEMES = ("http:", "https:", "mailto:")
IMAGE_SCHEMES = ("cid:", "data:image/png", "data:image/gif", "data:image/jpeg", "data:image/webp")


def _url_ok(attr: str, value: str) -> bool:
    v = "".join(value.split()).lower()  # "java\tscript:" is still javascript:
    if attr == "href":
        return v.startswith(LINK_SCHEMES) or v.startswith("#")
    return v.startswith(IMAGE_SCHEMES)  # src: no remote loads (web bugs)


class _Sanitizer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0  # inside a dropped element

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROP_WITH_CONTENT:
            if tag not in VOID_TAGS:
                self.skip += 1
            return
        if self.skip or tag not in ALLOWED_TAGS:
            return
        kept = []
        for name, value in attrs:
            name = name.lower()
            if name not in ALLOWED_ATTRS or value is None:
                continue
            if name in ("href", "src") and not _url_ok(name, value):
                continue
            kept.append(f' {name}="{html.escape(value, quote=True)}"')
        if tag == "a":
            kept.append(' rel="noopener noreferrer" target="_blank"')
        self.out.append(f"<{tag}{''.join(kept)}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROP_WITH_CONTENT:
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in DROP_WITH_CONTENT:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip or tag not in ALLOWED_TAGS or tag in VOID_TAGS:
            return
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(html.escape(data, quote=False))


def sanitize_html(markup: str) -> str:
    parser = _Sanitizer()
    parser.feed(markup)
    parser.close()
    return "".join(parser.out)
