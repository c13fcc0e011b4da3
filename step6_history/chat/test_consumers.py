"""Consumer tests of the chat with users and history, through mysite.asgi.application.

WebsocketCommunicator plays the browser, with the session cookie of a logged-in
user (or none). Each test takes the `channel_layer` fixture (conftest.py), so it
runs on the in-memory layer and on a real Redis. The database is real too: the
consumer reads and writes it in a worker thread, so the tests use transactional
database access.
"""

import asyncio
import gc
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore

from chat import consumers
from chat.consumers import CLOSE_LOGIN_REQUIRED
from chat.models import Message
from chat.store import save_message
from mysite.asgi import application
from testsupport.layers import group_members

pytestmark = pytest.mark.django_db(transaction=True)

# What a browser sends from a page served by the test server. Without an Origin the
# AllowedHostsOriginValidator refuses the handshake.
BROWSER_ORIGIN = (b"origin", b"http://localhost:8000")

# How long a test waits for what must come. Only a failing test waits that long;
# a passing one goes on as soon as it comes, however busy the machine. A crowd of
# 150 joining at once took 10 s on two cores busy with other tests: hence 60.
PATIENCE = 60


@database_sync_to_async
def session_cookie_for(username):
    """The Cookie header of a browser in which `username` has logged in."""
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

    async def open_socket(username="alice", room="lobby", headers=(BROWSER_ORIGIN,)):
        headers = list(headers)
        if username:
            headers.append(await session_cookie_for(username))
        communicator = WebsocketCommunicator(application, f"/ws/chat/{room}/", headers)
        connected, _ = await communicator.connect(timeout=PATIENCE)
        opened.append(communicator)
        return communicator, connected

    yield open_socket
    for communicator in opened:
        if not communicator.future.done():
            await communicator.disconnect(timeout=PATIENCE)


async def joined(open_socket, username="alice", room="lobby"):
    """A logged-in socket, past its first frame: the history, kept in .history."""
    communicator, connected = await open_socket(username, room)
    assert connected, f"{username}'s socket to {room!r} was refused"
    history = await communicator.receive_json_from(timeout=PATIENCE)
    assert history["type"] == "history"
    communicator.history = history["messages"]
    return communicator


async def next_frame(communicator, frame_type="message"):
    """The next frame of that type (frames of other types before it are skipped)."""
    while True:
        frame = await communicator.receive_json_from(timeout=PATIENCE)
        if frame["type"] == frame_type:
            return frame


async def say(communicator, text):
    await communicator.send_json_to({"type": "message", "text": text})


@database_sync_to_async
def stored_texts(room="lobby"):
    return list(Message.objects.filter(room__name=room).values_list("text", flat=True))


@database_sync_to_async
def store_messages(texts, room="lobby", username="alice"):
    """Store messages as the consumer does, but broadcast nothing: as if the channel
    layer had dropped every one of them. Returns their frames."""
    user, _ = User.objects.get_or_create(username=username)
    return [save_message(room, user, text) for text in texts]


# --- users -----------------------------------------------------------------------------


async def test_anonymous_socket_is_closed_with_the_login_required_code(
    open_socket, channel_layer
):
    communicator, connected = await open_socket(username=None)

    assert connected  # accepted, so that the page can read the close code
    assert await communicator.receive_output(timeout=PATIENCE) == {
        "type": "websocket.close",
        "code": CLOSE_LOGIN_REQUIRED,
    }
    assert await group_members(channel_layer, "chat_lobby") == set()


async def test_message_carries_its_author_room_and_time(open_socket):
    alice = await joined(open_socket, "alice")

    await say(alice, "hello")

    frame = await next_frame(alice)
    assert frame["type"] == "message"
    assert frame["author"] == "alice"
    assert frame["text"] == "hello"
    assert frame["room"] == "lobby"
    assert frame["id"] == 1
    assert frame["created"].endswith("Z")


async def test_the_author_comes_from_the_session_not_from_the_frame(open_socket):
    alice = await joined(open_socket, "alice")

    await alice.send_json_to({"type": "message", "text": "hi", "author": "mallory"})

    assert (await next_frame(alice))["author"] == "alice"


async def test_message_fans_out_to_every_user_in_the_room_only(open_socket):
    alice, bob = await joined(open_socket, "alice"), await joined(open_socket, "bob")
    carol = await joined(open_socket, "carol", room="kitchen")

    await say(bob, "hi all")
    assert (await next_frame(alice))["text"] == "hi all"
    assert (await next_frame(bob))["text"] == "hi all"
    # A barrier: the kitchen speaks after bob's message was sent to the lobby. Had
    # bob's message reached carol, it would be queued before this one.
    await say(carol, "kitchen only")

    assert (await next_frame(carol))["text"] == "kitchen only"


async def test_message_is_echoed_to_its_sender_once(open_socket):
    alice = await joined(open_socket, "alice")

    await say(alice, "hello")
    await say(alice, "barrier")  # a second copy of "hello" would come before it

    assert (await next_frame(alice))["text"] == "hello"
    assert (await next_frame(alice))["text"] == "barrier", "a second copy arrived"


async def test_two_users_in_one_room_see_each_others_names(open_socket):
    alice, bob = await joined(open_socket, "alice"), await joined(open_socket, "bob")

    await say(alice, "from alice")
    await say(bob, "from bob")

    frames = [await next_frame(alice), await next_frame(alice)]
    assert sorted((f["author"], f["text"]) for f in frames) == [
        ("alice", "from alice"),
        ("bob", "from bob"),
    ]


# --- history and numbers --------------------------------------------------------------------


async def test_message_is_stored_before_anyone_receives_it(open_socket):
    alice = await joined(open_socket, "alice")

    await say(alice, "kept")
    await next_frame(alice)

    assert await stored_texts() == ["kept"]


async def test_messages_are_numbered_within_their_room(open_socket):
    alice = await joined(open_socket, "alice")
    carol = await joined(open_socket, "carol", room="kitchen")

    for text in ("one", "two"):
        await say(alice, text)
    await say(carol, "elsewhere")

    assert [(await next_frame(alice))["id"] for _ in range(2)] == [1, 2]
    assert (await next_frame(carol))["id"] == 1


async def test_a_rooms_lock_is_not_kept_once_its_message_is_sent(open_socket):
    # Otherwise the server would keep something for every room name ever used.
    alice = await joined(open_socket, "alice", room="a-room-of-its-own")
    await say(alice, "hello")
    assert (await next_frame(alice))["text"] == "hello"  # sent: the lock is released

    gc.collect()
    locks = consumers.ROOM_LOCKS.get(asyncio.get_running_loop(), {})
    assert "a-room-of-its-own" not in locks


async def test_joining_client_receives_the_last_50_messages(open_socket):
    await store_messages([f"old message {number}" for number in range(1, 61)])

    alice = await joined(open_socket, "alice")

    assert [frame["id"] for frame in alice.history] == list(range(11, 61))
    assert alice.history[-1]["text"] == "old message 60"


async def test_a_message_in_the_history_is_not_sent_again_by_its_broadcast(
    open_socket, channel_layer
):
    # A message stored while bob joins reaches him twice: in his history, and as
    # the room's broadcast, which arrives after it.
    bob = await joined(open_socket, "bob")
    stored = await store_messages(["one"])
    bob_again = await joined(open_socket, "bob")
    assert [frame["text"] for frame in bob_again.history] == ["one"]

    await channel_layer.group_send(
        "chat_lobby", {"type": "chat.message", "number": 1, "frame": stored[0]}
    )
    await say(bob_again, "two")  # a barrier: a second "one" would come before it

    assert (await next_frame(bob_again))["text"] == "two"
    assert [(await next_frame(bob))["text"] for _ in range(2)] == ["one", "two"]


# --- the handshake -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [[(b"origin", b"http://evil.example")], []],
    ids=["another origin", "no origin"],
)
async def test_handshake_from_another_site_is_rejected(
    open_socket, channel_layer, headers
):
    _, connected = await open_socket("alice", headers=headers)

    assert not connected
    assert await group_members(channel_layer, "chat_lobby") == set()
    # The control: the same handshake from the page's own origin gets in.
    await joined(open_socket, "alice")
    assert len(await group_members(channel_layer, "chat_lobby")) == 1


@pytest.mark.parametrize("room_name", ["café", "x" * 150, "has space", "../x"])
async def test_room_name_the_layer_cannot_use_is_refused(open_socket, room_name):
    _, connected = await open_socket("alice", room=room_name)

    assert not connected
    alice = await joined(open_socket, "alice")
    await say(alice, "the server still serves")
    assert (await next_frame(alice))["text"] == "the server still serves"


async def test_disconnect_leaves_the_rooms_group(open_socket, channel_layer):
    alice = await joined(open_socket, "alice")
    assert len(await group_members(channel_layer, "chat_lobby")) == 1

    await alice.disconnect(timeout=PATIENCE)

    assert await group_members(channel_layer, "chat_lobby") == set()


async def test_a_crowd_joins_chats_and_leaves_at_once(open_socket, channel_layer):
    # More sockets at once than redis-py 8's default pool of 100 connections: see
    # CHANNEL_LAYERS. Every join and leave is a Redis command in flight.
    crowd = await asyncio.gather(
        *(joined(open_socket, f"user{number}") for number in range(150))
    )
    assert len(await group_members(channel_layer, "chat_lobby")) == 150

    await say(crowd[0], "hello, everyone")

    for member in crowd:
        assert (await next_frame(member))["text"] == "hello, everyone"
    await asyncio.gather(*(member.disconnect(timeout=PATIENCE) for member in crowd))
    assert await group_members(channel_layer, "chat_lobby") == set()


# --- frames that are not messages --------------------------------------------------------

MALFORMED_FRAMES = {
    "invalid JSON": ({"text_data": "{not json"}, "invalid_json"),
    "not an object": ({"text_data": "[1, 2]"}, "invalid_frame"),
    "no type": ({"text_data": '{"text": "hi"}'}, "invalid_frame"),
    "unknown type": ({"text_data": '{"type": "shout", "text": "hi"}'}, "unknown_type"),
    "no text": ({"text_data": '{"type": "message"}'}, "missing_text"),
    "empty text": ({"text_data": '{"type": "message", "text": "   "}'}, "empty_text"),
    "text not a string": (
        {"text_data": json.dumps({"type": "message", "text": 42})},
        "text_not_string",
    ),
    "binary frame": ({"bytes_data": b"\x00\x01"}, "binary_frame"),
}


@pytest.mark.parametrize(
    "frame, code", MALFORMED_FRAMES.values(), ids=MALFORMED_FRAMES.keys()
)
async def test_malformed_frame_gets_an_error_and_changes_nothing(
    open_socket, frame, code
):
    alice, bob = await joined(open_socket, "alice"), await joined(open_socket, "bob")

    await alice.send_to(**frame)

    error = await next_frame(alice, "error")
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["detail"]
    assert await stored_texts() == []
    # The socket stays open; and a barrier: the next thing bob receives is alice's
    # next message, so nothing of the malformed frame was broadcast before it.
    await say(alice, "still here")
    frame = await next_frame(bob)
    assert (frame["type"], frame["text"]) == ("message", "still here")
