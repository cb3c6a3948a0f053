"""Signing a browser in to the status page: a token once, then a session cookie.

`POST /login` takes a principal's token from a form and sets `baton_session`, an
HttpOnly, SameSite=Strict cookie (Secure over HTTPS) naming a session kept in Redis
(`api.session_ttl`, 12 h by default), so every API process knows it and signing out
ends it everywhere. Redis keeps the session under the SHA-256 of the cookie, with the
principal's *name*: its role is read from the config at each request. Each session
has a CSRF token that state-changing requests made with the cookie must send back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from redis.asyncio import Redis

from broker.ingest.auth import Principal
from broker.state.keys import Keys
from broker.state.util import text

COOKIE = "baton_session"
router = APIRouter(tags=["session"], include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Session:
    principal: str
    csrf: str

    def csrf_matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.csrf.encode())


class SessionStore:
    def __init__(self, redis: Redis, keys: Keys, ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s

    def _key(self, cookie: str) -> str:
        return self.keys.session(hashlib.sha256(cookie.encode()).hexdigest())

    async def create(self, principal: str) -> tuple[str, Session]:
        cookie, session = secrets.token_urlsafe(32), Session(principal, secrets.token_urlsafe(24))
        record = {"principal": principal, "csrf": session.csrf,
                  "created_at": datetime.now(UTC).isoformat()}  # fmt: skip
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(cookie), mapping=record)  # type: ignore[arg-type]
            pipe.expire(self._key(cookie), self.ttl_s)
            await pipe.execute()
        return cookie, session

    async def get(self, cookie: str) -> Session | None:
        if not cookie or len(cookie) > 128:
            return None
        raw: Any = await self.redis.hmget(self._key(cookie), "principal", "csrf")
        if raw[0] is None or raw[1] is None:
            return None
        return Session(text(raw[0]), text(raw[1]))

    async def end(self, cookie: str) -> None:
        await self.redis.delete(self._key(cookie))


def cross_site(headers: Mapping[str, str]) -> str | None:
    """Why a request that changes state looks sent by another site, or None."""
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return "a state-changing request from another site"
    origin = headers.get("origin")
    if origin and origin.split("://", 1)[-1] != headers.get("host", ""):
        return f"Origin {origin!r} is not this host"
    return None


def _safe_next(value: str | None) -> str:
    """Only a path on this site: no `//host` or `https://host`, so no open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > 16 * 1024:
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode("latin-1")).items()}


@router.get("/login", response_class=HTMLResponse, openapi_extra={"x-baton-role": "public"})
async def login_page(request: Request) -> HTMLResponse:
    return HTMLResponse(_login(_safe_next(request.query_params.get("next")), ""))


@router.post("/login", openapi_extra={"x-baton-role": "public"})
async def login(request: Request) -> Response:
    """A principal's token in, a session cookie out; a producer's token does not sign in."""
    if (reason := cross_site(request.headers)) is not None:
        return HTMLResponse(_login("/", f"Refused: {reason}."), 403)
    form = await _form(request)
    target = _safe_next(form.get("next"))
    runtime = request.app.state.runtime
    who = runtime.auth.who(f"Bearer {form.get('token', '')}")
    audit = request.app.state.audit
    if not isinstance(who, Principal):
        await audit.record("anonymous", "session.sign_in", "", "refused",
                           via="http", remote=_remote(request))  # fmt: skip
        return HTMLResponse(_login(target, "That token is not a known principal's."), 401)
    cookie, _ = await request.app.state.sessions.create(who.name)
    await audit.record(who.name, "session.sign_in", "", "ok", via="http", remote=_remote(request))
    answer = RedirectResponse(target, status_code=303)
    answer.set_cookie(
        COOKIE,
        cookie,
        max_age=request.app.state.sessions.ttl_s,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return answer


@router.post("/logout", openapi_extra={"x-baton-role": "viewer"})
async def logout(request: Request) -> Response:
    cookie = request.cookies.get(COOKIE)
    if cookie:
        await request.app.state.sessions.end(cookie)
    principal = getattr(request.state, "principal", None)
    name = principal.name if principal is not None else "anonymous"
    await request.app.state.audit.record(name, "session.sign_out", "", "ok", via="http",
                                         remote=_remote(request))  # fmt: skip
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return answer


def _remote(request: Request) -> str:
    return request.client.host if request.client else ""


def _login(target: str, error: str) -> str:
    note = f'<p class="error">{escape(error)}</p>' if error else ""
    return _PAGE.format(next=escape(target, quote=True), note=note)


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Baton: sign in</title>
<style>body{{font-family:sans-serif;margin:2em}}.error{{color:#b00}}</style></head>
<body><h1>Baton</h1>{note}<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label>Token <input type="password" name="token" autocomplete="current-password" autofocus>
</label> <button type="submit">Sign in</button></form>
<p>A principal's token from <code>principals:</code> in Baton's config.</p></body></html>"""
