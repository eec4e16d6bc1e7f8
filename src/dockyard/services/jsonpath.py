"""A small JSONPath subset for mapping trigger payloads: ``$``, ``.key``, ``[0]``, ``["key"]``.

Enough to pick fields out of a webhook payload (``$.repository.full_name``,
``$.commits[0].id``, ``$.headers["x-y"]``); no wildcards, filters or slices, so a path always
names at most one value. A path that does not match yields ``None``.
"""

from __future__ import annotations

import re
from typing import Any

Path = tuple[str | int, ...]

_NAME = re.compile(r"\.([A-Za-z_][A-Za-z0-9_\-]*)")
_INDEX = re.compile(r"\[(-?\d+)\]")
_QUOTED = re.compile(r"""\[(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\]""")


class PathError(ValueError):
    pass


def is_path(value: Any) -> bool:
    """Strings starting with ``$`` are paths; ``$$…`` escapes a literal ``$…``."""
    return isinstance(value, str) and value.startswith("$") and not value.startswith("$$")


def parse(expr: str) -> Path:
    """``$.a.b[0]["c d"]`` → ``("a", "b", 0, "c d")``; raises PathError saying where it stops."""
    if not expr.startswith("$"):
        raise PathError(f"a path starts with '$', got {expr!r}")
    out: list[str | int] = []
    i = 1
    while i < len(expr):
        for pattern in (_NAME, _INDEX, _QUOTED):
            m = pattern.match(expr, i)
            if m is None:
                continue
            if pattern is _INDEX:
                out.append(int(m.group(1)))
            elif pattern is _QUOTED:
                raw = m.group(1) if m.group(1) is not None else m.group(2)
                out.append(re.sub(r"\\(.)", r"\1", raw))
            else:
                out.append(m.group(1))
            i = m.end()
            break
        else:
            raise PathError(
                f"invalid path {expr!r} at position {i}: expected .name, [index] or [\"key\"]"
            )
    return tuple(out)


def resolve(data: Any, path: Path) -> Any:
    """The value at ``path`` in ``data``, or None when any step is missing."""
    cur = data
    for step in path:
        if isinstance(step, int):
            if not isinstance(cur, list) or not -len(cur) <= step < len(cur):
                return None
            cur = cur[step]
        else:
            if not isinstance(cur, dict) or step not in cur:
                return None
            cur = cur[step]
    return cur


def check_template(template: Any, where: str) -> None:
    """Raise PathError (prefixed with ``where``, the config key) for any invalid path."""
    if is_path(template):
        try:
            parse(template)
        except PathError as exc:
            raise PathError(f"{where}: {exc}") from None
    elif isinstance(template, dict):
        for key, value in template.items():
            check_template(value, f"{where}.{key}")
    elif isinstance(template, list):
        for n, value in enumerate(template):
            check_template(value, f"{where}[{n}]")


def render(template: Any, data: Any) -> Any:
    """Build a value from ``template``: paths are replaced by what they select in ``data``;
    other values are kept (``$$x`` becomes the literal ``$x``)."""
    if is_path(template):
        return resolve(data, parse(template))
    if isinstance(template, str) and template.startswith("$$"):
        return template[1:]
    if isinstance(template, dict):
        return {k: render(v, data) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, data) for v in template]
    return template
