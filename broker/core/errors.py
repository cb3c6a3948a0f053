"""Baton's exception tree, split by what the caller must do.

BatonError
├── ContractError        fix the contract file (carries file:line)
├── ConfigError          fix baton.yaml or the environment
├── EventRejected        fix the event (HTTP 422)
├── BacklogFull          slow down and retry later (HTTP 429)
└── TargetError
    ├── TargetRejected   permanent: dead-letter now, never retry
    └── TargetUnavailable transient: retry with backoff
"""

from __future__ import annotations

from dataclasses import dataclass


class BatonError(Exception):
    """Root of every error Baton raises on purpose."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a file something was found; `line` is 1-based, 0 when unknown."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class ContractError(BatonError):
    """A contract file is wrong; the message starts with `file:line:`."""

    def __init__(self, location: Location, message: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message


class ConfigError(BatonError):
    """The configuration is wrong; the message names the setting."""


class EventRejected(BatonError):
    """An event failed validation; `errors` holds (field, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in errors))
        self.errors = errors


class BacklogFull(BatonError):
    """The events stream holds more unprocessed entries than allowed."""

    def __init__(self, backlog: int, limit: int, retry_after: int = 1) -> None:
        super().__init__(f"events backlog {backlog} is over the limit {limit}")
        self.backlog = backlog
        self.limit = limit
        self.retry_after = retry_after


class TargetError(BatonError):
    """A downstream target did not start the run."""


class TargetRejected(TargetError):
    """Permanent: the target said no (unknown DAG, bad credentials, bad request)."""


class TargetUnavailable(TargetError):
    """Transient: connection error, timeout, 5xx or 429; worth retrying."""
