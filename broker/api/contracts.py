"""Contracts, explain and triggers over HTTP (the twins of `baton explain`/`triggers`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from broker.api.access import actor, role
from broker.api.problems import problem
from broker.contracts.model import Contract
from broker.control import pause
from broker.control.explain import explain_from_store
from broker.control.live import LiveState
from broker.core.secrets import redact

router = APIRouter(tags=["contracts"])


def summary(contract: Contract) -> dict[str, Any]:
    return {
        "name": contract.name,
        "description": contract.description,
        "owner": contract.owner,
        "partitioned": str(contract.partitioned),
        "inputs": sorted(contract.input_datasets()),
        "target": contract.trigger.target,
        "produces": list(contract.produces),
    }


@router.get("/v1/contracts")
async def list_contracts(request: Request) -> dict[str, Any]:
    """The set this process runs, the error of a refused reload (the set kept running),
    and the version each Baton process runs (they converge after a reload)."""
    contracts = request.app.state.contracts
    holder = getattr(request.app.state, "holder", None)
    return {
        "version": contracts.version,
        "reload_error": holder.error if holder else None,
        "loaded_at": holder.loaded_at.isoformat() if holder else None,
        "processes": await holder.loaded_everywhere() if holder else {},
        "contracts": [summary(c) for c in contracts.by_name().values()],
        "removed": await LiveState(request.app.state.runtime.store).removed(),
        "paused": await pause.paused(request.app.state.runtime.store),
    }


async def _unknown(request: Request, name: str) -> Response:
    note = await LiveState(request.app.state.runtime.store).removed_note(name)
    return problem(404, "Unknown contract", note or f"no contract named {name!r} is loaded")


_PROBLEM = {"content": {"application/problem+json": {"schema": {"type": "object"}}}}


@router.post(
    "/v1/contracts/reload",
    openapi_extra=role("operator"),
    responses={
        422: {"description": "The new set has errors; the last good set keeps running", **_PROBLEM},
        409: {"description": "This process does not reload (no watcher)", **_PROBLEM},
    },
)
async def reload_contracts(request: Request) -> Response:
    """Load and check the contracts folder now, and swap the set in if all of it is good."""
    holder = getattr(request.app.state, "holder", None)
    if holder is None:
        return problem(409, "Not reloadable", "this process was started without a reloader")
    result = await holder.reload("POST /v1/contracts/reload", actor(request), via="http")
    if result.error:
        lines = result.error.splitlines()[1:] or [result.error]
        return problem(422, "Contracts rejected", f"still running version {result.version}",
                       [("contracts", line.strip()) for line in lines])  # fmt: skip
    return JSONResponse({"version": result.version, "changed": result.changed})


@router.get(
    "/v1/contracts/{name}",
    responses={404: {"description": "No contract by that name is loaded", **_PROBLEM}},
)
async def get_contract(name: str, request: Request) -> Response:
    contract = request.app.state.contracts.by_name().get(name)
    if contract is None:
        return await _unknown(request, name)
    store = request.app.state.runtime.store
    partitions = await store.partitions_of(name)
    body = {
        **summary(contract),
        # As written: `${VAR}` shown as such, a credential written out masked.
        "definition": redact(contract.as_data(exclude_none=True)),
        "partitions": partitions,
        "paused": (await pause.paused(store)).get(name),
    }
    return JSONResponse(body)


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=500)


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # What completed while paused: fire it once (the default), or mark it done unfired.
    fire: bool = True


@router.post(
    "/v1/contracts/{name}/pause",
    openapi_extra=role("operator"),
    responses={404: {"description": "No contract by that name is loaded", **_PROBLEM}},
)
async def pause_contract(name: str, request: Request, body: PauseRequest | None = None) -> Response:
    """Stop firing `name`: its inputs are still recorded; deadlines still alert."""
    if name not in request.app.state.contracts.by_name():
        return await _unknown(request, name)
    who = actor(request)
    record = await pause.pause(request.app.state.runtime.store, name, who,
                               body.reason if body else "")  # fmt: skip
    await request.app.state.audit.record(who, "contract.pause", name, "ok",
                                         detail=record.get("reason", ""), via="http")  # fmt: skip
    return JSONResponse({"contract": name, "paused": record})


@router.post(
    "/v1/contracts/{name}/resume",
    openapi_extra=role("operator"),
    responses={404: {"description": "No contract by that name is loaded", **_PROBLEM}},
)
async def resume_contract(
    name: str, request: Request, body: ResumeRequest | None = None
) -> Response:
    """Fire `name` again; what completed while it was paused fires once, unless
    `fire` is false (then it is marked done, unfired)."""
    loaded = request.app.state.contracts
    contract = loaded.by_name().get(name)
    if contract is None:
        return await _unknown(request, name)
    fire = body.fire if body else True
    result = await pause.resume(request.app.state.runtime.store, contract, loaded.matcher,
                                loaded.version, fire=fire)  # fmt: skip
    detail = f"fire={fire}: {len(result.fired)} fired, {len(result.skipped)} skipped"
    await request.app.state.audit.record(actor(request), "contract.resume", name, "ok",
                                         detail=detail, via="http")  # fmt: skip
    return JSONResponse(result.as_dict())


@router.get(
    "/v1/contracts/{name}/partitions/{partition}",
    responses={
        404: {"description": "No contract by that name is loaded", **_PROBLEM},
        422: {"description": "The partition does not fit the contract", **_PROBLEM},
    },
)
async def explain_partition(name: str, partition: str, request: Request) -> Response:
    contract = request.app.state.contracts.by_name().get(name)
    if contract is None:
        return await _unknown(request, name)
    key = "" if partition == "_" else partition
    try:
        report = await explain_from_store(request.app.state.runtime.store, contract, key)
    except ValueError as exc:
        return problem(422, "Invalid partition", str(exc), [("partition", str(exc))])
    return JSONResponse(report)


@router.get("/v1/triggers", tags=["triggers"])
async def list_triggers(request: Request, limit: int = 50) -> dict[str, Any]:
    records = await request.app.state.runtime.store.recent_triggers(max(1, min(limit, 1000)))
    items = []
    for record in records:
        item = asdict(record)
        item.pop("inputs")
        items.append(item)
    return {"triggers": items}
