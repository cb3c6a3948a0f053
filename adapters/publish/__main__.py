"""`python -m adapters.publish [list|flush]`: the spool, from an orchestrator's venv.

The same as `baton spool list|flush`, for environments that hold the publish helpers
(`pip install --no-deps baton httpx`) but not Baton's server dependencies."""

from __future__ import annotations

import argparse
import sys

from adapters.publish import spool_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.publish")
    parser.add_argument("action", choices=["list", "flush"])
    parser.add_argument("--dir", help="spool folder (env BATON_SPOOL_DIR)")
    parser.add_argument("--url", help="Baton's API (env BATON_URL)")
    args = parser.parse_args(argv)
    code, text = spool_command(args.action, spool_dir=args.dir, url=args.url)
    print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
