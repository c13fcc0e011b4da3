"""Consumer tests: the chat through the real ASGI application, without a browser.

WebsocketCommunicator plays the browser: it opens a socket to a path of
mysite.asgi.application (origin check, auth middleware, routing and consumer
included), sends frames and receives what the consumer sends back. No server,
no browser, no network: these tests run in milliseconds.

Each test takes the `channel_layer` fixture (conftest.py), so it
runs twice: on the in-memory layer and on the Redis layer of a real redis-server.
`async def` tests run in an event loop thanks to pytest-asyncio (asyncio_mode =
auto in pytest.ini).
"""

import pytest
from channels.testing import WebsocketCommunicator

from mysite.asgi import application
from testsupport.layers import group_members

# What a browser sends from a page served by the test server. Without an Origin the
# AllowedHostsOriginValidator refuses the handshake.
BROWSER_ORIGIN = (b"origin", b"http://localhost:8000")

# How long a test waits for what must come. Only a failing test waits that long;
# a passing one goes on as soon as it comes, however busy the machine.
PATIENCE = 10


@pytest.fixture
async def open_socket(channel_layer):
    """Open sockets like the room page does; whatever is still open is closed after."""
    opened = []

    async def open_socket(room_name="lobby", headers=(BROWSER_ORIGIN,)):
        communicator = WebsocketCommunicator(
            application, f"/ws/chat/{room_name}/", headers=list(headers)
        )
        connected, _ = await communicator.connect(timeout=PATIENCE)
        opened.append(communicator)
        return communicator, connected

    yield open_socket
    for communicator in opened:
        if not communicator.future.done():
            await communicator.disconnect(timeout=PATIENCE)


async def joined(open_socket, room_name="lobby"):
    communicator, connected = await open_socket(room_name)
    assert connected, f"the socket to {room_name!r} was refused"
    return communicator


async def next_message(communicator):
    return (await communicator.receive_json_from(timeout=PATIENCE))["message"]


async def test_socket_to_a_room_is_accepted_into_its_group(open_socket, channel_layer):
    _, connected = await open_socket("lobby")

    assert connected
    assert len(await group_members(channel_layer, "chat_lobby")) == 1


async def test_message_is_echoed_to_its_sender_once(open_socket):
    alice = await joined(open_socket)

    await alice.send_json_to({"message": "hello"})
    # A barrier: a second copy of "hello" would come before this later message.
    await alice.send_json_to({"message": "barrier"})

    assert await next_message(alice) == "hello"
    assert await next_message(alice) == "barrier", "the sender got a second copy"


async def test_message_fans_out_to_every_socket_in_the_room(open_socket):
    alice = await joined(open_socket)
    bob = await joined(open_socket)
    carol = await joined(open_socket)

    await bob.send_json_to({"message": "hi all"})

    for member in (alice, bob, carol):
        assert await next_message(member) == "hi all"


async def test_rooms_are_isolated(open_socket):
    lobby = await joined(open_socket, "lobby")
    kitchen = await joined(open_socket, "kitchen")

    await lobby.send_json_to({"message": "lobby only"})
    assert await next_message(lobby) == "lobby only"
    # A barrier: the kitchen speaks after the lobby's message was sent. Had that
    # message reached the kitchen, it would be queued before this one.
    await kitchen.send_json_to({"message": "kitchen only"})

    assert await next_message(kitchen) == "kitchen only", "a message crossed rooms"


async def test_disconnect_removes_the_socket_from_the_rooms_group(
    open_socket, channel_layer
):
    alice = await joined(open_socket)
    bob = await joined(open_socket)
    assert len(await group_members(channel_layer, "chat_lobby")) == 2

    await alice.disconnect(timeout=PATIENCE)

    assert len(await group_members(channel_layer, "chat_lobby")) == 1
    await bob.send_json_to({"message": "anyone?"})
    assert await next_message(bob) == "anyone?"


@pytest.mark.parametrize(
    "headers",
    [[(b"origin", b"http://evil.example")], []],
    ids=["another origin", "no origin"],
)
async def test_handshake_from_another_site_is_rejected(
    open_socket, channel_layer, headers
):
    _, connected = await open_socket("lobby", headers=headers)

    assert not connected
    assert await group_members(channel_layer, "chat_lobby") == set()
    # The control: the same handshake from the page's own origin gets in.
    _, connected = await open_socket("lobby")
    assert connected
    assert len(await group_members(channel_layer, "chat_lobby")) == 1


async def test_nothing_arrives_until_someone_speaks(open_socket):
    alice = await joined(open_socket)
    bob = await joined(open_socket)

    await bob.send_json_to({"message": "now"})

    # The first frame alice receives is bob's message: nothing came before it.
    assert await alice.receive_json_from(timeout=PATIENCE) == {"message": "now"}


async def test_200_connect_disconnect_cycles_leave_nobody_in_the_group(
    open_socket, channel_layer
):
    for _ in range(200):
        communicator = await joined(open_socket)
        await communicator.disconnect()

    assert await group_members(channel_layer, "chat_lobby") == set()
    survivor = await joined(open_socket)
    await survivor.send_json_to({"message": "still works"})
    assert await next_message(survivor) == "still works"
