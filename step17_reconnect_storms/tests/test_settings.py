"""The production settings: everything from the environment, checked by Django.

Each test builds the settings as mysite/settings.py does for a given environment
(testsupport/layers.py runs the module again), or runs a real manage.py or server
with that environment.
"""

import os
import re
import secrets
import subprocess
import sys
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest

from testsupport.accounts import login_cookies
from testsupport.layers import settings_value
from testsupport.servers import ServerProcess, free_port

KEY = secrets.token_urlsafe(50)
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_HTTPS": "1",
    "DJANGO_SECRET_KEY": KEY,
    "DJANGO_ALLOWED_HOSTS": "chat.example.com",
}


def manage(step_dir, *arguments, env=None):
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=step_dir,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_debug_off_with_the_development_secret_key_refuses_to_start(step_dir):
    without_a_key = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=step_dir,
        env={**without_a_key, "DJANGO_DEBUG": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "DJANGO_DEBUG=0 needs a DJANGO_SECRET_KEY of your own" in result.stderr
    # The control: the same with a key of its own starts.
    assert (
        manage(
            step_dir, "check", env={"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": KEY}
        ).returncode
        == 0
    )


def test_a_database_url_selects_postgresql_with_a_connection_pool():
    url = "postgresql://chat:p%40ss@db.example.com:5433/chatdb"

    database = settings_value("DATABASES", {"DATABASE_URL": url})["default"]

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["NAME"], database["USER"], database["PASSWORD"]) == (
        "chatdb",
        "chat",
        "p@ss",
    )
    assert (database["HOST"], database["PORT"]) == ("db.example.com", "5433")
    assert database["OPTIONS"]["pool"]
    # Django's guidance under ASGI: no persistent connections (a pool instead).
    assert database.get("CONN_MAX_AGE", 0) == 0


def test_postgres_variables_select_postgresql_too():
    environment = {
        "POSTGRES_DB": "chatdb",
        "POSTGRES_USER": "chat",
        "POSTGRES_PASSWORD": "secret",
        "POSTGRES_HOST": "db",
    }

    database = settings_value("DATABASES", environment)["default"]

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["NAME"], database["HOST"], database["PORT"]) == (
        "chatdb",
        "db",
        "",
    )


def test_without_either_the_database_is_the_sqlite_file():
    database = settings_value("DATABASES", {})["default"]

    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert str(database["NAME"]).endswith("db.sqlite3")


def test_a_database_url_that_is_not_postgresql_is_refused_with_a_reason(step_dir):
    result = manage(step_dir, "check", env={"DATABASE_URL": "mysql://db/chat"})

    assert result.returncode != 0
    assert "DATABASE_URL must start with postgresql://, not mysql://" in result.stderr


def test_check_deploy_is_clean_under_production_settings(step_dir):
    result = manage(
        step_dir, "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_names_what_a_development_setup_lacks(step_dir):
    # The control: the same check is not clean with the development defaults.
    result = manage(step_dir, "check", "--deploy", env={"DJANGO_DEBUG": "1"})

    assert "security.W018" in result.stdout + result.stderr  # DEBUG is on


@pytest.mark.parametrize(
    "environment, secure",
    [
        ({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": KEY}, False),
        ({"DJANGO_DEBUG": "0", "DJANGO_HTTPS": "1", "DJANGO_SECRET_KEY": KEY}, True),
        ({"DJANGO_DEBUG": "1", "DJANGO_HTTPS": "1"}, True),
    ],
    ids=["plain http", "https", "https with debug"],
)
def test_secure_cookies_follow_tls_not_debug(environment, secure):
    assert settings_value("SESSION_COOKIE_SECURE", environment) is secure
    assert settings_value("CSRF_COOKIE_SECURE", environment) is secure


def test_logging_in_over_plain_http_works_with_debug_off(step_dir, server_database):
    env = {**server_database, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": KEY}
    env.update(REDIS_URL="")
    login_cookies(step_dir, env, ["alice"])  # creates alice
    manage(
        step_dir,
        "shell",
        "-c",
        "from django.contrib.auth.models import User;"
        " u = User.objects.get(username='alice'); u.set_password('a-long-password-1');"
        " u.save()",
        env=env,
    )
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "mysite.asgi:application",
        "--port",
        str(port),
    ]
    with ServerProcess(command, step_dir, port, env) as server:
        assert server.wait_until_listening(), server.output
        cookies = CookieJar()
        browser = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(cookies)
        )
        base = f"http://127.0.0.1:{port}"
        page = browser.open(f"{base}/accounts/login/", timeout=10).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {
                "csrfmiddlewaretoken": token,
                "username": "alice",
                "password": "a-long-password-1",
            }
        ).encode()
        browser.open(
            urllib.request.Request(
                f"{base}/accounts/login/", data=form, headers={"Referer": base}
            ),
            timeout=10,
        )

        rooms = browser.open(f"{base}/chat/", timeout=10)

        assert rooms.geturl() == f"{base}/chat/", "sent back to the login page"
        assert '<strong id="username">alice</strong>' in rooms.read().decode()


def test_collectstatic_gathers_the_files_the_web_server_serves(step_dir, tmp_path):
    result = manage(
        step_dir, "collectstatic", "--noinput", env={"STATIC_ROOT": str(tmp_path)}
    )

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "chat" / "chat.css").is_file()
    assert (tmp_path / "admin" / "css" / "base.css").is_file()


def test_docker_runs_the_same_files_as_the_tested_stack(step_dir):
    """Docker has no engine on the machines these tests run on: the compose file is
    checked to run what testsupport/stack.py runs and the stack tests test."""
    deploy = step_dir / "deploy"
    compose = (deploy / "docker-compose.yml").read_text()
    assert 'command: ["sh", "deploy/release.sh"]' in compose
    assert 'command: ["sh", "deploy/app-server.sh"]' in compose
    assert (
        "./nginx/chat.conf.template:/etc/nginx/templates/chat.conf.template" in compose
    )
    assert 'CMD ["sh", "deploy/app-server.sh"]' in (deploy / "Dockerfile").read_text()
    # A deployment without a secret key of its own does not start.
    assert "DJANGO_SECRET_KEY: ${DJANGO_SECRET_KEY:?" in compose
    stack = (step_dir / "testsupport" / "stack.py").read_text()
    for used in ("deploy/release.sh", "deploy/app-server.sh", "chat.conf.template"):
        assert used in stack
    # The image has what the chat needs to run, and nothing to test it.
    runtime = (deploy / "requirements.txt").read_text().lower()
    for test_only in ("pytest", "selenium", "hypothesis"):
        assert test_only not in runtime
