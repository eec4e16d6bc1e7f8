"""CLI start-up checks."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dockyard.cli import _check_port_free, main
from dockyard.errors import ConfigError
from tests.conftest import NewDatabase


def test_busy_port_is_reported_with_the_setting_to_change() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ConfigError) as err:
            _check_port_free("127.0.0.1", port)
    assert "DOCKYARD_PORT" in str(err.value) and str(port) in str(err.value)


def test_free_port_passes() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _check_port_free("127.0.0.1", port)


def test_worker_on_sqlite_refuses_with_a_reason(
    tmp_path: object, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKYARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("DOCKYARD_REDIS_URL", raising=False)
    monkeypatch.setenv("DOCKYARD_CONFIG", "")  # main() exports it; restored after the test
    assert main(["worker", "tests/e2e/project", "--insecure"]) == 2
    assert "postgresql://" in capsys.readouterr().err


def test_serve_refuses_to_start_without_auth(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKYARD_AUTH", raising=False)
    monkeypatch.setenv("DOCKYARD_CONFIG", "")
    for command in ("serve", "worker"):
        assert main([command, "tests/e2e/project"]) == 2
        err = capsys.readouterr().err
        assert "DOCKYARD_AUTH" in err and "--insecure" in err


def test_tenants_and_keys_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    new_database: NewDatabase,
) -> None:
    monkeypatch.setenv("DOCKYARD_CONFIG", "")
    monkeypatch.setenv("DOCKYARD_DATABASE_URL", new_database())
    where = ["--project", "tests/e2e/project", "--data-dir", str(tmp_path)]
    assert main(["tenants", "create", "acme", *where]) == 0
    assert main(["tenants", "create", "acme", *where]) == 2  # exists
    assert main(["keys", "create", "--tenant", "nope", "--role", "viewer", *where]) == 2
    capsys.readouterr()
    assert main(["keys", "create", "--tenant", "acme", "--role", "approver", "--name", "ci",
                 "--expires-in", "30", *where]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith("dk_") and "only time" in out.err
    assert main(["tenants", "list", *where]) == 0
    assert "acme" in capsys.readouterr().out
    assert main(["keys", "list", "--tenant", "acme", *where]) == 0
    listing = capsys.readouterr().out
    assert key.split("_")[1] in listing and key not in listing and "approver" in listing
    key_id = listing.splitlines()[1].split("\t")[0]
    assert main(["keys", "revoke", key_id, *where]) == 0
    assert main(["keys", "revoke", "no-such-key", *where]) == 2
    capsys.readouterr()
    assert main(["keys", "list", *where]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(key_id))
    assert row.split("\t")[7] != "-"  # revoked_at
