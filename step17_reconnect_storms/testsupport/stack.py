"""The deployed topology on one machine, from local programs, without Docker:

    browsers -> nginx -+-> app server 1 (uvicorn) -+-> PostgreSQL
                       +-> app server 2 (uvicorn) -+-> Redis

    python -m testsupport.stack [--port 8080]        (or: make step14-stack)

It runs deploy/release.sh once, deploy/app-server.sh twice (two machines: they share
only PostgreSQL and Redis) and nginx with deploy/nginx/chat.conf.template, in a
temporary folder, until Ctrl+C. The stack tests (tests/test_stack.py) start it too.
"""

import argparse
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

from testsupport.postgres import start_postgres_server
from testsupport.redis_server import start_redis_server
from testsupport.servers import ServerProcess, free_port, wait_for_port

STEP_DIR = Path(__file__).resolve().parents[1]
TEMPLATE = STEP_DIR / "deploy" / "nginx" / "chat.conf.template"
# A skip reason starts with "needs <part>:" (see testsupport/redis_server.py).
HOW_TO_GET_NGINX = "needs nginx: no nginx found: apt install nginx | brew install nginx"

# nginx's own settings around deploy/nginx/chat.conf.template, for a server run by
# an ordinary user in a folder of its own (a system nginx has its own nginx.conf).
MAIN_CONFIGURATION = """\
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    {mime_types}
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/chat.conf;
}}
"""


def fill_in(template: str, values: dict[str, str]) -> str:
    """As envsubst in nginx's image: ${NAME} replaced, nginx's own $variables kept."""
    return re.sub(
        r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template
    )


def find_nginx() -> str:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        raise unittest.SkipTest(HOW_TO_GET_NGINX)
    return nginx


class Stack:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="chat-stack-"))
        # nginx's workers may run as another user: they must reach the static files.
        self.folder.chmod(0o755)
        self.postgres = self.redis = self.nginx = None
        self.app_servers: list[ServerProcess] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Stack":
        nginx = find_nginx()
        self.postgres = start_postgres_server()
        self.redis = start_redis_server()
        self.environment = {
            "DATABASE_URL": self.postgres.create_database("chat"),
            "REDIS_URL": self.redis.url,
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
            "DJANGO_CSRF_TRUSTED_ORIGINS": f"{self.url},http://localhost:{self.port}",
            "STATIC_ROOT": str(self.folder / "static"),
            # deploy/*.sh run `python`: this one, with the chat's requirements.
            "PATH": os.pathsep.join(
                [str(Path(sys.executable).parent), os.environ["PATH"]]
            ),
        }
        self.run_script("deploy/release.sh")
        for _ in range(2):
            self.start_app_server()
        self.start_nginx(nginx)
        return self

    def run_script(self, script: str) -> None:
        subprocess.run(
            ["sh", script],
            cwd=STEP_DIR,
            env={**os.environ, **self.environment},
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start_app_server(self, port: int | None = None) -> ServerProcess:
        port = port or free_port()
        environment = {**self.environment, "HOST": "127.0.0.1", "PORT": str(port)}
        server = ServerProcess(
            ["sh", "deploy/app-server.sh"], STEP_DIR, port, environment
        )
        server.start()
        if not server.wait_until_listening(30):
            raise RuntimeError(f"an app server did not start:\n{server.output}")
        self.app_servers.append(server)
        return server

    def start_nginx(self, nginx: str) -> None:
        configuration = fill_in(
            TEMPLATE.read_text(),
            {
                "NGINX_PORT": f"127.0.0.1:{self.port}",
                "APP_SERVER_1": f"127.0.0.1:{self.app_servers[0].port}",
                "APP_SERVER_2": f"127.0.0.1:{self.app_servers[1].port}",
                "STATIC_ROOT": self.environment["STATIC_ROOT"],
            },
        )
        (self.folder / "chat.conf").write_text(configuration)
        own = Path(nginx).resolve().parent.parent / "etc/nginx/mime.types"
        found = [f for f in (Path("/etc/nginx/mime.types"), own) if f.is_file()]
        include = f"include {found[0]};" if found else "types { text/css css; }"
        main = self.folder / "nginx.conf"
        main.write_text(
            MAIN_CONFIGURATION.format(folder=self.folder, mime_types=include)
        )
        command = [nginx, "-p", str(self.folder), "-c", str(main)]
        self.nginx = ServerProcess(command, STEP_DIR, self.port).start()
        if not wait_for_port(self.port, timeout=15):
            raise RuntimeError(f"nginx did not start:\n{self.nginx.output}")

    def kill_app_server(self, index: int) -> None:
        """As if that machine lost power: no goodbye to anyone."""
        server = self.app_servers[index]
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()

    def stop(self) -> None:
        for process in [self.nginx, *self.app_servers]:
            if process:
                process.stop()
        for server in (self.redis, self.postgres):
            if server:
                server.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m testsupport.stack")
    parser.add_argument("--port", type=int, default=8080, help="nginx's port")
    port = parser.parse_args().port

    # `kill` stops everything, as Ctrl+C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stack = Stack(port)
    try:
        print("Starting PostgreSQL, Redis, two app servers and nginx ...", flush=True)
        stack.start()
        print(
            f"\nThe chat, through nginx: {stack.url}/ (app servers on ports"
            f" {stack.app_servers[0].port} and {stack.app_servers[1].port}).\n"
            "Sign up at /accounts/signup/. Stop everything with Ctrl+C.\n",
            flush=True,
        )
        # One app server stopping is what nginx is there for: it sends that server's
        # clients to the other (try it: kill one of the two ports' processes).
        told = set()
        while stack.nginx.process.poll() is None and len(told) < len(stack.app_servers):
            for server in stack.app_servers:
                code = server.process.poll()
                if code is not None and server.port not in told:
                    told.add(server.port)
                    print(
                        f"The app server on port {server.port} stopped (exit code"
                        f" {code}); nginx sends its clients to the other.",
                        flush=True,
                    )
            time.sleep(0.5)
        stopped = [stack.nginx, *stack.app_servers]
        for server in (s for s in stopped if s.process.poll() is not None):
            print(f"Stopped: {' '.join(server.command[:3])} ...", file=sys.stderr)
            print(server.output[-2000:], file=sys.stderr)
        return 1
    except unittest.SkipTest as missing:
        print(f"Cannot start the stack here: {missing}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        for ending in (signal.SIGINT, signal.SIGTERM):  # a second one: not cut short
            signal.signal(ending, signal.SIG_IGN)
        stack.stop()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
