"""Checkpoints of the pages: signing up, logging in and out, the rooms behind a login."""

import os
import subprocess
import sys
import urllib.request
from urllib.parse import quote

import pytest
from channels.routing import ProtocolTypeRouter
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session

from mysite.asgi import application
from testsupport.layers import channel_layers_from_settings
from testsupport.servers import free_port, runserver

ROOM_PROMPT = "What chat room would you like to enter?"
ROOM_NAME_RULE_START = "A room name can use only ASCII letters"
PASSWORD = "a-long-password-1"


@pytest.fixture
def alice(db, client):
    user = User.objects.create_user("alice", password=PASSWORD)
    client.force_login(user)
    return user


def test_rooms_need_a_login(db, client):
    for path in ("/chat/", "/chat/lobby/"):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"] == f"/accounts/login/?next={quote(path)}"


def test_home_page_leads_to_the_rooms(db, client):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/chat/"


def test_sign_up_creates_the_user_and_logs_in(db, client):
    response = client.post(
        "/accounts/signup/",
        {"username": "newcomer", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert response.status_code == 302
    assert User.objects.filter(username="newcomer").exists()
    assert "newcomer" in client.get("/chat/").content.decode()


def test_sign_up_is_limited_per_address(db, client, settings):
    settings.CHAT_MAX_SIGNUPS_PER_HOUR = 2
    for number in range(3):
        response = client.post(
            "/accounts/signup/",
            {"username": f"new{number}", "password1": PASSWORD, "password2": PASSWORD},
            REMOTE_ADDR="192.0.2.7",
        )
        client.logout()

    assert response.status_code == 429
    assert "Too many accounts" in response.content.decode()
    assert not User.objects.filter(username="new2").exists()
    other = client.post(
        "/accounts/signup/",
        {"username": "elsewhere", "password1": PASSWORD, "password2": PASSWORD},
        REMOTE_ADDR="192.0.2.8",
    )
    assert other.status_code == 302


def test_sign_up_with_mismatched_passwords_says_so(db, client):
    response = client.post(
        "/accounts/signup/",
        {"username": "newcomer", "password1": PASSWORD, "password2": "other-pass-2"},
    )

    assert response.status_code == 200
    assert "The two password fields didn’t match." in response.content.decode()
    assert not User.objects.filter(username="newcomer").exists()


def test_log_in_and_log_out(db, client):
    User.objects.create_user("alice", password=PASSWORD)

    response = client.post(
        "/accounts/login/", {"username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert client.get("/chat/").status_code == 200

    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert client.get("/chat/").status_code == 302


def test_logging_out_works_while_redis_is_down(db, client, settings):
    nobody_listens = f"redis://127.0.0.1:{free_port()}/0"
    settings.CHANNEL_LAYERS = channel_layers_from_settings(nobody_listens)
    client.force_login(User.objects.create_user("alice", password=PASSWORD))
    session_key = client.session.session_key

    response = client.post("/accounts/logout/")

    assert response.status_code == 302
    assert not Session.objects.filter(session_key=session_key).exists()


def test_wrong_password_is_refused(db, client):
    User.objects.create_user("alice", password=PASSWORD)

    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "wrong"}
    )

    assert response.status_code == 200
    assert "didn't match" in response.content.decode()
    assert client.get("/chat/").status_code == 302


def test_index_page_asks_for_a_room_name_and_says_who_is_logged_in(alice, client):
    page = client.get("/chat/").content.decode()

    assert ROOM_PROMPT in page
    assert 'id="room-name-input"' in page
    assert 'id="room-name-submit"' in page
    assert '<strong id="username">alice</strong>' in page


def test_room_page_opens_a_socket_to_its_room(alice, client):
    response = client.get("/chat/lobby/")

    assert response.status_code == 200
    page = response.content.decode()
    for element_id in (
        "chat-log",
        "chat-message-input",
        "chat-message-submit",
        "connection-state",
        "presence",
    ):
        assert f'id="{element_id}"' in page
    # json_script: the room name reaches the JavaScript safely escaped.
    assert '<script id="room-name" type="application/json">"lobby"</script>' in page
    assert "'/ws/chat/'" in page


def test_room_name_is_escaped_in_the_page(alice, client):
    # A name with markup is refused, and the page that says so shows it as text.
    name = '<b id="injected">x</b>'

    response = client.get(f"/chat/{quote(name, safe='')}/")

    assert response.status_code == 400
    page = response.content.decode()
    assert "&lt;b id=&quot;injected&quot;&gt;x&lt;/b&gt;" in page
    assert '<b id="injected">' not in page


@pytest.mark.parametrize("room_name", ["café", "x" * 150, "has space", "a/b", "../x"])
def test_room_page_explains_a_name_the_chat_cannot_use(alice, client, room_name):
    response = client.get(f"/chat/{quote(room_name, safe='')}/")

    assert response.status_code == 400
    page = response.content.decode()
    assert ROOM_NAME_RULE_START in page
    assert "WebSocket" not in page  # no socket is opened for it


def test_asgi_application_routes_http_and_websocket():
    assert isinstance(application, ProtocolTypeRouter)
    assert set(application.application_mapping) == {"http", "websocket"}


def test_manage_py_check_passes(step_dir):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=step_dir,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_an_unknown_redis_layer_is_refused_with_the_choices(step_dir):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=step_dir,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "REDIS_LAYER": "pubub",
        },
    )

    assert result.returncode != 0
    assert "REDIS_LAYER='pubub': use one of core, pubsub" in result.stderr


def test_runserver_serves_the_login_page_and_warns_about_the_in_memory_layer(
    step_dir,
):
    with runserver(step_dir, env={"REDIS_URL": ""}) as server:
        assert server.wait_for_output("Starting ASGI/Daphne"), server.output
        assert server.wait_until_listening(), server.output
        url = f"http://127.0.0.1:{server.port}/accounts/login/"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert "Log in" in response.read().decode()

    assert "WARNING: the channel layer is IN MEMORY" in server.output
    assert "notify` cannot reach anyone" in server.output
