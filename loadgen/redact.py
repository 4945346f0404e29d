"""What may be shown of credentials: rules for masking them in every report, log and message.

A header is taken as credential-bearing by its name, so a new scheme (X-Api-Key, X-Auth-Token,
Cookie) is masked without being listed; a false positive only hides a harmless value. URLs lose
their user:password and the values of secret-named query parameters (?token=, ?api_key=).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote_plus

MASK = "***"
_SECRET_WORDS = ("auth", "token", "key", "secret", "cookie", "password", "passwd", "credential", "session", "signature")


def is_secret_header(name: str) -> bool:
    """Whether a header (or query parameter) of this name may carry a credential."""
    lowered = name.strip().lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers with credential-bearing values masked, names and order kept."""
    return {name: MASK if is_secret_header(name) else value for name, value in headers.items()}


def redact_url(url: str) -> str:
    """`url` (with or without a scheme) with user:password and secret query values masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        authority = MASK + authority[authority.rindex("@") :]
    path, qmark, query = tail.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        fields = []
        for field in query.split("&"):
            name, eq, value = field.partition("=")
            fields.append(f"{name}={MASK}" if eq and is_secret_header(unquote_plus(name)) else field)
        tail = path + "?" + "&".join(fields) + hash_ + fragment
    return f"{scheme}{sep}{authority}{tail}"
