"""Fixtures of the tooling's own tests: a real redis-server for the whole run."""

import os

import pytest

from workshop.redis_server import ping, start_test_redis


@pytest.fixture(scope="session")
def redis_url():
    given = os.environ.get("REDIS_URL")
    if given:
        from urllib.parse import urlparse

        parsed = urlparse(given)
        if not ping(parsed.port or 6379, parsed.hostname or "127.0.0.1"):
            pytest.fail(f"REDIS_URL={given} does not answer PING")
        yield given
        return
    server = start_test_redis()
    yield server.url
    server.close()
