"""Who may publish what: producer tokens with dataset (and partition) scopes.

A producer in the config holds a bearer token (`token: ${VAR}`) or only its SHA-256
(`token_sha256: <hex>`, from `baton token hash`), so the config at rest need not hold
the secret; either way Baton keeps only the hash in memory and never logs a token.
Scopes are globs (`warehouse.*`); a request is answered 401 without a known token and
403, naming the dataset, when any of its events is outside the token's scope — the
whole request, so a batch is never half-written.

A producer with `hmac_secret` signs instead, as Baton signs its own webhooks:
`X-Baton-Timestamp: <unix seconds>` and `X-Baton-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>.<raw body>">` (the timestamp is signed too, so it cannot be moved), and
`X-Baton-Producer: <name>`. A timestamp outside the window (`api.signature_window`) or a
signature already used within it (a replay) is refused.

Principals read and operate Baton, by role, each role including the ones before it:

    viewer     every read: the API's GETs, the status page, /metrics, the OpenAPI
    operator   + backfills, dead-letter retries, reloads, pausing and resuming contracts
    admin      everything, publishing any dataset included

Producers only publish. A token names one principal or one producer, never both.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from broker.core.events import Event
from broker.core.settings import PrincipalSettings, ProducerSettings, Role

ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class AuthError(Exception):
    """401: the request does not prove which producer sent it."""


class Forbidden(AuthError):
    """403: the request proves who sent it, and they may not do this."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Someone who reads or operates Baton, with one role."""

    name: str
    role: Role

    def may(self, needed: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(needed)


# Marks a signature as used until it expires; False if it was used already.
FirstUse = Callable[[str, int], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Producer:
    name: str
    datasets: tuple[str, ...]
    partitions: str | None

    def refusal(self, event: Event) -> str | None:
        """Why this producer may not publish `event`, or None if it may."""
        if not any(fnmatchcase(event.dataset, glob) for glob in self.datasets):
            scope = ", ".join(self.datasets)
            return f"dataset {event.dataset!r} is outside producer {self.name!r}'s scope ({scope})"
        if self.partitions is not None and not fnmatchcase(event.partition or "", self.partitions):
            return (
                f"partition {event.partition!r} of {event.dataset!r} does not match producer "
                f"{self.name!r}'s partition pattern {self.partitions!r}"
            )
        return None


class Authenticator:
    """Bearer token -> producer, by the token's SHA-256."""

    def __init__(
        self,
        producers: Sequence[ProducerSettings],
        window_s: int = 300,
        principals: Sequence[PrincipalSettings] = (),
    ) -> None:
        self._by_hash: dict[str, Producer] = {}
        self._signing: dict[str, tuple[str, Producer]] = {}
        self._principals: dict[str, Principal] = {}
        self.window_s = window_s
        for p in producers:
            producer = Producer(p.name, tuple(p.datasets), p.partitions)
            if p.hmac_secret is not None:
                self._signing[p.name] = (p.hmac_secret.get_secret_value(), producer)
                continue
            digest = p.token_digest()
            assert digest is not None  # the settings model requires one credential
            self._by_hash[digest] = producer
        for person in principals:
            digest = person.token_digest()
            assert digest is not None  # the settings model requires one token
            self._principals[digest] = Principal(person.name, person.role)
        self._named = {p.name: p for p in self._principals.values()}

    @property
    def required(self) -> bool:
        """Any credential configured: from then on every endpoint but the health checks
        needs one (deny by default)."""
        return bool(self._by_hash or self._signing or self._principals)

    def who(self, authorization: str | None) -> Producer | Principal | None:
        """The producer or principal a bearer `Authorization` header names, or None."""
        token = _bearer(authorization)
        if token is None:
            return None
        digest = token_hash(token)
        return self._principals.get(digest) or self._by_hash.get(digest)

    def principal_named(self, name: str) -> Principal | None:
        """The principal of that name in the config running now (sessions store names,
        so a role changed or a principal removed takes effect at once)."""
        return self._named.get(name)

    async def authenticate(
        self, headers: Mapping[str, str], body: bytes, first_use: FirstUse
    ) -> Producer:
        """The producer a request speaks for, by bearer token or by signature."""
        if "x-baton-signature" in headers:
            return await self._signed(headers, body, first_use)
        authorization = headers.get("authorization")
        found = self.who(authorization)
        if isinstance(found, Principal):
            if not found.may("admin"):
                raise Forbidden(
                    f"principal {found.name!r} is a {found.role}; publishing needs a "
                    "producer token or the admin role"
                )
            return Producer(found.name, ("*",), None)
        if found is None:
            raise AuthError(
                "the token is not a known producer's"
                if authorization
                else "a producer token is required: Authorization: Bearer <token> "
                "(or a signed request: X-Baton-Signature)"
            )
        return found

    async def _signed(
        self, headers: Mapping[str, str], body: bytes, first_use: FirstUse
    ) -> Producer:
        name = headers.get("x-baton-producer", "")
        if name not in self._signing:
            raise AuthError(f"X-Baton-Producer: {name!r} is not a producer that signs")
        secret, producer = self._signing[name]
        stamp = headers.get("x-baton-timestamp", "")
        # Header values arrive decoded as latin-1: '²' is a digit to str.isdigit.
        if (
            not (stamp.isascii() and stamp.isdigit())
            or abs(time.time() - int(stamp)) > self.window_s
        ):
            raise AuthError(
                f"X-Baton-Timestamp: {stamp!r} is missing or more than {self.window_s}s from now"
            )
        given = headers["x-baton-signature"]
        expected = signature(secret, stamp, body)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise AuthError("X-Baton-Signature does not match the body and timestamp")
        if not await first_use(given, self.window_s * 2):
            raise AuthError("X-Baton-Signature was used before: a replayed request")
        return producer

    @staticmethod
    def refusals(producer: Producer, events: Sequence[Event]) -> list[tuple[str, str]]:
        """(field, message) for every event the producer may not publish."""
        out = []
        for i, event in enumerate(events):
            reason = producer.refusal(event)
            if reason is not None:
                out.append((f"events[{i}].dataset" if len(events) > 1 else "dataset", reason))
        return out


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
