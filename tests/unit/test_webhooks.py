"""The webhook URL policy: a run must not be able to reach the server's private network."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from dockyard.errors import InvalidInput
from dockyard.runtime.webhooks import check_webhook_url


def _resolver(*addresses: str) -> Any:
    """A getaddrinfo stand-in: every host resolves to ``addresses`` (no DNS in unit tests)."""

    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        out = []
        for addr in addresses:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sockaddr = (addr, port, 0, 0) if family == socket.AF_INET6 else (addr, port)
            out.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return out

    return fake


def _refused(url: str, code: str, **kwargs: Any) -> str:
    with pytest.raises(InvalidInput) as info:
        check_webhook_url(url, allow_private=kwargs.pop("allow_private", False), **kwargs)
    assert info.value.code == code
    assert info.value.status == 422
    return info.value.message


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "not a url", "http:///path",
                                 "file:///etc/passwd", "javascript:alert(1)", ""])
def test_only_absolute_http_urls(url: str) -> None:
    _refused(url, "invalid_webhook")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://100.64.0.1/hook",  # carrier-grade NAT
        "http://0.0.0.0/hook",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[fc00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
        "http://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
        "http://[2002:a00:1::]/hook",  # 6to4 of 10.0.0.1
        "http://2130706433/hook",  # 127.0.0.1 as one decimal number
        "http://user:secret@127.0.0.1/hook",
        "https://127.0.0.1:443/hook",
    ],
)
def test_private_addresses_refused(url: str) -> None:
    msg = _refused(url, "webhook_forbidden")
    assert "DOCKYARD_ALLOW_PRIVATE_WEBHOOKS" in msg
    assert "secret" not in msg
    # ... and allowed when the operator says so (what `dockyard dev` does).
    assert check_webhook_url(url, allow_private=True) == url


@pytest.mark.parametrize("url", ["http://93.184.216.34/hook", "https://[2606:4700::1111]/x",
                                 "http://[::ffff:93.184.216.34]/hook"])
def test_public_addresses_allowed(url: str) -> None:
    assert check_webhook_url(url, allow_private=False) == url


def test_hostname_resolving_to_private_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _resolver("10.0.0.7"))
    assert "10.0.0.7" in _refused("https://hooks.example.com/x", "webhook_forbidden")
    # One private address among public ones is enough to refuse (DNS rebinding picks any).
    monkeypatch.setattr(socket, "getaddrinfo", _resolver("93.184.216.34", "192.168.0.2"))
    _refused("https://hooks.example.com/x", "webhook_forbidden")
    monkeypatch.setattr(socket, "getaddrinfo", _resolver("93.184.216.34", "2606:4700::1111"))
    assert check_webhook_url("https://hooks.example.com/x", allow_private=False)


def test_unresolvable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    assert "does not resolve" in _refused("https://nowhere.invalid/x", "invalid_webhook")
    # With private targets allowed the host is not resolved at all.
    assert check_webhook_url("https://nowhere.invalid/x", allow_private=True)


def test_allowed_domains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _resolver("93.184.216.34"))
    domains = ("example.com", "hooks.acme.io")
    for ok in ("https://example.com/x", "https://a.b.example.com/x", "http://hooks.acme.io/y"):
        assert check_webhook_url(ok, allow_private=False, allowed_domains=domains) == ok
    for bad in ("https://notexample.com/x", "https://example.com.evil.net/x",
                "https://acme.io/y", "https://93.184.216.34/x"):
        assert "DOCKYARD_WEBHOOK_ALLOWED_DOMAINS" in _refused(
            bad, "webhook_forbidden", allowed_domains=domains)
    # The domain list narrows targets even where private addresses are allowed.
    _refused("http://localhost/x", "webhook_forbidden", allow_private=True,
             allowed_domains=domains)
    # An allowed domain that resolves privately is still refused.
    monkeypatch.setattr(socket, "getaddrinfo", _resolver("127.0.0.1"))
    _refused("https://example.com/x", "webhook_forbidden", allowed_domains=domains)
