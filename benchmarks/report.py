"""The benchmark table: one row per measurement, with its ratio to the baseline."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    name: str
    value: float
    unit: str
    ratio: float | None = None
    target: str = ""


def print_table(rows: list[Row]) -> None:
    width = max(len(r.name) for r in rows)
    print(f"\n{'measurement':<{width}}  {'value':>12}  {'unit':<10} {'ratio':>7}  target")
    print("-" * (width + 50))
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        print(f"{r.name:<{width}}  {r.value:>12,.2f}  {r.unit:<10} {ratio:>7}  {r.target}")
