"""The contract set a process runs, with the matcher built from it.

Loaded and checked as a whole: one error in any file refuses the set, so a process
runs either the last good set or the new one, never half of each.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import InitVar, dataclass, field, replace
from operator import attrgetter

from broker.contracts.cache import FileCache
from broker.contracts.check import check_configured
from broker.contracts.loader import NO_LINES, ContractSet, LoadedContract
from broker.contracts.model import Contract, alike
from broker.core.collector import no_collection
from broker.core.errors import ConfigError
from broker.core.settings import Settings
from broker.matching.matcher import Matcher

_CONTRACT = attrgetter("contract")


@dataclass
class Contracts:
    """The loaded contract set and the matcher built from it; swapped as a whole."""

    contract_set: ContractSet
    matcher: Matcher = field(init=False)
    # what its files loaded to, for the next load to reuse (the same object from set to set)
    cache: FileCache = field(default_factory=FileCache, compare=False, repr=False)
    previous: InitVar[Matcher | None] = None
    # the contracts not in the previous set as they are (None: found by comparing)
    changed: InitVar[list[Contract] | None] = None

    def __post_init__(self, previous: Matcher | None, changed: list[Contract] | None) -> None:
        contracts = list(map(_CONTRACT, self.contract_set.contracts))
        self.matcher = Matcher(contracts, previous, changed)

    @property
    def version(self) -> str:
        return self.contract_set.version

    def by_name(self) -> dict[str, Contract]:
        return self.matcher.contracts


def load_checked(
    settings: Settings,
    cache: FileCache | None = None,
    previous: Matcher | None = None,
    changed: Collection[str] | None = None,
) -> Contracts:
    """Load and check the contracts folder; any error refuses the whole set. With the
    `cache` of the set running, only the files that changed are parsed and checked; with
    its `previous` matcher, only what changed is indexed again; with the paths a watcher
    saw `changed`, only those are looked at (FileCache.listing)."""
    cache = FileCache() if cache is None else cache
    cache.changed = None if changed is None else set(changed)
    with no_collection(), alike():
        contract_set, errors = check_configured(settings, cache=cache)
        if errors:
            raise ConfigError("contracts rejected:\n" + "\n".join(str(e) for e in errors))
        # Checked: the line of each field was for the errors there were none of (~1.6 KB
        # a contract); a contract's own location stays.
        kept = _without_lines(contract_set.contracts, cache)
        anew = None if cache.fresh is None else [c.contract for c in cache.fresh]
        cache.commit(kept)
        return Contracts(replace(contract_set, contracts=kept), cache, previous, anew)


def _without_lines(
    contracts: tuple[LoadedContract, ...], cache: FileCache
) -> tuple[LoadedContract, ...]:
    """`contracts`, those loaded anew without their line maps (a patched load knows
    where they are; else they are looked for among all)."""
    out = list(contracts)
    for start, count in cache.slices if cache.fresh is not None else [(0, len(out))]:
        out[start : start + count] = [c if id(c) in cache.reused else replace(c, lines=NO_LINES)
                                      for c in out[start : start + count]]  # fmt: skip
    return tuple(out)
