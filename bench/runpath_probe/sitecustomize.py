"""Statement counting for bench/runpath_bench.py: on the PYTHONPATH of a measured process only.

With DOCKYARD_PROBE_OUT set, every psycopg statement (``execute``; ``executemany`` counts as one
batch) is counted by the first words of its SQL, and so are pipelines and Redis commands sent
by redis-py; the counts are written to ``$DOCKYARD_PROBE_OUT.<pid>`` four times a second.
"""

from __future__ import annotations

import os

_OUT = os.environ.get("DOCKYARD_PROBE_OUT")

if _OUT:
    import collections
    import json
    import re
    import threading
    import time

    counts: collections.Counter[str] = collections.Counter()

    def _key(query: object) -> str:
        text = query.decode() if isinstance(query, bytes) else str(query)
        if not isinstance(query, str | bytes):
            try:
                text = query.as_string(None)  # type: ignore[attr-defined]
            except Exception:
                text = repr(query)
        return re.sub(r"\s+", " ", text).strip()[:90]

    def _patch() -> None:
        import psycopg

        orig_exec = psycopg.AsyncCursor.execute
        orig_many = psycopg.AsyncCursor.executemany
        orig_pipe = psycopg.AsyncConnection.pipeline

        async def execute(self, query, params=None, **kw):  # type: ignore[no-untyped-def]
            counts["sql"] += 1
            counts["sql: " + _key(query)] += 1
            return await orig_exec(self, query, params, **kw)

        async def executemany(self, query, params_seq, **kw):  # type: ignore[no-untyped-def]
            counts["sql"] += 1
            counts["many: " + _key(query)] += 1
            return await orig_many(self, query, params_seq, **kw)

        def pipeline(self):  # type: ignore[no-untyped-def]
            counts["pipelines"] += 1
            return orig_pipe(self)

        psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign]
        psycopg.AsyncCursor.executemany = executemany  # type: ignore[method-assign]
        psycopg.AsyncConnection.pipeline = pipeline  # type: ignore[method-assign]

    def _dump() -> None:
        path = f"{_OUT}.{os.getpid()}"
        while True:
            time.sleep(0.25)
            try:
                with open(path + ".tmp", "w") as f:
                    json.dump(dict(counts), f)
                os.replace(path + ".tmp", path)
            except OSError:
                pass

    try:
        _patch()
    except ImportError:
        pass
    threading.Thread(target=_dump, daemon=True, name="probe-dump").start()
