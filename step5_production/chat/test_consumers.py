"""Consumer tests of the chat service, through mysite.asgi.application.

Each test runs on the in-memory layer and on a real Redis (the `channel_layer`
fixture). The database is real too: consumers read and write it from worker
threads, so the tests use transactional database access.
"""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import CommandError, call_command
from uvicorn.protocols.utils import ClientDisconnected

from chat.consumers import CLOSE_LOGIN_REQUIRED
from chat.models import Message, Presence
from mysite.asgi import application
from testsupport.layers import group_members

pytestmark = pytest.mark.django_db(transaction=True)

BROWSER_ORIGIN = (b"origin", b"http://localhost:8000")


@pytest.fixture(autouse=True)
def quick_presence(settings):
    # Presence broadcasts are coalesced over 0.2 s; the tests need not wait that long.
    settings.PRESENCE_COALESCE_SECONDS = 0.01


@database_sync_to_async
def session_cookie_for(username):
    user, _ = User.objects.get_or_create(username=username)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return (b"cookie", f"sessionid={session.session_key}".encode())


@pytest.fixture
async def open_socket(channel_layer):
    """Open a socket as `username` (None: anonymous); all are closed after the test."""
    opened = []

    async def open_socket(username="alice", room="lobby", query=""):
        headers = [BROWSER_ORIGIN]
        if username:
            headers.append(await session_cookie_for(username))
        path = f"/ws/chat/{room}/" + (f"?{query}" if query else "")
        communicator = WebsocketCommunicator(application, path, headers)
        connected, _ = await communicator.connect()
        opened.append(communicator)
        return communicator, connected

    yield open_socket
    for communicator in opened:
        if not communicator.future.done():
            await communicator.disconnect()


async def joined(open_socket, username="alice", room="lobby", query=""):
    """A logged-in socket, past its first frames (history, presence)."""
    communicator, connected = await open_socket(username, room, query)
    assert connected
    history = await communicator.receive_json_from(timeout=3)
    assert history["type"] == "history"
    communicator.history = history["messages"]
    await frames_until(communicator, "presence")
    return communicator


async def frames_until(communicator, frame_type, timeout=3):
    """Receive frames until one of `frame_type`; return it."""
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if frame["type"] == frame_type:
            return frame


async def next_message(communicator):
    return await frames_until(communicator, "message")


@database_sync_to_async
def stored_texts(room="lobby"):
    return list(Message.objects.filter(room__name=room).values_list("text", flat=True))


@database_sync_to_async
def store_messages(count, room="lobby", username="alice"):
    from chat.store import save_message

    user, _ = User.objects.get_or_create(username=username)
    for number in range(1, count + 1):
        save_message(room, user, f"old message {number}")


# --- users -------------------------------------------------------------------------


async def test_anonymous_socket_is_closed_with_the_login_required_code(open_socket):
    communicator, connected = await open_socket(username=None)

    assert connected  # accepted, so that the page can read the close code
    assert await communicator.receive_output(timeout=2) == {
        "type": "websocket.close",
        "code": CLOSE_LOGIN_REQUIRED,
    }


async def test_message_carries_its_author_number_and_time(open_socket):
    alice = await joined(open_socket, "alice")

    await alice.send_json_to({"type": "message", "text": "hello"})

    frame = await next_message(alice)
    assert frame["author"] == "alice"
    assert frame["text"] == "hello"
    assert frame["room"] == "lobby"
    assert frame["id"] == 1
    assert frame["created"].endswith("Z")


async def test_message_is_stored_before_anyone_receives_it(open_socket):
    alice = await joined(open_socket, "alice")

    await alice.send_json_to({"type": "message", "text": "kept"})
    await next_message(alice)

    assert await stored_texts() == ["kept"]


async def test_message_fans_out_to_every_user_in_the_room_only(open_socket):
    alice, bob = await joined(open_socket, "alice"), await joined(open_socket, "bob")
    carol = await joined(open_socket, "carol", room="kitchen")
    await frames_until(alice, "presence")  # bob arrived

    await bob.send_json_to({"type": "message", "text": "hi all"})

    assert (await next_message(alice))["text"] == "hi all"
    assert (await next_message(bob))["text"] == "hi all"
    assert await carol.receive_nothing(timeout=0.3)


# --- history and catch-up ------------------------------------------------------------


async def test_joining_client_receives_the_last_50_messages(open_socket):
    await store_messages(60)

    alice = await joined(open_socket, "alice")

    assert [frame["id"] for frame in alice.history] == list(range(11, 61))
    assert alice.history[-1]["text"] == "old message 60"


async def test_reconnecting_client_receives_everything_after_its_last_message(
    open_socket,
):
    await store_messages(120)

    alice = await joined(open_socket, "alice", query="after=7")

    assert [frame["id"] for frame in alice.history] == list(range(8, 121))


async def test_client_that_has_everything_receives_an_empty_history(open_socket):
    await store_messages(3)

    alice = await joined(open_socket, "alice", query="after=3")

    assert alice.history == []


@database_sync_to_async
def store_without_broadcast(texts, room="lobby", username="alice"):
    """Store messages as the consumer does, but send no event: as if the layer
    dropped every one of them."""
    from chat.store import save_message

    user, _ = User.objects.get_or_create(username=username)
    return [save_message(room, user, text) for text in texts]


async def broadcast(channel_layer, frame, room="lobby"):
    await channel_layer.group_send(
        f"chat_{room}",
        {
            "type": "chat.message",
            "number": frame["id"],
            "sent": 0,
            "frame": json.dumps(frame),
        },
    )


async def message_texts(communicator, count):
    return [(await next_message(communicator))["text"] for _ in range(count)]


async def test_messages_the_layer_dropped_are_fetched_when_a_later_one_arrives(
    open_socket, channel_layer, settings
):
    settings.CHAT_GAP_WAIT_SECONDS = 0.3
    bob = await joined(open_socket, "bob")
    frames = await store_without_broadcast(["one", "two", "three", "four"])

    await broadcast(channel_layer, frames[-1])  # only "four" gets through

    assert await message_texts(bob, 4) == ["one", "two", "three", "four"]
    assert await bob.receive_nothing(timeout=0.3), "a message came twice"


async def test_messages_dropped_after_the_last_event_are_caught_up(
    open_socket, channel_layer, settings
):
    settings.CHAT_GROUP_REFRESH_SECONDS = 0.3
    settings.PRESENCE_HEARTBEAT_SECONDS = 0.3
    bob = await joined(open_socket, "bob")

    await store_without_broadcast(["late one", "late two"])  # no event at all

    assert await message_texts(bob, 2) == ["late one", "late two"]


# --- hostile input ---------------------------------------------------------------------

HOSTILE_FRAMES = {
    "invalid JSON": ({"text_data": "{not json"}, "invalid_json"),
    "not an object": ({"text_data": "[1, 2]"}, "invalid_frame"),
    "no type": ({"text_data": '{"text": "hi"}'}, "invalid_frame"),
    "unknown type": ({"text_data": '{"type": "shout", "text": "hi"}'}, "unknown_type"),
    "no text": ({"text_data": '{"type": "message"}'}, "missing_text"),
    "empty text": ({"text_data": '{"type": "message", "text": "   "}'}, "empty_text"),
    "text not a string": (
        {"text_data": '{"type": "message", "text": 42}'},
        "text_not_string",
    ),
    "binary frame": ({"bytes_data": b"\x00\x01"}, "binary_frame"),
    "text over 4 KiB": (
        {"text_data": json.dumps({"type": "message", "text": "é" * 2049})},
        "text_too_long",
    ),
}


@pytest.mark.parametrize(
    "frame, code", HOSTILE_FRAMES.values(), ids=HOSTILE_FRAMES.keys()
)
async def test_hostile_frame_gets_an_error_and_changes_nothing(
    open_socket, frame, code
):
    alice, bob = await joined(open_socket, "alice"), await joined(open_socket, "bob")
    await frames_until(alice, "presence")

    await alice.send_to(**frame)

    error = await alice.receive_json_from(timeout=2)
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["detail"]
    assert await bob.receive_nothing(timeout=0.3), "something was broadcast"
    assert await stored_texts() == []
    # The socket stays open and usable.
    await alice.send_json_to({"type": "message", "text": "still here"})
    assert (await next_message(bob))["text"] == "still here"


async def test_message_size_limit_is_configurable(open_socket, settings):
    settings.CHAT_MAX_MESSAGE_BYTES = 10
    alice = await joined(open_socket, "alice")

    await alice.send_json_to({"type": "message", "text": "x" * 11})

    assert (await alice.receive_json_from())["code"] == "text_too_long"


async def test_more_than_10_messages_a_second_are_refused(open_socket):
    alice = await joined(open_socket, "alice")

    for number in range(11):
        await alice.send_json_to({"type": "message", "text": f"fast {number}"})

    # The refusal comes straight back; the accepted messages through the layer,
    # so the order between them is not fixed.
    frames = [await alice.receive_json_from(timeout=3) for _ in range(11)]
    assert [frame["type"] for frame in frames].count("message") == 10
    assert [frame.get("code") for frame in frames if frame["type"] == "error"] == [
        "rate_limited"
    ]
    assert await stored_texts() == [f"fast {number}" for number in range(10)]


async def test_rate_limit_is_configurable(open_socket, settings):
    settings.CHAT_MAX_MESSAGES_PER_SECOND = 2
    alice = await joined(open_socket, "alice")

    for number in range(3):
        await alice.send_json_to({"type": "message", "text": f"fast {number}"})

    frames = [await alice.receive_json_from(timeout=3) for _ in range(3)]
    assert sorted(frame["type"] for frame in frames) == ["error", "message", "message"]
    assert await stored_texts() == ["fast 0", "fast 1"]


# --- presence ----------------------------------------------------------------------------


async def test_presence_updates_on_join_and_leave(open_socket):
    alice = await joined(open_socket, "alice")

    bob = await joined(open_socket, "bob")
    assert (await frames_until(alice, "presence"))["users"] == ["alice", "bob"]

    await bob.disconnect()
    assert (await frames_until(alice, "presence"))["users"] == ["alice"]


async def test_a_crowd_joining_at_once_shares_presence_broadcasts(
    open_socket, settings
):
    settings.PRESENCE_COALESCE_SECONDS = 0.5
    first = await joined(open_socket, "user0")

    for number in range(1, 6):
        await open_socket(f"user{number}")

    await asyncio.sleep(0.8)
    presence = []
    while not await first.receive_nothing(timeout=0.1):
        frame = await first.receive_json_from()
        if frame["type"] == "presence":
            presence.append(frame["users"])
    assert presence == [[f"user{number}" for number in range(6)]]


async def test_disconnect_leaves_every_group(open_socket, channel_layer):
    alice = await joined(open_socket, "alice")
    assert len(await group_members(channel_layer, "chat_lobby")) == 1

    await alice.disconnect()

    assert await group_members(channel_layer, "chat_lobby") == set()
    assert await group_members(channel_layer, "notifications") == set()


async def test_a_crowd_joins_chats_and_leaves_at_once(open_socket, channel_layer):
    # More sockets at once than redis-py 8's default pool of 100 connections: see
    # CHANNEL_LAYERS. Every join and leave is a Redis command in flight.
    crowd = await asyncio.gather(
        *(joined(open_socket, f"user{number}") for number in range(150))
    )
    assert len(await group_members(channel_layer, "chat_lobby")) == 150

    await crowd[0].send_json_to({"type": "message", "text": "hello, everyone"})

    for member in crowd:
        assert (await next_message(member))["text"] == "hello, everyone"
    await asyncio.gather(*(member.disconnect() for member in crowd))
    assert await group_members(channel_layer, "chat_lobby") == set()
    assert await group_members(channel_layer, "notifications") == set()
    assert await database_sync_to_async(Presence.objects.count)() == 0


class DropsDuringSend:
    """The application, behind a server whose client vanishes: once `dropped`, every
    send raises ClientDisconnected, as uvicorn's does for a socket that has just
    gone and whose websocket.disconnect the consumer has not received yet."""

    def __init__(self):
        self.dropped = False

    async def __call__(self, scope, receive, send):
        async def send_unless_dropped(message):
            if self.dropped:
                raise ClientDisconnected()
            await send(message)

        return await application(scope, receive, send_unless_dropped)


async def test_a_socket_that_drops_during_a_send_still_leaves_the_room(
    open_socket, channel_layer
):
    alice = await joined(open_socket, "alice")
    server = DropsDuringSend()
    bob = WebsocketCommunicator(
        server, "/ws/chat/lobby/", [BROWSER_ORIGIN, await session_cookie_for("bob")]
    )
    assert (await bob.connect())[0]
    assert (await frames_until(alice, "presence"))["users"] == ["alice", "bob"]

    server.dropped = True
    await alice.send_json_to({"type": "message", "text": "bob, are you there?"})

    assert (await frames_until(alice, "presence"))["users"] == ["alice"]
    assert len(await group_members(channel_layer, "chat_lobby")) == 1
    with pytest.raises(ClientDisconnected):  # bob's consumer ended, as under uvicorn
        await asyncio.wait_for(bob.future, timeout=3)


# --- notifications -------------------------------------------------------------------------


@pytest.mark.parametrize("channel_layer", ["redis", "redis-pubsub"], indirect=True)
async def test_notify_command_reaches_every_user(open_socket, channel_layer):
    alice = await joined(open_socket, "alice", room="lobby")
    bob = await joined(open_socket, "bob", room="kitchen")

    await sync_to_async(call_command)("notify", "Maintenance at noon")

    for member in (alice, bob):
        frame = await frames_until(member, "notification")
        assert frame["text"] == "Maintenance at noon"
        assert frame["room"] is None


@pytest.mark.parametrize("channel_layer", ["redis", "redis-pubsub"], indirect=True)
async def test_notify_command_with_a_room_reaches_only_that_room(
    open_socket, channel_layer
):
    alice = await joined(open_socket, "alice", room="lobby")
    bob = await joined(open_socket, "bob", room="kitchen")

    await sync_to_async(call_command)("notify", "Lobby closes soon", room="lobby")

    assert (await frames_until(alice, "notification"))["room"] == "lobby"
    assert await bob.receive_nothing(timeout=0.3)


@pytest.mark.parametrize("channel_layer", ["in-memory"], indirect=True)
async def test_notify_command_refuses_the_in_memory_layer(channel_layer):
    with pytest.raises(CommandError, match="cannot reach the server"):
        await sync_to_async(call_command)("notify", "nobody will see this")


# --- room names ---------------------------------------------------------------------------


@pytest.mark.parametrize("room_name", ["café", "x" * 150, "has space", "../x"])
async def test_room_name_the_layer_cannot_use_is_refused(open_socket, room_name):
    communicator, connected = await open_socket("alice", room=room_name)

    assert not connected
    alice = await joined(open_socket, "alice")
    await alice.send_json_to({"type": "message", "text": "the server still serves"})
    assert (await next_message(alice))["text"] == "the server still serves"


async def test_two_sockets_of_one_user_count_once(open_socket):
    first = await joined(open_socket, "alice")

    await joined(open_socket, "alice")

    assert (await frames_until(first, "presence"))["users"] == ["alice"]
