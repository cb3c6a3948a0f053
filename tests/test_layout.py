"""The layout rules, checked from the code's own imports.

The folders tell an event's story, and every import points down: a unit (a package of
`broker/`, a top-level module, or `adapters`) imports only units on lower floors, so no
two units import each other and the ground floor imports nothing of Baton.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOORS: dict[str, int] = {
    "core": 1,
    "contracts": 2,
    "matching": 3,
    "state": 4, "embedded_redis": 4,
    "ingest": 5, "time": 5, "dispatch": 5,
    "control": 6, "client": 6, "runtime": 6,
    "followup": 7, "adapters": 7,
    "api": 8, "worker": 8,
    "serve": 9,
    "cli": 10,
}  # fmt: skip
MAX_LINES = 400


def _sources() -> list[Path]:
    """Every module of `broker/` and `adapters/`, but `broker/__init__.py` (no unit)."""
    found = [*ROOT.joinpath("broker").rglob("*.py"), *ROOT.joinpath("adapters").rglob("*.py")]
    return sorted(p for p in found if p != ROOT / "broker" / "__init__.py")


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "adapters":
        return "adapters"
    if parts[0] != "broker" or len(parts) < 2:
        return None
    return parts[1]


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of Baton's own code, lazy ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if _unit(name) is not None]


def test_every_unit_has_a_floor() -> None:
    units = {_unit(_module_of(p)) for p in _sources()} - {None}
    assert units == set(FLOORS), f"units without a floor: {units - set(FLOORS)}"


def test_every_import_points_down() -> None:
    upward = []
    for path in _sources():
        here = _unit(_module_of(path))
        assert here is not None
        for line, name in _imports(path):
            there = _unit(name)
            assert there is not None
            if there != here and FLOORS[there] >= FLOORS[here]:
                where = f"{path.relative_to(ROOT)}:{line}"
                upward.append(f"{where}: {here} (floor {FLOORS[here]}) imports {name} "
                              f"(floor {FLOORS[there]})")  # fmt: skip
    assert not upward, "\n".join(upward)


def test_no_module_is_over_the_line_budget() -> None:
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in _sources()}
    over = {str(p): n for p, n in sizes.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines: {over}"


@pytest.mark.parametrize("unit", sorted(u for u in FLOORS if ROOT.joinpath("broker", u).is_dir()))
def test_each_package_says_its_floor(unit: str) -> None:
    doc = ast.get_docstring(ast.parse(ROOT.joinpath("broker", unit, "__init__.py").read_text()))
    said = re.match(r"Floor (\d+)", doc or "")
    assert said, f"broker/{unit}/__init__.py: its docstring does not open with 'Floor N'"
    assert int(said.group(1)) == FLOORS[unit], f"broker/{unit} is on floor {FLOORS[unit]}"


def test_adapters_say_their_floor() -> None:
    doc = ast.get_docstring(ast.parse(ROOT.joinpath("adapters", "__init__.py").read_text()))
    assert (doc or "").startswith(f"Floor {FLOORS['adapters']},")
