"""Checkpoints of the chat, through the real ASGI application.

Every test that takes `channel_layer` runs on each layer pytest.ini names: here the
in-memory layer (step 4 adds Redis), configured by mysite/settings.py.
"""

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from mysite.asgi import application
from testsupport.layers import group_members
from testsupport.servers import runserver

# The Origin header a browser sends from the page served by `make stepN`.
BROWSER_ORIGIN = (b"origin", b"http://127.0.0.1:8000")
ROOM_NAMES_THE_LAYER_REFUSES = ["café", "x" * 150, "has space", "../x"]

# How long a test waits for what must come. Only a failing test waits that long;
# a passing one goes on as soon as it comes, however busy the machine.
PATIENCE = 10


def chat_client(room_name, headers=(BROWSER_ORIGIN,)):
    return WebsocketCommunicator(application, f"/ws/chat/{room_name}/", list(headers))


async def joined(room_name):
    client = chat_client(room_name)
    connected, _ = await client.connect(timeout=PATIENCE)
    assert connected, f"the socket to room {room_name!r} was refused"
    return client


async def received_messages(client, count):
    return [
        (await client.receive_json_from(timeout=PATIENCE))["message"]
        for _ in range(count)
    ]


async def test_message_comes_back_to_its_sender(channel_layer):
    alice = await joined("lobby")

    await alice.send_json_to({"message": "hello"})

    assert await alice.receive_json_from(timeout=PATIENCE) == {"message": "hello"}
    await alice.disconnect()


async def test_everyone_in_the_room_receives_each_message_in_order(channel_layer):
    alice, bob = await joined("lobby"), await joined("lobby")

    for text in ("one", "two", "three"):
        await alice.send_json_to({"message": text})

    assert await received_messages(alice, 3) == ["one", "two", "three"]
    assert await received_messages(bob, 3) == ["one", "two", "three"]
    await alice.disconnect()
    await bob.disconnect()


async def test_a_client_in_another_room_receives_nothing(channel_layer):
    alice, carol = await joined("lobby"), await joined("kitchen")

    await alice.send_json_to({"message": "only for the lobby"})
    assert await received_messages(alice, 1) == ["only for the lobby"]
    # A barrier: carol's room speaks after alice's message was sent to the lobby.
    # Had it reached carol too, it would be queued before this one.
    await carol.send_json_to({"message": "kitchen only"})

    assert await received_messages(carol, 1) == ["kitchen only"]
    await alice.disconnect()
    await carol.disconnect()


async def test_disconnect_leaves_the_rooms_group(channel_layer):
    alice = await joined("lobby")
    assert len(await group_members(channel_layer, "chat_lobby")) == 1

    await alice.disconnect()

    assert await group_members(channel_layer, "chat_lobby") == set()


async def the_page_origin_is_still_let_in(channel_layer):
    """The control for a refusal: the same handshake with the page's own origin
    joins the room, so it was the origin, not a broken consumer, that was refused."""
    alice = await joined("lobby")
    assert len(await group_members(channel_layer, "chat_lobby")) == 1
    await alice.disconnect()


async def test_handshake_from_another_origin_is_rejected(channel_layer):
    client = chat_client("lobby", headers=[(b"origin", b"http://evil.example")])

    connected, _ = await client.connect(timeout=PATIENCE)

    assert not connected
    assert await group_members(channel_layer, "chat_lobby") == set()
    await the_page_origin_is_still_let_in(channel_layer)


async def test_handshake_without_an_origin_header_is_rejected(channel_layer):
    client = chat_client("lobby", headers=[])

    connected, _ = await client.connect(timeout=PATIENCE)

    assert not connected
    await the_page_origin_is_still_let_in(channel_layer)


async def test_channel_layer_round_trip(channel_layer):
    # The tutorial checks this in `python manage.py shell` with async_to_sync.
    await channel_layer.send("test_channel", {"type": "hello"})

    assert await channel_layer.receive("test_channel") == {"type": "hello"}


async def test_a_crowd_joins_chats_and_leaves_at_once(channel_layer):
    # More sockets at once than redis-py 8's default pool of 100 connections: see
    # CHANNEL_LAYERS. Every join and leave is a Redis command in flight.
    crowd = await asyncio.gather(*(joined("lobby") for _ in range(150)))
    assert len(await group_members(channel_layer, "chat_lobby")) == 150

    await crowd[0].send_json_to({"message": "hello, everyone"})

    for client in crowd:
        assert await received_messages(client, 1) == ["hello, everyone"]
    await asyncio.gather(*(client.disconnect() for client in crowd))
    assert await group_members(channel_layer, "chat_lobby") == set()


@pytest.mark.parametrize("room_name", ROOM_NAMES_THE_LAYER_REFUSES)
async def test_room_name_the_layer_cannot_use_is_refused_cleanly(
    channel_layer, room_name
):
    client = chat_client(room_name)

    connected, _ = await client.connect(timeout=PATIENCE)
    await client.disconnect()  # would raise if the consumer had crashed

    assert not connected
    alice = await joined("lobby")
    await alice.send_json_to({"message": "the server still serves"})
    assert await received_messages(alice, 1) == ["the server still serves"]
    await alice.disconnect()


MALFORMED_FRAMES = {
    "invalid-json": {"text_data": "this is not JSON"},
    "no-message-key": {"text_data": '{"text": "hello"}'},
    "binary-frame": {"bytes_data": b"\x00\x01binary"},
}


@pytest.mark.parametrize(
    "frame", MALFORMED_FRAMES.values(), ids=MALFORMED_FRAMES.keys()
)
async def test_malformed_frame_reaches_nobody_else(channel_layer, frame):
    sender, alice = await joined("lobby"), await joined("lobby")

    await sender.send_to(**frame)
    # A barrier: alice's next message, sent after the malformed frame, must be the
    # next thing she receives; nothing of that frame may come before it.
    await alice.send_json_to({"message": "lobby still works"})

    assert await alice.receive_json_from(timeout=PATIENCE) == {
        "message": "lobby still works"
    }
    await alice.disconnect()
    try:
        await sender.disconnect()
    except (ValueError, KeyError, TypeError):
        pass  # The tutorial's consumer fails on such a frame; only that socket closes.


def test_refused_room_names_leave_no_traceback_in_the_server_log(step_dir):
    with runserver(step_dir) as server:
        assert server.wait_until_listening(), server.output
        base = f"ws://127.0.0.1:{server.port}/ws/chat"
        origin = "http://127.0.0.1:8000"
        for path in ("caf%C3%A9", "x" * 150, "has%20space", "../x"):
            with pytest.raises(InvalidStatus):
                connect(f"{base}/{path}/", origin=origin, open_timeout=5).close()
        with connect(f"{base}/lobby/", origin=origin, open_timeout=5) as socket:
            socket.send('{"message": "hello"}')
            assert socket.recv(timeout=5) == '{"message": "hello"}'

    assert "Traceback" not in server.output, server.output
