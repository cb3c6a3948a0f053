"""Who may call which endpoint: deny by default once any credential is configured.

Each route says what it needs in its OpenAPI extension `x-baton-role` (`role(...)`):

    public     /healthz, /readyz, the sign-in page: anyone
    publish    the ways events come in; they check producers themselves (`answer`)
    viewer     the default for GET and HEAD
    operator   backfills, dead-letter retries, reloads, pause and resume
    admin      the default for every other method, and anything unrouted

`AccessControl` is an ASGI middleware in front of the whole app, so a path no route
serves is refused like any other (a 404 is not an answer to the unauthenticated). A
request proves who sent it with `Authorization: Bearer <token>` or the session cookie
the sign-in page sets; a cookie-borne request that changes state must also carry the
session's CSRF token (header `X-CSRF-Token`, or a `csrf_token` form field) and must
not come from another site. With no credential configured (loopback only, see
`broker.serve.check_exposure`) nobody is asked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import parse_qs, quote

from starlette.routing import BaseRoute

from broker.api.problems import PROBLEM, problem_body
from broker.api.sessions import COOKIE, Session, SessionStore, cross_site
from broker.core.settings import Role
from broker.ingest.auth import Authenticator, Principal

Need = Literal["public", "publish", "viewer", "operator", "admin"]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

ROLE_KEY = "x-baton-role"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_FORM = "application/x-www-form-urlencoded"
_MAX_FORM = 64 * 1024


def role(need: Need, **extra: Any) -> dict[str, Any]:
    """`openapi_extra` for a route: what it needs, and any other extra given."""
    return {ROLE_KEY: need, **extra}


def default_need(method: str) -> Need:
    return "viewer" if method in ("GET", "HEAD") else "admin"


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str]
    methods: frozenset[str]
    need: Need


class Policy:
    """(method, path) -> what it needs, from the routes' declarations."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._rules: list[_Rule] = []
        for route in flat(routes):
            pattern = getattr(route, "path_regex", None)
            methods = getattr(route, "methods", None) or set()
            if pattern is None:
                continue
            declared = (getattr(route, "openapi_extra", None) or {}).get(ROLE_KEY)
            for method in methods:
                need = declared or default_need(method)
                self._rules.append(_Rule(pattern, frozenset({method}), need))
        self._cached = lru_cache(maxsize=4096)(self._need)

    def need(self, method: str, path: str) -> Need:
        """What (method, path) needs; the answers of the latest paths are kept, since
        every request asks (the ways in above all)."""
        return self._cached(method, path)

    def _need(self, method: str, path: str) -> Need:
        for rule in self._rules:
            if method in rule.methods and rule.pattern.match(path):
                return rule.need
        return default_need(method)


def flat(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, those of included routers too (FastAPI includes a router lazily,
    as one route that holds it)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from flat(inner.routes)
        else:
            yield route


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    title: str
    detail: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


class AccessControl:
    """ASGI middleware: identify the caller, check the route's need, then pass on with
    `scope["state"]["principal"]` (and `["session"]` when signed in by cookie) set."""

    def __init__(
        self,
        app: App,
        auth: Callable[[], Authenticator],
        sessions: SessionStore,
        policy: Callable[[], Policy],
        public_metrics: bool = False,
    ) -> None:
        self.app = app
        self.auth = auth
        self.sessions = sessions
        self.policy = policy
        self.public_metrics = public_metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.auth().required:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        need = self.policy().need(method, path)
        # Two comparisons, not `in`: mypy narrows `need` to a Role only this way.
        if need == "public" or need == "publish" or (path == "/metrics" and self.public_metrics):  # noqa: PLR1714
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        outcome = await self._admit(scope, receive, headers, need)
        if isinstance(outcome, Refusal):
            await _refuse(send, outcome, headers, path)
            return
        await self.app(scope, outcome, send)

    async def _admit(
        self, scope: Scope, receive: Receive, headers: dict[str, str], need: Role
    ) -> Refusal | Receive:
        """The receive channel to pass on, or why the request is refused."""
        who, session = await self._identify(headers)
        if who is None:
            return _unauthenticated(headers)
        if not isinstance(who, Principal):
            return Refusal(403, "Forbidden", f"producer {who.name!r} may only publish events")
        if not who.may(need):
            return Refusal(
                403,
                "Forbidden",
                f"this needs the {need} role; principal {who.name!r} is a {who.role}",
            )
        state = scope.setdefault("state", {})
        state["principal"] = who
        if session is None or scope["method"] in _SAFE:
            state["session"] = session
            return receive
        state["session"] = session
        return await _csrf_checked(receive, headers, session)

    async def _identify(self, headers: dict[str, str]) -> tuple[Any, Session | None]:
        auth = self.auth()
        if "authorization" in headers:
            return auth.who(headers["authorization"]), None
        cookie = _cookie(headers.get("cookie", ""), COOKIE)
        if not cookie:
            return None, None
        session = await self.sessions.get(cookie)
        if session is None:
            return None, None
        return auth.principal_named(session.principal), session


async def _csrf_checked(
    receive: Receive, headers: dict[str, str], session: Session
) -> Refusal | Receive:
    """A cookie-borne request that changes state: same site, with the session's CSRF
    token in `X-CSRF-Token` or in a `csrf_token` form field (the body is read here and
    handed on unchanged)."""
    if (reason := cross_site(headers)) is not None:
        return Refusal(403, "Cross-site request", reason)
    given = headers.get("x-csrf-token")
    replay = receive
    if given is None and headers.get("content-type", "").split(";")[0].strip() == _FORM:
        body, replay = await _read_form(receive)
        given = (parse_qs(body.decode("latin-1")).get("csrf_token") or [""])[0]
    if not given or not session.csrf_matches(given):
        return Refusal(
            403,
            "CSRF token missing or wrong",
            "send the session's CSRF token in X-CSRF-Token (or a csrf_token field)",
        )
    return replay


async def _read_form(receive: Receive) -> tuple[bytes, Receive]:
    chunks, more, size = [], True, 0
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_FORM:
            break
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


def _unauthenticated(headers: dict[str, str]) -> Refusal:
    if "authorization" in headers:
        return Refusal(
            401,
            "Unauthorized",
            "the token is not a known principal's",
            ((b"www-authenticate", b'Bearer realm="baton", error="invalid_token"'),),
        )
    return Refusal(401, "Unauthorized",
                   "a token is required: Authorization: Bearer <token>, or sign in at /login",
                   ((b"www-authenticate", b'Bearer realm="baton"'),))  # fmt: skip


async def _refuse(send: Send, refusal: Refusal, headers: dict[str, str], path: str) -> None:
    """A problem body, or for a browser asking for a page without signing in, the way
    to the sign-in page."""
    if refusal.status == 401 and "text/html" in headers.get("accept", "") and path == "/":
        location = f"/login?next={quote(path)}".encode()
        await _send(send, 303, b"", [(b"location", location)], "text/plain")
        return
    body = json.dumps(problem_body(refusal.status, refusal.title, refusal.detail)).encode()
    await _send(send, refusal.status, body, list(refusal.headers), PROBLEM)


async def _send(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], media: str
) -> None:
    headers = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode()),
               *headers]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


def actor(request: Any) -> str:
    """Who made `request`, for the audit trail: the principal, or with no credentials
    configured (loopback only) `anonymous`."""
    principal = getattr(request.state, "principal", None)
    return principal.name if principal is not None else "anonymous"
