"""Checkpoints of the pages: the index page, the room page, served by Daphne."""

import subprocess
import sys
import urllib.request
from urllib.parse import quote

import pytest
from channels.routing import ProtocolTypeRouter

from mysite.asgi import application
from testsupport.servers import runserver

ROOM_PROMPT = "What chat room would you like to enter?"
ROOM_NAME_RULE_START = "A room name can use only ASCII letters"
ROOM_NAMES_THE_LAYER_REFUSES = ["café", "x" * 150, "has space", "a/b", "../x"]


def test_index_page_asks_for_a_room_name(client):
    response = client.get("/chat/")

    assert response.status_code == 200
    page = response.content.decode()
    assert ROOM_PROMPT in page
    assert 'id="room-name-input"' in page
    assert 'id="room-name-submit"' in page


def test_room_page_opens_a_socket_to_its_room(client):
    response = client.get("/chat/lobby/")

    assert response.status_code == 200
    page = response.content.decode()
    for element_id in ("chat-log", "chat-message-input", "chat-message-submit"):
        assert f'id="{element_id}"' in page
    # json_script: the room name reaches the JavaScript safely escaped.
    assert '<script id="room-name" type="application/json">"lobby"</script>' in page
    assert "'/ws/chat/'" in page


def test_room_name_is_escaped_in_the_page(client):
    # A name with markup is refused, and the page that says so shows it as text.
    name = '<b id="injected">x</b>'

    response = client.get(f"/chat/{quote(name, safe='')}/")

    assert response.status_code == 400
    page = response.content.decode()
    assert "&lt;b id=&quot;injected&quot;&gt;x&lt;/b&gt;" in page
    assert '<b id="injected">' not in page


@pytest.mark.parametrize("room_name", ROOM_NAMES_THE_LAYER_REFUSES)
def test_room_page_explains_a_name_the_chat_cannot_use(client, room_name):
    response = client.get(f"/chat/{quote(room_name, safe='')}/")

    assert response.status_code == 400
    page = response.content.decode()
    assert ROOM_NAME_RULE_START in page
    assert "WebSocket" not in page  # no socket is opened for it


@pytest.mark.parametrize("path", ["/chat/a/b/", "/chat/a%2Fb/", "/chat/..%2Fx/"])
def test_room_name_with_a_slash_gets_the_page_that_says_why(client, path):
    # "a/b" typed into the address bar, or into the index page (which encodes it,
    # as it does "../x", which a browser would otherwise shorten to "/x/").
    response = client.get(path)

    assert response.status_code == 400
    assert ROOM_NAME_RULE_START in response.content.decode()


def test_asgi_application_routes_http_and_websocket():
    assert isinstance(application, ProtocolTypeRouter)
    assert set(application.application_mapping) == {"http", "websocket"}


def test_manage_py_check_passes_with_daphne_installed_first(step_dir):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=step_dir,
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    assert "daphne.E001" not in output
    assert "System check identified no issues" in output


def test_runserver_is_daphne_and_serves_the_index_page(step_dir):
    with runserver(step_dir) as server:
        assert server.wait_for_output("Starting ASGI/Daphne"), server.output
        assert server.wait_until_listening(), server.output
        url = f"http://127.0.0.1:{server.port}/chat/"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert ROOM_PROMPT in response.read().decode()
