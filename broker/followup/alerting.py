"""Alerts: one per dead letter and per missed deadline, sent to the owner's sinks.

The dead-letter stream and the alerts stream (missed deadlines and their recoveries,
see `broker.time.deadlines`) have their own consumer group: each entry is read by one
worker, sent to the alert sinks, and acked once sent; an entry whose sending failed
stays pending and is taken over again after `claim_idle`. So each dead letter or
missed deadline gives one alert, not one per worker.

**Owners.** An alert about a contract goes to its owner's sinks when the config has
some for that owner (`owners: {<owner>: {alerts: [...]}}`), else to the global ones.
The owner is read from the contract set loaded at the time of sending, so a reload that
changes it moves the contract's alerts too; an owner's failing sink is retried like a
global one, and each entry is sent on its own, so it holds back no other alert.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Protocol

from broker.contracts.model import Contract
from broker.control.explain import explain
from broker.state.redis_store import RedisStore

log = logging.getLogger("baton.followup")


class Alerts(Protocol):
    async def send(self, alert_id: str, text: str, facts: dict[str, Any]) -> None: ...


class Alerter:
    """Sends one alert per entry of the dead-letter stream and of the alerts stream
    (missed deadlines and their recoveries), through the `alerters` group."""

    def __init__(
        self,
        store: RedisStore,
        alerts: Alerts | None,
        consumer: str,
        claim_idle: timedelta,
        contracts: Callable[[], Mapping[str, Contract]] = dict,
        owners: Mapping[str, Alerts] | None = None,
    ) -> None:
        self.store = store
        self.alerts = alerts
        self.consumer = consumer
        self.claim_idle_ms = int(claim_idle.total_seconds() * 1000)
        self.contracts = contracts
        self.owners = dict(owners or {})

    async def round(self, reclaim: bool = True) -> int:
        """Send an alert for each new entry, and with `reclaim` for each another worker
        abandoned; returns how many."""
        keys = self.store.keys
        sent = 0
        for stream, compose in ((keys.dead_letters, self._dead_letter),
                                (keys.alerts, self._deadline)):  # fmt: skip
            group = keys.alerters_group
            entries = (
                await self.store.reclaim(stream, group, self.consumer, self.claim_idle_ms, 50)
                if reclaim
                else []
            )
            entries += await self.store.read_new(stream, group, self.consumer, 50)
            for entry_id, fields in entries:
                alert_id, text, facts = await compose(entry_id, fields)
                sink, text = self._route(text, facts)
                if await self._send(sink, alert_id, text, facts):
                    await self.store.ack(stream, group, entry_id)
                    sent += 1
        return sent

    def _route(self, text: str, facts: dict[str, Any]) -> tuple[Alerts | None, str]:
        """The sinks for this alert, and its text naming the owner (added to `facts`)."""
        contract = self.contracts().get(str(facts.get("contract") or ""))
        owner = contract.owner if contract is not None else None
        if not owner:
            return self.alerts, text
        facts["owner"] = owner
        return self.owners.get(owner, self.alerts), f"{text} Owner: {owner}."

    async def _send(
        self, sink: Alerts | None, alert_id: str, text: str, facts: dict[str, Any]
    ) -> bool:
        if sink is None:
            log.error("%s (no alert sink configured)", text)
            return True
        try:
            await sink.send(alert_id, text, facts)
        except Exception:  # left pending: sent again after claim_idle
            log.exception("alert %s not sent; will try again", alert_id)
            return False
        return True

    async def _dead_letter(
        self, entry_id: str, fields: dict[str, str]
    ) -> tuple[str, str, dict[str, Any]]:
        trigger_id = fields.get("trigger_id", "")
        record = await self.store.get_trigger(trigger_id)
        facts: dict[str, Any] = {
            "kind": "dead_letter",
            "trigger_id": trigger_id,
            "error": fields.get("error", ""),
            "at": fields.get("at", ""),
        }
        if record is not None:
            facts |= {"contract": record.contract, "partition": record.partition or None,
                      "attempts": record.attempts}  # fmt: skip
        where = f" [{record.partition}]" if record and record.partition else ""
        text = (
            f":rotating_light: Baton: {facts.get('contract', trigger_id)}{where} could not "
            f"start its run and gave up: {facts['error']}. "
            f"Retry with `baton dlq retry {trigger_id}`."
        )
        return f"dlq:{entry_id}", text, facts

    async def _deadline(
        self, entry_id: str, fields: dict[str, str]
    ) -> tuple[str, str, dict[str, Any]]:
        """A missed deadline names each missing input and the last event seen for it
        (as the partition stands when the alert is sent); a recovery names the trigger."""
        contract_name, partition = fields.get("contract", ""), fields.get("partition", "")
        facts: dict[str, Any] = {"kind": fields.get("kind", ""), "contract": contract_name,
                                 "partition": partition, "deadline": fields.get("deadline"),
                                 "at": fields.get("at")}  # fmt: skip
        head = f"Baton: {contract_name} [{partition}]"
        if facts["kind"] == "deadline_recovered":
            facts["trigger_id"] = fields.get("trigger_id")
            text = (f":white_check_mark: {head} recovered: {facts['trigger_id']} fired at "
                    f"{facts['at']}, after its deadline {facts['deadline']}.")  # fmt: skip
            return f"alert:{entry_id}", text, facts
        missing = await self._missing(contract_name, partition)
        facts["missing"] = missing
        named = "; ".join(_missing_line(m) for m in missing) or "nothing (it fired since)"
        text = (f":alarm_clock: {head} missed its deadline {facts['deadline']}: "
                f"missing {named}.")  # fmt: skip
        if facts["kind"] == "deadline_forced":
            facts["trigger_id"] = fields.get("trigger_id")
            text += f" Started anyway (on_deadline: trigger) as {facts['trigger_id']}."
        return f"alert:{entry_id}", text, facts

    async def _missing(self, contract_name: str, partition: str) -> list[dict[str, Any]]:
        contract = self.contracts().get(contract_name)
        if contract is None:
            return []
        state = await self.store.read_partition(contract_name, partition)
        report = explain(contract, partition, state, None)
        return [
            {"dataset": i.dataset, "partition": i.partition, "state": i.state,
             "last_event_id": i.event_id or i.failed_event_id, "last_event_at": i.occurred_at}
            for i in report.inputs
            if i.state != "satisfied"
        ]  # fmt: skip


def _missing_line(item: dict[str, Any]) -> str:
    where = f"{item['dataset']}[{item['partition']}]" if item["partition"] else item["dataset"]
    if item["state"] == "failed":
        return f"{where} (last event {item['last_event_id']} failed)"
    if item["last_event_id"]:
        return f"{where} ({item['state']}, last event {item['last_event_id']})"
    return f"{where} (no event seen)"
