"""Consumer tests of the chat, through mysite.asgi.application.

WebsocketCommunicator plays the browser, with the session cookie of a logged-in
user (or none). Each test takes the `channel_layer` fixture (conftest.py), so it
runs on the in-memory layer and on a real Redis, with either of channels_redis'
layers. The database is real too: the
consumer reads and writes it in a worker thread, so the tests use transactional
database access.
"""

import asyncio
import json
import threading
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from uvicorn.protocols.utils import ClientDisconnected

from chat import limits, online, store, writer
from chat.consumers import CLOSE_LOGIN_REQUIRED, ChatConsumer
from chat.limits import redis_client
from chat.models import Message
from chat.protocol import CLOSE_POLICY_VIOLATION, ChatMessage
from chat.store import save_message, save_messages
from mysite.asgi import application
from testsupport.layers import group_members

pytestmark = pytest.mark.django_db(transaction=True)

# What a browser sends from a page served by the test server. Without an Origin the
# origin check (mysite/origins.py) refuses the handshake.
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


@sync_to_async
def log_out(cookie):
    """Log out with Django's view, in the browser that holds this cookie."""
    client = Client()
    client.cookies["sessionid"] = cookie[1].decode().split("=", 1)[1]
    assert client.post("/accounts/logout/").status_code == 302


@pytest.fixture(autouse=True)
def quick_presence(settings):
    # Presence broadcasts are coalesced over 0.2 s; most tests need not wait so long.
    settings.PRESENCE_COALESCE_SECONDS = 0.01
    # Presence in this process's memory, where expire() can reach it (test_online.py
    # tests it in Redis too), unless a test names a Redis.
    settings.REDIS_URL = ""


def expire(username=None):
    """As if the server process of these sockets (or of this user's) had died: nobody
    refreshes their presence any more, and it has expired."""
    for sockets in online.backend().online.values():
        for channel, (name, _) in sockets.items():
            if username in (None, name):
                sockets[channel] = (name, 0)


@pytest.fixture
async def open_socket(channel_layer):
    """Open a socket as `username` (None: anonymous); all are closed after the test."""
    opened = []

    async def open_socket(
        username="alice", room="lobby", query="", headers=(BROWSER_ORIGIN,), cookie=None
    ):
        headers = list(headers)
        if username:
            headers.append(cookie or await session_cookie_for(username))
        path = f"/ws/chat/{room}/" + (f"?{query}" if query else "")
        communicator = WebsocketCommunicator(application, path, headers)
        connected, _ = await communicator.connect(timeout=PATIENCE)
        opened.append(communicator)
        return communicator, connected

    yield open_socket
    for communicator in opened:
        if not communicator.future.done():
            await communicator.disconnect(timeout=PATIENCE)


async def joined(open_socket, username="alice", room="lobby", query="", cookie=None):
    """A logged-in socket, past its first frame: the history, kept in .history (and
    the number it follows in .history_after)."""
    communicator, connected = await open_socket(username, room, query, cookie=cookie)
    assert connected, f"{username}'s socket to {room!r} was refused"
    history = await communicator.receive_json_from(timeout=PATIENCE)
    assert history["type"] == "history"
    communicator.history = history["messages"]
    communicator.history_after = history["after"]
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
    return [save_message(room, user, text)[0] for text in texts]


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


# --- history, numbers and catching up ----------------------------------------------------


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


async def test_a_rooms_writer_is_not_kept_once_its_messages_are_sent(open_socket):
    # Otherwise the server would keep something for every room name ever used.
    alice = await joined(open_socket, "alice", room="a-room-of-its-own")
    await say(alice, "hello")
    assert (await next_frame(alice))["text"] == "hello"  # sent: the writer is done

    await asyncio.gather(*writer.BACKGROUND_TASKS)  # its last step, after the broadcast
    rooms = writer.WAITING.get(asyncio.get_running_loop(), {})
    assert "a-room-of-its-own" not in rooms


async def test_joining_client_receives_the_last_50_messages(open_socket):
    await store_messages([f"old message {number}" for number in range(1, 61)])

    alice = await joined(open_socket, "alice")

    assert [frame["id"] for frame in alice.history] == list(range(11, 61))
    assert alice.history[-1]["text"] == "old message 60"


async def test_reconnecting_client_receives_everything_after_its_last_message(
    open_socket,
):
    await store_messages([f"old message {number}" for number in range(1, 121)])

    alice = await joined(open_socket, "alice", query="after=7")

    assert alice.history_after == 7
    assert [frame["id"] for frame in alice.history] == list(range(8, 121))


async def test_client_that_has_everything_receives_an_empty_history(open_socket):
    await store_messages(["one", "two", "three"])

    alice = await joined(open_socket, "alice", query="after=3")

    assert (alice.history_after, alice.history) == (3, [])


async def test_a_page_newer_than_the_room_gets_the_latest_and_where_they_start(
    open_socket,
):
    # The page has seen message 9, but the database was restored from a copy that
    # has only 3: it must start again, not wait for a 10th.
    await store_messages(["one", "two", "three"])

    alice = await joined(open_socket, "alice", query="after=9")

    assert alice.history_after == 0
    assert [frame["text"] for frame in alice.history] == ["one", "two", "three"]


async def test_a_history_says_which_message_it_follows(open_socket):
    await store_messages([f"old message {number}" for number in range(1, 61)])

    alice = await joined(open_socket, "alice")

    assert alice.history_after == 10
    assert alice.history[0]["id"] == 11


async def broadcast(channel_layer, frame, room="lobby"):
    """What the consumer broadcasts for a stored message."""
    await channel_layer.group_send(
        f"chat_{room}",
        {"type": "chat.messages", "messages": [[frame["id"], json.dumps(frame)]]},
    )


async def test_messages_the_layer_dropped_are_fetched_when_a_later_one_arrives(
    open_socket, channel_layer
):
    bob = await joined(open_socket, "bob")
    frames = await store_messages(["one", "two", "three", "four"])

    await broadcast(channel_layer, frames[-1])  # only "four" gets through
    await say(bob, "five")  # a barrier: nothing may come twice before it

    assert [(await next_frame(bob))["text"] for _ in range(5)] == [
        "one",
        "two",
        "three",
        "four",
        "five",
    ]


async def test_messages_dropped_after_the_last_event_are_caught_up(
    open_socket, settings
):
    settings.CHAT_HEARTBEAT_SECONDS = 0.2
    bob = await joined(open_socket, "bob")

    await store_messages(["late one", "late two"])  # and no event at all

    assert [(await next_frame(bob))["text"] for _ in range(2)] == [
        "late one",
        "late two",
    ]


async def test_broadcasts_that_cross_are_shown_in_number_order_once(
    open_socket, channel_layer
):
    # Two processes store messages 1 and 2 and broadcast them; 2 arrives first.
    bob = await joined(open_socket, "bob")
    first, second = await store_messages(["first", "second"])

    await broadcast(channel_layer, second)
    await broadcast(channel_layer, first)
    await say(bob, "third")  # a barrier: a second copy of "first" would come before

    assert [(await next_frame(bob))["id"] for _ in range(3)] == [1, 2, 3]


# --- client ids and acknowledgements --------------------------------------------------


async def say_with_id(communicator, text, client_id):
    await communicator.send_json_to(
        {"type": "message", "text": text, "client_id": client_id}
    )


async def test_a_message_with_a_client_id_is_acknowledged_once_stored(open_socket):
    alice = await joined(open_socket, "alice")

    await say_with_id(alice, "hello", "c1")

    assert await next_frame(alice, "ack") == {"type": "ack", "client_id": "c1", "id": 1}
    assert await stored_texts() == ["hello"]
    assert (await next_frame(alice))["text"] == "hello"


async def test_a_message_whose_broadcast_fails_is_acknowledged_and_caught_up(
    open_socket, channel_layer, settings, monkeypatch, caplog
):
    # Redis fails just after the message is stored: the sender keeps its socket and
    # its acknowledgement, and the heartbeat brings the message to everyone.
    settings.CHAT_HEARTBEAT_SECONDS = 0.2
    alice = await joined(open_socket, "alice")
    bob = await joined(open_socket, "bob")
    group_send = channel_layer.group_send

    async def fails_for_messages(group, event):
        if event["type"] == "chat.messages":
            raise ConnectionError("the channel layer is unreachable")
        await group_send(group, event)

    monkeypatch.setattr(channel_layer, "group_send", fails_for_messages)
    await say_with_id(alice, "stored, not broadcast", "c1")

    assert (await next_frame(alice, "ack"))["id"] == 1
    assert (await next_frame(bob))["text"] == "stored, not broadcast"
    assert (await next_frame(alice))["text"] == "stored, not broadcast"
    await say_with_id(alice, "still connected", "c2")
    assert (await next_frame(alice, "ack"))["id"] == 2
    assert "Message 1 in lobby stored, not broadcast yet" in caplog.text


async def test_a_message_sent_again_is_stored_and_shown_once(open_socket):
    # The page sends a message, its socket drops before the acknowledgement, and it
    # sends the message again on its next socket.
    alice = await joined(open_socket, "alice")
    bob = await joined(open_socket, "bob")
    await say_with_id(alice, "only once", "c1")
    assert (await next_frame(alice, "ack"))["id"] == 1

    alice_again = await joined(open_socket, "alice", query="after=0")
    await say_with_id(alice_again, "only once", "c1")

    assert await next_frame(alice_again, "ack") == {
        "type": "ack",
        "client_id": "c1",
        "id": 1,
    }
    await say(alice_again, "barrier")  # a second "only once" would come before it
    shown = [await next_frame(bob) for _ in range(2)]
    # Numbered with no gap: the refused copy's number was given back.
    assert [(frame["id"], frame["text"]) for frame in shown] == [
        (1, "only once"),
        (2, "barrier"),
    ]
    assert await stored_texts() == ["only once", "barrier"]


def test_a_message_costs_two_statements_and_a_copy_sent_again_three():
    alice = User.objects.create(username="alice")
    save_message("lobby", alice, "the room's first")  # the room comes first
    with CaptureQueriesContext(connection) as stored:
        frame, new = save_message("lobby", alice, "second", "c2")
    with CaptureQueriesContext(connection) as sent_again:
        earlier, new_again = save_message("lobby", alice, "second", "c2")

    assert (frame["id"], new, earlier, new_again) == (2, True, frame, False)
    assert statements(stored) == ["UPDATE", "INSERT"]
    # The number taken, the copy refused (and both rolled back), the first one read.
    assert statements(sent_again) == ["UPDATE", "INSERT", "SELECT"]


def statements(captured) -> list[str]:
    """What the database was asked, without BEGIN, COMMIT and savepoints."""
    kinds = [query["sql"].split()[0].upper() for query in captured]
    return [kind for kind in kinds if kind in ("SELECT", "INSERT", "UPDATE", "DELETE")]


async def test_two_users_may_make_up_the_same_client_id(open_socket):
    alice = await joined(open_socket, "alice")
    bob = await joined(open_socket, "bob")

    await say_with_id(alice, "from alice", "same")
    assert (await next_frame(alice, "ack"))["id"] == 1
    await say_with_id(bob, "from bob", "same")

    assert (await next_frame(bob, "ack"))["id"] == 2
    assert await stored_texts() == ["from alice", "from bob"]


@pytest.mark.parametrize("client_id", [5, "", "x" * 65, "has space", ["c1"]])
async def test_a_client_id_that_is_not_an_id_gets_an_error(open_socket, client_id):
    alice = await joined(open_socket, "alice")

    await say_with_id(alice, "hello", client_id)

    assert (await next_frame(alice, "error"))["code"] == "invalid_client_id"
    assert await stored_texts() == []


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


@pytest.mark.parametrize(
    "origin, opens",
    [
        ("https://chat.example.com", True),
        ("https://chat.example.com:443", True),  # the same origin, its port spelled
        ("https://eu.chat.example.com", True),  # https://*.chat.example.com
        ("http://chat.example.com", False),  # another scheme
        ("https://chat.example.com:8443", False),  # another port
        ("https://example.com", False),
        ("http://localhost:8000", False),  # in ALLOWED_HOSTS, but not trusted
    ],
)
async def test_with_csrf_trusted_origins_only_those_origins_open_a_socket(
    channel_layer, settings, origin, opens
):
    settings.CSRF_TRUSTED_ORIGINS = [
        "https://chat.example.com",
        "https://*.chat.example.com",
    ]
    from mysite.origins import OriginCheck  # here: a missing file fails this test only

    # The check reads the settings when the server starts: one started with these.
    websocket_app = application.application_mapping["websocket"]
    started_with_them = OriginCheck(websocket_app.application)
    headers = [(b"origin", origin.encode()), await session_cookie_for("alice")]
    communicator = WebsocketCommunicator(started_with_them, "/ws/chat/lobby/", headers)

    connected, _ = await communicator.connect(timeout=PATIENCE)

    assert connected == opens
    if opens:  # past its join: the history comes after the socket joined its groups
        assert (await communicator.receive_json_from(timeout=PATIENCE))[
            "type"
        ] == "history"
    assert len(await group_members(channel_layer, "chat_lobby")) == int(opens)
    await communicator.disconnect(timeout=PATIENCE)


@pytest.mark.parametrize(
    "origin", [b"http://[::1", b"http://localhost:99999", b"http://localhost:x"]
)
async def test_an_origin_that_does_not_parse_is_refused_and_the_server_goes_on(
    open_socket, origin, caplog
):
    _, connected = await open_socket("alice", headers=[(b"origin", origin)])

    assert not connected
    alice = await joined(open_socket, "alice")
    await say(alice, "the server still serves")
    assert (await next_frame(alice))["text"] == "the server still serves"
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("room_name", ["café", "x" * 150, "has space", "../x"])
async def test_room_name_the_layer_cannot_use_is_refused(open_socket, room_name):
    _, connected = await open_socket("alice", room=room_name)

    assert not connected
    alice = await joined(open_socket, "alice")
    await say(alice, "the server still serves")
    assert (await next_frame(alice))["text"] == "the server still serves"


async def test_disconnect_leaves_every_group(open_socket, channel_layer):
    alice = await joined(open_socket, "alice")
    assert len(await group_members(channel_layer, "chat_lobby")) == 1
    assert len(await group_members(channel_layer, "notifications")) == 1

    await alice.disconnect(timeout=PATIENCE)

    assert await group_members(channel_layer, "chat_lobby") == set()
    assert await group_members(channel_layer, "notifications") == set()


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
    assert (await bob.connect(timeout=PATIENCE))[0]
    assert (await bob.receive_json_from(timeout=PATIENCE))["type"] == "history"
    assert len(await group_members(channel_layer, "chat_lobby")) == 2

    server.dropped = True
    await say(alice, "bob, are you there?")

    with pytest.raises(ClientDisconnected):  # bob's consumer ended, as under uvicorn
        await asyncio.wait_for(bob.future, timeout=PATIENCE)
    assert len(await group_members(channel_layer, "chat_lobby")) == 1  # alice only
    assert (await presence_after(alice, ["alice"]))[-1] == ["alice"]


class AnswersTheCloseAtOnce:
    """The application behind uvicorn, whose page has just sent its close frame:
    uvicorn answered it at once, and until the socket is flushed and gone, every send
    raises RuntimeError, as uvicorn's does, while the consumer has yet to read the
    websocket.disconnect. (A real server keeps that window open only while it flushes
    what it wrote: too short to open on demand.)"""

    def __init__(self):
        self.closed = False

    async def __call__(self, scope, receive, send):
        async def send_unless_closed(message):
            if self.closed:
                raise RuntimeError(
                    f"Unexpected ASGI message '{message['type']}', after sending"
                    " 'websocket.close'."
                )
            await send(message)

        return await application(scope, receive, send_unless_closed)


async def test_a_page_that_closes_as_the_server_sends_ends_its_consumer_quietly(
    open_socket, channel_layer
):
    alice = await joined(open_socket, "alice")
    server = AnswersTheCloseAtOnce()
    bob = WebsocketCommunicator(
        server, "/ws/chat/lobby/", [BROWSER_ORIGIN, await session_cookie_for("bob")]
    )
    assert (await bob.connect(timeout=PATIENCE))[0]
    assert (await bob.receive_json_from(timeout=PATIENCE))["type"] == "history"

    server.closed = True
    await say(alice, "bob, are you there?")

    # Ended, and raised nothing: uvicorn logs a consumer's exception as a traceback.
    await asyncio.wait_for(bob.future, timeout=PATIENCE)
    assert len(await group_members(channel_layer, "chat_lobby")) == 1  # alice only


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
    assert await group_members(channel_layer, "notifications") == set()
    assert not online.backend().online  # nobody is counted online in any room


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
    "text over 4 KiB": (
        {"text_data": json.dumps({"type": "message", "text": "é" * 2049})},
        "text_too_long",
    ),
    "not Unicode": (
        {"text_data": '{"type": "message", "text": "\\ud800"}'},
        "invalid_text",
    ),
    "nested too deeply": ({"text_data": "[" * 10_000 + "]" * 10_000}, "invalid_json"),
    "too large": ({"text_data": "x" * 70_000}, "frame_too_large"),
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


# --- limits and logging out ----------------------------------------------------------------


async def test_a_frame_over_the_size_limit_is_refused_before_it_is_parsed(
    open_socket, settings
):
    settings.CHAT_MAX_FRAME_BYTES = 100
    alice = await joined(open_socket, "alice")

    await alice.send_to(text_data="x" * 101)  # not JSON: refused for its size

    assert (await next_frame(alice, "error"))["code"] == "frame_too_large"
    await say(alice, "a frame of a fitting size")
    assert (await next_frame(alice))["text"] == "a frame of a fitting size"


async def test_text_over_4_kib_is_refused_and_given_back(open_socket):
    text = "é" * 2049  # 4,098 bytes of UTF-8
    alice = await joined(open_socket, "alice")

    await say(alice, text)

    error = await next_frame(alice, "error")
    assert error["code"] == "text_too_long"
    assert error["text"] == text  # for the page to put back in the box
    assert await stored_texts() == []


async def test_a_refused_message_comes_back_with_its_client_id(open_socket):
    alice = await joined(open_socket, "alice")

    await say_with_id(alice, "é" * 2049, "c1")

    error = await next_frame(alice, "error")
    assert (error["code"], error["client_id"]) == ("text_too_long", "c1")
    assert await stored_texts() == []


async def test_too_many_invalid_frames_close_the_socket(open_socket, settings):
    settings.CHAT_MAX_INVALID_FRAMES = 3
    mallory = await joined(open_socket, "mallory")
    bob = await joined(open_socket, "bob")

    for _ in range(3):
        await mallory.send_to(text_data="not json")
        assert (await next_frame(mallory, "error"))["code"] == "invalid_json"
    await mallory.send_to(text_data="not json")

    while (output := await mallory.receive_output(timeout=PATIENCE))["type"] != (
        "websocket.close"
    ):
        assert output["type"] == "websocket.send"  # presence, not another error
        assert '"error"' not in output["text"]
    assert output["code"] == CLOSE_POLICY_VIOLATION
    await say(bob, "the others chat on")
    assert (await next_frame(bob))["text"] == "the others chat on"


async def test_a_user_with_too_many_sockets_gets_no_more(open_socket, settings):
    settings.CHAT_MAX_SOCKETS_PER_USER = 2
    first = await joined(open_socket, "alice")
    second = await joined(open_socket, "alice", room="kitchen")
    for socket in (first, second):  # counted once the room hears of it
        await next_frame(socket, "presence")

    third, connected = await open_socket("alice", room="garden")

    assert connected  # accepted, so that the page can read the close code
    assert await third.receive_output(timeout=PATIENCE) == {
        "type": "websocket.close",
        "code": CLOSE_POLICY_VIOLATION,
    }
    await joined(open_socket, "bob", room="garden")  # others are not counted
    await first.disconnect(timeout=PATIENCE)
    await joined(open_socket, "alice", room="garden")  # a place came free


async def test_message_size_limit_is_configurable(open_socket, settings):
    settings.CHAT_MAX_MESSAGE_BYTES = 10
    alice = await joined(open_socket, "alice")

    await say(alice, "x" * 11)

    assert (await next_frame(alice, "error"))["code"] == "text_too_long"


@pytest.fixture
def slow_clock(settings):
    """However slow this machine is, the messages count as sent within one window."""
    settings.CHAT_RATE_WINDOW_SECONDS = 600


async def test_more_than_10_messages_a_second_are_refused(open_socket, slow_clock):
    alice = await joined(open_socket, "alice")

    for number in range(11):
        await say(alice, f"fast {number}")

    error = await next_frame(alice, "error")
    assert (error["code"], error["text"]) == ("rate_limited", "fast 10")
    assert await stored_texts() == [f"fast {number}" for number in range(10)]


async def test_the_rate_limit_is_shared_by_all_of_a_users_sockets(
    open_socket, settings, slow_clock
):
    settings.CHAT_MAX_MESSAGES_PER_SECOND = 4
    first_tab = await joined(open_socket, "alice")
    second_tab = await joined(open_socket, "alice", room="kitchen")

    for number in range(3):
        await say(first_tab, f"lobby {number}")
        await say(second_tab, f"kitchen {number}")

    answers = [await answer(tab) for tab in (first_tab, second_tab) for _ in range(3)]
    assert sorted(frame["type"] for frame in answers) == ["error"] * 2 + ["message"] * 4
    assert len(await stored_texts("lobby") + await stored_texts("kitchen")) == 4


async def answer(communicator):
    """The next message or error: what a socket gets for what it sent."""
    while (frame := await communicator.receive_json_from(timeout=PATIENCE))[
        "type"
    ] not in (
        "message",
        "error",
    ):
        pass
    return frame


@pytest.mark.parametrize("channel_layer", ["redis"], indirect=True)
async def test_with_redis_the_rate_limit_is_kept_in_redis(
    open_socket, settings, slow_clock, redis_url
):
    settings.REDIS_URL = redis_url
    settings.CHAT_MAX_MESSAGES_PER_SECOND = 2
    alice = await joined(open_socket, "alice")
    user = await database_sync_to_async(User.objects.get)(username="alice")
    await redis_client().delete(f"chat:rate:{user.pk}")  # a Redis of your own?

    for number in range(3):
        await say(alice, f"fast {number}")

    assert (await next_frame(alice, "error"))["text"] == "fast 2"
    assert await redis_client().zcard(f"chat:rate:{user.pk}") == 2


# --- sessions ----------------------------------------------------------------------------


async def closed_with(communicator):
    """The close code, once the socket is closed (frames before it are skipped)."""
    while (output := await communicator.receive_output(timeout=PATIENCE))["type"] != (
        "websocket.close"
    ):
        pass
    return output["code"]


async def test_logging_out_closes_that_sessions_sockets_at_once(open_socket, settings):
    # No heartbeat during the test: it too closes the sockets of an ended session,
    # but later. Only the logout itself can close them here.
    settings.CHAT_HEARTBEAT_SECONDS = 3600
    cookie = await session_cookie_for("alice")
    first_tab = await joined(open_socket, "alice", cookie=cookie)
    second_tab = await joined(open_socket, "alice", room="kitchen", cookie=cookie)
    on_her_phone = await joined(open_socket, "alice")  # another session

    await log_out(cookie)

    for tab in (first_tab, second_tab):
        assert await closed_with(tab) == CLOSE_LOGIN_REQUIRED
    await say(on_her_phone, "still logged in here")
    assert (await next_frame(on_her_phone))["text"] == "still logged in here"


@database_sync_to_async
def end_the_login(cookie, how):
    session = Session.objects.get(session_key=cookie[1].decode().split("=", 1)[1])
    alice = User.objects.get(username="alice")
    if how == "expired":
        session.expire_date = timezone.now() - timedelta(seconds=1)
        session.save()
    elif how == "password changed":
        alice.set_password("a-new-password-2")
        alice.save()
    elif how == "user deactivated":
        alice.is_active = False
        alice.save()
    elif how == "someone else logged in":
        data = session.get_decoded()
        bob, _ = User.objects.get_or_create(username="bob")
        data[SESSION_KEY] = str(bob.pk)
        data[HASH_SESSION_KEY] = bob.get_session_auth_hash()
        Session.objects.save(session.session_key, data, session.expire_date)


@pytest.mark.parametrize(
    "how",
    ["expired", "password changed", "user deactivated", "someone else logged in"],
)
async def test_the_heartbeat_closes_a_socket_whose_login_ended(
    open_socket, settings, how
):
    settings.CHAT_HEARTBEAT_SECONDS = 0.05
    cookie = await session_cookie_for("alice")
    alice = await joined(open_socket, "alice", cookie=cookie)
    carol = await joined(open_socket, "carol")

    await end_the_login(cookie, how)

    assert await closed_with(alice) == CLOSE_LOGIN_REQUIRED
    await say(carol, "still here")  # hers is still a login
    assert (await next_frame(carol))["text"] == "still here"


async def test_a_reconnect_far_behind_gets_the_newest_messages_a_page_at_a_time(
    open_socket, settings
):
    settings.CHAT_HISTORY_PAGE = 10
    settings.CHAT_CATCH_UP_LIMIT = 25
    await store_messages([f"old message {number}" for number in range(1, 61)])

    alice, connected = await open_socket("alice", query="after=0")

    assert connected
    history = await next_frame(alice, "history")
    assert (history["after"], history["skipped"]) == (35, 35)
    assert [message["id"] for message in history["messages"]] == list(range(36, 46))
    # The rest, a page at a time from the database, as messages.
    assert [(await next_frame(alice))["id"] for _ in range(15)] == list(range(46, 61))


@pytest.mark.parametrize("after", ["abc", "-1", "²", "1" * 30])
async def test_an_after_that_is_not_a_message_number_gets_an_error_and_the_latest(
    open_socket, after
):
    await store_messages(["one", "two"])

    alice, connected = await open_socket("alice", query=f"after={after}")

    assert connected
    assert (await alice.receive_json_from(timeout=PATIENCE))["code"] == "invalid_after"
    history = await next_frame(alice, "history")
    assert [m["text"] for m in history["messages"]] == ["one", "two"]


# --- presence -------------------------------------------------------------------------------


async def presence_after(communicator, users):
    """Every list of who is online, as the page keeps it (the whole list, then
    each change applied), until it equals `users`."""
    online = getattr(communicator, "online", None)
    seen = []
    while online != users:
        frame = await communicator.receive_json_from(timeout=PATIENCE)
        if frame["type"] == "presence":
            online = frame["users"]
        elif frame["type"] == "presence_diff":
            online = sorted(set(online) - set(frame["left"]) | set(frame["joined"]))
        else:
            continue
        seen.append(online)
    communicator.online = online
    return seen


async def next_presence_diff(communicator):
    frame = await next_frame(communicator, "presence_diff")
    return frame["joined"], frame["left"]


async def test_presence_updates_on_join_and_leave(open_socket):
    alice = await joined(open_socket, "alice")
    assert (await presence_after(alice, ["alice"]))[-1] == ["alice"]

    bob = await joined(open_socket, "bob")
    assert (await presence_after(alice, ["alice", "bob"]))[-1] == ["alice", "bob"]

    await bob.disconnect(timeout=PATIENCE)
    assert (await presence_after(alice, ["alice"]))[-1] == ["alice"]


async def test_presence_is_kept_fresh_when_a_socket_cannot_join_its_groups(
    open_socket, settings, monkeypatch
):
    alice = await joined(open_socket, "alice")
    await joined(open_socket, "bob")
    await presence_after(alice, ["alice", "bob"])
    join_groups = ChatConsumer.join_groups

    async def fails_for_alice(consumer):
        if consumer.user.username == "alice":
            raise ConnectionError("Redis is unreachable")
        await join_groups(consumer)

    monkeypatch.setattr(ChatConsumer, "join_groups", fails_for_alice)
    expire()
    settings.CHAT_HEARTBEAT_SECONDS = 0.05

    def refreshed():
        return {
            name
            for sockets in online.backend().online.values()
            for name, expires in sockets.values()
            if expires > 0
        }

    async def both_refreshed():
        while refreshed() != {"alice", "bob"}:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(both_refreshed(), timeout=PATIENCE)


async def test_a_joiner_gets_the_whole_list_and_the_others_only_who_came(open_socket):
    alice = await joined(open_socket, "alice")
    await presence_after(alice, ["alice"])

    bob = await joined(open_socket, "bob")

    assert (await next_frame(bob, "presence"))["users"] == ["alice"]
    assert await next_presence_diff(bob) == (["bob"], [])
    assert await next_presence_diff(alice) == (["bob"], [])


async def test_the_others_hear_only_who_left(open_socket):
    alice, bob = await joined(open_socket, "alice"), await joined(open_socket, "bob")
    await presence_after(alice, ["alice", "bob"])

    await bob.disconnect(timeout=PATIENCE)

    assert await next_presence_diff(alice) == ([], ["bob"])


async def test_two_sockets_of_one_user_count_once(open_socket):
    first = await joined(open_socket, "alice")
    await presence_after(first, ["alice"])
    second = await joined(open_socket, "alice")
    await joined(open_socket, "bob")

    # A barrier: bob's arrival. A change for alice's second socket would come first.
    assert await next_presence_diff(first) == (["bob"], [])

    await second.disconnect(timeout=PATIENCE)
    carol = await joined(open_socket, "carol")
    # Another barrier: alice still has a socket, so she has not left.
    assert await next_presence_diff(first) == (["carol"], [])
    await carol.disconnect(timeout=PATIENCE)
    assert await next_presence_diff(first) == ([], ["carol"])


async def socket_of_another_process(username):
    """A socket counted online, as another server process counts one of its own."""
    user, _ = await database_sync_to_async(User.objects.get_or_create)(
        username=username
    )
    assert await online.backend().enter("lobby", user, f"elsewhere!{username}")


async def test_the_users_of_a_server_that_died_are_said_to_have_left(
    open_socket, settings
):
    alice = await joined(open_socket, "alice")
    await socket_of_another_process("ghost")
    await joined(open_socket, "bob")  # the room is told: ghost and bob came
    await presence_after(alice, ["alice", "bob", "ghost"])

    # ghost's server process died: nothing refreshes its socket any more.
    expire("ghost")
    settings.CHAT_HEARTBEAT_SECONDS = 0.05

    assert await next_presence_diff(alice) == ([], ["ghost"])


async def test_after_a_missed_change_the_socket_gets_the_whole_list(
    open_socket, channel_layer
):
    alice = await joined(open_socket, "alice")
    await joined(open_socket, "bob")
    await presence_after(alice, ["alice", "bob"])
    stale = {"type": "presence_diff", "room": "lobby", "joined": ["x"], "left": []}

    # Numbered far beyond the room's list: changes in between never came.
    await channel_layer.group_send(
        "chat_lobby",
        {"type": "chat.presence_diff", "version": 1000, "frame": json.dumps(stale)},
    )

    frame = await alice.receive_json_from(timeout=PATIENCE)
    assert frame == {"type": "presence", "room": "lobby", "users": ["alice", "bob"]}


async def test_a_change_whose_broadcast_failed_reaches_the_room_with_the_heartbeat(
    open_socket, channel_layer, settings, monkeypatch
):
    alice = await joined(open_socket, "alice")
    await presence_after(alice, ["alice"])
    group_send = channel_layer.group_send

    async def presence_lost(group, message):
        if message["type"] == "chat.presence_diff":
            raise ConnectionError("Redis is unreachable")
        await group_send(group, message)

    monkeypatch.setattr(channel_layer, "group_send", presence_lost)
    await joined(open_socket, "bob")  # recorded as told, but never broadcast
    settings.CHAT_HEARTBEAT_SECONDS = 0.05

    assert (await next_frame(alice, "presence"))["users"] == ["alice", "bob"]


async def test_a_crowd_joining_at_once_shares_presence_broadcasts(
    open_socket, settings
):
    settings.PRESENCE_COALESCE_SECONDS = 1
    everyone = [f"user{number}" for number in range(6)]
    first = await joined(open_socket, "user0")

    for name in everyone[1:]:
        await open_socket(name)

    broadcasts = await presence_after(first, everyone)
    # A barrier: a later presence broadcast for these joins would come before it.
    await say(first, "barrier")
    while (frame := await first.receive_json_from(timeout=PATIENCE))[
        "type"
    ] != "message":
        broadcasts.append(frame)
    # The whole list on joining, then one or two changes.
    assert len(broadcasts) <= 3, f"six joins, {len(broadcasts)} presence frames"
    assert broadcasts[-1] == everyone


# --- notifications ------------------------------------------------------------------------


@pytest.mark.parametrize("channel_layer", ["redis", "redis-pubsub"], indirect=True)
async def test_notify_command_reaches_every_user(open_socket, channel_layer):
    alice = await joined(open_socket, "alice", room="lobby")
    bob = await joined(open_socket, "bob", room="kitchen")

    await sync_to_async(call_command)("notify", "Maintenance at noon")

    for member in (alice, bob):
        frame = await next_frame(member, "notification")
        assert frame["text"] == "Maintenance at noon"
        assert frame["room"] is None


@pytest.mark.parametrize("channel_layer", ["redis", "redis-pubsub"], indirect=True)
async def test_notify_command_with_a_room_reaches_only_that_room(
    open_socket, channel_layer
):
    alice = await joined(open_socket, "alice", room="lobby")
    bob = await joined(open_socket, "bob", room="kitchen")

    await sync_to_async(call_command)("notify", "Lobby closes soon", room="lobby")
    assert (await next_frame(alice, "notification"))["room"] == "lobby"
    # A barrier: a notification for everyone, sent after the lobby's. Had the first
    # reached bob, it would come before this one.
    await sync_to_async(call_command)("notify", "For everyone")

    assert (await next_frame(bob, "notification"))["text"] == "For everyone"


@pytest.mark.parametrize("channel_layer", ["in-memory"], indirect=True)
async def test_notify_command_refuses_the_in_memory_layer(channel_layer):
    with pytest.raises(CommandError, match="cannot reach the server"):
        await sync_to_async(call_command)("notify", "nobody will see this")


# --- a page that stops reading ----------------------------------------------------------


@pytest.mark.parametrize("channel_layer", ["redis-pubsub"], indirect=True)
async def test_a_channel_nobody_reads_keeps_at_most_channel_capacity_events(
    channel_layer, settings, caplog
):
    # The channel of a consumer whose page stopped reading: its events pile up.
    stalled = await channel_layer.new_channel()
    reader = await channel_layer.new_channel()
    capacity = settings.CHANNEL_CAPACITY
    for number in range(capacity + 50):
        await channel_layer.send(stalled, {"type": "chat.message", "number": number})
    # A barrier: Redis hands this process its messages in order, so once the reader
    # has this one, the layer has handled all of the above.
    await channel_layer.send(reader, {"type": "barrier"})
    assert (await asyncio.wait_for(channel_layer.receive(reader), PATIENCE))[
        "type"
    ] == "barrier"

    # The page reads again: the first `capacity` events were kept, the 50 after them
    # dropped (the heartbeat catches the page up from the database) ...
    for number in range(capacity):
        event = await asyncio.wait_for(channel_layer.receive(stalled), PATIENCE)
        assert event["number"] == number
    assert caplog.text.count(f"A socket is {capacity} messages behind") == 1
    # ... and the channel takes events again: the next one is this barrier.
    await channel_layer.send(stalled, {"type": "barrier"})
    event = await asyncio.wait_for(channel_layer.receive(stalled), PATIENCE)
    assert event == {"type": "barrier"}


# --- messages in batches (chat/writer.py) -------------------------------------------------


@database_sync_to_async
def users(*names):
    return [User.objects.get_or_create(username=name)[0] for name in names]


@pytest.fixture
def batches(monkeypatch):
    """The batches the room's writer stored, each a list of texts."""
    stored = []

    def save_and_record(room_name, messages):
        stored.append([text for _, text, _ in messages])
        return save_messages(room_name, messages)

    monkeypatch.setattr(store, "save_messages", save_and_record)
    return stored


@pytest.fixture
def broadcasts(channel_layer, monkeypatch):
    """The chat.messages events broadcast, each a list of message numbers."""
    sent = []
    group_send = channel_layer.group_send

    async def record(group, event):
        if event["type"] == "chat.messages":
            sent.append([number for number, _ in event["messages"]])
        await group_send(group, event)

    monkeypatch.setattr(channel_layer, "group_send", record)
    return sent


async def at_once(channel_layer, *messages, room="lobby"):
    """Send (user, ChatMessage) pairs to the room's writer at once, as sockets do:
    each waits for its answer (a frame and whether it is new, None, or an error)."""
    sending = [
        writer.send_message(channel_layer, room, user, message)
        for user, message in messages
    ]
    gathered = asyncio.gather(*sending, return_exceptions=True)
    return await asyncio.wait_for(gathered, PATIENCE)


async def queued(room):
    """Once a message waits in the room's writer's queue."""
    while not writer.WAITING[asyncio.get_running_loop()][room]:
        await asyncio.sleep(0)


async def test_messages_sent_at_once_are_stored_in_one_batch_in_order(
    open_socket, channel_layer, batches, broadcasts
):
    carol = await joined(open_socket, "carol")
    senders = await users("alice", "bob", "dave")
    texts = ["first", "second", "third"]

    # All three wait for the writer's first batch: the same one.
    sent = await at_once(
        channel_layer,
        *((user, ChatMessage(text)) for user, text in zip(senders, texts, strict=True)),
    )

    assert batches == [texts]
    assert [(frame["id"], frame["author"], new) for frame, new in sent] == [
        (1, "alice", True),
        (2, "bob", True),
        (3, "dave", True),
    ]
    assert [(await next_frame(carol))["text"] for _ in texts] == texts
    assert broadcasts == [[1, 2, 3]]  # one event for the batch
    assert await stored_texts() == texts


async def test_a_big_batch_is_broadcast_in_events_of_limited_size(
    open_socket, channel_layer, broadcasts, monkeypatch
):
    # A page that stops reading keeps up to CHANNEL_CAPACITY events: each is bounded.
    monkeypatch.setattr(writer, "MAX_EVENT_BYTES", 300)  # about two frames
    carol = await joined(open_socket, "carol")
    (alice,) = await users("alice")
    texts = [f"message {number}" for number in range(5)]

    await at_once(channel_layer, *((alice, ChatMessage(text)) for text in texts))

    assert [(await next_frame(carol))["text"] for _ in texts] == texts
    assert broadcasts == [[1, 2], [3, 4], [5]]


async def test_a_crowd_sending_at_once_is_shown_every_message_once_in_order(
    open_socket,
):
    names = ["alice", "bob", "carol", "dave", "erin"]
    crowd = [await joined(open_socket, name) for name in names]

    for number in range(3):
        for name, socket in zip(names, crowd, strict=True):
            await say_with_id(socket, f"{name} {number}", f"{name}-{number}")

    for name, socket in zip(names, crowd, strict=True):
        shown = [await next_frame(socket) for _ in range(15)]
        assert [frame["id"] for frame in shown] == list(range(1, 16))
        # Each sender's own messages in the order it sent them.
        own = [frame["text"] for frame in shown if frame["author"] == name]
        assert own == [f"{name} {number}" for number in range(3)]
    assert len(await stored_texts()) == 15


async def test_a_batch_after_a_dropped_message_is_caught_up_in_order_once(
    open_socket, channel_layer
):
    bob = await joined(open_socket, "bob")
    frames = await store_messages(["one", "two", "three"])

    # Message 1's event was dropped; the batch of 2 and 3 arrives.
    await channel_layer.group_send(
        "chat_lobby",
        {
            "type": "chat.messages",
            "messages": [[frame["id"], json.dumps(frame)] for frame in frames[1:]],
        },
    )
    await say(bob, "barrier")

    shown = [(await next_frame(bob))["text"] for _ in range(4)]
    assert shown == ["one", "two", "three", "barrier"]


async def test_a_batch_whose_first_message_the_page_has_shows_the_rest(
    open_socket, channel_layer, settings
):
    settings.CHAT_HEARTBEAT_SECONDS = 600  # no catch-up but the batch's own
    frames = await store_messages(["one", "two"])
    bob = await joined(open_socket, "bob", query="after=0")
    bob_has = [frame["text"] for frame in bob.history]
    (one, two), more = frames, await store_messages(["three"])

    await channel_layer.group_send(
        "chat_lobby",
        {
            "type": "chat.messages",
            "messages": [[f["id"], json.dumps(f)] for f in (one, two, *more)],
        },
    )

    assert bob_has == ["one", "two"]
    assert (await next_frame(bob))["text"] == "three"  # 1 and 2 skipped, not the rest


async def test_a_copy_sent_again_in_a_batch_is_stored_once_and_the_rest_still_are(
    open_socket, channel_layer, batches
):
    alice, bob = await users("alice", "bob")
    first, _ = await database_sync_to_async(save_message)("lobby", alice, "hi", "c1")
    carol = await joined(open_socket, "carol")

    sent = await at_once(
        channel_layer,
        (bob, ChatMessage("new", "b1")),
        (alice, ChatMessage("hi", "c1")),
        (bob, ChatMessage("newer", "b2")),
    )

    assert batches == [["new", "hi", "newer"]]  # one batch, stored one at a time
    assert [(frame["id"], new) for frame, new in sent] == [
        (2, True),
        (1, False),
        (3, True),
    ]
    assert sent[1][0] == first  # the copy is answered with the first one
    await say(carol, "barrier")
    # Numbered with no gap, and the copy not broadcast again.
    shown = [(await next_frame(carol))["text"] for _ in range(3)]
    assert shown == ["new", "newer", "barrier"]
    assert await stored_texts() == ["hi", "new", "newer", "barrier"]


async def test_two_copies_in_one_batch_are_stored_once(
    open_socket, channel_layer, batches
):
    (alice,) = await users("alice")

    sent = await at_once(
        channel_layer,
        (alice, ChatMessage("hi", "c1")),
        (alice, ChatMessage("hi", "c1")),
    )

    assert batches == [["hi", "hi"]]
    assert [(frame["id"], new) for frame, new in sent] == [(1, True), (1, False)]
    assert await stored_texts() == ["hi"]


async def test_a_message_the_database_refuses_fails_alone(
    open_socket, channel_layer, batches
):
    carol = await joined(open_socket, "carol")
    bob, ghost = await users("bob", "ghost")
    await database_sync_to_async(User.objects.filter(pk=ghost.pk).delete)()

    sent = await at_once(
        channel_layer,
        (bob, ChatMessage("one")),
        (ghost, ChatMessage("from a deleted user")),  # its row cannot refer to him
        (bob, ChatMessage("two")),
    )

    assert batches == [["one", "from a deleted user", "two"]]
    assert isinstance(sent[1], IntegrityError)
    assert [sent[0][0]["id"], sent[2][0]["id"]] == [1, 2]
    assert [(await next_frame(carol))["text"] for _ in range(2)] == ["one", "two"]
    assert await stored_texts() == ["one", "two"]


@pytest.mark.parametrize("channel_layer", ["in-memory", "redis"], indirect=True)
async def test_the_rate_limit_in_a_batch_refuses_only_the_messages_over_it(
    open_socket, channel_layer, settings, slow_clock, request, batches
):
    settings.CHAT_MAX_MESSAGES_PER_SECOND = 2
    if channel_layer.__class__.__name__ != "InMemoryChannelLayer":
        settings.REDIS_URL = request.getfixturevalue("redis_url")  # counted in Redis
    alice, bob = await users("alice", "bob")
    if settings.REDIS_URL:  # a Redis of your own?
        await limits.redis_client().delete(*(f"chat:rate:{u.pk}" for u in (alice, bob)))

    sent = await at_once(
        channel_layer,
        *((user, ChatMessage(text)) for user, text in [
            (alice, "a1"), (bob, "b1"), (alice, "a2"), (alice, "a3"), (bob, "b2")
        ])
    )  # fmt: skip

    assert [frame and frame[0]["text"] for frame in sent] == [
        "a1", "b1", "a2", None, "b2"
    ]  # fmt: skip
    assert batches == [["a1", "b1", "a2", "b2"]]  # the refused one was never stored


async def test_a_batch_the_database_refused_does_not_stop_the_rooms_writer(
    open_socket, channel_layer, monkeypatch
):
    carol = await joined(open_socket, "carol")
    (alice,) = await users("alice")
    storing, go_on = threading.Event(), threading.Event()

    def unreachable_once(room_name, messages):
        monkeypatch.setattr(store, "save_messages", save_messages)  # only this once
        storing.set()
        go_on.wait(PATIENCE)
        raise ConnectionError("the database is unreachable")

    monkeypatch.setattr(store, "save_messages", unreachable_once)
    first = asyncio.create_task(at_once(channel_layer, (alice, ChatMessage("lost"))))
    await asyncio.wait_for(asyncio.to_thread(storing.wait), PATIENCE)
    # The first batch is being stored: this one waits for the next.
    second = asyncio.create_task(at_once(channel_layer, (alice, ChatMessage("kept"))))
    await asyncio.wait_for(queued(room="lobby"), PATIENCE)
    go_on.set()

    (failed,), ((frame, new),) = await first, await second
    assert isinstance(failed, ConnectionError)
    assert (frame["id"], frame["text"], new) == (1, "kept", True)
    assert (await next_frame(carol))["text"] == "kept"


def test_a_batch_costs_two_statements():
    alice = User.objects.create(username="alice")
    save_message("lobby", alice, "the room's first")  # the room comes first
    batch = [(alice, f"message {number}", f"c{number}") for number in range(5)]
    with CaptureQueriesContext(connection) as stored:
        saved = save_messages("lobby", batch)

    assert [(frame["id"], new) for frame, new in saved] == [
        (number, True) for number in range(2, 7)
    ]
    assert statements(stored) == ["UPDATE", "INSERT"]


def test_a_history_costs_two_queries_however_many_messages_it_holds():
    # After a server restart every page reads what it missed at once: the room's
    # newest number, then the messages, whatever their number.
    alice = User.objects.create(username="alice")
    batch = [(alice, f"message {number}", None) for number in range(1, 121)]
    saved = [frame for frame, _ in save_messages("lobby", batch)]

    for after, expected in ((7, saved[7:]), (None, saved[-50:]), (120, [])):
        with CaptureQueriesContext(connection) as read:
            start, frames = store.history("lobby", after, 50)

        assert (start, frames) == (expected[0]["id"] - 1 if expected else 120, expected)
        assert statements(read) == ["SELECT", "SELECT"]


async def test_a_socket_is_accepted_before_its_join_is_done(open_socket, monkeypatch):
    # After a server restart a join may wait behind hundreds of others: the page's
    # handshake must not, or the browser gives up on it and tries again.
    go_on = asyncio.Event()
    join_groups = ChatConsumer.join_groups

    async def behind_a_crowd(consumer):
        await go_on.wait()
        await join_groups(consumer)

    monkeypatch.setattr(ChatConsumer, "join_groups", behind_a_crowd)
    alice, connected = await open_socket("alice")

    assert connected  # while the join waits
    go_on.set()
    assert (await alice.receive_json_from(timeout=PATIENCE))["type"] == "history"


async def test_a_crowd_joins_a_few_at_a_time_and_each_gets_its_history(
    open_socket, settings, monkeypatch
):
    settings.CHAT_JOINS_AT_ONCE = 2
    inside, most = 0, 0
    send_history = ChatConsumer.send_history

    async def counted(consumer, after):
        nonlocal inside, most
        inside, most = inside + 1, max(most, inside + 1)
        try:
            await send_history(consumer, after)
        finally:
            inside -= 1

    monkeypatch.setattr(ChatConsumer, "send_history", counted)
    crowd = await asyncio.gather(
        *(joined(open_socket, f"user{number}") for number in range(12))
    )

    assert [socket.history for socket in crowd] == [[]] * 12
    assert 1 <= most <= 2
