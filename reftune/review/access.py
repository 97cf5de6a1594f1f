"""Who is asking: the reviewer behind each request.

One person on loopback (no --reviewers) is the default reviewer and needs no token. A team's
reviewers each open a private link `/?token=SECRET`: the app answers it with a cookie holding the
token and a redirect to the same page without it (so the token leaves the address bar, the history
and any log line), then knows them by the cookie. A request with neither a valid token nor a valid
cookie gets 403, whatever its route (the static files included).

>>> split_token(b"filter=wrong&token=abc&page=2")
('abc', b'filter=wrong&page=2')
>>> split_token(b"page=2")
(None, b'page=2')
"""
from __future__ import annotations

import logging
import re
import secrets
from urllib.parse import parse_qsl, urlencode

from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse, Response

from reftune.review.journal import DEFAULT_REVIEWER

REVIEWER_KEY = "reftune.reviewer"  # the ASGI scope key the routes read the reviewer from
TOKEN_PARAM = "token"
HIDDEN = re.compile(r"(token=)[^&\s\"']+")


def split_token(query: bytes) -> tuple[str | None, bytes]:
    """The query string's token (None without one) and the query string without it (as it came,
    when it holds none)."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    tokens = [value for key, value in pairs if key == TOKEN_PARAM]
    if not tokens:
        return None, query
    rest = urlencode([(key, value) for key, value in pairs if key != TOKEN_PARAM])
    return tokens[-1], rest.encode("latin-1")


def cookie_name(scope) -> str:
    """Cookies are shared by every port of a host: the port in the name keeps two review servers on
    one machine (and their reviewers) apart."""
    server = scope.get("server") or ("", 0)
    return f"reftune_review_{server[1]}"


class ReviewerAccess:
    """ASGI middleware: puts the reviewer's name in the scope, or answers 403. tokens: secret ->
    reviewer name; None for one person on loopback (every request is DEFAULT_REVIEWER's)."""

    def __init__(self, app, tokens: dict[str, str] | None):
        self.app, self.tokens = app, tokens

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not self.tokens:
            scope[REVIEWER_KEY] = DEFAULT_REVIEWER
            return await self.app(scope, receive, send)
        given, rest = split_token(scope.get("query_string", b""))
        # uvicorn's access log prints this same scope's query string: the token is gone from it first
        scope["query_string"] = rest
        if given is not None:
            response = self.sign_in(scope, given, rest)
        else:
            cookies = cookie_parser(dict(scope["headers"]).get(b"cookie", b"").decode("latin-1"))
            name = self.reviewer(cookies.get(cookie_name(scope), ""))
            if name:
                scope[REVIEWER_KEY] = name
                return await self.app(scope, receive, send)
            response = forbidden()
        await response(scope, receive, send)

    def reviewer(self, token: str) -> str | None:
        """The name a token stands for (compared in constant time), None for any other string."""
        given = token.encode("utf-8", errors="replace")
        return next((name for secret, name in self.tokens.items() if secrets.compare_digest(secret.encode(), given)),
                    None)

    def sign_in(self, scope, token: str, rest: bytes) -> Response:
        """A link's token: the cookie, and the same page again without the token in its address."""
        if not self.reviewer(token):
            return forbidden()
        path = scope.get("raw_path") or scope["path"].encode("utf-8")
        target = path.decode("latin-1") + (f"?{rest.decode('latin-1')}" if rest else "")
        response = Response(status_code=303, headers={"location": target})
        response.set_cookie(cookie_name(scope), token, httponly=True, samesite="lax", path="/")
        return response


def forbidden() -> Response:
    return HTMLResponse("forbidden: open reftune review with your own link (the command printed one per reviewer)",
                        403, headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})


class HideTokens(logging.Filter):
    """A second guard for the logs: any `token=...` left in a log line's text shows as `token=[hidden]`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(HIDDEN.sub(r"\1[hidden]", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = HIDDEN.sub(r"\1[hidden]", record.msg)
        return True
