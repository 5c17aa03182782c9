"""`python -m bench.profile_advance`: where the time of one persisted advance goes (pyinstrument)."""

from __future__ import annotations

import os
import sys
import tempfile
import time

from bench.engine_advance import STAGE_DATA
from engine.bootstrap import open_funnel
from engine.settings import Settings


def main(n: int = 150) -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{tempfile.mkdtemp()}/profile.sqlite3"
    funnel = open_funnel(Settings(database_url=url))
    ids = [funnel.start("sales_funnel", {}, actor="bench").id for _ in range(n)]
    from pyinstrument import Profiler  # only needed here; not a runtime dependency

    profiler = Profiler()
    profiler.start()
    start = time.perf_counter()
    for data in STAGE_DATA:
        for i in ids:
            funnel.advance(i, data, actor="bench")
    elapsed = time.perf_counter() - start
    profiler.stop()
    print(f"{elapsed / (n * len(STAGE_DATA)) * 1000:.3f} ms per advance")
    print(profiler.output_text(unicode=False, color=False, show_all=bool(os.environ.get("SHOW_ALL"))))


if __name__ == "__main__":
    main()
