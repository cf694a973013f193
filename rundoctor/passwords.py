"""Database passwords kept out of messages, printed commands, logs and reports.

A queue URL may carry a password in two places: the user part (``postgresql://u:pw@host/db``)
and libpq's query parameters (``?password=pw``, and ``sslpassword=`` for the client key),
either one percent-encoded (``p%40ss`` for ``p@ss``). :func:`redact` is the one function
every package hides them with:

- the URL itself, with the password replaced by ``***`` (what a message shows), or left out
  (``drop=True``: what a printed command that is meant to be run again shows; the password
  then comes from ``PGPASSWORD``);
- any other text, such as a driver's error message that quotes the URL back (libpq repeats
  the part of a connection string it cannot parse), with every password of ``url`` in it, as
  written or decoded, replaced by ``***``.

It parses nothing it does not have to: a URL that :func:`urllib.parse.urlsplit` refuses
(``Invalid IPv6 URL``) still has its password hidden.

>>> redact("postgresql://rd:s3cret@db:5432/queue?password=s3cret&sslmode=require")
'postgresql://rd:***@db:5432/queue?password=***&sslmode=require'
>>> redact("postgresql://rd:s3cret@db:5432/queue?password=s3cret&sslmode=require", drop=True)
'postgresql://rd@db:5432/queue?sslmode=require'
>>> redact('invalid URI query parameter: "password=p@ss"', "postgresql:///q?password=p%40ss")
'invalid URI query parameter: "password=***"'
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus

__all__ = ["MASK", "redact"]

#: What a hidden password is shown as.
MASK = "***"

#: libpq's ``password=`` parameter (and ``sslpassword=``, the client key's): in a URL's query
#: (``?``/``&``) or a keyword/value connection string (``host=db password=pw``).
_PARAMETER = re.compile(r"(?i)(?:(?<=[?&\s])|^)((?:ssl)?password)=([^&#\s]*)")
#: The authority of a URL: what follows ``scheme://`` up to the path, query or fragment.
_AUTHORITY = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)")


def redact(text: str, url: str | None = None, *, drop: bool = False) -> str:
    """``text`` with the passwords of ``url`` hidden; ``url`` defaults to ``text`` itself.

    When ``text`` is the URL, each password is replaced by ``***`` where it stands, or left
    out with its ``:`` or its ``password=`` parameter when ``drop``; a text without a password
    is returned as it is. Otherwise every password ``url`` holds is replaced by ``***``
    wherever it occurs in ``text``, longest first, as written and percent-decoded.

    >>> redact("postgresql://postgres@127.0.0.1:5432/test")
    'postgresql://postgres@127.0.0.1:5432/test'
    >>> redact("postgresql://u:p%40ss@db/q"), redact("postgresql://u:pw@db/q", drop=True)
    ('postgresql://u:***@db/q', 'postgresql://u@db/q')
    >>> redact("postgresql://u@db/q?password=pw", drop=True), redact("/var/queue.db")
    ('postgresql://u@db/q', '/var/queue.db')
    >>> redact("connection to p@ss refused", "postgresql://u:p%40ss@db/q")
    'connection to *** refused'
    """
    if url is not None and url != text:
        for secret in _passwords(url):
            text = text.replace(secret, MASK)
        return text
    found = _AUTHORITY.match(text)
    if found is not None and "@" in found.group(2):
        userinfo, _, host = found.group(2).rpartition("@")
        user, colon, _password = userinfo.partition(":")
        if colon:
            shown = f"{user}@" if drop else f"{user}:{MASK}@"
            text = found.group(1) + shown + host + text[found.end() :]
    if not drop:
        return _PARAMETER.sub(rf"\1={MASK}", text)
    head, sep, query = text.partition("?")
    if not sep:  # a keyword/value connection string: there is no parameter to leave out
        return _PARAMETER.sub(rf"\1={MASK}", text)
    kept = [p for p in query.split("&") if not _PARAMETER.fullmatch(p)]
    return head + ("?" + "&".join(kept) if kept else "")


def _passwords(url: str) -> list[str]:
    """Every password ``url`` holds, as written and percent-decoded, longest first.

    >>> _passwords("postgresql://u:a%2Bb@db/q?password=c+d")
    ['a%2Bb', 'a+b', 'c d', 'c+d']
    """
    raw = [m.group(2) for m in _PARAMETER.finditer(url)]
    found = _AUTHORITY.match(url)
    if found is not None and "@" in found.group(2):
        userinfo = found.group(2).rpartition("@")[0]
        if ":" in userinfo:
            raw.append(userinfo.partition(":")[2])
    decoded = [unquote(p) for p in raw] + [unquote_plus(p) for p in raw]
    return sorted({p for p in [*raw, *decoded] if p}, key=lambda p: (-len(p), p))
