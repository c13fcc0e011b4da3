"""The official tutorial's versions of what the steps changed, shown failing.

notes/differences-from-official-tutorial.md lists every difference; for each defect
that can be shown, a test here runs the tutorial's version and checks the failure,
so that the difference stays justified. (The Redis read timeout is shown by
test_troubleshooting.py::test_redis_py_8_read_timeout_without_socket_timeout_none.)
"""

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from workshop.steps import tutorial_consumer_steps, tutorial_tests_step

# The official tutorial's asynchronous consumer and route (part 3), verbatim in
# behaviour: no check of the room name.
TUTORIAL_CONSUMER = """
import json

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import re_path


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, close_code):
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive(self, text_data):
        message = json.loads(text_data)["message"]
        await self.channel_layer.group_send(
            self.room_group_name, {"type": "chat.message", "message": message}
        )

    async def chat_message(self, event):
        await self.send(text_data=json.dumps({"message": event["message"]}))


websocket_urlpatterns = [
    re_path(r"ws/chat/(?P<room_name>\\w+)/$", ChatConsumer.as_asgi()),
]
"""


def run_in_the_async_chat(code: str, tmp_path) -> str:
    (tmp_path / "tutorial_chat.py").write_text(TUTORIAL_CONSUMER)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tutorial_consumer_steps()[1].path,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "REDIS_URL": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout + result.stderr


CONNECT_TO_TUTORIAL_ROUTE = """
import asyncio, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
import django
django.setup()
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from tutorial_chat import websocket_urlpatterns

async def main():
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), sys.argv[1])
    print("connected:", await communicator.connect())

asyncio.run(main())
"""


@pytest.mark.parametrize("room_name", ["café", "x" * 150])
def test_tutorial_consumer_crashes_on_a_room_name_the_layer_refuses(
    tmp_path, room_name
):
    code = CONNECT_TO_TUTORIAL_ROUTE.replace(
        "sys.argv[1]", repr(f"/ws/chat/{room_name}/")
    )

    output = run_in_the_async_chat(code, tmp_path)

    assert "TypeError: Group name must be a valid unicode string" in output, output


def test_tutorial_route_has_no_route_for_a_name_with_a_space(tmp_path):
    code = CONNECT_TO_TUTORIAL_ROUTE.replace("sys.argv[1]", repr("/ws/chat/has space/"))

    output = run_in_the_async_chat(code, tmp_path)

    assert "ValueError: No route found for path 'ws/chat/has space/'." in output, output


def test_tutorial_route_works_for_a_plain_name(tmp_path):
    # The control: the same harness with a name both versions accept.
    code = CONNECT_TO_TUTORIAL_ROUTE.replace("sys.argv[1]", repr("/ws/chat/lobby/"))

    output = run_in_the_async_chat(code, tmp_path)

    assert "connected: (True, None)" in output, output


def copy_with_test_database(tmp_path, test_name_expression: str):
    """A copy of the tutorial's tests' step whose TEST NAME is `test_name_expression`,
    with one DB test."""
    step = tutorial_tests_step()
    copy = tmp_path / step.name
    shutil.copytree(
        step.path, copy, ignore=shutil.ignore_patterns("*.sqlite3", "__pycache__")
    )
    settings = copy / "mysite" / "settings.py"
    text = settings.read_text()
    assert '"NAME": BASE_DIR / "test_db.sqlite3",' in text
    settings.write_text(
        text.replace(
            '"NAME": BASE_DIR / "test_db.sqlite3",', f'"NAME": {test_name_expression},'
        )
    )
    (copy / "chat" / "test_uses_database.py").write_text(
        textwrap.dedent("""
        from django.contrib.auth.models import User
        from django.test import TransactionTestCase


        class UsesTheDatabase(TransactionTestCase):
            def test_creates_a_user(self):
                User.objects.create(username="test")
        """)
    )
    return copy


def development_database_with_a_user(step_copy) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=step_copy,
        check=True,
        timeout=120,
    )
    with sqlite3.connect(step_copy / "db.sqlite3") as database:
        database.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name,"
            " email, is_staff, is_active, date_joined)"
            " VALUES ('', 0, 'learner', '', '', '', 0, 1, '2026-01-01')"
        )


def users_in_development_database(step_copy) -> list[str]:
    if not (step_copy / "db.sqlite3").exists():
        return []
    with sqlite3.connect(step_copy / "db.sqlite3") as database:
        try:
            return [
                row[0] for row in database.execute("SELECT username FROM auth_user")
            ]
        except sqlite3.OperationalError:  # the tables are gone
            return []


def run_database_test(step_copy) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "test", "chat.test_uses_database", "--noinput"],
        cwd=step_copy,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_tutorial_test_database_setting_deletes_the_development_database(tmp_path):
    step_copy = copy_with_test_database(tmp_path, 'BASE_DIR / "db.sqlite3"')
    development_database_with_a_user(step_copy)
    assert users_in_development_database(step_copy) == ["learner"]

    run_database_test(step_copy)

    assert users_in_development_database(step_copy) == [], (
        "the tutorial's setting kept it"
    )


def test_step4_test_database_setting_keeps_the_development_database(tmp_path):
    step_copy = copy_with_test_database(tmp_path, 'BASE_DIR / "test_db.sqlite3"')
    development_database_with_a_user(step_copy)

    run_database_test(step_copy)

    assert users_in_development_database(step_copy) == ["learner"]
