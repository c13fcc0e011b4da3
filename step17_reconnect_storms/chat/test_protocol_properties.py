"""Property-based tests of the protocol, with Hypothesis.

A hand-written list of hostile frames cannot be complete. Here Hypothesis makes up
the frames, query strings and paths: any JSON value at any depth, any text
(including what is not valid Unicode), binary frames. Whatever a client sends, it
gets an "error" frame or what the protocol promises; its consumer never fails
(a server closes such a socket with code 1011 and logs a traceback); and the others
in the room see nothing of it. The cases found (by Hypothesis, or in review) are kept
as @example()s, so they are tried on every run, first.
"""

import contextlib
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mysite.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

BROWSER_ORIGIN = (b"origin", b"http://localhost:8000")
# Each example opens sockets of its own, so that a failing example fails alone and
# Hypothesis can shrink it to the simplest. The database and the channel layer are
# shared by the examples of a test (fixtures), which Hypothesis is told is intended.
# How many examples each test tries comes from the Hypothesis profile (conftest.py):
# a few dozen by default, many more with `pytest --hypothesis-profile=thorough`.
EXAMPLES = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)

# Any character, even half of a UTF-16 surrogate pair, which JSON can spell
# ("\ud800") in a frame that is itself valid UTF-8; such characters are a tiny part
# of Unicode, so they, and control characters, are drawn more often.
ANY_TEXT = st.text(
    st.characters(exclude_categories=()) | st.characters(categories=["Cs", "Cc"])
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4)
    ),
    max_leaves=20,
)
MESSAGES = st.fixed_dictionaries(
    {"type": st.just("message")}, optional={"text": ANY_TEXT | JSON_VALUES}
)
FRAMES = st.one_of(
    st.text(),  # anything at all, often not JSON (a WebSocket text frame is UTF-8)
    JSON_VALUES.map(json.dumps),  # any JSON value
    MESSAGES.map(json.dumps),  # a message, with any text
    st.integers(1, 100_000).map(lambda depth: "[" * depth + "]" * depth),  # deep
)

# How long a test waits for what must come. Only a failing test waits that long;
# a passing one goes on as soon as it comes, however busy the machine.
PATIENCE = 10


@database_sync_to_async
def session_cookie_for(username):
    user, _ = User.objects.get_or_create(username=username)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return (b"cookie", f"sessionid={session.session_key}".encode())


async def open_socket(username, path="/ws/chat/lobby/", query_string=b""):
    communicator = WebsocketCommunicator(
        application, path, [BROWSER_ORIGIN, await session_cookie_for(username)]
    )
    # Any bytes at all, not only what a URL can carry.
    communicator.scope["query_string"] = query_string
    connected, _ = await communicator.connect(timeout=PATIENCE)
    return communicator, connected


async def frames_until(communicator, text):
    """Every frame up to the message with this text (which is not included)."""
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=PATIENCE)
        if frame.get("type") == "message" and frame.get("text") == text:
            return frames
        frames.append(frame)


@pytest.fixture
def layer_ready(channel_layer, settings):
    """The channel layer of conftest.py, set up; kept out of Hypothesis' sight (it
    looks at every argument of a test, and the pub/sub layer needs an event loop)."""
    settings.PRESENCE_COALESCE_SECONDS = 0.01
    # Every example ends with a message from bob: lift the rate limit.
    settings.CHAT_MAX_MESSAGES_PER_SECOND = 1_000_000


@contextlib.asynccontextmanager
async def room():
    """alice and bob, each with a socket in the lobby, closed afterwards."""
    alice, _ = await open_socket("alice")
    bob, _ = await open_socket("bob")
    try:
        for communicator in (alice, bob):
            assert (await communicator.receive_json_from(timeout=PATIENCE))[
                "type"
            ] == "history"
        yield alice, bob
    finally:
        for communicator in (alice, bob):
            if not communicator.future.done():
                await communicator.disconnect(timeout=PATIENCE)


barrier_numbers = iter(range(10**9))


async def check_nothing_else_happened(alice, bob, sent_text=None):
    """Alice has exactly one answer. Then bob speaks last: a barrier. Before it, alice
    has had nothing more, and bob nothing but (if it was a valid message) alice's
    message."""
    presence = ("presence", "presence_diff")
    # Alice's answer is awaited before bob speaks: the two sockets' frames are
    # handled side by side, so a barrier sent at once could overtake it.
    answer = await alice.receive_json_from(timeout=PATIENCE)
    while answer["type"] in presence:
        answer = await alice.receive_json_from(timeout=PATIENCE)
    assert not alice.future.done(), "alice's consumer ended"
    barrier = f"barrier {next(barrier_numbers)}"
    await bob.send_json_to({"type": "message", "text": barrier})
    to_alice = [
        f for f in await frames_until(alice, barrier) if f["type"] not in presence
    ]
    to_bob = [f for f in await frames_until(bob, barrier) if f["type"] not in presence]
    assert to_alice == [], to_alice
    if answer["type"] == "error":
        assert answer["code"] and answer["detail"]
        assert to_bob == [], "a refused frame reached someone else"
    else:
        assert answer["type"] == "message" and answer["author"] == "alice", answer
        assert answer["text"] == sent_text
        assert to_bob == [answer]


@EXAMPLES
@given(frame=FRAMES)
@example(frame='{"type": "message", "text": "\\ud800"}')
@example(frame="[" * 10_000 + "]" * 10_000)  # deep, yet under the size limit
async def test_any_text_frame_gets_an_error_or_is_a_message(layer_ready, frame):
    try:
        content = json.loads(frame)
    except (ValueError, RecursionError):
        content = None
    sent_text = content.get("text") if isinstance(content, dict) else None

    async with room() as (alice, bob):
        # Not send_to(), which refuses an empty frame: a real client can send one.
        await alice.send_input({"type": "websocket.receive", "text": frame})

        await check_nothing_else_happened(alice, bob, sent_text)


@EXAMPLES
@given(frame=st.binary())
async def test_any_binary_frame_gets_an_error(layer_ready, frame):
    async with room() as (alice, bob):
        await alice.send_input({"type": "websocket.receive", "bytes": frame})

        await check_nothing_else_happened(alice, bob)


@EXAMPLES
@given(query_string=st.binary(max_size=40) | st.text().map(str.encode))
@example(query_string="after=²".encode())
@example(query_string=b"after=99999999999999999999999")
async def test_any_query_string_gets_a_history_and_a_working_socket(
    layer_ready, query_string
):
    carol, connected = await open_socket("carol", query_string=query_string)

    assert connected
    frames = []
    while (frame := await carol.receive_json_from(timeout=PATIENCE))[
        "type"
    ] != "history":
        frames.append(frame)
    assert all(f["type"] == "error" for f in frames), frames
    await carol.send_json_to({"type": "message", "text": "works"})
    assert "works" in [f.get("text") for f in await frames_until_any(carol, "works")]
    await carol.disconnect()


async def frames_until_any(communicator, text):
    frames = []
    while not frames or frames[-1].get("text") != text:
        frames.append(await communicator.receive_json_from(timeout=PATIENCE))
    return frames


@EXAMPLES
@given(path=st.text())
@example(path="/ws/chat/")
@example(path="/ws/other/")
@example(path="/ws/chat/lobby")
async def test_any_path_is_served_or_refused_cleanly(layer_ready, path):
    communicator = WebsocketCommunicator(application, "/", [BROWSER_ORIGIN])
    communicator.scope["path"] = path

    await communicator.connect(timeout=PATIENCE)

    # The server says goodbye, whether the socket was accepted or refused: this
    # raises whatever the application raised, if anything.
    await communicator.disconnect(timeout=PATIENCE)


@EXAMPLES
@given(origin=st.binary(max_size=40) | st.text().map(str.encode))
@example(origin=b"http://[::1")
@example(origin=b"http://localhost:99999")
@example(origin=b"null")  # a sandboxed page's
async def test_any_origin_header_opens_or_refuses_the_socket_cleanly(
    layer_ready, origin
):
    communicator = WebsocketCommunicator(
        application,
        "/ws/chat/lobby/",
        [(b"origin", origin), await session_cookie_for("alice")],
    )

    await communicator.connect(timeout=PATIENCE)

    # Opened or refused, the server says goodbye: this raises whatever the
    # application raised, if anything (Channels' own check raised ValueError).
    await communicator.disconnect(timeout=PATIENCE)
