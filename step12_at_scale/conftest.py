"""pytest loads this file before the tests: the fixtures they share.

- step_dir: this step's folder, where manage.py is.
- redis_url: where the Redis tests connect: a real redis-server that the tests start
  on a free port (or the Redis you name with REDIS_URL). Skipped, with a reason that
  says how to get one, when there is none.
- channel_layer: a test that takes it runs once per layer named by `channel_layers`
  in pytest.ini (the in-memory layer, Redis, Redis pub/sub), each configured by
  mysite/settings.py. `pytest -o channel_layers=settings` runs it once instead, on
  whatever layer the settings choose.
- browser: a fresh headless Chromium driven by Selenium (testsupport/browser.py),
  skipped with a reason that says how to get one when there is none.
"""

import copy
import os
import unittest
from pathlib import Path
from urllib.parse import urlparse

import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings

from testsupport.browser import make_driver
from testsupport.layers import TEST_PREFIX, channel_layers_from_settings
from testsupport.redis_server import ping, start_redis_server

# Hypothesis (chat/test_protocol_properties.py): a quick run by default; CI asks for
# many more examples with `pytest --hypothesis-profile=thorough`.
hypothesis_settings.register_profile("quick", max_examples=10)
hypothesis_settings.register_profile("thorough", max_examples=300)
hypothesis_settings.load_profile("quick")

# The layer each name of `channel_layers` must get from the settings.
LAYER_BACKENDS = {
    "in-memory": "channels.layers.InMemoryChannelLayer",
    "redis": "channels_redis.core.RedisChannelLayer",
    "redis-pubsub": "chat.layers.BoundedPubSubChannelLayer",
}
# What the settings are given to choose each layer (besides REDIS_URL).
LAYER_ENVIRONMENT = {
    "redis": {"REDIS_LAYER": "core"},
    "redis-pubsub": {"REDIS_LAYER": "pubsub"},
}


def pytest_addoption(parser):
    parser.addini(
        "channel_layers",
        "the channel layers a test that takes `channel_layer` runs on",
        type="args",
        default=list(LAYER_BACKENDS),
    )


def pytest_configure(config):
    give_forked_children_a_fresh_asgiref_executor()


def give_forked_children_a_fresh_asgiref_executor():
    """ChannelsLiveServerTestCase forks its Daphne server from the test process.

    asgiref runs sync_to_async work on one thread per process (a ThreadPoolExecutor
    with one worker). A forked child inherits that executor but not its thread, so
    once earlier tests (the consumer tests) have used it, the child's first
    database_sync_to_async call waits forever and the browser's handshake times out.
    Give each forked child an executor of its own.
    """
    if not hasattr(os, "register_at_fork"):
        return  # no fork on this platform: the live server starts afresh

    def fresh_executor():
        from concurrent.futures import ThreadPoolExecutor

        from asgiref.sync import SyncToAsync

        SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)

    os.register_at_fork(after_in_child=fresh_executor)


def pytest_generate_tests(metafunc):
    # A test's own @pytest.mark.parametrize("channel_layer", ...) wins.
    if "channel_layer" in metafunc.fixturenames and not any(
        "channel_layer" in mark.args[0]
        for mark in metafunc.definition.iter_markers("parametrize")
    ):
        layers = metafunc.config.getini("channel_layers")
        unknown = set(layers) - {*LAYER_BACKENDS, "settings"}
        if unknown:
            raise pytest.UsageError(
                f"channel_layers names {sorted(unknown)}; known:"
                f" {sorted(LAYER_BACKENDS)} and settings"
            )
        metafunc.parametrize("channel_layer", layers, indirect=True)


@pytest.fixture(scope="session")
def step_dir() -> Path:
    return Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def redis_server():
    """A redis-server process of our own, started once for the whole test run."""
    server = start_redis_server()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url(request) -> str:
    """REDIS_URL when you set it, else the URL of our own redis-server."""
    given = os.environ.get("REDIS_URL")
    if not given:
        return request.getfixturevalue("redis_server").url
    parsed = urlparse(given)
    if not ping(parsed.port or 6379, parsed.hostname or "127.0.0.1"):
        raise unittest.SkipTest(
            f"needs Redis: REDIS_URL={given} does not answer: start that Redis,"
            " or unset REDIS_URL to let the tests start their own"
        )
    return given


@pytest_asyncio.fixture
async def channel_layer(request, settings):
    """The step's channel layer, built from its settings, emptied after the test.

    Assigning settings.CHANNEL_LAYERS makes Channels build a new layer for the test.
    """
    from channels.layers import get_channel_layer

    if request.param == "settings":
        layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    else:
        redis_url = (
            request.getfixturevalue("redis_url")
            if request.param.startswith("redis")
            else None
        )
        chooser = LAYER_ENVIRONMENT.get(request.param, {})
        layers = copy.deepcopy(channel_layers_from_settings(redis_url, chooser))
        backend = layers["default"]["BACKEND"]
        assert backend == LAYER_BACKENDS[request.param], (
            f"with REDIS_URL {'set' if redis_url else 'unset'}, mysite/settings.py"
            f" chose {backend}, not the {request.param} layer"
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
    """A fresh headless Chromium window, closed after the test."""
    driver = make_driver()
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Tests only: a fast password hasher, as Django's documentation advises for
    tests (the default takes a quarter of a second of CPU per password, by design)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
