"""``/ok?check_db=1`` against a real Redis: the bus answers PING; a dead one is reported, no password."""

from __future__ import annotations

from dockyard.services.health import check_dependencies
from dockyard.streams.redis import RedisBus
from tests.redis_support import require_redis


async def test_redis_bus_ping() -> None:
    bus = RedisBus.from_url(require_redis())
    try:
        assert await bus.ping() is True
        ok, checks = await check_dependencies({"bus": bus.ping})
        assert ok and checks["bus"]["ok"] is True
    finally:
        await bus.aclose()


async def test_unreachable_redis_is_reported_without_its_password() -> None:
    url = "redis://:topsecret1@127.0.0.1:1/0"  # nothing listens on port 1
    bus = RedisBus.from_url(url)
    try:
        ok, checks = await check_dependencies({"bus": bus.ping}, secret_urls=[url])
    finally:
        await bus.aclose()
    assert not ok
    assert checks["bus"]["ok"] is False
    assert checks["bus"]["error"]
    assert "topsecret1" not in str(checks)
