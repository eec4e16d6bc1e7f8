"""Statement counting for bench/runpath_bench.py: on the PYTHONPATH of a measured process only.

With DOCKYARD_PROBE_OUT set, every psycopg statement (``execute``; ``executemany`` counts as one
batch) is counted by the first words of its SQL, and so are pipelines and Redis commands sent
by redis-py; the counts are written to ``$DOCKYARD_PROBE_OUT.<pid>`` four times a second.

With DOCKYARD_PROBE_TRACE set too, each statement's start and end, each Redis command sent and
answer read, and each HTTP request's arrival and response start are also recorded with their
wall-clock time in nanoseconds, as JSON lines in ``$DOCKYARD_PROBE_TRACE.<pid>`` (the timeline
of ``runpath_bench.py --timeline``).
"""

from __future__ import annotations

import os

_OUT = os.environ.get("DOCKYARD_PROBE_OUT")

if _OUT:
    import collections
    import contextlib
    import json
    import re
    import threading
    import time
    from typing import Any

    counts: collections.Counter[str] = collections.Counter()
    _TRACE = os.environ.get("DOCKYARD_PROBE_TRACE")
    trace: list[tuple[int, str]] = []

    def _mark(label: str) -> None:
        if _TRACE:
            trace.append((time.time_ns(), label))

    keys: dict[object, str] = {}  # statements repeat: their key is computed once

    def _key(query: object) -> str:
        try:
            return keys[query]
        except (KeyError, TypeError):
            pass
        key = _compute_key(query)
        if len(keys) < 10_000:
            with contextlib.suppress(TypeError):
                keys[query] = key
        return key

    def _compute_key(query: object) -> str:
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
            key = _key(query)
            counts["sql: " + key] += 1
            _mark("sql> " + key[:48])
            try:
                return await orig_exec(self, query, params, **kw)
            finally:
                _mark("sql<")

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
        if _TRACE:
            _patch_trace()

    def _patch_trace() -> None:
        with contextlib.suppress(ImportError):
            from redis.asyncio.connection import AbstractConnection

            orig_send = AbstractConnection.send_packed_command
            orig_read = AbstractConnection.read_response

            async def send_packed_command(self, command, *args, **kw):  # type: ignore[no-untyped-def]
                first = command if isinstance(command, bytes | str) else (command or [b""])[0]
                words = bytes(first if isinstance(first, bytes) else str(first).encode()).split()
                _mark("redis> " + (words[2].decode(errors="replace") if len(words) > 2 else "?"))
                return await orig_send(self, command, *args, **kw)

            async def read_response(self, *args, **kw):  # type: ignore[no-untyped-def]
                got = await orig_read(self, *args, **kw)
                _mark("redis<")
                return got

            AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
            AbstractConnection.read_response = read_response  # type: ignore[method-assign]
        with contextlib.suppress(ImportError):
            from starlette.applications import Starlette

            orig_call = Starlette.__call__

            async def call(self, scope, receive, send):  # type: ignore[no-untyped-def]
                if scope.get("type") != "http":
                    return await orig_call(self, scope, receive, send)
                _mark("http> " + re.sub(r"[0-9a-f-]{36}", "{id}", scope.get("path", "")))

                async def traced_send(message):  # type: ignore[no-untyped-def]
                    if message.get("type") == "http.response.start":
                        _mark("http<")
                    await send(message)

                return await orig_call(self, scope, receive, traced_send)

            Starlette.__call__ = call  # type: ignore[method-assign]

    def _wrap(name: str, fn: Any) -> Any:
        import functools
        import inspect

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def traced_async(*args: Any, **kw: Any) -> Any:
                _mark("> " + name)
                try:
                    return await fn(*args, **kw)
                finally:
                    _mark("< " + name)
            return traced_async

        @functools.wraps(fn)
        def traced(*args: Any, **kw: Any) -> Any:
            _mark("> " + name)
            try:
                return fn(*args, **kw)
            finally:
                _mark("< " + name)
        return traced

    def _watch_imports(specs: str) -> None:
        """Wrap the functions named in ``specs`` once their module is imported."""
        import importlib.abc
        import sys

        wanted: dict[str, list[str]] = {}
        for spec in filter(None, (x.strip() for x in specs.split(","))):
            module, _, path = spec.partition(":")
            wanted.setdefault(module, []).append(path)

        def apply(module: Any, paths: list[str]) -> None:
            for path in paths:
                *owner_path, attr = path.split(".")
                owner = module
                for part in owner_path:
                    owner = getattr(owner, part)
                setattr(owner, attr, _wrap(path, getattr(owner, attr)))

        class Finder(importlib.abc.MetaPathFinder):
            def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
                if fullname not in wanted:
                    return None
                sys.meta_path.remove(self)
                try:
                    import importlib.util
                    spec = importlib.util.find_spec(fullname)
                finally:
                    sys.meta_path.insert(0, self)
                if spec is None or spec.loader is None:
                    return spec
                loader = spec.loader
                orig = loader.exec_module  # type: ignore[attr-defined]

                def exec_module(module):  # type: ignore[no-untyped-def]
                    orig(module)
                    apply(module, wanted.pop(fullname))
                loader.exec_module = exec_module  # type: ignore[attr-defined]
                return spec

        sys.meta_path.insert(0, Finder())

    if _TRACE and os.environ.get("DOCKYARD_PROBE_FUNCS"):
        _watch_imports(os.environ["DOCKYARD_PROBE_FUNCS"])

    def _dump() -> None:
        path = f"{_OUT}.{os.getpid()}"
        while True:
            time.sleep(0.25)
            if _TRACE and trace:
                taken = trace[:]
                del trace[:len(taken)]
                with contextlib.suppress(OSError), open(f"{_TRACE}.{os.getpid()}", "a") as f:
                    f.writelines(json.dumps(t) + "\n" for t in taken)
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
