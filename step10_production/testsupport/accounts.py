"""Users and logged-in sessions, for tests that talk to a real server process.

The server is another process with its own database file (SQLITE_PATH), so the
users and their sessions are made by `manage.py shell` against that same file.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

# A session says who is logged in; no password is needed to make one (and hashing
# one costs a quarter of a second of CPU, by design).
MAKE_SESSIONS = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
for username in {usernames!r}:
    user, _ = get_user_model().objects.get_or_create(username=username)
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


def fresh_sqlite_database(step_dir: Path, template: Path, path: Path) -> dict:
    """The environment of a server on a new, migrated SQLite database at `path`.

    The migrations run once, into `template`; each test gets a copy of it.
    """
    if not template.exists():
        migrate(step_dir, {"SQLITE_PATH": str(template)})
    shutil.copyfile(template, path)
    return {"SQLITE_PATH": str(path)}


def login_cookies(step_dir: Path, env: dict, usernames: list[str]) -> list[str]:
    """`Cookie:` header values that log each user in (users are created if new)."""
    code = MAKE_SESSIONS.format(usernames=list(usernames))
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
