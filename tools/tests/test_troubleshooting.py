"""Each test reproduces an entry of notes/troubleshooting.md and checks its error text.

The error text in the note is the first thing a learner searches for, so it has to
be exactly what the software prints. Where a mistake is needed (daphne missing,
a setting deleted), it is made in a settings module written to a scratch folder,
never in the step itself.
"""

import asyncio
import re
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from workshop.ports import free_port
from workshop.step_support import load_testsupport
from workshop.steps import tutorial_consumer_steps, tutorial_tests_step

NOTE = (
    Path(__file__).resolve().parents[2] / "notes" / "troubleshooting.md"
).read_text()
# The tutorial's chat (its protocol, no login): the synchronous consumer's step and
# the asynchronous one's; and the step of the tutorial's browser tests.
SYNC_CHAT, ASYNC_CHAT = (step.path for step in tutorial_consumer_steps())
TUTORIAL_TESTS = tutorial_tests_step().path
ORIGIN = "http://127.0.0.1:8000"
# The server runs as the steps' own tests run it.
runserver = load_testsupport("servers").runserver
ServerProcess = load_testsupport("servers").ServerProcess
# The keys these tests write to Redis start with this, so that flushing them leaves a
# shared REDIS_URL's other keys alone.
REDIS_PREFIX = "workshop-troubleshooting"


def in_note(text: str) -> bool:
    """The note names `text` exactly (ignoring line wrapping)."""
    return " ".join(text.split()) in " ".join(NOTE.split())


def assert_reproduced(text: str, output: str, as_noted: str | None = None):
    """`text` is in the output, and the note names it (as `as_noted`: port 8000, ...)."""
    assert text in output, f"the software no longer prints {text!r}:\n{output[-3000:]}"
    noted = as_noted or text
    assert in_note(noted), f"notes/troubleshooting.md does not name {noted!r}"


@pytest.fixture
def broken_settings(tmp_path):
    """Write settings that import the step's and then break one thing."""

    def write(body: str) -> dict:
        module = tmp_path / "broken_settings.py"
        module.write_text(
            "from mysite.settings import *  # noqa\n" + textwrap.dedent(body)
        )
        return {
            "PYTHONPATH": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "broken_settings",
        }

    return write


def run_python(
    step: Path, code: str, env: dict | None = None, timeout: int = 60
) -> str:
    import os

    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=step,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result.stdout + result.stderr


def run_manage(step: Path, args: list[str], env: dict, timeout: int = 120) -> str:
    import os

    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=step,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result.stdout + result.stderr


def test_wsgi_runserver_when_daphne_is_not_installed(broken_settings):
    env = broken_settings(
        'INSTALLED_APPS = [a for a in INSTALLED_APPS if a != "daphne"]\n'
    )
    with runserver(SYNC_CHAT, env=env) as server:
        port = server.port
        assert server.wait_until_listening(), server.output
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(
                f"http://127.0.0.1:{port}/ws/chat/lobby/", timeout=10
            )
        assert answer.value.code == 404
        assert server.wait_for_output("Not Found: /ws/chat/lobby/", timeout=5)

    assert_reproduced(
        f"Starting development server at http://127.0.0.1:{port}/",
        server.output,
        as_noted="Starting development server at http://127.0.0.1:8000/",
    )
    assert_reproduced("Not Found: /ws/chat/lobby/", server.output)


def test_daphne_after_staticfiles(broken_settings):
    env = broken_settings("""
        INSTALLED_APPS = [a for a in INSTALLED_APPS if a != "daphne"]
        INSTALLED_APPS.insert(INSTALLED_APPS.index("django.contrib.staticfiles") + 1, "daphne")
    """)

    output = run_manage(SYNC_CHAT, ["check"], env)

    assert_reproduced(
        "?: (daphne.E001) Daphne must be listed before django.contrib.staticfiles in INSTALLED_APPS.",
        output,
    )


def test_asgi_application_not_set(broken_settings):
    env = broken_settings("del ASGI_APPLICATION\n")

    output = run_manage(
        SYNC_CHAT, ["runserver", f"127.0.0.1:{free_port()}", "--noreload"], env
    )

    assert_reproduced(
        "CommandError: You have not set ASGI_APPLICATION, which is needed to run the server.",
        output,
    )


def test_websocket_sent_to_djangos_own_asgi_application():
    output = run_python(
        SYNC_CHAT,
        """
        import asyncio, os
        os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
        from channels.testing import WebsocketCommunicator
        from django.core.asgi import get_asgi_application
        communicator = WebsocketCommunicator(get_asgi_application(), "/ws/chat/lobby/")
        asyncio.run(communicator.connect())
        """,
    )

    assert_reproduced(
        "ValueError: Django can only handle ASGI/HTTP connections, not websocket.",
        output,
    )


def test_consumer_routed_without_as_asgi():
    output = run_python(
        SYNC_CHAT,
        """
        import asyncio, os
        os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
        import django
        django.setup()
        from channels.routing import URLRouter
        from channels.testing import WebsocketCommunicator
        from django.urls import re_path
        from chat.consumers import ChatConsumer
        router = URLRouter([re_path(r"ws/chat/(?P<room_name>.+)/$", ChatConsumer)])
        asyncio.run(WebsocketCommunicator(router, "/ws/chat/lobby/").connect())
        """,
    )

    assert_reproduced(
        "TypeError: object ChatConsumer can't be used in 'await' expression", output
    )


def test_models_imported_before_django_is_set_up():
    output = run_python(
        SYNC_CHAT,
        """
        import os
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
        from django.contrib.auth.models import User  # as a consumer importing a model would
        from django.core.asgi import get_asgi_application
        """,
    )

    assert_reproduced(
        "django.core.exceptions.AppRegistryNotReady: Apps aren't loaded yet.", output
    )


def test_uvicorn_without_a_websocket_library():
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "mysite.asgi:application",
        "--port", str(port), "--ws", "none",
    ]  # fmt: skip
    with ServerProcess(command, ASYNC_CHAT, port) as server:
        assert server.wait_until_listening(), server.output
        with pytest.raises(InvalidStatus):
            connect(
                f"ws://127.0.0.1:{port}/ws/chat/lobby/", origin=ORIGIN, open_timeout=5
            )
        assert server.wait_for_output("Unsupported upgrade request.", timeout=5)

    assert_reproduced("WARNING:  Unsupported upgrade request.", server.output)


def chat_pair_across_two_servers(env: dict) -> tuple[str, str | None]:
    """Start two servers of the async chat; a client on each, same room; A speaks.
    What did B get?"""
    servers = []
    for _ in range(2):
        servers.append(runserver(ASYNC_CHAT, env=env).start())
    try:
        for server in servers:
            assert server.wait_until_listening(), server.output
        url = "ws://127.0.0.1:{}/ws/chat/across/"
        with (
            connect(url.format(servers[0].port), origin=ORIGIN) as on_a,
            connect(url.format(servers[1].port), origin=ORIGIN) as on_b,
        ):
            on_a.send('{"message": "hello from A"}')
            own = on_a.recv(timeout=5)
            try:
                other = on_b.recv(timeout=1.5)
            except TimeoutError:
                other = None
        return own, other
    finally:
        for server in servers:
            server.stop()


def test_in_memory_layer_does_not_reach_another_process():
    own, other = chat_pair_across_two_servers({"REDIS_URL": ""})

    assert own == '{"message": "hello from A"}'
    assert other is None, "the in-memory layer reached another process"
    assert in_note("the in-memory layer cannot span processes")


def test_redis_layer_reaches_another_process(redis_url):
    own, other = chat_pair_across_two_servers({"REDIS_URL": redis_url})

    assert own == other == '{"message": "hello from A"}'


def test_redis_not_running():
    from channels_redis.core import RedisChannelLayer

    port = free_port()
    layer = RedisChannelLayer(hosts=[{"address": f"redis://127.0.0.1:{port}/0"}])

    with pytest.raises(Exception) as error:
        asyncio.run(layer.send("test_channel", {"type": "hello"}))

    text = f"{type(error.value).__module__}.{type(error.value).__name__}: {error.value}"
    assert_reproduced(
        f"redis.exceptions.ConnectionError: Error 111 connecting to 127.0.0.1:{port}."
        f" Connect call failed ('127.0.0.1', {port}).",
        text,
        as_noted="redis.exceptions.ConnectionError: Error 111 connecting to 127.0.0.1:6379."
        " Connect call failed ('127.0.0.1', 6379).",
    )


def test_origin_validator_refuses_without_an_error():
    with runserver(SYNC_CHAT) as server:
        port = server.port
        assert server.wait_until_listening(), server.output
        with pytest.raises(InvalidStatus) as refusal:
            connect(
                f"ws://localhost:{port}/ws/chat/lobby/",
                origin="http://my-laptop.local:8000",
                open_timeout=5,
            )
        assert server.wait_for_output("WebSocket REJECT", timeout=5)

    assert_reproduced(
        "server rejected WebSocket connection: HTTP 403", str(refusal.value)
    )
    assert_reproduced("WebSocket REJECT /ws/chat/lobby/", server.output)
    assert "Traceback" not in server.output


def test_live_server_test_case_with_an_in_memory_database(broken_settings):
    env = broken_settings('DATABASES["default"]["TEST"] = {}\n')

    output = run_manage(TUTORIAL_TESTS, ["test", "chat.tests"], env)

    assert_reproduced(
        "django.core.exceptions.ImproperlyConfigured: ChannelLiveServerTestCase can not be"
        " used with in memory databases",
        output,
    )


@pytest.mark.parametrize(
    "old_name", ["switch_to_window", "find_element_by_css_selector"]
)
def test_selenium_3_names(old_name):
    from selenium.webdriver.chrome.webdriver import WebDriver

    driver = object.__new__(WebDriver)  # no browser needed to look up a name

    with pytest.raises(AttributeError) as error:
        getattr(driver, old_name)

    assert_reproduced(
        f"AttributeError: 'WebDriver' object has no attribute '{old_name}'",
        f"AttributeError: {error.value}",
    )


def test_group_name_the_layer_refuses():
    from channels.layers import InMemoryChannelLayer

    with pytest.raises(TypeError) as error:
        asyncio.run(InMemoryChannelLayer().group_add("chat_café", "specific.x!y"))

    assert_reproduced(
        "TypeError: Group name must be a valid unicode string with length < 100 containing"
        " only ASCII alphanumerics, hyphens, underscores, or periods.",
        f"TypeError: {error.value}",
    )


async def test_redis_py_8_read_timeout_without_socket_timeout_none(redis_url):
    import redis
    from channels_redis.core import RedisChannelLayer

    # The official tutorial's configuration: hosts without "socket_timeout": None.
    layer = RedisChannelLayer(hosts=[redis_url])
    channel = await layer.new_channel()
    try:
        with pytest.raises(redis.exceptions.TimeoutError) as error:
            await asyncio.wait_for(layer.receive(channel), timeout=12)
    finally:
        await layer.close_pools()

    text = f"redis.exceptions.TimeoutError: {error.value}"
    assert re.search(r"Timeout reading from 127\.0\.0\.1:\d+", text), text
    assert in_note("redis.exceptions.TimeoutError: Timeout reading from 127.0.0.1:6379")


async def test_redis_layer_with_socket_timeout_none_waits_quietly(redis_url):
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[{"address": redis_url, "socket_timeout": None}])
    channel = await layer.new_channel()
    try:
        # asyncio.TimeoutError: on Python 3.10 it is not yet the built-in TimeoutError.
        with pytest.raises(asyncio.TimeoutError):  # our own limit, not Redis'
            await asyncio.wait_for(layer.receive(channel), timeout=7)
    finally:
        await layer.close_pools()


async def crowd_joins(layer, size=150):
    channels = [await layer.new_channel() for _ in range(size)]
    try:
        await asyncio.gather(*(layer.group_add("chat_lobby", c) for c in channels))
    finally:
        await layer.flush()
        await layer.close_pools()


async def test_redis_py_8_pool_of_100_connections(redis_url):
    import redis
    from channels_redis.core import RedisChannelLayer

    # The read-timeout fix alone, without "max_connections".
    host = {"address": redis_url, "socket_timeout": None}
    layer = RedisChannelLayer(hosts=[host], prefix=REDIS_PREFIX)

    with pytest.raises(redis.exceptions.MaxConnectionsError) as error:
        await crowd_joins(layer)

    assert_reproduced(
        "redis.exceptions.MaxConnectionsError: Too many connections",
        f"redis.exceptions.MaxConnectionsError: {error.value}",
    )


async def test_redis_layer_with_max_connections_serves_a_crowd(redis_url):
    from channels_redis.core import RedisChannelLayer

    host = {"address": redis_url, "socket_timeout": None, "max_connections": 10_000}
    layer = RedisChannelLayer(hosts=[host], prefix=REDIS_PREFIX)

    await crowd_joins(layer)  # no error
