"""Who may publish what: producer tokens with dataset (and partition) scopes.

A producer in the config holds a bearer token (`token: ${VAR}`) or only its SHA-256
(`token_sha256: <hex>`, from `baton token hash`), so the config at rest need not hold
the secret; either way Baton keeps only the hash in memory and never logs a token.
Scopes are globs (`warehouse.*`); a request is answered 401 without a known token and
403, naming the dataset, when any of its events is outside the token's scope — the
whole request, so a batch is never half-written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from broker.events import Event
from broker.settings import ProducerSettings


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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

    def __init__(self, producers: Sequence[ProducerSettings]) -> None:
        self._by_hash: dict[str, Producer] = {}
        for p in producers:
            digest = token_hash(p.token.get_secret_value()) if p.token else p.token_sha256
            assert digest is not None  # the settings model requires one of the two
            self._by_hash[digest.lower()] = Producer(p.name, tuple(p.datasets), p.partitions)

    @property
    def required(self) -> bool:
        return bool(self._by_hash)

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
