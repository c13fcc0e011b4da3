"""What every measurement shares: the plan, a scratch folder, Redis, the last step's
migrated database with its logged-in users, a fresh environment for each server, and
the rows measured so far."""

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from workshop.bench.plan import Plan
from workshop.bench.storm_clients import page_backoff
from workshop.bench.summary import format_row
from workshop.bench.variants import CHAT, Variant, deployed_uvicorn, last_step
from workshop.step_support import load_testsupport

# Settings that would change the last step's configuration if this shell had them:
# "default configuration" means none of them.
STEP_SETTINGS_PREFIXES = ("DJANGO_", "CHAT_", "PRESENCE_", "POSTGRES_")
STEP_SETTINGS = {"DATABASE_URL", "REDIS_LAYER", "CHANNEL_CAPACITY", "SQLITE_PATH"}
# The peak-throughput runs send as fast as they can: the per-user limit is lifted.
UNLIMITED = {"CHAT_MAX_MESSAGES_PER_SECOND": "1000000"}

SETUP = """
import json
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections, transaction

User = get_user_model()
keys = []
with transaction.atomic():
    # No passwords: a session is all a socket needs, and hashing a thousand is slow.
    users = User.objects.bulk_create(
        [User(username=f"bench{i}", password=make_password(None)) for i in range(COUNT)]
    )
    for user in users:
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        keys.append(session.session_key)
found = {name: getattr(settings, name) for name in NAMES}
database = connections["default"].settings_dict  # with Django's defaults filled in
found["DATABASE_ENGINE"] = database["ENGINE"]
found["CONN_MAX_AGE"] = database["CONN_MAX_AGE"]
print(json.dumps({"sessions": keys, "settings": found}, default=str))
"""
# The last step's settings that the note reports.
REPORTED_SETTINGS = [
    "DEBUG",
    "REDIS_LAYER",
    "REDIS_LAYERS",
    "CHAT_MAX_MESSAGES_PER_SECOND",
    "CHAT_HEARTBEAT_SECONDS",
    "PRESENCE_COALESCE_SECONDS",
]


def clean_environment() -> dict:
    return {
        name: value
        for name, value in os.environ.items()
        if name not in STEP_SETTINGS and not name.startswith(STEP_SETTINGS_PREFIXES)
    }


def manage_shell(step_dir: Path, env: dict, code: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=step_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode:
        raise RuntimeError(f"manage.py shell failed: {result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


class Bench:
    def __init__(self, plan: Plan, scratch: Path, redis, server_cores):
        self.plan, self.scratch, self.redis = plan, scratch, redis
        self.server_cores = server_cores
        self.servers_started = 0
        self.databases = 0
        self.rows: list[dict] = []
        self.breakdowns: dict = {}
        self.environment = {
            **clean_environment(),
            # The last step refuses DJANGO_DEBUG=0 with its development key.
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        }

    def prepare_last_step(self, users: int) -> dict:
        """Migrate a database for the last step, with `users` logged-in users; read
        the settings it runs with."""
        step = last_step()
        self.template_db = self.scratch / "last-step.sqlite3"
        env = {
            **self.environment,
            "SQLITE_PATH": str(self.template_db),
            "DJANGO_DEBUG": "0",
            "REDIS_URL": self.redis.url if self.redis else "",
        }
        load_testsupport("accounts").migrate(step.path, env)
        code = SETUP.replace("COUNT", str(users)).replace(
            "NAMES", repr(REPORTED_SETTINGS)
        )
        found = json.loads(manage_shell(step.path, env, code))
        self.cookies = [f"sessionid={key}" for key in found["sessions"]]
        self.last_settings = found["settings"]
        application, flags, source = deployed_uvicorn(step)
        return {
            "number": step.number,
            "name": step.name,
            "application": application,
            "uvicorn_flags": list(flags),
            "flags_from": source,
            "settings": found["settings"],
            "backoff": page_backoff(
                step.path / "chat/templates/chat/room.html"
            ).describe(),
        }

    def env_for(self, variant: Variant, unlimited: bool = False) -> dict:
        env = {
            **self.environment,
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": self.redis.url if self.redis and variant.redis else "",
            **variant.env,
        }
        if variant.protocol == CHAT:
            # A database of its own for every run: nothing of an earlier run's.
            self.databases += 1
            database = self.scratch / f"run-{self.databases}.sqlite3"
            for suffix in ("", "-wal"):
                source = Path(f"{self.template_db}{suffix}")
                if source.exists():
                    shutil.copy(source, f"{database}{suffix}")
            env["SQLITE_PATH"] = str(database)
            if unlimited:
                env.update(UNLIMITED)
        if self.redis and variant.redis:
            # The groups of an earlier server must not get this one's messages.
            self.redis.flush_all()
        return env

    def quiet_after(self, variant: Variant) -> float:
        """How long to wait for a next delivery before calling the rest lost: for the
        last step, longer than its heartbeat, which catches up what the channel layer
        dropped."""
        if variant.protocol == CHAT:
            return float(self.last_settings["CHAT_HEARTBEAT_SECONDS"]) + 3
        return 3.0

    def cookies_for(self, variant: Variant, count: int, offset: int = 0) -> list[str]:
        if variant.protocol != CHAT:
            return []
        return self.cookies[offset : offset + count]

    def record(self, row: dict) -> None:
        self.rows.append(row)
        print(format_row(row), flush=True)

    def attempt(self, row: dict, measure) -> None:
        """Run one measurement; a failure is a result, not a crash."""
        started = time.monotonic()
        try:
            row.update(measure())
        except Exception as error:
            row["error"] = f"{type(error).__name__}: {error}"
        row["job_seconds"] = round(time.monotonic() - started, 1)
        self.record(row)
