"""The service as it runs: uvicorn processes, a real redis-server, real faults.

Each test starts uvicorn (the production server) on a database file of its own and
talks to it over TCP as a browser does: testsupport/chat_client.py, like the room
page, reconnects with ?after=<the number of its last message>.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from testsupport.accounts import login_cookies
from testsupport.chat_client import ChatClient
from testsupport.servers import ServerProcess, free_port


@pytest.fixture
def database(server_database, settings):
    """A migrated database of the test's own for its servers (conftest.py), and
    presence of their own in Redis (another test's servers may have left some)."""
    return {**server_database, "CHAT_REDIS_PREFIX": settings.CHAT_REDIS_PREFIX}


@pytest.fixture
def servers(step_dir):
    """Start uvicorn processes of this step; all are stopped after the test."""
    started = []

    def start(env, port=None):
        port = port or free_port()
        command = [
            sys.executable, "-m", "uvicorn", "mysite.asgi:application",
            "--port", str(port),
            # The server's own limit, equal to the chat's CHAT_MAX_FRAME_BYTES
            # (uvicorn's default is 16 MiB).
            "--ws-max-size", "65536",
        ]  # fmt: skip
        server = ServerProcess(command, step_dir, port, env).start()
        started.append(server)
        assert server.wait_until_listening(30), server.output
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def clients():
    opened = []

    def open_client(port, cookie, room="lobby", name=""):
        client = ChatClient(port, room, cookie, name).connect()
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


# REDIS_LAYER for each of the Redis layers this step offers (see mysite/settings.py).
REDIS_LAYERS = {"redis": "core", "redis-pubsub": "pubsub"}


def has_texts(*texts):
    return lambda client: all(text in client.texts() for text in texts)


def has_joined(client):
    """The history frame comes once the socket is in its room's group."""
    return any(frame["type"] == "history" for frame in client.frames)


def kill(server):
    """As if the machine lost power: no goodbye to anyone."""
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()


@pytest.mark.parametrize("layer", REDIS_LAYERS)
def test_clients_on_two_workers_chat_through_redis(
    step_dir, database, redis_url, servers, clients, layer
):
    env = {**database, "REDIS_URL": redis_url, "REDIS_LAYER": REDIS_LAYERS[layer]}
    worker_a, worker_b = servers(env), servers(env)
    alice_cookie, bob_cookie = login_cookies(step_dir, env, ["alice", "bob"])
    alice = clients(worker_a.port, alice_cookie)
    bob = clients(worker_b.port, bob_cookie)
    assert alice.wait_for(has_joined) and bob.wait_for(has_joined)

    alice.send("from worker A")
    bob.send("from worker B")

    assert alice.wait_for(has_texts("from worker A", "from worker B"))
    assert bob.wait_for(has_texts("from worker A", "from worker B"))


@pytest.mark.parametrize("layer", REDIS_LAYERS)
def test_redis_restart_mid_conversation(
    step_dir, database, redis_server, servers, clients, layer
):
    env = {
        **database,
        "REDIS_URL": redis_server.url,
        "REDIS_LAYER": REDIS_LAYERS[layer],
        "CHAT_HEARTBEAT_SECONDS": "1",
    }
    server = servers(env)
    alice_cookie, bob_cookie = login_cookies(step_dir, env, ["alice", "bob"])
    alice, bob = clients(server.port, alice_cookie), clients(server.port, bob_cookie)
    alice.send("before the restart")
    assert bob.wait_for(has_texts("before the restart"))

    redis_server.restart()
    # The server's Redis connections retry and reconnect, so the same sockets go on.
    # The restarted Redis has forgotten the room's group: this message is stored,
    # but its broadcast reaches nobody. The heartbeat joins the groups again and
    # catches bob up from the database.
    alice.send("during the restart")
    assert bob.wait_for(has_texts("during the restart"), timeout=30), server.output[
        -3000:
    ]
    alice.send("after the restart")

    assert bob.wait_for(has_texts("after the restart"))
    assert bob.texts() == [
        "before the restart",
        "during the restart",
        "after the restart",
    ]
    assert "Traceback" not in server.output
    # Nothing stored was lost: a new client gets the whole conversation.
    (carol_cookie,) = login_cookies(step_dir, env, ["carol"])
    carol = clients(server.port, carol_cookie)
    assert carol.wait_for(has_texts("after the restart"))
    assert carol.texts() == bob.texts()


def test_the_history_outlives_the_server(step_dir, database, servers, clients):
    server = servers(database)
    alice_cookie, bob_cookie = login_cookies(step_dir, database, ["alice", "bob"])
    alice = clients(server.port, alice_cookie)
    alice.send("one")
    alice.send("two")
    assert alice.wait_for(has_texts("one", "two"))

    kill(server)
    restarted = servers(database, port=server.port)
    bob = clients(restarted.port, bob_cookie)

    assert bob.wait_for(has_texts("one", "two")), restarted.output[-2000:]
    assert [(message["id"], message["author"]) for message in bob.messages] == [
        (1, "alice"),
        (2, "alice"),
    ]


def test_server_killed_and_restarted_clients_catch_up(
    step_dir, database, redis_url, servers, clients
):
    env = {**database, "REDIS_URL": redis_url}
    server = servers(env)
    alice_cookie, bob_cookie = login_cookies(step_dir, env, ["alice", "bob"])
    alice, bob = clients(server.port, alice_cookie), clients(server.port, bob_cookie)
    alice.send("one")
    assert bob.wait_for(has_texts("one"))

    kill(server)
    restarted = servers(env, port=server.port)
    alice.reconnect()
    alice.send("two")
    alice.send("three")
    assert alice.wait_for(has_texts("two", "three"))
    bob.reconnect()  # asks for everything after "one"

    assert bob.wait_for(has_texts("two", "three")), restarted.output[-2000:]
    assert bob.texts() == ["one", "two", "three"]
    assert [message["id"] for message in bob.messages] == [1, 2, 3]


BURST_SENDERS, BURST_MESSAGES, ROOM_SIZE = 5, 40, 10
# 49 KB messages, 15 MB in all: more than the buffers between a server and a page.
SLOW_READER_MESSAGES = 300


@pytest.mark.parametrize(
    "layer, capacity",
    [
        ("redis", "1000"),
        ("redis", "20"),
        ("redis-pubsub", "1000"),
        ("in-memory", "1000"),
    ],
    ids=["redis", "redis-small-capacity", "redis-pubsub", "in-memory"],
)
def test_burst_reaches_every_member(
    step_dir, database, request, servers, clients, layer, capacity
):
    """5 members of a 10-person room each send 40 messages as fast as they can:
    every member gets all 200, in order (through the layer, or caught up)."""
    redis_url = request.getfixturevalue("redis_url") if layer in REDIS_LAYERS else ""
    env = {
        **database,
        "REDIS_URL": redis_url,
        "REDIS_LAYER": REDIS_LAYERS.get(layer, "core"),
        "CHANNEL_CAPACITY": capacity,
        "CHAT_HEARTBEAT_SECONDS": "1",
        # A burst is what this test is about: lift the rate limit.
        "CHAT_MAX_MESSAGES_PER_SECOND": "1000",
    }
    server = servers(env)
    names = [f"member{number}" for number in range(ROOM_SIZE)]
    members = [
        clients(server.port, cookie, name=name)
        for name, cookie in zip(names, login_cookies(step_dir, env, names), strict=True)
    ]
    for member in members:
        assert member.wait_for(has_joined)
    expected_count = BURST_SENDERS * BURST_MESSAGES

    def send_burst(member):
        for number in range(BURST_MESSAGES):
            member.send(f"{member.name} {number}")

    senders = [
        threading.Thread(target=send_burst, args=(m,)) for m in members[:BURST_SENDERS]
    ]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()

    for member in members:
        member.wait_for(lambda c: len(c.messages) >= expected_count, timeout=30)
    for member in members:
        assert len(member.messages) == expected_count, (
            f"{member.name} got {len(member.messages)} of {expected_count}"
        )
        assert [m["id"] for m in member.messages] == list(range(1, expected_count + 1))
        for sender in names[:BURST_SENDERS]:
            own = [m["text"] for m in member.messages if m["author"] == sender]
            assert own == [f"{sender} {n}" for n in range(BURST_MESSAGES)]


def test_the_rate_limit_holds_across_workers(
    step_dir, database, redis_server, servers, clients
):
    redis_server.restart()  # empty: nothing counted before this test
    env = {
        **database,
        "REDIS_URL": redis_server.url,
        "CHAT_MAX_MESSAGES_PER_SECOND": "4",
        # However slow this machine, the messages count as sent within one window.
        "CHAT_RATE_WINDOW_SECONDS": "600",
    }
    worker_a, worker_b = servers(env), servers(env)
    (cookie,) = login_cookies(step_dir, env, ["alice"])
    on_a, on_b = clients(worker_a.port, cookie), clients(worker_b.port, cookie)
    assert on_a.wait_for(has_joined) and on_b.wait_for(has_joined)

    for number in range(3):
        on_a.send(f"from A {number}")
        on_b.send(f"from B {number}")

    def answers(client, prefix):
        """What the socket got for its own three messages: echoes and refusals."""
        echoes = [m for m in client.messages if m["text"].startswith(prefix)]
        refusals = [f for f in client.frames if f.get("code") == "rate_limited"]
        return echoes, refusals

    assert on_a.wait_for(lambda c: sum(map(len, answers(c, "from A"))) == 3)
    assert on_b.wait_for(lambda c: sum(map(len, answers(c, "from B"))) == 3)
    accepted_a, refused_a = answers(on_a, "from A")
    accepted_b, refused_b = answers(on_b, "from B")
    assert len(accepted_a) + len(accepted_b) == 4
    assert len(refused_a) + len(refused_b) == 2


def test_hostile_frames_over_a_real_server_get_errors_and_no_traceback(
    step_dir, database, servers
):
    server = servers(database)
    (cookie,) = login_cookies(step_dir, database, ["alice"])
    client = ChatClient(server.port, "lobby", cookie).connect()
    frames = [
        "",
        "{not json",
        "[" * 10_000 + "]" * 10_000,
        '{"type": "message", "text": "\\ud800"}',
        json.dumps({"type": "message", "text": "é" * 2049}),
        json.dumps({"type": ["x"] * 10_000}),
    ]
    try:
        for frame in frames:
            client.socket.send(frame)
            assert client.wait_for(
                lambda c: len([f for f in c.frames if f["type"] == "error"]) == 1
            ), frame[:80]
            client.frames.clear()
        client.send("still here")
        assert client.wait_for(has_texts("still here"))
    finally:
        client.close()

    assert "Traceback" not in server.output, server.output[-3000:]


def test_a_frame_over_the_servers_limit_closes_that_socket_only(
    step_dir, database, servers, clients
):
    server = servers(database)
    alice_cookie, bob_cookie = login_cookies(step_dir, database, ["alice", "bob"])
    alice, bob = clients(server.port, alice_cookie), clients(server.port, bob_cookie)
    assert alice.wait_for(has_joined) and bob.wait_for(has_joined)

    alice.socket.send("x" * 70_000)  # over --ws-max-size: never reaches the chat

    with pytest.raises(ConnectionClosed) as closed:
        while True:
            alice.socket.recv(timeout=5)
    assert closed.value.rcvd.code == 1009  # "message too big"
    bob.send("the others chat on")
    assert bob.wait_for(has_texts("the others chat on"))
    assert "Traceback" not in server.output


def test_a_page_that_stops_reading_holds_a_bounded_queue_and_misses_nothing(
    step_dir, database, redis_url, servers, clients
):
    # A page that stops reading: uvicorn waits to write to it, so its consumer stops
    # taking messages from the channel layer while the room goes on talking. What
    # waits there for it is bounded (chat/layers.py); once it reads again, the
    # heartbeat catches it up from the database.
    env = {
        **database,
        "REDIS_URL": redis_url,
        "REDIS_LAYER": "pubsub",
        "CHANNEL_CAPACITY": "10",
        "CHAT_HEARTBEAT_SECONDS": "0.5",
        "CHAT_MAX_MESSAGES_PER_SECOND": "100000",
        # Big messages: more than every buffer between the server and bob can hold.
        "CHAT_MAX_MESSAGE_BYTES": "50000",
    }
    server = servers(env)
    alice_cookie, bob_cookie = login_cookies(step_dir, env, ["alice", "bob"])
    alice = clients(server.port, alice_cookie)
    # bob reads nothing: a tiny receive buffer, and websockets' client stops reading
    # from its socket once a frame is waiting for him.
    tiny = socket.socket()
    tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
    tiny.connect(("127.0.0.1", server.port))
    bob = ChatClient(server.port, "lobby", bob_cookie)
    bob.socket = connect(
        f"ws://127.0.0.1:{server.port}/ws/chat/lobby/",
        sock=tiny,
        origin=f"http://127.0.0.1:{server.port}",
        additional_headers={"Cookie": bob_cookie},
        max_queue=1,
        max_size=None,
    )
    assert alice.wait_for(has_joined) and bob.wait_for(has_joined)
    texts = [f"{number:03} " + "x" * 49_000 for number in range(SLOW_READER_MESSAGES)]

    for text in texts:
        alice.send(text)
    assert alice.wait_for(lambda c: len(c.messages) == len(texts), timeout=60)

    # Whether the queue filled and dropped depends on the machine's load (how fast
    # the consumer drains it); what must hold either way: nothing is missed.
    assert bob.wait_for(lambda c: len(c.messages) == len(texts), timeout=60)
    assert bob.texts() == texts
    assert [m["id"] for m in bob.messages] == list(range(1, len(texts) + 1))
    assert "Traceback" not in server.output


def test_notify_command_from_another_process(
    step_dir, database, redis_url, servers, clients
):
    env = {**database, "REDIS_URL": redis_url}
    server = servers(env)
    alice_cookie, bob_cookie = login_cookies(step_dir, env, ["alice", "bob"])
    alice = clients(server.port, alice_cookie, room="lobby")
    bob = clients(server.port, bob_cookie, room="kitchen")
    assert alice.wait_for(has_joined) and bob.wait_for(has_joined)

    result = subprocess.run(
        [sys.executable, "manage.py", "notify", "Deploy in 5 minutes"],
        cwd=step_dir,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    for client in (alice, bob):
        assert client.wait_for(
            lambda c: any(f.get("text") == "Deploy in 5 minutes" for f in c.frames)
        )


def test_notify_command_explains_why_the_in_memory_layer_cannot_work(
    step_dir, database
):
    result = subprocess.run(
        [sys.executable, "manage.py", "notify", "hello?"],
        cwd=step_dir,
        env={**os.environ, **database, "REDIS_URL": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert (
        "CommandError: The channel layer is in memory, so this command cannot reach"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_presence_updates_when_a_socket_dies_without_a_close_frame(
    step_dir, database, redis_url, servers, clients
):
    env = {**database, "REDIS_URL": redis_url}
    server = servers(env)
    alice_cookie, bob_cookie = login_cookies(step_dir, env, ["alice", "bob"])
    alice = clients(server.port, alice_cookie)
    bob = clients(server.port, bob_cookie)

    def presence_is(users):
        return lambda c: c.online == set(users)

    assert alice.wait_for(presence_is(["alice", "bob"]))

    bob.vanish()

    assert alice.wait_for(presence_is(["alice"]), timeout=10), server.output[-2000:]
    assert alice.frames[-1] == {
        "type": "presence_diff",
        "room": "lobby",
        "joined": [],
        "left": ["bob"],
    }


def test_room_page_reconnects_after_a_server_restart_and_catches_up(
    step_dir, database, redis_url, servers, browser
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    env = {**database, "REDIS_URL": redis_url}
    server = servers(env)
    alice_cookie, bob_cookie = login_cookies(step_dir, env, ["alice", "bob"])
    open_room_page(browser, server, alice_cookie)
    WebDriverWait(browser, 10).until(state_is("connected"))

    kill(server)
    WebDriverWait(browser, 10).until(state_is("reconnecting"))
    restarted = servers(env, port=server.port)
    bob = ChatClient(restarted.port, "lobby", bob_cookie).connect()
    bob.send("while you were away")

    WebDriverWait(browser, 20).until(state_is("connected"))
    WebDriverWait(browser, 10).until(log_has("while you were away"))
    # A barrier: once bob's next message is shown, a second copy of the first
    # would have been shown too.
    bob.send("and now")
    WebDriverWait(browser, 10).until(log_has("and now"))
    bob.close()
    assert (
        browser.find_element(By.ID, "chat-log").text.count("while you were away") == 1
    )


# Run in the page before its own script. Every wait before a reconnection is
# recorded, and Math.random() returns 0.25, 0.75, 0.25, ... so that each wait is
# known exactly ("full jitter": that part of the backoff). With holdReconnects set,
# a reconnection is held, not timed, until the test releases it or the page clears
# it. With dropFrames set, the page's sockets open but it gets no frame. Sockets
# closed are counted.
RECORD_RECONNECTIONS = """
window.reconnectWaits = [];
window.heldReconnects = new Map();
window.socketsClosed = 0;
const randoms = [0.25, 0.75];
let draws = 0;
Math.random = () => randoms[draws++ % randoms.length];
const pageSetTimeout = window.setTimeout;
const pageClearTimeout = window.clearTimeout;
window.setTimeout = function (callback, wait, ...rest) {
    if (callback && callback.name === 'connect') {
        window.reconnectWaits.push(wait);
        if (window.holdReconnects) {
            const id = 1e9 + window.reconnectWaits.length;
            window.heldReconnects.set(id, callback);
            return id;
        }
    }
    return pageSetTimeout(callback, wait, ...rest);
};
window.clearTimeout = function (id) {
    window.heldReconnects.delete(id);
    return pageClearTimeout(id);
};
window.releaseReconnect = function () {
    const [id, connect] = window.heldReconnects.entries().next().value;
    window.heldReconnects.delete(id);
    connect();
};
window.WebSocket = class extends window.WebSocket {
    constructor(...args) {
        super(...args);
        // Added before the page's own handlers, so these run first.
        this.addEventListener('close', () => { window.socketsClosed += 1; });
        this.addEventListener('message', (event) => {
            if (window.dropFrames) event.stopImmediatePropagation();
        });
    }
};
"""


def open_recorded_room_page(browser, server, cookie):
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_RECONNECTIONS}
    )
    open_room_page(browser, server, cookie)


def test_the_page_waits_a_random_part_of_the_backoff_and_starts_again_once_answered(
    step_dir, database, servers, browser
):
    from selenium.webdriver.support.wait import WebDriverWait

    server = servers(database)
    alice_cookie, bob_cookie = login_cookies(step_dir, database, ["alice", "bob"])
    open_recorded_room_page(browser, server, alice_cookie)
    WebDriverWait(browser, 10).until(state_is("connected"))

    def page(script):
        return browser.execute_script(f"return {script}")

    def next_wait():
        """The wait the page holds next, once its socket has closed."""
        WebDriverWait(browser, 10).until(
            lambda d: page("window.heldReconnects.size") == 1
        )
        return page("window.reconnectWaits.at(-1)")

    page("window.holdReconnects = true")
    kill(server)
    # Each try fails while the server is down: the backoff doubles, up to 15 s.
    waits = [next_wait()]
    for _ in range(5):
        page("window.releaseReconnect()")
        waits.append(next_wait())
    assert waits == [250, 1500, 1000, 6000, 3750, 11250]

    # A socket that opens, but brings no history before it closes, is no answer:
    # the backoff goes on.
    restarted = servers(database, port=server.port)
    page("window.dropFrames = true")
    page("window.releaseReconnect()")
    WebDriverWait(browser, 20).until(state_is("connected"))
    kill(restarted)
    assert next_wait() == 3750

    # Answered (the history frame came): the backoff starts again from 1 s.
    restarted = servers(database, port=server.port)
    page("window.dropFrames = false")
    page("window.releaseReconnect()")
    WebDriverWait(browser, 20).until(state_is("connected"))
    # A barrier: bob's message comes after the history frame that answers the page.
    bob = ChatClient(restarted.port, "lobby", bob_cookie).connect()
    bob.send("back")
    WebDriverWait(browser, 10).until(log_has("back"))
    bob.close()
    kill(restarted)
    assert next_wait() == 750


def test_a_page_that_is_left_stops_reconnecting_and_its_old_socket_changes_nothing(
    step_dir, database, servers, browser
):
    from selenium.webdriver.support.wait import WebDriverWait

    server = servers(database)
    (alice_cookie,) = login_cookies(step_dir, database, ["alice"])
    open_recorded_room_page(browser, server, alice_cookie)
    WebDriverWait(browser, 10).until(state_is("connected"))

    def page(script):
        return browser.execute_script(f"return {script}")

    browser.execute_script("window.holdReconnects = true")
    kill(server)
    WebDriverWait(browser, 10).until(lambda d: page("window.heldReconnects.size") == 1)
    # Left (or kept in the back/forward cache): its reconnection is called off.
    page("window.dispatchEvent(new PageTransitionEvent('pagehide', {persisted: true}))")
    assert page("window.heldReconnects.size") == 0

    restarted = servers(database, port=server.port)
    page("window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")
    WebDriverWait(browser, 20).until(state_is("connected"))
    page("window.dispatchEvent(new PageTransitionEvent('pagehide', {persisted: true}))")
    # A barrier: the closed socket's close event has run, the page's handler too.
    WebDriverWait(browser, 10).until(lambda d: page("window.socketsClosed") == 2)
    assert page("window.heldReconnects.size") == 0, restarted.output[-2000:]
    assert page("window.reconnectWaits.length") == 1


def test_a_message_stored_but_never_acknowledged_is_stored_once(
    step_dir, database, servers, clients
):
    # The server stores alice's message and dies before she reads its ack. She
    # sends it again after reconnecting, as the page does.
    server = servers(database)
    alice_cookie, bob_cookie = login_cookies(step_dir, database, ["alice", "bob"])
    alice = clients(server.port, alice_cookie)
    bob = clients(server.port, bob_cookie)
    alice.send("only once")
    assert bob.wait_for(has_texts("only once"))  # stored: it is broadcast

    kill(server)
    restarted = servers(database, port=server.port)
    alice.reconnect()  # sends "only once" again: it was not acknowledged
    alice.send("and then this")
    assert alice.wait_for(lambda client: not client.pending), restarted.output[-2000:]
    assert alice.wait_for(has_texts("and then this"))

    carol = clients(restarted.port, login_cookies(step_dir, database, ["carol"])[0])
    assert carol.wait_for(has_texts("and then this"))
    assert carol.texts() == ["only once", "and then this"]
    assert alice.texts() == ["only once", "and then this"]


def open_room_page(browser, server, cookie, room="lobby"):
    browser.get(f"http://127.0.0.1:{server.port}/accounts/login/")
    browser.add_cookie({"name": "sessionid", "value": cookie.split("=", 1)[1]})
    browser.get(f"http://127.0.0.1:{server.port}/chat/{room}/")


def state_is(state):
    from selenium.webdriver.common.by import By

    return lambda d: (
        d.find_element(By.ID, "connection-state").get_attribute("data-state") == state
    )


def log_has(text):
    from selenium.webdriver.common.by import By

    return lambda d: text in d.find_element(By.ID, "chat-log").text


def test_the_page_keeps_a_message_pending_until_the_server_has_stored_it(
    step_dir, database, servers, clients, browser
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    server = servers(database)
    alice_cookie, bob_cookie = login_cookies(step_dir, database, ["alice", "bob"])
    open_room_page(browser, server, alice_cookie)
    WebDriverWait(browser, 10).until(state_is("connected"))

    # Frozen, the server reads nothing: the message cannot be stored.
    server.process.send_signal(signal.SIGSTOP)
    browser.find_element(By.ID, "chat-message-input").send_keys("do not lose me")
    browser.find_element(By.ID, "chat-message-submit").click()
    pending = browser.find_element(By.ID, "chat-pending")
    assert pending.text.startswith("you: do not lose me")
    assert (
        browser.find_element(By.ID, "chat-message-input").get_attribute("value") == ""
    )

    kill(server)
    restarted = servers(database, port=server.port)
    WebDriverWait(browser, 20).until(log_has("do not lose me"))
    WebDriverWait(browser, 10).until(lambda d: pending.text == "")

    bob = clients(restarted.port, bob_cookie)
    assert bob.wait_for(has_texts("do not lose me"))
    assert bob.texts() == ["do not lose me"]


def test_a_page_newer_than_the_restored_database_starts_again(
    step_dir, database, servers, clients, browser
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    server = servers(database)
    alice_cookie, bob_cookie = login_cookies(step_dir, database, ["alice", "bob"])
    bob = clients(server.port, bob_cookie)
    for text in ("kept", "lost in the restore", "also lost"):
        bob.send(text)
    assert bob.wait_for(lambda client: not client.pending)
    open_room_page(browser, server, alice_cookie)
    WebDriverWait(browser, 10).until(log_has("also lost"))

    kill(server)
    # As if the database came back from a backup taken after the first message.
    forget = (
        "from chat.models import Message, Room;"
        " Message.objects.filter(number__gt=1).delete();"
        " Room.objects.update(last_number=1)"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", forget],
        cwd=step_dir,
        env={**os.environ, **database},
        check=True,
    )
    restarted = servers(database, port=server.port)
    bob.reconnect()
    bob.send("new since the restore")

    WebDriverWait(browser, 20).until(log_has("new since the restore"))
    log = browser.find_element(By.ID, "chat-log").text
    assert "lost in the restore" not in log
    assert log.count("kept") == 1, restarted.output[-2000:]


def test_uvicorn_alone_serves_the_stylesheet_only_while_debug_is_on(database, servers):
    """`make step13-workers` runs uvicorn with no nginx in front: with DEBUG on, the
    pages keep their style; with DEBUG off, static files are nginx's job."""

    def stylesheet(server):
        url = f"http://127.0.0.1:{server.port}/static/chat/chat.css"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""

    status, text = stylesheet(servers({**database, "DJANGO_DEBUG": "1"}))
    assert status == 200 and "body" in text

    production = {
        **database,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x" * 50,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    }
    assert stylesheet(servers(production))[0] == 404
