"""make demo-inmemory-workers: two worker processes, eight people in one room, one
message. How many people receive it, on the in-memory layer and on Redis?

Two server processes on two ports stand for the two workers of
`uvicorn --workers 2` (which share one port, so which worker a browser lands on is
up to the kernel); here each half of the room is placed on a known worker.
"""

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from websockets.sync.client import connect

from workshop.ports import free_port
from workshop.redis_process import RedisServer
from workshop.step_support import load_testsupport
from workshop.steps import Step

CLIENTS_PER_WORKER = 4
# Run and log in as the steps' own tests do, with their code.
accounts = load_testsupport("accounts")
servers = load_testsupport("servers")


def uvicorn_worker(step: Step, env: dict):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "mysite.asgi:application",
        "--port",
        str(port),
    ]
    return servers.ServerProcess(command, step.path, port, env)


def drain(socket, quiet: float = 0.3) -> list[dict]:
    frames = []
    while True:
        try:
            frames.append(json.loads(socket.recv(timeout=quiet)))
        except TimeoutError:
            return frames


def count_receivers(step: Step, env: dict) -> tuple[int, int]:
    """(clients that received the message, clients in the room)."""
    workers = [uvicorn_worker(step, env).start() for _ in range(2)]
    sockets = []
    try:
        for worker in workers:
            if not worker.wait_until_listening(30):
                raise RuntimeError(f"a worker did not start:\n{worker.output}")
        [cookie] = accounts.login_cookies(step.path, env, ["demo"])
        for worker in workers:
            for _ in range(CLIENTS_PER_WORKER):
                sockets.append(
                    connect(
                        f"ws://127.0.0.1:{worker.port}/ws/chat/demo/",
                        origin=f"http://127.0.0.1:{worker.port}",
                        additional_headers={"Cookie": cookie},
                    )
                )
        for socket in sockets:
            drain(socket)
        sockets[0].send(json.dumps({"type": "message", "text": "hello, everyone?"}))
        time.sleep(1.0)
        received = sum(
            any(frame.get("type") == "message" for frame in drain(socket))
            for socket in sockets
        )
        return received, len(sockets)
    finally:
        for socket in sockets:
            socket.close()
        for worker in workers:
            worker.stop()


def demo(step: Step) -> int:
    with tempfile.TemporaryDirectory(prefix="workshop-demo-") as scratch:
        database = {"SQLITE_PATH": str(Path(scratch) / "demo.sqlite3")}
        accounts.migrate(step.path, database)
        print(
            f"Two worker processes, {CLIENTS_PER_WORKER} clients on each, all in room 'demo'."
        )
        print("A client on worker A sends one message.\n")
        received, total = count_receivers(step, {**database, "REDIS_URL": ""})
        print(f"In-memory layer: the message reached {received} of {total} clients.")
        print("  Each worker has its own in-memory layer: only the clients on the")
        print("  sender's worker are in the group that group_send reaches.\n")
        executable = shutil.which("redis-server")
        if executable is None:
            print(
                "Redis layer: skipped (no redis-server; apt install redis-server, brew install redis)."
            )
            return 0
        redis = RedisServer(executable).start()
        try:
            received, total = count_receivers(
                step, {**database, "REDIS_URL": redis.url}
            )
        finally:
            redis.close()
        print(f"Redis layer:     the message reached {received} of {total} clients.")
        print("  Both workers keep the room's group in the same Redis.")
    return 0
