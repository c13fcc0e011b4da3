"""Users and logged-in sessions, for tests that talk to a real server process.

The server is another process with its own database file (SQLITE_PATH), so the
users and their sessions are made by `manage.py shell` against that same file.
"""

import os
import subprocess
import sys
from pathlib import Path

MAKE_SESSIONS = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
for username in {usernames!r}:
    user, _ = get_user_model().objects.get_or_create(username=username)
    user.set_password({password!r})
    user.save()
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    print(session.session_key)
"""


def migrate(step_dir: Path, env: dict) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=step_dir,
        env={**os.environ, **env},
        check=True,
        timeout=120,
    )


def login_cookies(
    step_dir: Path, env: dict, usernames: list[str], password: str = "pw-123456!"
) -> list[str]:
    """`Cookie:` header values that log each user in (users are created if new)."""
    code = MAKE_SESSIONS.format(usernames=list(usernames), password=password)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=step_dir,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    keys = result.stdout.strip().splitlines()[-len(usernames) :]
    return [f"sessionid={key}" for key in keys]
