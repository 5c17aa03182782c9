"""`python -m bench [--quick] [--out DIR]`: run every scenario, print the table, write JSON."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench import engine_advance, http_advance, size, timers
from bench.common import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description="Funnel engine benchmarks (ratios against baselines)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.extend(engine_advance.run(Path(tmp), quick=args.quick))
        rows.extend(http_advance.run(Path(tmp), quick=args.quick))
        # the same served with one worker per core of the goals' 2-core machine (funnel serve --workers 2)
        rows.extend(http_advance.run(Path(tmp), quick=args.quick, workers=http_advance.CORES))
        rows.extend(timers.run(Path(tmp), quick=args.quick))
        rows.extend(size.run(Path(tmp), quick=args.quick))
    print(format_table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps([r.to_dict() for r in rows], indent=2))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
