"""The chat as it runs: a real server process, killed and started again.

Each test starts the server (`manage.py runserver`, Daphne) on a database file of
its own and talks to it over TCP as a browser does: testsupport/chat_client.py,
like the room page, reconnects with ?after=<the number of its last message>.
"""

import signal

import pytest

from testsupport.accounts import fresh_sqlite_database, login_cookies
from testsupport.chat_client import ChatClient
from testsupport.servers import runserver


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory):
    return tmp_path_factory.mktemp("template") / "migrated.sqlite3"


@pytest.fixture
def database(step_dir, migrated_template, tmp_path):
    """A migrated database of the test's own for its servers."""
    return fresh_sqlite_database(
        step_dir, migrated_template, tmp_path / "service.sqlite3"
    )


@pytest.fixture
def servers(step_dir):
    """Start servers of this step; all are stopped after the test."""
    started = []

    def start(env, port=None):
        server = runserver(step_dir, port, env).start()
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


def has_texts(*texts):
    return lambda client: all(text in client.texts() for text in texts)


def kill(server):
    """As if the machine lost power: no goodbye to anyone."""
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()


def test_server_killed_and_restarted_clients_catch_up(
    step_dir, database, servers, clients
):
    server = servers(database)
    alice_cookie, bob_cookie = login_cookies(step_dir, database, ["alice", "bob"])
    alice = clients(server.port, alice_cookie)
    bob = clients(server.port, bob_cookie)
    alice.send("one")
    assert bob.wait_for(has_texts("one"))

    kill(server)
    restarted = servers(database, port=server.port)
    alice.reconnect()
    alice.send("two")
    alice.send("three")
    assert alice.wait_for(has_texts("two", "three"))
    bob.reconnect()  # asks for everything after "one"

    assert bob.wait_for(has_texts("two", "three")), restarted.output[-2000:]
    assert bob.texts() == ["one", "two", "three"]
    assert [message["id"] for message in bob.messages] == [1, 2, 3]


def test_room_page_reconnects_after_a_server_restart_and_catches_up(
    step_dir, database, servers, browser
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    server = servers(database)
    alice_cookie, bob_cookie = login_cookies(step_dir, database, ["alice", "bob"])
    base = f"http://127.0.0.1:{server.port}"
    browser.get(base + "/accounts/login/")
    browser.add_cookie({"name": "sessionid", "value": alice_cookie.split("=", 1)[1]})
    browser.get(base + "/chat/lobby/")

    def state_is(state):
        return lambda d: (
            d.find_element(By.ID, "connection-state").get_attribute("data-state")
            == state
        )

    def log_has(text):
        return lambda d: text in d.find_element(By.ID, "chat-log").text

    WebDriverWait(browser, 10).until(state_is("connected"))

    kill(server)
    WebDriverWait(browser, 10).until(state_is("reconnecting"))
    restarted = servers(database, port=server.port)
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
