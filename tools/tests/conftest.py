"""Fixtures of the tooling's own tests: a real redis-server for the whole run."""

import os
import shutil
from urllib.parse import urlparse

import pytest

from workshop.redis_process import RedisServer, ping
from workshop.requirements import part_missing

HOW_TO_GET_REDIS = (
    "needs Redis: no redis-server found: install it (apt install redis-server |"
    " brew install redis) or set REDIS_URL=redis://host:port/0"
)


@pytest.fixture(scope="session")
def redis_url():
    given = os.environ.get("REDIS_URL")
    if given:
        parsed = urlparse(given)
        if not ping(parsed.port or 6379, parsed.hostname or "127.0.0.1"):
            pytest.fail(f"REDIS_URL={given} does not answer PING")
        yield given
        return
    executable = shutil.which("redis-server")
    if executable is None:
        part_missing(HOW_TO_GET_REDIS, "REQUIRE_REDIS")
    server = RedisServer(executable).start()
    yield server.url
    server.close()
