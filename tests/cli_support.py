"""Command lines written elsewhere (the Helm chart, compose, Dockerfiles, CI workflows) checked
against the real `dockyard` argument parser."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

import pytest

from dockyard import cli, deploy_cli


def parse_cli(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> argparse.Namespace:
    """``dockyard ARGV`` through the real parser, stopping before the command runs."""
    seen: list[argparse.Namespace] = []

    def capture(args: argparse.Namespace, **_: Any) -> int:
        seen.append(args)
        return 0

    for name in ("_serve", "_worker", "_migrate"):
        monkeypatch.setattr(cli, name, capture)
    monkeypatch.setattr(deploy_cli, "run", capture)
    monkeypatch.setattr(cli, "configure_logging", lambda *a, **k: None)
    try:
        assert cli.main(argv) == 0
    except SystemExit as exc:  # argparse rejects the command line
        pytest.fail(f"`dockyard {shlex.join(argv)}` is not a valid command line (exit {exc.code})")
    return seen[0]
