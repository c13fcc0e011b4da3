"""Fixtures shared by every step's tests.

Each step's pytest.ini loads this file (`-p workshop.pytest_plugin`), so the
fixtures exist once, here, instead of in a conftest.py copied into every step.

- redis_url: a real redis-server on a free port for the test session (or REDIS_URL).
- channel_layer: parametrised, so a test that asks for it runs once on the
  in-memory layer and once on the Redis layer, each configured by the step's settings
  (a step's pytest.ini can name more layers: `channel_layers = in-memory redis
  redis-pubsub`).
- browser: a real headless Chromium driven by Selenium.
- step_dir: the step folder the tests run in.
"""

import copy
import os
from pathlib import Path

import pytest
import pytest_asyncio

from workshop.redis_server import ping, start_test_redis
from workshop.requirements import part_missing


def pytest_addoption(parser):
    parser.addini(
        "channel_layers",
        "the channel layers a test that takes `channel_layer` runs on",
        type="args",
        default=["in-memory", "redis"],
    )


def pytest_configure(config):
    give_forked_children_a_fresh_asgiref_executor()


def pytest_generate_tests(metafunc):
    # A test's own @pytest.mark.parametrize("channel_layer", ...) wins.
    if "channel_layer" in metafunc.fixturenames and not any(
        "channel_layer" in mark.args[0]
        for mark in metafunc.definition.iter_markers("parametrize")
    ):
        layers = metafunc.config.getini("channel_layers")
        unknown = set(layers) - set(LAYER_BACKENDS)
        if unknown:
            raise pytest.UsageError(
                f"channel_layers names {sorted(unknown)}; known: {sorted(LAYER_BACKENDS)}"
            )
        metafunc.parametrize("channel_layer", layers, indirect=True)


def give_forked_children_a_fresh_asgiref_executor():
    """ChannelsLiveServerTestCase forks its Daphne server from the test process.

    asgiref runs database_sync_to_async work on one ThreadPoolExecutor per process;
    a forked child inherits that executor but not its thread, so once earlier tests
    have used it, the child's first database call (the auth middleware's session
    lookup) waits forever and the browser's handshake times out. Give each forked
    child an executor of its own.
    """
    if not hasattr(os, "register_at_fork"):
        return  # no fork on this platform: the live server is spawned afresh

    def fresh_executor():
        from concurrent.futures import ThreadPoolExecutor

        from asgiref.sync import SyncToAsync

        SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)

    os.register_at_fork(after_in_child=fresh_executor)


def pytest_report_header(config):
    wanted = [
        name
        for name in ("REQUIRE_REDIS", "REQUIRE_BROWSER")
        if os.environ.get(name) == "1"
    ]
    if wanted:
        return "missing parts fail instead of skipping: " + ", ".join(wanted)
    return "missing parts (redis-server, Chromium) skip their tests; REQUIRE_REDIS=1 / REQUIRE_BROWSER=1 make that a failure"


@pytest.fixture(scope="session")
def step_dir(request) -> Path:
    return Path(request.config.rootpath)


@pytest.fixture(scope="session")
def redis_server():
    """A redis-server process of our own, started once for the test session."""
    server = start_test_redis()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url(request) -> str:
    """Where the Redis tests connect: REDIS_URL when given, else our own redis-server."""
    given = os.environ.get("REDIS_URL")
    if given:
        from urllib.parse import urlparse

        parsed = urlparse(given)
        if not ping(parsed.port or 6379, parsed.hostname or "127.0.0.1"):
            part_missing(
                f"REDIS_URL={given} does not answer PING: start Redis (make redis)",
                "REQUIRE_REDIS",
            )
        return given
    return request.getfixturevalue("redis_server").url


LAYER_BACKENDS = {
    "in-memory": "channels.layers.InMemoryChannelLayer",
    "redis": "channels_redis.core.RedisChannelLayer",
    "redis-pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
# What the settings are given to choose each layer (besides REDIS_URL).
LAYER_ENVIRONMENT = {"redis-pubsub": {"REDIS_LAYER": "pubsub"}}


@pytest_asyncio.fixture
async def channel_layer(request, settings):
    """The step's channel layer, once in memory and once on a real Redis.

    The configuration is the one the step's settings build (with and without
    REDIS_URL). Changing settings.CHANNEL_LAYERS makes Channels build a new layer.
    """
    from channels.layers import get_channel_layer

    from workshop.layers import TEST_PREFIX, channel_layers_from_settings

    redis_url = (
        request.getfixturevalue("redis_url")
        if request.param.startswith("redis")
        else None
    )
    chooser = LAYER_ENVIRONMENT.get(request.param, {})
    layers = copy.deepcopy(channel_layers_from_settings(redis_url, chooser))
    backend = layers["default"]["BACKEND"]
    assert backend == LAYER_BACKENDS[request.param], (
        f"with REDIS_URL={'set' if redis_url else 'unset'} and {chooser} the settings"
        f" chose {backend}"
    )
    if redis_url:
        layers["default"].setdefault("CONFIG", {})["prefix"] = TEST_PREFIX
    settings.CHANNEL_LAYERS = layers

    layer = get_channel_layer()
    yield layer
    await layer.flush()
    if hasattr(layer, "close_pools"):
        await layer.close_pools()


@pytest.fixture
def browser():
    """A fresh headless Chromium window; skipped (or failed, REQUIRE_BROWSER=1) if none."""
    from workshop.browser import make_driver

    driver = make_driver()
    yield driver
    driver.quit()
