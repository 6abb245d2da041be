"""The proxy's own one-line messages, as data in ``knowledge/common.toml`` ``[proxy]`` (English and
Spanish): what the TLS marks say and how decoded credentials read."""

from __future__ import annotations

from mailtrace import knowledge

KEYS = ("tls-intercepted", "tls-relayed", "tls-implicit", "decoded-plain", "decoded-plain-authz",
        "decoded-login-user", "decoded-login-password", "decoded-password", "decoded-login", "not-base64",
        "not-plain", "redacted-payload")


def message(key: str, lang: str = "en", **fields: str) -> str:
    return knowledge.phrase("proxy", key, lang, **fields)
