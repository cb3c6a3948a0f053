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
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from broker.events import Event
from broker.settings import ProducerSettings


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class AuthError(Exception):
    """401: the request does not prove which producer sent it."""


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

    def __init__(self, producers: Sequence[ProducerSettings], window_s: int = 300) -> None:
        self._by_hash: dict[str, Producer] = {}
        self._signing: dict[str, tuple[str, Producer]] = {}
        self.window_s = window_s
        for p in producers:
            producer = Producer(p.name, tuple(p.datasets), p.partitions)
            if p.hmac_secret is not None:
                self._signing[p.name] = (p.hmac_secret.get_secret_value(), producer)
                continue
            digest = token_hash(p.token.get_secret_value()) if p.token else p.token_sha256
            assert digest is not None  # the settings model requires one credential
            self._by_hash[digest.lower()] = producer

    @property
    def required(self) -> bool:
        return bool(self._by_hash or self._signing)

    async def authenticate(
        self, headers: Mapping[str, str], body: bytes, first_use: FirstUse
    ) -> Producer:
        """The producer a request speaks for, by bearer token or by signature."""
        if "x-baton-signature" in headers:
            return await self._signed(headers, body, first_use)
        authorization = headers.get("authorization")
        producer = self.producer(authorization)
        if producer is None:
            raise AuthError(
                "the token is not a known producer's"
                if authorization
                else "a producer token is required: Authorization: Bearer <token> "
                "(or a signed request: X-Baton-Signature)"
            )
        return producer

    async def _signed(
        self, headers: Mapping[str, str], body: bytes, first_use: FirstUse
    ) -> Producer:
        name = headers.get("x-baton-producer", "")
        if name not in self._signing:
            raise AuthError(f"X-Baton-Producer: {name!r} is not a producer that signs")
        secret, producer = self._signing[name]
        stamp = headers.get("x-baton-timestamp", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > self.window_s:
            raise AuthError(
                f"X-Baton-Timestamp: {stamp!r} is missing or more than {self.window_s}s from now"
            )
        given = headers["x-baton-signature"]
        if not hmac.compare_digest(given, signature(secret, stamp, body)):
            raise AuthError("X-Baton-Signature does not match the body and timestamp")
        if not await first_use(given, self.window_s * 2):
            raise AuthError("X-Baton-Signature was used before: a replayed request")
        return producer

    def producer(self, authorization: str | None) -> Producer | None:
        """The producer this `Authorization` header names, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self._by_hash.get(token_hash(token.strip()))

    @staticmethod
    def refusals(producer: Producer, events: Sequence[Event]) -> list[tuple[str, str]]:
        """(field, message) for every event the producer may not publish."""
        out = []
        for i, event in enumerate(events):
            reason = producer.refusal(event)
            if reason is not None:
                out.append((f"events[{i}].dataset" if len(events) > 1 else "dataset", reason))
        return out
