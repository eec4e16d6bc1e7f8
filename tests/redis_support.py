"""Finding the Redis server the integration and e2e tests use.

``DOCKYARD_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``). When Redis is unreachable the
tests skip with the reason, except under ``CI=true``, where they fail: CI must run them.
"""

from __future__ import annotations

import os
import uuid

import pytest
import redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    return os.environ.get("DOCKYARD_TEST_REDIS_URL") or DEFAULT_URL


def require_redis() -> str:
    """The URL of a reachable Redis, or skip (fail under CI=true) saying why."""
    url = redis_url()
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2) as client:
            client.ping()
    except (redis.RedisError, OSError) as exc:
        message = (f"Redis is unreachable at {url} ({exc}); start one or set "
                   "DOCKYARD_TEST_REDIS_URL")
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: the Redis tests must run, not skip. {message}", pytrace=False)
        pytest.skip(message)
    return url


def unique_prefix() -> str:
    return f"dockyard-test-{uuid.uuid4().hex[:12]}"


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix:`` (a test's leftovers)."""
    with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
