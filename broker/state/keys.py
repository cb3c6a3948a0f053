"""Every Redis key, stream and group name Baton uses, built in one place.

All keys share the configured namespace, so several Batons can share one Redis.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    namespace: str = "baton"

    @property
    def events(self) -> str:
        """The events stream: every accepted event, in arrival order."""
        return f"{self.namespace}:events"

    @property
    def backlog(self) -> str:
        """Counter of events accepted and not yet acked by a matcher (Redis 6.2 has no lag)."""
        return f"{self.namespace}:events:backlog"

    @property
    def triggers(self) -> str:
        """The triggers stream: claimed firings waiting for dispatch."""
        return f"{self.namespace}:triggers"

    @property
    def dead_letters(self) -> str:
        """Triggers that failed for good; `baton dlq` reads it."""
        return f"{self.namespace}:dlq"

    @property
    def retries(self) -> str:
        """Sorted set of trigger ids by the time their next attempt is due."""
        return f"{self.namespace}:retries"

    @property
    def recent(self) -> str:
        """Sorted set of trigger ids by creation time, for listing."""
        return f"{self.namespace}:triggers:recent"

    @property
    def tracking(self) -> str:
        """Runs dispatched before tracking was kept per target (sorted set, as below);
        followed to their end like the others, and then empty for good."""
        return f"{self.namespace}:tracking"

    def tracking_of(self, target: str) -> str:
        """Sorted set of `target`'s dispatched trigger ids by when their run is next
        looked at: one per target, so a slow target holds back only its own runs."""
        return f"{self.namespace}:tracking:{target}"

    def duty_beats(self, duty: str) -> str:
        """Sorted set consumer -> when it last finished a round of `duty` (epoch ms)."""
        return f"{self.namespace}:duty:{duty}"

    @property
    def deadlines(self) -> str:
        """Sorted set of watched `contract|partition` members by deadline (epoch ms)."""
        return f"{self.namespace}:deadlines"

    @property
    def deadline_alerts(self) -> str:
        """Hash `contract|partition` -> the deadline alert sent (and its recovery)."""
        return f"{self.namespace}:deadlines:alerted"

    @property
    def deadline_cursor(self) -> str:
        """Hash contract -> the last partition put on the deadline clock by schedule."""
        return f"{self.namespace}:deadlines:cursor"

    @property
    def deadline_since(self) -> str:
        """Hash contract -> when the deadline clock first watched it (partitions from then)."""
        return f"{self.namespace}:deadlines:since"

    @property
    def alerts(self) -> str:
        """Stream of deadline alerts and recoveries, waiting to be sent and then listed."""
        return f"{self.namespace}:alerts"

    @property
    def stats(self) -> str:
        """Hash of counters since the namespace began, for GET /metrics (the scripts that
        do the counted thing count it: events accepted, triggers fired, dispatches)."""
        return f"{self.namespace}:stats"

    @property
    def contracts_loaded(self) -> str:
        """Hash process -> {version, loaded_at}: the contract set each Baton process runs."""
        return f"{self.namespace}:contracts:loaded"

    @property
    def contracts_applied(self) -> str:
        """Hash contract -> digests of its definition as last applied to the live state."""
        return f"{self.namespace}:contracts:defs"

    @property
    def contracts_removed(self) -> str:
        """Hash contract -> {removed_at, version, kept_until} while its state is kept."""
        return f"{self.namespace}:contracts:removed"

    @property
    def contracts_applying(self) -> str:
        """Lock held by the process applying a contract change to the live state."""
        return f"{self.namespace}:contracts:applying"

    @property
    def audit(self) -> str:
        """Stream of operator actions and reloads (who, what, when, how it went), kept
        to the newest `AUDIT_KEPT` entries: a trail, not an archive (the log has all)."""
        return f"{self.namespace}:audit"

    @property
    def paused(self) -> str:
        """Hash contract -> {by, at} while an operator has it paused: nothing fires."""
        return f"{self.namespace}:paused"

    def session(self, digest: str) -> str:
        """Hash of one browser session (principal name, CSRF token), by the SHA-256 of
        its cookie; expires after `api.session_ttl`."""
        return f"{self.namespace}:session:{digest}"

    def target_running(self, target: str) -> str:
        """Sorted set of trigger ids admitted to `target` whose downstream run has not
        ended (by admission ms): the runs in flight that `max_in_flight` bounds. Left
        when the run ends, the attempt fails, or the trigger is dead-lettered."""
        return f"{self.namespace}:target:{target}:running"

    def target_waiting(self, target: str) -> str:
        """Sorted set of trigger ids waiting for `target` (over a limit, or behind its
        open circuit breaker), by creation ms: released oldest first, never dropped
        (one past `retry.max_age` is dead-lettered)."""
        return f"{self.namespace}:target:{target}:waiting"

    def target_rate(self, target: str) -> str:
        """`target`'s next start time by its rate limit (GCRA, epoch ms); expires once
        that time has passed, since then it limits nothing."""
        return f"{self.namespace}:target:{target}:rate"

    def target_breaker(self, target: str) -> str:
        """Hash: `target`'s circuit breaker (state, failures in a row, until, cooldown,
        probe); kept while the target is configured (a few fields)."""
        return f"{self.namespace}:target:{target}:breaker"

    matchers_group: str = "matchers"
    dispatchers_group: str = "dispatchers"
    # Reads the dead-letter and alerts streams and sends one alert per entry.
    alerters_group: str = "alerters"

    def dedup_prefix(self) -> str:
        """Prefix of the per-event_id keys that make ingestion idempotent (they carry a TTL)."""
        return f"{self.namespace}:seen:"

    def partition(self, contract: str, partition: str) -> str:
        """Hash of one contract partition's match state (generation, inputs, firing)."""
        return f"{self.namespace}:p:{contract}:{partition}"

    def refused(self, contract: str, partition: str) -> str:
        """Hash slot -> the latest event a `where` refused for that input of one
        contract partition, so `explain` says an event came and which rule said no.
        Expires `REFUSALS_KEPT_S` after the last refusal: a diagnosis, not state."""
        return f"{self.namespace}:refused:{contract}:{partition}"

    def partition_prefix(self, contract: str) -> str:
        return f"{self.namespace}:p:{contract}:"

    def trigger(self, trigger_id: str) -> str:
        """Hash of one trigger's record: state, attempts, last error, downstream run."""
        return f"{self.namespace}:t:{trigger_id}"

    def trigger_prefix(self) -> str:
        return f"{self.namespace}:t:"
