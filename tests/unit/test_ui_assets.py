"""The debugger UI's assets without a browser: served at /ui, every referenced module exists."""

from __future__ import annotations

import re
from pathlib import Path

from dockyard.ui import STATIC

OFFSITE = re.compile(r"""(?:from|import\(|fetch\(|url\()\s*["']?(?:https?:)?//""")
IMPORT = re.compile(r"""^import\s.*?from\s+["'](\.[^"']+)["']""", re.M | re.S)


def test_index_references_only_shipped_assets() -> None:
    html = (STATIC / "index.html").read_text()
    refs = re.findall(r"""(?:src|href)="/ui/([^"]+)\"""", html)
    assert refs, "index.html references no /ui asset"
    for ref in refs:
        assert (STATIC / ref).is_file(), ref
    assert "http://" not in html and "https://" not in html  # no CDN


def test_every_relative_import_resolves() -> None:
    modules = sorted(STATIC.rglob("*.js"))
    assert modules
    for module in modules:
        text = module.read_text()
        # Nothing is fetched off-site (XML namespace URIs are names, not requests).
        assert not OFFSITE.search(text), module
        for target in IMPORT.findall(text):
            assert (module.parent / target).resolve().is_file(), f"{module.name}: {target}"


def test_static_dir_is_inside_the_package() -> None:
    import dockyard

    assert Path(dockyard.__file__).parent in STATIC.parents
