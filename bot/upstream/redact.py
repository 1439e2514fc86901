"""Taking secrets out of text before anyone sees it: the API key, any 8+ character piece of it, and key-like
query parameters of URLs (signed CDN links, `?key=…`).

Every message, error, log line or `repr` that may carry text from a gateway goes through `redact` first, and
only then is cut to length or parsed (a cut made first could leave a prefix of the key behind).
`publishable_url` says whether a URL may be shown to members as a link.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import parse_qsl, urlsplit

MASK = "**********"
MIN_FRAGMENT = 8  # a piece of a secret this long or longer is a leak

# Query parameters whose value is a credential or a signature (AWS, GCS, Azure SAS, CloudFront, OAuth, …).
SECRET_PARAMS = frozenset(
    {
        "key",
        "api_key",
        "apikey",
        "api-key",
        "token",
        "access_token",
        "auth",
        "authorization",
        "auth_token",
        "id_token",
        "refresh_token",
        "session_token",
        "client_secret",
        "secret",
        "password",
        "passwd",
        "sig",
        "signature",
        "policy",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "x-oss-signature",
        "x-oss-credential",
        "x-oss-security-token",
    }
)
SECRET_PARAM = re.compile(
    r"([?&;](?:" + "|".join(re.escape(name) for name in sorted(SECRET_PARAMS, key=len, reverse=True)) + r")=)"
    r"([^&;#\s\"'<>()\[\]`]*)",
    re.IGNORECASE,
)


@lru_cache(maxsize=16)
def _fragment_pattern(secret: str) -> re.Pattern[str] | None:
    """Finds the start of every MIN_FRAGMENT-long piece of `secret` in a text, overlapping ones included."""
    if len(secret) < MIN_FRAGMENT:
        return None
    pieces = {secret[i : i + MIN_FRAGMENT] for i in range(len(secret) - MIN_FRAGMENT + 1)}
    return re.compile("(?=(?:" + "|".join(re.escape(p) for p in sorted(pieces)) + "))")


def redact_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret, and every piece of one at least MIN_FRAGMENT characters long, masked."""
    if not text:
        return text
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
        pattern = _fragment_pattern(secret)
        if pattern is None:
            continue
        spans: list[list[int]] = []
        for match in pattern.finditer(text):
            start, end = match.start(), match.start() + MIN_FRAGMENT
            if spans and start <= spans[-1][1]:
                spans[-1][1] = end
            else:
                spans.append([start, end])
        if spans:
            # A fragment is a piece of the secret, so it can be extended to the longest run the text shares
            # with it; the 8-character windows above already cover that run, overlapping.
            out: list[str] = []
            position = 0
            for start, end in spans:
                out.append(text[position:start])
                out.append(MASK)
                position = end
            out.append(text[position:])
            text = "".join(out)
    return text


def redact_query(text: str) -> str:
    """`text` with the value of every key-like query parameter (`?sig=…`, `&X-Amz-Signature=…`) masked."""
    if "=" not in text:
        return text
    return SECRET_PARAM.sub(lambda m: m.group(1) + MASK if m.group(2) else m.group(0), text)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Everything secret out of `text`: the given secrets (whole or in 8+ character pieces) and key-like query
    parameters of any URL in it. Use it before cutting the text to length or parsing it."""
    return redact_query(redact_secrets(text, secrets))


def has_secret_params(url: str) -> bool:
    try:
        query = urlsplit(url).query
    except ValueError:
        return True
    return any(name.lower() in SECRET_PARAMS for name, _ in parse_qsl(query, keep_blank_values=True))


def publishable_url(url: str | None, secrets: Iterable[str | None] = ()) -> str | None:
    """`url` when it may be shown to members as a link; None when it carries a credential: a key-like query
    parameter, user:password, the API key or a piece of it (the caller then attaches the file or says the link
    is unavailable)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    if has_secret_params(url) or redact_secrets(url, secrets) != url:
        return None
    return url


__all__ = [
    "MASK",
    "MIN_FRAGMENT",
    "SECRET_PARAMS",
    "has_secret_params",
    "publishable_url",
    "redact",
    "redact_query",
    "redact_secrets",
]
