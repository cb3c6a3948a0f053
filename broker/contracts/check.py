"""`baton check`: everything that makes a contract set unusable, as `file:line: message`.

Beyond the model: duplicate names, unknown targets, trigger fields that do not fit the
target's kind, triggers that cannot be sent, bad `where` expressions, input mappings
that can never be satisfied, and cycles through `produces`. With `require_owner` (the
config's `check.require_owner`), a contract without `owner`, or with an owner the config
does not list under `owners` (when it lists any), is an error too.

A trigger cannot be sent when its templates do not compile, or when, rendered as the
dispatcher would for a sample partition (the online check's: the latest complete one, a
static contract's first), a template fails, runs past its budget, or makes a value that
is not JSON or does not fit the target's kind. What the sample cannot know (an input's
metadata, producer and time) renders as unknown and is not held against the trigger;
any other undefined name is.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import replace
from itertools import compress
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from broker.contracts.cache import FileCache
from broker.contracts.files import DEFAULT_LIMITS, LoadLimits
from broker.contracts.folder import load_contracts
from broker.contracts.loader import ContractSet, LoadedContract, dotted
from broker.contracts.model import (
    TRIGGER_KINDS,
    AllOf,
    Condition,
    Contract,
    Input,
    iter_inputs,
    trigger_spec,
)
from broker.contracts.samples import sample_context, sample_partition
from broker.contracts.secrets_check import secret_problems
from broker.core.errors import ContractError
from broker.core.expressions import ExpressionError, compile_expression
from broker.core.partitions import Calendar, Granularity, can_map
from broker.core.secrets import allowed_env
from broker.core.templates import TemplateError, compile_template, unknown

if TYPE_CHECKING:
    from broker.core.settings import Settings


def target_kinds(settings: Settings) -> dict[str, str]:
    """Each configured target's name -> its kind."""
    return {name: target.kind for name, target in settings.targets.items()}


def check_configured(
    settings: Settings, folder: Path | None = None, env: Mapping[str, str] | None = None,
    cache: FileCache | None = None,
) -> tuple[ContractSet, list[ContractError]]:  # fmt: skip
    """`check_contracts` with what the config says (its targets, `check.require_owner`,
    its owners, the variables contracts may read), on `folder` or else the configured
    contracts folder, with `env` (default: this process's environment) for `${VAR}`.
    Every command that loads contracts checks them this way, so none accepts a set
    another would refuse. With a `cache` (cache.py), unchanged files are not parsed
    or checked again."""
    environ = os.environ if env is None else env
    targets, limits = target_kinds(settings), LoadLimits(**settings.contract_limits.model_dump())
    if cache is not None:
        cache.begin(check_key(settings, environ))
    contract_set, errors = check_contracts(
        folder or settings.contracts,
        targets,
        require_owner=settings.check.require_owner,
        owners=settings.owners.keys(),
        limits=limits,
        cache=cache,
    )
    unchecked = replace(contract_set, contracts=_unchecked(contract_set, cache))
    errors += secret_problems(unchecked, settings.contract_env, environ)
    errors.sort(key=lambda e: (e.location.file, e.location.line, e.message))
    return contract_set, errors


def check_key(settings: Settings, environ: Mapping[str, str]) -> tuple[object, ...]:
    """What a kept contract's checks depend on (cache.py `key`): the targets and their
    kinds, the owner rules, the limits, and which variables contracts may read and
    which of those are set (a `${VAR}` must be allowed and set; its value is read only
    when a trigger is sent). Plain values, so its text is the same in every process."""
    limits = LoadLimits(**settings.contract_limits.model_dump())
    return (sorted(target_kinds(settings).items()), settings.check.require_owner,
            sorted(settings.owners), repr(limits), list(settings.contract_env),
            sorted(allowed_env(settings.contract_env, environ)))  # fmt: skip


def check_contracts(
    folder: Path,
    targets: Mapping[str, str],
    *,
    require_owner: bool = False,
    owners: Collection[str] = (),
    limits: LoadLimits = DEFAULT_LIMITS,
    cache: FileCache | None = None,
) -> tuple[ContractSet, list[ContractError]]:
    """Load and check `folder`; `targets` maps each configured target name to its kind,
    `owners` names the configured owners."""
    contract_set, errors = load_contracts(folder, limits, cache)
    unchecked = _unchecked(contract_set, cache)
    errors += check_set(contract_set, targets, unchecked=unchecked)
    if require_owner:
        errors += [e for c in unchecked for e in _owner(c, owners)]
    errors.sort(key=lambda e: (e.location.file, e.location.line, e.message))
    return contract_set, errors


def _unchecked(contract_set: ContractSet, cache: FileCache | None) -> tuple[LoadedContract, ...]:
    """The contracts whose own checks must run: all, but those a `cache` kept from a
    clean load under the same settings."""
    if cache is None:
        return contract_set.contracts
    if cache.fresh is not None:  # a patched load knows them
        return tuple(cache.fresh)
    return tuple(c for c in contract_set.contracts if id(c) not in cache.reused)


def check_set(
    contract_set: ContractSet, targets: Mapping[str, str],
    unchecked: Iterable[LoadedContract] | None = None,
) -> list[ContractError]:  # fmt: skip
    """Every check; those of one contract for the `unchecked` ones only (default: all)."""
    errors = list(_duplicates(contract_set))
    for loaded in contract_set.contracts if unchecked is None else unchecked:
        errors += _trigger(loaded, targets)
        errors += _inputs(loaded)
    errors += _cycles(contract_set)
    return errors


def _duplicates(contract_set: ContractSet) -> Iterator[ContractError]:
    names = list(map(_NAME, contract_set.contracts))
    if len(set(names)) == len(names):  # the usual case, without a loop of Python
        return
    first: dict[str, LoadedContract] = {}
    for loaded in contract_set.contracts:
        name = loaded.contract.name
        if name in first:
            msg = f"name: {name!r} is already used at {first[name].location}"
            yield ContractError(loaded.at("name"), msg)
        else:
            first[name] = loaded


def _owner(loaded: LoadedContract, owners: Collection[str]) -> Iterator[ContractError]:
    """Without an `owner` key its error points at the contract's `name:` line."""
    owner = loaded.contract.owner
    if not owner:
        msg = "owner: required by this Baton's config (check.require_owner)"
        yield ContractError(loaded.at("owner"), msg)
    elif owners and owner not in owners:
        msg = f"owner: unknown owner {owner!r} (known: {', '.join(sorted(owners))})"
        yield ContractError(loaded.at("owner"), msg)


def _trigger(loaded: LoadedContract, targets: Mapping[str, str]) -> list[ContractError]:
    contract = loaded.contract
    target = contract.trigger.target
    if target not in targets:
        known = ", ".join(sorted(targets)) or "none are configured"
        msg = f"trigger.target: unknown target {target!r} (known: {known})"
        return [ContractError(loaded.at("trigger", "target"), msg)]
    kind = targets[target]
    try:
        trigger_spec(contract, kind)
    except ValidationError as exc:
        return [_field_error(loaded, err, f"target kind: {kind}") for err in exc.errors()]
    return _rendered(loaded, kind)


def _rendered(loaded: LoadedContract, kind: str) -> list[ContractError]:
    """The trigger's templates compiled, and rendered for a sample partition."""
    contract = loaded.contract
    try:
        template = compile_template(contract.trigger.fields())
    except TemplateError as exc:
        return [_template_error(loaded, exc, "")]
    partition = sample_partition(contract)
    sample = f"sample partition {partition}" if partition else "a sample trigger"
    try:
        spec, unknowns = template.render_sample(_sample_context(contract, partition), strict=True)
    except TemplateError as exc:
        return [_template_error(loaded, exc, f" (rendered for {sample})")]
    try:
        TRIGGER_KINDS[kind].model_validate({"target": contract.trigger.target, **spec})
    except ValidationError as exc:
        note = f"target kind: {kind}, as rendered for {sample}"
        return [
            _field_error(loaded, err, note)
            for err in exc.errors()
            if not _reads_unknown(tuple(err["loc"]), unknowns)
        ]
    return []


def _sample_context(contract: Contract, partition: str) -> dict[str, object]:
    """The names the dispatcher's `template_context` gives templates, for `partition`:
    each input has one event, whose metadata, producer and time only a real one knows."""
    inputs: dict[str, dict[str, object]] = {}
    for item in iter_inputs(contract.when):
        where = f"inputs[{item.dataset!r}]"
        event: dict[str, object] = {
            "dataset": item.dataset,
            "partition": partition or None,
            "status": "success",
            "event_id": "sample",
            **{name: unknown(f"{where}.{name}") for name in _RUN_TIME},
        }
        inputs[item.dataset] = {**event, "events": [event]}
    return {**sample_context(contract, partition), "inputs": inputs, "missing": []}


_RUN_TIME = ("metadata", "producer", "occurred_at")


def _template_error(loaded: LoadedContract, exc: TemplateError, note: str) -> ContractError:
    path = ("trigger", *exc.path)
    return ContractError(loaded.at(*path), f"{dotted(path)}: {exc.reason}{note}")


def _reads_unknown(loc: tuple[str | int, ...], unknowns: list[str]) -> bool:
    """Is a field's error about a value the sample rendered as unknown (null)?"""
    if not unknowns:
        return False
    where = dotted(loc)
    return not loc or any(where == u or where.startswith((f"{u}.", f"{u}[")) for u in unknowns)


def _field_error(loaded: LoadedContract, err: object, note: str) -> ContractError:
    loc = tuple(err["loc"])  # type: ignore[index]
    path = ("trigger", *loc)
    text = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]  # type: ignore[index]
    text = str(text).removeprefix("Value error, ")
    return ContractError(loaded.at(*path), f"{dotted(path)}: {text} ({note})")


def _inputs(loaded: LoadedContract) -> list[ContractError]:
    contract = loaded.contract
    errors = []
    if contract.partitions is not None and contract.partitioned != Granularity.STATIC:
        errors.append(
            ContractError(
                loaded.at("partitions"), "partitions: only a static contract lists its partitions"
            )
        )
    if contract.deadline is not None and not Calendar(contract.partitioned).is_time:
        errors.append(
            ContractError(
                loaded.at("deadline"),
                f"deadline: counts from a partition's end, and {contract.partitioned} "
                "partitions have none; use hourly, daily, weekly or monthly",
            )
        )
    for key in contract.partitions or []:
        if not Calendar(Granularity.STATIC).is_valid(key):
            errors.append(
                ContractError(
                    loaded.at("partitions"), f"partitions: {key!r} is not a valid static key"
                )
            )
    for path, item in _walk(contract.when, ("when",)):
        problems = _input_problems(contract, item)
        errors += [ContractError(loaded.at(*path), f"{dotted(path)}: {m}") for m in problems]
    return errors


def _walk(
    cond: Condition, path: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], Input]]:
    """Every Input of a condition with its path in the file."""
    if isinstance(cond, Input):
        yield path, cond
        return
    key, children = ("all_of", cond.all_of) if isinstance(cond, AllOf) else ("any_of", cond.any_of)
    for i, child in enumerate(children):
        yield from _walk(child, (*path, key, i))


def _input_problems(contract: Contract, item: Input) -> Iterator[str]:
    own = contract.partitioned
    theirs = item.partitioned or own
    if not can_map(own, theirs):
        yield f"a {theirs} input can never be mapped to a {own} contract"
    elif theirs == Granularity.NONE and own != Granularity.NONE:
        yield "an unpartitioned input of a partitioned contract is not supported yet"
    if item.offset and Granularity.NONE in (own, theirs):
        yield "offset needs partitions on both sides"
    if item.offset and Granularity.STATIC in (own, theirs):
        yield "static partitions cannot be offset"
    if item.where is not None:
        try:
            compile_expression(item.where)
        except ExpressionError as exc:
            yield f"where: {exc}"


_NAME, _PRODUCES = attrgetter("contract.name"), attrgetter("contract.produces")


def _cycles(contract_set: ContractSet) -> list[ContractError]:
    """Contract A -> B when A produces a dataset B reads; a cycle would trigger forever.
    Every contract on a cycle produces something (it has an edge out), so the graph is
    that of the producers alone: what the others read is never looked at."""
    producers = compress(contract_set.contracts, map(_PRODUCES, contract_set.contracts))
    loaded = {c.contract.name: c for c in producers}
    readers: dict[str, list[str]] = {}
    for c in loaded.values():
        for dataset in c.contract.input_datasets():
            readers.setdefault(dataset, []).append(c.contract.name)
    edges = {
        name: sorted({r for d in c.contract.produces for r in readers.get(d, [])})
        for name, c in loaded.items()
    }
    cycle = _find_cycle(edges)
    if not cycle:
        return []
    first = loaded[cycle[0]]
    return [ContractError(first.at("produces"), "produces: a cycle: " + " -> ".join(cycle))]


def _find_cycle(edges: Mapping[str, list[str]]) -> list[str]:
    """A cycle in `edges`, or []: depth first with a stack of its own, since a chain
    of thousands of contracts would go deeper than Python recurses."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(edges):
        if start in state:
            continue
        path, stack = [start], [iter(edges.get(start, []))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(edges.get(nxt, [])))
    return []
