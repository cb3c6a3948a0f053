"""How long a contracts reload takes: load, check and index N contract files.

    python -m benchmarks.reload        (1,000 and 10,000 files)

This is the work a reload does before the swap (the swap itself is one assignment);
events keep flowing through the old set meanwhile, since loading runs in a thread.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.report import Row, print_table
from broker.runtime import load_checked
from broker.settings import Settings

CONTRACT = """name: report_{i}
partitioned: daily
deadline: "+1d09:00"
when:
  all_of:
    - warehouse.orders_{i}
    - {{dataset: warehouse.fx_{j}, where: "metadata.row_count > 0"}}
    - {{dataset: events.clicks_{j}, partitioned: hourly}}
trigger: {{target: hook, body: {{day: "{{{{ partition }}}}"}}}}
"""


def time_reload(n: int, tmp: Path) -> float:
    folder = tmp / f"contracts-{n}"
    folder.mkdir()
    for i in range(n):
        (folder / f"report_{i}.yaml").write_text(CONTRACT.format(i=i, j=i % 100))
    settings = Settings.model_validate(
        {"contracts": str(folder), "targets": {"hook": {"kind": "webhook",
                                                        "url": "http://127.0.0.1:9"}}}
    )  # fmt: skip
    start = time.perf_counter()
    loaded = load_checked(settings)
    took = time.perf_counter() - start
    assert len(loaded.by_name()) == n
    return took


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        for n in (1_000, 10_000):
            took = time_reload(n, Path(tmp))
            rows.append(Row(f"reload {n:,} contract files (load, check, index)", took * 1000, "ms"))
            rows.append(Row(f"  per file, {n:,} files", took / n * 1e6, "us"))
    print_table(rows)


if __name__ == "__main__":
    main()
