"""The chat as it runs: a real server process, stopped and started again.

Each test starts the server (`manage.py runserver`, Daphne) on a database file of
its own and talks to it over TCP as a browser does (testsupport/chat_client.py).
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
