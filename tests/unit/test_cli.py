"""CLI start-up checks."""

from __future__ import annotations

import socket

import pytest

from dockyard.cli import _check_port_free, main
from dockyard.errors import ConfigError


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
