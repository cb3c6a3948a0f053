"""Every Redis key, stream and group name Baton uses, built in one place.

All keys share the configured namespace, so several Batons can share one Redis.

Each key's docstring ends with its retention and why: nothing Baton writes grows
without a bound. The windows are settings: `events_retention` (the events stream, for
replay), `dedup_ttl` (event ids), `history_retention` (settled state: what `explain`,
the console and `baton triggers` read, then "expired"), `markers_retention` (fired-
markers, so an expired partition is never fired as new) and `contracts_retention`
(a removed contract's state). "Per X" means one key, or one field, per X, and gone
with it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    namespace: str = "baton"

    @property
    def events(self) -> str:
        """The events stream: every accepted event, in arrival order. Retention: trimmed to
        `events_retention` by MINID once a minute (`baton replay` reads that window)."""
        return f"{self.namespace}:events"

    @property
    def backlog(self) -> str:
        """Counter of events accepted and not yet acked by a matcher (Redis 6.2 has no lag).
        Retention: one number."""
        return f"{self.namespace}:events:backlog"

    @property
    def triggers(self) -> str:
        """The triggers stream: claimed firings waiting for dispatch. Retention: an entry is
        deleted when it is acked (finish.lua); unacked ones stay, to be reclaimed."""
        return f"{self.namespace}:triggers"

    @property
    def dead_letters(self) -> str:
        """Triggers that failed for good; `baton dlq` reads it. Retention: entries older
        than `history_retention` are trimmed (MINID) as new ones come in."""
        return f"{self.namespace}:dlq"

    @property
    def retries(self) -> str:
        """Sorted set of trigger ids by the time their next attempt is due. Retention:
        left when the retry is moved to the triggers stream."""
        return f"{self.namespace}:retries"

    @property
    def recent(self) -> str:
        """Stream of trigger ids (field `t`) as they are created, for listing: ~40 B an
        id, where a sorted set took ~150. Retention: entries older than
        `history_retention` are trimmed (MINID) at each firing."""
        return f"{self.namespace}:triggers:listed"

    @property
    def recent_before(self) -> str:
        """What listed the triggers before `recent` (a sorted set by creation time),
        still read while it lasts. Retention: written no more, it expires
        `history_retention` after the first start that finds it."""
        return f"{self.namespace}:triggers:recent"

    @property
    def tracking(self) -> str:
        """Runs dispatched before tracking was kept per target (sorted set, as below);
        followed to their end like the others, and then empty for good. Retention: as
        below."""
        return f"{self.namespace}:tracking"

    def tracking_of(self, target: str) -> str:
        """Sorted set of `target`'s dispatched trigger ids by when their run is next
        looked at: one per target, so a slow target holds back only its own runs.
        Retention: a run leaves it when it ends."""
        return f"{self.namespace}:tracking:{target}"

    def duty_beats(self, duty: str) -> str:
        """Sorted set consumer -> when it last finished a round of `duty` (epoch ms).
        Retention: a consumer silent for `BEATS_KEPT_S` (a day) is removed at each beat
        (a process that restarts comes back under a new name)."""
        return f"{self.namespace}:duty:{duty}"

    @property
    def deadlines(self) -> str:
        """Sorted set of watched `contract|partition` members by deadline (epoch ms).
        Retention: a member leaves when its partition fires or its deadline is decided."""
        return f"{self.namespace}:deadlines"

    @property
    def deadline_alerts(self) -> str:
        """Hash `contract|partition` -> the deadline alert sent (and its recovery).
        Retention: an alert older than `markers_retention` is swept (a slice a minute):
        within it, a partition is alerted about once."""
        return f"{self.namespace}:deadlines:alerted"

    @property
    def deadline_cursor(self) -> str:
        """Hash contract -> the last partition put on the deadline clock by schedule.
        Retention: per contract (dropped when it is removed)."""
        return f"{self.namespace}:deadlines:cursor"

    @property
    def deadline_since(self) -> str:
        """Hash contract -> when the deadline clock first watched it (partitions from then).
        Retention: per contract (dropped when it is removed)."""
        return f"{self.namespace}:deadlines:since"

    @property
    def alerts(self) -> str:
        """Stream of deadline alerts and recoveries, waiting to be sent and then listed.
        Retention: capped at the newest `ALERTS_KEPT` entries."""
        return f"{self.namespace}:alerts"

    @property
    def stats(self) -> str:
        """Hash of counters since the namespace began, for GET /metrics (the scripts that
        do the counted thing count it: events accepted, triggers fired, dispatches).
        Retention: one field per kind of thing counted."""
        return f"{self.namespace}:stats"

    @property
    def contracts_loaded(self) -> str:
        """Hash process -> {version, loaded_at}: the contract set each Baton process runs.
        Retention: a process that stops leaves it; one killed, silent for a day
        (`reload.GONE_AFTER_S`; each live one says it is alive every few minutes), is
        swept (processes are named by host and pid)."""
        return f"{self.namespace}:contracts:loaded"

    @property
    def contracts_applied(self) -> str:
        """Hash contract -> digests of its definition as last applied to the live state.
        Retention: per contract loaded."""
        return f"{self.namespace}:contracts:defs"

    @property
    def contracts_applied_version(self) -> str:
        """String: the version of the set whose definitions `contracts:defs` holds (a
        process that recorded it may compare only what its next set changed).
        Retention: one key, overwritten at each apply."""
        return f"{self.namespace}:contracts:defs:version"

    @property
    def contracts_removed(self) -> str:
        """Hash contract -> {removed_at, version, kept_until} while its state is kept.
        Retention: per removed contract, until it is added back (its state expires after
        `contracts_retention`)."""
        return f"{self.namespace}:contracts:removed"

    @property
    def contracts_applying(self) -> str:
        """Lock held by the process applying a contract change to the live state.
        Retention: released, or expires with its lease."""
        return f"{self.namespace}:contracts:applying"

    @property
    def audit(self) -> str:
        """Stream of operator actions and reloads (who, what, when, how it went), kept
        to the newest `AUDIT_KEPT` entries: a trail, not an archive (the log has all).
        Retention: that cap."""
        return f"{self.namespace}:audit"

    @property
    def paused(self) -> str:
        """Hash contract -> {by, at} while an operator has it paused: nothing fires.
        Retention: per paused contract, until resumed."""
        return f"{self.namespace}:paused"

    def session(self, digest: str) -> str:
        """Hash of one browser session (principal name, CSRF token), by the SHA-256 of
        its cookie. Retention: expires after `api.session_ttl`."""
        return f"{self.namespace}:session:{digest}"

    def target_running(self, target: str) -> str:
        """Sorted set of trigger ids admitted to `target` whose downstream run has not
        ended (by admission ms): the runs in flight that `max_in_flight` bounds. Left
        when the run ends, the attempt fails, or the trigger is dead-lettered.
        Retention: drains as above."""
        return f"{self.namespace}:target:{target}:running"

    def target_waiting(self, target: str) -> str:
        """Sorted set of trigger ids waiting for `target` (over a limit, or behind its
        open circuit breaker), by creation ms: released oldest first, never dropped
        (one past `retry.max_age` is dead-lettered). Retention: drains as above."""
        return f"{self.namespace}:target:{target}:waiting"

    def target_rate(self, target: str) -> str:
        """`target`'s next start time by its rate limit (GCRA, epoch ms); expires once
        that time has passed, since then it limits nothing. Retention: that expiry."""
        return f"{self.namespace}:target:{target}:rate"

    def target_breaker(self, target: str) -> str:
        """Hash: `target`'s circuit breaker (state, failures in a row, until, cooldown,
        probe). Retention: per configured target (a few fields)."""
        return f"{self.namespace}:target:{target}:breaker"

    def backfill(self, backfill_id: str) -> str:
        """Hash of one backfill: plan, position, counts, what each partition became.
        Retention: expires `history_retention` after it is done or cancelled."""
        return f"{self.namespace}:backfill:{backfill_id}"

    def backfill_flight(self, backfill_id: str) -> str:
        """Set of a backfill's triggers whose runs have not finished. Retention: drains,
        and expires with the backfill."""
        return f"{self.namespace}:backfill:{backfill_id}:flight"

    def backfill_trace(self, backfill_id: str) -> str:
        """List of `at|in flight` changes of a backfill. Retention: capped at
        `TRACE_KEPT`, and expires with the backfill."""
        return f"{self.namespace}:backfill:{backfill_id}:trace"

    def backfill_lease(self, backfill_id: str) -> str:
        """Which worker moves a backfill on. Retention: expires with its lease."""
        return f"{self.namespace}:backfill:{backfill_id}:lease"

    @property
    def backfills(self) -> str:
        """Sorted set of backfill ids by creation time. Retention: ids older than
        `history_retention` are removed as a backfill is created."""
        return f"{self.namespace}:backfills"

    @property
    def backfills_running(self) -> str:
        """Set of the backfills that are running. Retention: left when one finishes."""
        return f"{self.namespace}:backfills:running"

    def signature(self, signature: str) -> str:
        """A signed request already used (replay protection). Retention: expires after
        the signature window."""
        return f"{self.namespace}:sig:{signature}"

    matchers_group: str = "matchers"
    dispatchers_group: str = "dispatchers"
    # Reads the dead-letter and alerts streams and sends one alert per entry.
    alerters_group: str = "alerters"

    def dedup_prefix(self) -> str:
        """Prefix of the per-event keys that make ingestion idempotent, each named by
        the first 20 hex digits of the SHA-1 of the event_id (lua/ingest.lua: ~25 bytes
        less a key than the id itself). Retention: each expires after `dedup_ttl`."""
        return f"{self.namespace}:s:"

    def dedup_prefix_before(self) -> str:
        """Prefix of the per-event keys an earlier Baton wrote, named by the event_id
        itself: still looked at (a retry of an event it took is a duplicate). Retention:
        each expires after `dedup_ttl`, so none is left one `dedup_ttl` after an upgrade."""
        return f"{self.namespace}:seen:"

    def partition(self, contract: str, partition: str) -> str:
        """Hash of one contract partition's match state (generation, inputs as
        state/held.py lays them out, firing).
        Retention: expires `history_retention` after its last write; its fired-marker
        (below) outlives it. A removed contract's expires after `contracts_retention`."""
        return f"{self.namespace}:p:{contract}:{partition}"

    def fired(self, contract: str) -> str:
        """Hash partition -> `<generation>:<epoch ms>`, the last generation of that
        partition fired and when: a fired-marker, ~70 B, that outlives the partition's
        state, so that an event for an expired partition is a restatement and a trigger
        id is never issued twice. Retention: a marker older than `markers_retention`
        is swept (once a minute, a slice of the hash at a time)."""
        return f"{self.namespace}:fired:{contract}"

    def refused(self, contract: str, partition: str) -> str:
        """Hash slot -> the latest event a `where` refused for that input of one
        contract partition, so `explain` says an event came and which rule said no.
        Retention: expires `REFUSALS_KEPT_S` after the last refusal: a diagnosis, not
        state."""
        return f"{self.namespace}:refused:{contract}:{partition}"

    def partition_prefix(self, contract: str) -> str:
        return f"{self.namespace}:p:{contract}:"

    def trigger(self, trigger_id: str) -> str:
        """Hash of one trigger's record: state, attempts, inputs, last error, downstream
        run. Retention: expires `history_retention` after it settles (its run ended, or
        was over when the target answered, as a webhook's is; or it was dead-lettered);
        a live trigger's never does. Revived, it is kept again. Settled other than by a
        dead letter, it keeps of its inputs only their event ids (settle.lua)."""
        return f"{self.namespace}:t:{trigger_id}"

    def trigger_prefix(self) -> str:
        return f"{self.namespace}:t:"
