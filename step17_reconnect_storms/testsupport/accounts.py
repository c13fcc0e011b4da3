"""Users and logged-in sessions, for tests that talk to a real server process.

The server is another process with its own database file (SQLITE_PATH), so the
users and their sessions are made by `manage.py shell` against that same file. To
save time, the usual users' sessions are made once, in the migrated database that
each test's database is a copy of.
"""

import json
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


# The users the tests log in most: made, with a session each, in the template.
ROSTER = [
    *"alice bob carol dave erin frank grace henry ida jack kate leo mallory".split(),
    *(f"member{number}" for number in range(10)),
]


def prepare_template(step_dir: Path, env: dict, sessions: Path) -> None:
    """Migrate the template database and log the ROSTER in; note their cookies."""
    migrate(step_dir, env)
    cookies = make_sessions(step_dir, env, ROSTER)
    sessions.write_text(json.dumps(dict(zip(ROSTER, cookies, strict=True))))


def fresh_sqlite_database(step_dir: Path, template: Path, path: Path) -> dict:
    """The environment of a server on a new, migrated SQLite database at `path`.

    The template is prepared once; each test gets a copy of it.
    """
    sessions = template.with_suffix(".sessions.json")
    if not template.exists():
        prepare_template(step_dir, {"SQLITE_PATH": str(template)}, sessions)
    shutil.copyfile(template, path)
    return {"SQLITE_PATH": str(path), "TEST_SESSIONS": str(sessions)}


def login_cookies(step_dir: Path, env: dict, usernames: list[str]) -> list[str]:
    """`Cookie:` header values that log each user in (users are created if new)."""
    known = {}
    if env.get("TEST_SESSIONS"):
        known = json.loads(Path(env["TEST_SESSIONS"]).read_text())
    if all(name in known for name in usernames):
        return [known[name] for name in usernames]
    return make_sessions(step_dir, env, usernames)


def make_sessions(step_dir: Path, env: dict, usernames: list[str]) -> list[str]:
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
