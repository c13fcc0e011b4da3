"""Users and logged-in sessions for tests and demos that talk to a real server.

The server is another process with its own database file (SQLITE_PATH), so the
user and the session are made by `manage.py shell` against that same file.
"""

import os
import subprocess
import sys
from pathlib import Path

MAKE_SESSION = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
user, _ = get_user_model().objects.get_or_create(username={username!r})
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


def login_cookie(
    step_dir: Path, env: dict, username: str, password: str = "pw-123456!"
) -> str:
    """A `Cookie:` header value that logs `username` in (the user is created if new)."""
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            MAKE_SESSION.format(username=username, password=password),
        ],
        cwd=step_dir,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return f"sessionid={result.stdout.strip().splitlines()[-1]}"
