"""pytest loads this file before the tests: the fixtures they share.

- step_dir: this step's folder, where manage.py is.
- channel_layer: a test that takes it runs once per layer named by `channel_layers`
  in pytest.ini (here the in-memory layer; step 4 adds Redis), configured by
  mysite/settings.py. `pytest -o channel_layers=settings` runs it once instead, on
  whatever layer the settings choose (Redis, if REDIS_URL is set).
"""

import copy
from pathlib import Path

import pytest
import pytest_asyncio

from testsupport.layers import channel_layers_from_settings

# The layer each name of `channel_layers` must get from the settings.
LAYER_BACKENDS = {"in-memory": "channels.layers.InMemoryChannelLayer"}


def pytest_addoption(parser):
    parser.addini(
        "channel_layers",
        "the channel layers a test that takes `channel_layer` runs on",
        type="args",
        default=list(LAYER_BACKENDS),
    )


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


@pytest_asyncio.fixture
async def channel_layer(request, settings):
    """The step's channel layer, built from its settings, emptied after the test.

    Assigning settings.CHANNEL_LAYERS makes Channels build a new layer for the test.
    """
    from channels.layers import get_channel_layer
    from channels.testing import WebsocketCommunicator

    if request.param == "settings":
        layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    else:
        layers = copy.deepcopy(channel_layers_from_settings(None))
        backend = layers["default"]["BACKEND"]
        assert backend == LAYER_BACKENDS[request.param], (
            f"without REDIS_URL, mysite/settings.py chose {backend}, not the"
            f" {request.param} layer"
        )
    settings.CHANNEL_LAYERS = layers

    # A test that fails halfway leaves its sockets open: close them while the event
    # loop still runs, or a synchronous consumer's thread, left waiting on the loop,
    # would keep pytest from exiting.
    opened = []
    original_init = WebsocketCommunicator.__init__

    def remember(communicator, *args, **kwargs):
        original_init(communicator, *args, **kwargs)
        opened.append(communicator)

    request.getfixturevalue("monkeypatch").setattr(
        WebsocketCommunicator, "__init__", remember
    )
    layer = get_channel_layer()
    yield layer
    for communicator in opened:
        if not communicator.future.done():
            try:
                await communicator.disconnect()
            except Exception:
                pass  # the test has failed already; this is only the cleanup
    await layer.flush()
    if hasattr(layer, "close_pools"):
        await layer.close_pools()
