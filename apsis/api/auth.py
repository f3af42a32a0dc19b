"""Tokens and roles (SPEC §1.11): read < operate < admin.

No tokens configured means the API is open (the daemon then refuses a non-loopback
bind unless told `--insecure`). Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping
from urllib.parse import unquote_plus

from starlette.requests import HTTPConnection

from .errors import ApiError

ROLES = ("read", "operate", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}


class Authorizer:
    def __init__(self, tokens: Mapping[str, str]) -> None:
        # Bytes once, so each request compares bytes with bytes in constant time.
        self._tokens = [(token.encode(), role) for token, role in tokens.items()]

    @property
    def open(self) -> bool:
        return not self._tokens

    def role_of(self, token: str) -> str | None:
        given = token.encode()
        found = None
        for known, role in self._tokens:  # no early exit: the time says nothing
            if hmac.compare_digest(known, given):
                found = role
        return found

    def check(self, conn: HTTPConnection, need: str, *, allow_query: bool = False) -> None:
        """Raises 401 (no or unknown token) or 403 (role too low); returns if allowed."""
        if self.open:
            return
        token = _bearer(conn.headers.get("authorization"))
        if token is None and allow_query:
            token = conn.query_params.get("token")
        if not token:
            raise ApiError(401, "unauthorized", "this API needs a token: send "
                           "'Authorization: Bearer TOKEN' (apsis --token, or APSIS_TOKEN)",
                           {"WWW-Authenticate": 'Bearer realm="apsis"'})
        role = self.role_of(token)
        if role is None:
            raise ApiError(401, "unauthorized", "unknown token",
                           {"WWW-Authenticate": 'Bearer realm="apsis", error="invalid_token"'})
        if _RANK[role] < _RANK[need]:
            raise ApiError(403, "forbidden", f"this needs the {need} role; the token has {role}")


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


_QUERY = re.compile(r"\?([^\s\"'#]*)")


def redact_query_tokens(text: str) -> str:
    """`text` with the value of each `token` query parameter masked.

    By the parameter's decoded name, as the server reads it: `?%74oken=...` is a
    token too, and a match on the literal `token=` let it into the logs.
    """
    def mask(query: re.Match[str]) -> str:
        pairs = query.group(1).split("&")
        for i, pair in enumerate(pairs):
            name, eq, _ = pair.partition("=")
            if eq and unquote_plus(name) == "token":
                pairs[i] = f"{name}=***"
        return "?" + "&".join(pairs)

    return _QUERY.sub(mask, text)


class RedactTokens(logging.Filter):
    """Masks tokens in query strings in log records: uvicorn logs websocket paths with
    their query, and a browser's websocket can only send its token there."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_query_tokens(a) if isinstance(a, str) and "?" in a else a
                                for a in record.args)
        if isinstance(record.msg, str) and "?" in record.msg:
            record.msg = redact_query_tokens(record.msg)
        return True


def redact_tokens_in_logs() -> None:
    for name in ("uvicorn.error", "uvicorn.access", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
