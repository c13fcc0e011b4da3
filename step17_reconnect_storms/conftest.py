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
- postgres_server: a real PostgreSQL server that the tests start on a free port
  (testsupport/postgres.py), or a skip that says how to get one.
- server_database: for a test's own server processes, a new migrated database:
  an SQLite file, or with `pytest --database=postgresql` a PostgreSQL database.

`pytest --database=postgresql` runs every test on PostgreSQL instead of SQLite.
"""

import copy
import os
import unittest
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings

from testsupport.accounts import fresh_sqlite_database, prepare_template
from testsupport.browser import make_driver
from testsupport.layers import TEST_PREFIX, channel_layers_from_settings, settings_value
from testsupport.postgres import start_postgres_server
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
    parser.addoption(
        "--database",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="run the tests on SQLite (default), or on a PostgreSQL server they start",
    )
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
def redis_keys_of_its_own(settings):
    """Presence a test keeps in Redis is the test's own (mysite/settings.py)."""
    settings.CHAT_REDIS_PREFIX = f"{TEST_PREFIX}:{uuid.uuid4().hex}:"


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Tests only: a fast password hasher, as Django's documentation advises for
    tests (the default takes a quarter of a second of CPU per password, by design)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of our own, started once for the whole test run."""
    server = start_postgres_server()
    yield server
    server.close()


def on_postgresql(config) -> bool:
    return config.getoption("--database") == "postgresql"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(request):
    """pytest-django asks this fixture for the database settings just before it
    creates the test database: with --database=postgresql, they are the ones
    mysite/settings.py builds from a DATABASE_URL (with its connection pool)."""
    if not on_postgresql(request.config):
        return
    from django.conf import settings
    from django.db import connections

    server = request.getfixturevalue("postgres_server")
    postgresql = settings_value("DATABASES", {"DATABASE_URL": server.url("chat")})
    settings.DATABASES["default"].clear()
    settings.DATABASES["default"].update(postgresql["default"])
    # Named, because the browser tests' server process (ChannelsLiveServerTestCase)
    # uses TEST's NAME, or else puts "test_" once more before the name in use.
    settings.DATABASES["default"]["TEST"] = {"NAME": "test_chat"}
    connections.configure_settings(settings.DATABASES)  # Django's defaults, "TEST"...
    connections.close_all()
    del connections["default"]  # the next use connects with the new settings


@pytest.fixture(scope="session")
def migrated_template(request, step_dir, tmp_path_factory):
    """Migrations run once: into this database, which each server_database copies."""
    if on_postgresql(request.config):
        server = request.getfixturevalue("postgres_server")
        url = server.create_database("service_template")
        sessions = tmp_path_factory.mktemp("template") / "sessions.json"
        prepare_template(step_dir, {"DATABASE_URL": url}, sessions)
        return "service_template", sessions
    return tmp_path_factory.mktemp("template") / "migrated.sqlite3"


@pytest.fixture
def server_database(request, step_dir, migrated_template, tmp_path):
    """The environment that gives a test's own servers a new, migrated database."""
    if on_postgresql(request.config):
        server = request.getfixturevalue("postgres_server")
        template, sessions = migrated_template
        name = f"service_{uuid.uuid4().hex}"
        url = server.create_database(name, template)
        return {"DATABASE_URL": url, "TEST_SESSIONS": str(sessions)}
    return fresh_sqlite_database(
        step_dir, migrated_template, tmp_path / "service.sqlite3"
    )
