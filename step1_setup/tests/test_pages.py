"""Checkpoints of step 1: the index page, served by Daphne through ProtocolTypeRouter."""

import subprocess
import sys
import urllib.request

from channels.routing import ProtocolTypeRouter

from mysite.asgi import application
from testsupport.servers import runserver

ROOM_PROMPT = "What chat room would you like to enter?"


def test_index_page_asks_for_a_room_name(client):
    response = client.get("/chat/")

    assert response.status_code == 200
    page = response.content.decode()
    assert ROOM_PROMPT in page
    assert 'id="room-name-input"' in page
    assert 'id="room-name-submit"' in page


def test_room_pages_do_not_exist_yet(client):
    assert client.get("/chat/lobby/").status_code == 404


def test_asgi_application_routes_http_only():
    assert isinstance(application, ProtocolTypeRouter)
    assert set(application.application_mapping) == {"http"}


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
