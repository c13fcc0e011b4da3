"""Start each variant's server, load it, measure it, stop it; write the figures; then
have report.py write the note.

python -m workshop.bench.run [--quick] [--only TEXT] [--sizes 100,1000] [--rounds N]
                             [--scenarios throughput,burst,steady,storm,breakdown]

Every figure is measured in several rounds, each time on a fresh server. Within a
round the baseline goes first in each group and the variants follow it, so that a
machine that drifts during the run moves both. The figures go to JSON
(notes/performance/bench.json; bench-results/ for a quick or partial run), which
report.py, run as a separate process, turns into notes/performance.md.
"""

import argparse
import asyncio
import collections
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import psutil

from workshop.bench import breakdown
from workshop.bench.load import (
    drop,
    in_room,
    open_clients,
    run_room,
    run_steady,
    settle,
)
from workshop.bench.storm import page_backoff, run_storm
from workshop.bench.variants import (
    BASELINE,
    CHAT,
    Variant,
    all_variants,
    deployed_uvicorn,
    last_step,
    python_command,
    server_command,
)
from workshop.ports import free_port, wait_for_port
from workshop.redis_process import RedisServer
from workshop.step_support import load_testsupport
from workshop.steps import ROOT

NOTES_JSON = ROOT / "notes" / "performance" / "bench.json"
SCRATCH_RESULTS = ROOT / "bench-results"
SCENARIOS = ("throughput", "burst", "steady", "storm", "breakdown")
# The burst of the step 5 issue: 5 members of a 10-person room send 40 each at once.
BURST_CLIENTS, BURST_SENDERS, BURST_MESSAGES = 10, 5, 40
# Settings that would change the last step's configuration if this shell had them:
# "default configuration" means none of them.
STEP_SETTINGS_PREFIXES = ("DJANGO_", "CHAT_", "PRESENCE_", "POSTGRES_")
STEP_SETTINGS = {"DATABASE_URL", "REDIS_LAYER", "CHANNEL_CAPACITY", "SQLITE_PATH"}
# The peak-throughput runs send as fast as they can: the per-user limit is lifted.
UNLIMITED = {"CHAT_MAX_MESSAGES_PER_SECOND": "1000000"}
# Connections that join before the memory is counted (see memory_breakdown).
WARM_UP = 10


@dataclass(frozen=True)
class Steady:
    clients: int
    senders: int
    rate: float  # messages a second, all senders together
    seconds: float
    drain: float  # the longest wait for deliveries after the last send


@dataclass(frozen=True)
class StormPlan:
    listeners: int
    senders: int
    rate: float  # messages a second during the storm, all senders together
    warmup: float  # seconds of messages before the kill
    limit: float  # the longest wait for everyone to catch up, from the kill


@dataclass(frozen=True)
class Plan:
    rounds: int
    sizes: tuple[int, ...]  # throughput room sizes: the baseline and the last step
    tutorial_sizes: tuple[int, ...]  # steps 2 and 3, which matter less
    deliveries: int  # aim for about this many deliveries per throughput run
    senders: int
    burst: bool
    steady: Steady | None
    storm: StormPlan | None
    breakdowns: bool
    # Under tracemalloc a server is several times slower: a smaller room, for memory
    # per idle connection does not depend on the room's size.
    memory_clients: int = 100
    profile_clients: int = 1000

    def per_sender(self, clients: int) -> int:
        senders = min(self.senders, clients)
        return max(1, -(-self.deliveries // ((clients - 1) * senders)))


FULL = Plan(
    rounds=3,
    sizes=(10, 100, 1000),
    tutorial_sizes=(100,),
    deliveries=6_000,
    senders=4,
    burst=True,
    steady=Steady(clients=1000, senders=4, rate=20, seconds=4, drain=8),
    storm=StormPlan(listeners=1000, senders=4, rate=5, warmup=1.5, limit=60),
    breakdowns=True,
)
# CI's smoke run: every variant starts and delivers, once; the steady load and the
# storm run in small rooms so that their code is exercised too.
QUICK = Plan(
    rounds=1,
    sizes=(),
    tutorial_sizes=(),
    deliveries=400,
    senders=4,
    burst=True,
    steady=Steady(clients=50, senders=4, rate=20, seconds=2, drain=5),
    storm=StormPlan(listeners=50, senders=2, rate=5, warmup=1.5, limit=30),
    breakdowns=False,
)


# --- placing processes on cores, and reading their CPU and memory ---------------------


def placement() -> tuple[set[int] | None, set[int] | None, dict]:
    """(server cores, client cores, how they were placed)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) < 2:
        return None, None, {"pinned": False, "cores_available": len(cores)}
    return (
        {cores[0]},
        set(cores[1:]),
        {"pinned": True, "server": [cores[0]], "client": cores[1:]},
    )


def pin(pid: int, cores: set[int] | None) -> None:
    if not cores:
        return
    try:
        process = psutil.Process(pid)
        for each in [process, *process.children(recursive=True)]:
            each.cpu_affinity(sorted(cores))
    except (psutil.Error, AttributeError):
        pass


class Idle:
    """idle() is True once the server has used less than `threshold` of a core over
    the last `window` seconds."""

    def __init__(self, pid: int, window: float = 0.5, threshold: float = 0.1):
        self.pid, self.window, self.threshold = pid, window, threshold
        self.samples: collections.deque = collections.deque()

    def __call__(self) -> bool:
        now, cpu = time.monotonic(), cpu_seconds(self.pid)
        self.samples.append((now, cpu))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()
        then, cpu_then = self.samples[0]
        return now - then >= self.window and (cpu - cpu_then) < self.threshold * (
            now - then
        )


def server_tree(pid: int) -> list[psutil.Process]:
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for process in server_tree(pid):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def rss_bytes(pid: int) -> int:
    total = 0
    for process in server_tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total


# --- servers --------------------------------------------------------------------------


class Server:
    """One variant's server on a loopback port, its output in a log file."""

    def __init__(self, bench, variant: Variant, env: dict, port=None, probe=None):
        self.bench, self.variant, self.env = bench, variant, env
        self.port = port or free_port()
        self.probe = probe
        bench.servers_started += 1
        self.log = bench.scratch / f"server-{bench.servers_started}-{variant.key}.log"
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> "Server":
        env = dict(self.env)
        if self.probe:  # the probe is the workshop's, run from the step's folder
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(ROOT / "tools"), env.get("PYTHONPATH")])
            )
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                python_command(server_command(self.variant, self.port), self.probe),
                cwd=self.variant.folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        pin(self.process.pid, self.bench.server_cores)
        if not wait_for_port(self.port, timeout=60):
            self.kill()
            raise RuntimeError(f"the server did not start: {self.log_tail()}")
        return self

    def log_tail(self, lines: int = 5) -> str:
        return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, number: int) -> None:
        os.kill(self.process.pid, number)

    def kill(self) -> None:
        """SIGKILL: nothing after the measurement is measured, and a crash is the
        storm's point. Every run has its own database and an emptied Redis."""
        if self.process and self.process.poll() is None:
            self.process.kill()
        if self.process:
            self.process.wait()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.kill()


def clean_environment() -> dict:
    return {
        name: value
        for name, value in os.environ.items()
        if name not in STEP_SETTINGS and not name.startswith(STEP_SETTINGS_PREFIXES)
    }


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
STORED = """
import json
from chat.models import Message
numbers = Message.objects.filter(room__name=ROOM).values_list("number", flat=True)
print(json.dumps(list(numbers)))
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


# --- the bench --------------------------------------------------------------------------


class Bench:
    def __init__(self, plan: Plan, scratch: Path, redis, server_cores):
        self.plan, self.scratch, self.redis = plan, scratch, redis
        self.server_cores = server_cores
        self.servers_started = 0
        self.databases = 0
        self.rows: list[dict] = []
        self.breakdowns: dict = {}
        self.environment = clean_environment()

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

    # --- the scenarios ----------------------------------------------------------------

    def room(self, variant, scenario, clients, senders, per_sender, round_):
        row = {
            "variant": variant.key,
            "scenario": scenario,
            "round": round_,
            "clients": clients,
            "senders": senders,
            "messages": senders * per_sender,
            "expected": senders * per_sender * (clients - 1),
        }

        def measure():
            env = self.env_for(variant, unlimited=True)
            with Server(self, variant, env) as server:
                time.sleep(0.3)
                before = rss_bytes(server.pid)
                marks = {}

                def on_ready():
                    marks["rss"] = rss_bytes(server.pid)
                    start_marks(marks, server)

                def on_done():
                    end_marks(marks, server)

                result = asyncio.run(
                    run_room(
                        f"ws://127.0.0.1:{server.port}/ws/chat/{scenario}{round_}/",
                        clients,
                        senders,
                        per_sender,
                        variant.protocol,
                        f"http://127.0.0.1:{server.port}",
                        self.cookies_for(variant, clients),
                        on_ready=on_ready,
                        on_done=on_done,
                        idle=Idle(server.pid),
                        quiet_after=self.quiet_after(variant),
                    )
                )
            return {
                **room_figures(result, marks),
                "rss_kib_per_idle_connection": (marks["rss"] - before) / clients / 1024,
            }

        self.attempt(row, measure)

    def steady(self, variant: Variant, round_: int) -> None:
        plan = self.plan.steady
        row = {
            "variant": variant.key,
            "scenario": "steady",
            "round": round_,
            "clients": plan.clients,
            "senders": plan.senders,
            "rate": plan.rate,
            "offered_deliveries_per_second": plan.rate * (plan.clients - 1),
        }

        def measure():
            # The default rate limit stays: each sender sends rate / senders a second.
            env = self.env_for(variant)
            with Server(self, variant, env) as server:
                marks = {}

                def on_ready():
                    start_marks(marks, server)

                def on_done():
                    end_marks(marks, server)

                result = asyncio.run(
                    run_steady(
                        f"ws://127.0.0.1:{server.port}/ws/chat/steady{round_}/",
                        plan.clients,
                        plan.senders,
                        plan.rate,
                        plan.seconds,
                        variant.protocol,
                        f"http://127.0.0.1:{server.port}",
                        self.cookies_for(variant, plan.clients),
                        plan.drain,
                        on_ready=on_ready,
                        on_done=on_done,
                        idle=Idle(server.pid),
                        quiet_after=self.quiet_after(variant),
                    )
                )
            return {**room_figures(result, marks), "expected": result.expected}

        self.attempt(row, measure)

    def storm(self, variant: Variant, round_: int, backoff) -> None:
        plan = self.plan.storm
        row = {
            "variant": variant.key,
            "scenario": "storm",
            "round": round_,
            "clients": plan.listeners,
            "senders": plan.senders,
            "rate": plan.rate,
        }

        def measure():
            env = self.env_for(variant)
            room = f"storm{round_}"
            servers = {"listeners": Server(self, variant, env).start()}
            try:
                servers["senders"] = Server(self, variant, env).start()
                port = servers["listeners"].port

                def restart():
                    servers["listeners"].kill()
                    servers["listeners"] = Server(self, variant, env, port=port).start()
                    return {
                        "at": time.monotonic(),
                        "cpu": cpu_seconds(servers["listeners"].pid),
                    }

                figures, listeners = asyncio.run(
                    run_storm(
                        f"ws://127.0.0.1:{port}/ws/chat/{room}/",
                        f"ws://127.0.0.1:{servers['senders'].port}/ws/chat/{room}/",
                        f"http://127.0.0.1:{port}",
                        self.cookies_for(variant, plan.listeners),
                        self.cookies_for(variant, plan.senders, offset=plan.listeners),
                        plan.rate,
                        plan.warmup,
                        plan.limit,
                        backoff,
                        restart,
                        lambda: cpu_seconds(servers["listeners"].pid),
                        Idle(servers["listeners"].pid),
                    )
                )
            finally:
                for server in servers.values():
                    server.kill()
            stored = set(
                json.loads(
                    manage_shell(
                        variant.step.path, env, STORED.replace("ROOM", repr(room))
                    )
                )
            )
            missing = [len(stored - listener.arrivals) for listener in listeners]
            return {
                **figures,
                "stored": len(stored),
                "lost": sum(missing),
                "listeners_with_loss": sum(1 for n in missing if n),
            }

        self.attempt(row, measure)

    def memory_breakdown(self, variant: Variant, clients: int) -> None:
        """Python's own account of the memory per idle connection: what tracemalloc
        saw allocated while `clients` connections joined and still there once they
        are idle, by the code that allocated it. A few connections join first, so that what only the first one
        costs (imports, caches) is left out; and every socket is one user's, so that
        the room's presence list is left out too (one_user_rss measures it)."""
        folder = self.scratch / f"memory-{variant.key}"
        folder.mkdir()
        env = self.env_for(variant)
        cookies = self.cookies_for(variant, 1) * (WARM_UP + clients)

        async def join_and_snapshot(server):
            url = f"ws://127.0.0.1:{server.port}/ws/chat/memory/"
            origin, idle = f"http://127.0.0.1:{server.port}", Idle(server.pid)
            first = await open_clients(
                url, WARM_UP, variant.protocol, origin, cookies[:WARM_UP]
            )
            readers = [asyncio.create_task(c.read()) for c in first]
            room = []
            try:
                await settle(first, idle)
                server.signal(signal.SIGUSR1)  # tracing starts
                room = await open_clients(
                    url, clients, variant.protocol, origin, cookies[WARM_UP:]
                )
                readers += [asyncio.create_task(c.read()) for c in room]
                await settle(first + room, idle)
                server.signal(signal.SIGUSR1)  # what is left is written
                await asyncio.to_thread(wait_for_file, folder / "snapshot.pickle")
            finally:
                for reader in readers:
                    reader.cancel()
                drop([c.socket for c in first + room])

        with Server(self, variant, env, probe=("memory", str(folder))) as server:
            asyncio.run(join_and_snapshot(server))
        self.breakdowns.setdefault("memory", {})[variant.key] = breakdown.memory(
            folder / "snapshot.pickle",
            clients,
            variant.step.path if variant.step else None,
        )
        shutil.rmtree(folder)  # the snapshots are large; the figures are kept

    def cpu_breakdown(self, variant: Variant, clients: int) -> None:
        """Two profiles of one server: while the room fills (every client logs in
        and joins), then while messages go out at full speed."""
        folder = self.scratch / f"cpu-{variant.key}"
        folder.mkdir()
        env = self.env_for(variant, unlimited=True)
        senders = min(self.plan.senders, clients)
        # Three times the deliveries of a measured run: more samples.
        per_sender = 3 * self.plan.per_sender(clients)
        with Server(self, variant, env, probe=("cpu", str(folder))) as server:
            marks = {"cpu": cpu_seconds(server.pid)}
            server.signal(signal.SIGUSR2)

            def on_ready():
                server.signal(signal.SIGUSR2)
                marks["joining"] = cpu_seconds(server.pid) - marks["cpu"]
                # Two signals at once could arrive as one: one profile at a time.
                wait_for_file(folder / "profile-1.json")
                server.signal(signal.SIGUSR2)
                marks["cpu"] = cpu_seconds(server.pid)

            def on_done():
                marks["messages"] = cpu_seconds(server.pid) - marks["cpu"]
                server.signal(signal.SIGUSR2)

            result = asyncio.run(
                run_room(
                    f"ws://127.0.0.1:{server.port}/ws/chat/profile/",
                    clients,
                    senders,
                    per_sender,
                    variant.protocol,
                    f"http://127.0.0.1:{server.port}",
                    self.cookies_for(variant, clients),
                    on_ready=on_ready,
                    on_done=on_done,
                    idle=Idle(server.pid),
                )
            )
            wait_for_file(folder / "profile-2.json")
        step_dir = variant.step.path if variant.step else None
        joining = breakdown.cpu(folder / "profile-1.json", step_dir)
        joining["cpu_ms_per_connection"] = marks["joining"] / clients * 1e3
        messages = breakdown.cpu(folder / "profile-2.json", step_dir)
        messages.update(
            deliveries=result.received,
            delivery_ratio=result.ratio,
            cpu_us_per_delivery=marks["messages"] / result.received * 1e6
            if result.received
            else None,
        )
        self.breakdowns["cpu"] = {
            "variant": variant.key,
            "clients": clients,
            "joining": joining,
            "messages": messages,
        }

    def one_user_rss(self, variant: Variant, clients: int) -> None:
        """RSS per idle connection when every socket is one user's: the presence list
        that each join sends to the whole room then holds one name, not `clients`."""
        env = self.env_for(variant)
        with Server(self, variant, env) as server:
            time.sleep(0.3)
            before = rss_bytes(server.pid)

            async def measure(_):
                return rss_bytes(server.pid)

            after = asyncio.run(
                in_room(
                    f"ws://127.0.0.1:{server.port}/ws/chat/one-user/",
                    clients,
                    variant.protocol,
                    f"http://127.0.0.1:{server.port}",
                    self.cookies_for(variant, 1) * clients,
                    measure,
                    Idle(server.pid),
                )
            )
        self.breakdowns["one_user"] = {
            "variant": variant.key,
            "clients": clients,
            "rss_kib_per_idle_connection": (after - before) / clients / 1024,
        }


def wait_for_file(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path.name} was not written in {timeout} s")
        time.sleep(0.1)


def start_marks(marks: dict, server: Server) -> None:
    marks["cpu"], marks["client"] = cpu_seconds(server.pid), time.process_time()
    marks["at"] = time.monotonic()


def end_marks(marks: dict, server: Server) -> None:
    marks["cpu_used"] = cpu_seconds(server.pid) - marks["cpu"]
    marks["client_used"] = time.process_time() - marks["client"]
    marks["wall"] = time.monotonic() - marks["at"]


def room_figures(result, marks: dict) -> dict:
    return {
        "received": result.received,
        "duplicates": result.duplicates,
        "errors": len(result.errors),
        "delivery_ratio": result.ratio,
        "deliveries_per_second": result.deliveries_per_second,
        "p50_ms": result.latency_ms(0.50),
        "p99_ms": result.latency_ms(0.99),
        "cpu_us_per_delivery": marks["cpu_used"] / result.received * 1e6
        if result.received
        else None,
        # Shares of one core, from the first send until the last delivery (or the
        # end of the wait): a load client near 100 % measures itself.
        "server_cpu_share": marks["cpu_used"] / marks["wall"],
        "client_cpu_share": marks["client_used"] / marks["wall"],
    }


# --- the whole run ----------------------------------------------------------------------


def schedule(bench: Bench, variants: list[Variant], scenarios) -> None:
    plan = bench.plan
    by_key = {v.key: v for v in variants}
    default = next((v for v in variants if v.default), None)
    backoff = (
        page_backoff(default.step.path / "chat/templates/chat/room.html")
        if default
        else None
    )
    for round_ in range(1, plan.rounds + 1):
        print(f"\n--- round {round_} of {plan.rounds}", flush=True)
        if "throughput" in scenarios:
            for size in sorted({*plan.sizes, *plan.tutorial_sizes}):
                for variant in variants:
                    sizes = (
                        plan.sizes
                        if variant.key == BASELINE or variant.protocol == CHAT
                        else plan.tutorial_sizes
                    )
                    if size in sizes:
                        bench.room(
                            variant,
                            "throughput",
                            size,
                            min(plan.senders, size),
                            plan.per_sender(size),
                            round_,
                        )
        if "burst" in scenarios and plan.burst:
            for variant in variants:
                bench.room(
                    variant,
                    "burst",
                    BURST_CLIENTS,
                    BURST_SENDERS,
                    BURST_MESSAGES,
                    round_,
                )
        if "steady" in scenarios and plan.steady:
            for key in (BASELINE, "async-uvicorn", default.key if default else None):
                if key in by_key:
                    bench.steady(by_key[key], round_)
        if "storm" in scenarios and plan.storm and default:
            bench.storm(default, round_, backoff)
    if "breakdown" in scenarios and plan.breakdowns:
        print("\n--- breakdowns", flush=True)
        jobs = [
            (bench.memory_breakdown, by_key[key], plan.memory_clients)
            for key in (BASELINE, "async-uvicorn", default.key if default else None)
            if key in by_key
        ]
        if default:
            jobs.append((bench.one_user_rss, default, plan.profile_clients))
            jobs.append((bench.cpu_breakdown, default, plan.profile_clients))
        for job, variant, clients in jobs:
            started = time.monotonic()
            job(variant, clients)
            print(
                f"  {time.monotonic() - started:>4.0f} s {variant.key:<20}"
                f" {job.__name__.replace('_', ' ')} N={clients}",
                flush=True,
            )


# --- summaries --------------------------------------------------------------------------

SUMMARISED = {
    "throughput": [
        "deliveries_per_second",
        "p50_ms",
        "p99_ms",
        "delivery_ratio",
        "cpu_us_per_delivery",
        "rss_kib_per_idle_connection",
        "client_cpu_share",
    ],
    "steady": [
        "p50_ms",
        "p99_ms",
        "delivery_ratio",
        "deliveries_per_second",
        "server_cpu_share",
        "client_cpu_share",
    ],
    "storm": [
        "server_up_s",
        "all_reconnected_s",
        "all_caught_up_s",
        "median_caught_up_s",
        "lost",
        "storm_cpu_s",
        "storm_cpu_share",
        "failed_attempts",
        "client_cpu_share",
    ],
}
SUMMARISED["burst"] = SUMMARISED["throughput"]
# Compared with the baseline's median in the same group.
RATIOS = ["deliveries_per_second", "cpu_us_per_delivery", "rss_kib_per_idle_connection"]


def spread(values: list) -> dict:
    """Median, least and greatest; None (a latency never reached, a figure a failed
    run does not have) counts as worse than any number."""
    ordered = sorted(values, key=lambda v: (v is None, v if v is not None else 0))
    middle = len(ordered) // 2
    if len(ordered) % 2:
        median = ordered[middle]
    elif None in (ordered[middle - 1], ordered[middle]):
        median = None
    else:
        median = (ordered[middle - 1] + ordered[middle]) / 2
    return {
        "median": median,
        "min": ordered[0] if ordered else None,
        "max": ordered[-1] if ordered else None,
        "runs": len(values),
    }


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["scenario"], row["variant"], row["clients"]), []).append(
            row
        )
    found = []
    for (scenario, variant, clients), group in groups.items():
        summary = {
            "scenario": scenario,
            "variant": variant,
            "clients": clients,
            "runs": len(group),
            "failed": [row["error"] for row in group if "error" in row],
            "expected": group[0].get("expected"),
        }
        for metric in SUMMARISED[scenario]:
            summary[metric] = spread([row.get(metric) for row in group])
        base = groups.get((scenario, BASELINE, clients))
        if base and variant != BASELINE and scenario in ("throughput", "burst"):
            summary["vs_baseline"] = {}
            for metric in RATIOS:
                mine = summary[metric]["median"]
                theirs = spread([row.get(metric) for row in base])["median"]
                paired = [
                    row.get(metric) / other.get(metric)
                    for row in group
                    for other in base
                    if other["round"] == row["round"]
                    and row.get(metric)
                    and other.get(metric)
                ]
                summary["vs_baseline"][metric] = {
                    "of_medians": mine / theirs if mine and theirs else None,
                    "paired": spread(paired) if paired else None,
                }
        found.append(summary)
    return found


def machine_and_versions() -> dict:
    cpu_model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = [
        "Django", "channels", "channels-redis", "daphne", "uvicorn", "uvloop",
        "httptools", "websockets", "redis", "msgpack",
    ]  # fmt: skip
    redis_version = ""
    if shutil.which("redis-server"):
        redis_version = (
            subprocess.run(
                ["redis-server", "--version"], capture_output=True, text=True
            )
            .stdout.split()[2]
            .removeprefix("v=")
        )
    return {
        "cpu": cpu_model,
        "cores": psutil.cpu_count(logical=True),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
        "packages": {name: importlib.metadata.version(name) for name in packages},
        "redis_server": redis_version,
        "sqlite": sqlite3.sqlite_version,
    }


# --- output -----------------------------------------------------------------------------


def number(value, spec=",.0f") -> str:
    return "—" if value is None else format(value, spec)


def format_row(row: dict) -> str:
    label = (
        f"  {row['job_seconds']:>4.0f} s {row['variant']:<20} {row['scenario']:<10}"
        f" N={row['clients']:<5}"
    )
    if row.get("error"):
        return f"{label} FAILED: {row['error']}"
    if row["scenario"] == "storm":
        return (
            f"{label} server up {number(row['server_up_s'], '.1f')} s, everyone"
            f" reconnected {number(row['all_reconnected_s'], '.1f')} s, caught up"
            f" {number(row['all_caught_up_s'], '.1f')} s after the kill; lost"
            f" {row['lost']} of {row['stored']} stored; server CPU"
            f" {row['storm_cpu_s']:.1f} s ({row['storm_cpu_share']:.0%} of a core)"
        )
    text = (
        f"{label} {row['deliveries_per_second']:>9,.0f} deliveries/s"
        f"  p50 {number(row['p50_ms'], '.1f'):>7} ms  p99 {number(row['p99_ms'], '.1f'):>7} ms"
        f"  delivered {row['delivery_ratio']:>7.2%}"
    )
    if row["scenario"] == "steady":
        text += f"  server CPU {row['server_cpu_share']:.0%}"
    else:
        text += f"  CPU {number(row.get('cpu_us_per_delivery'))} µs/delivery"
    if row.get("duplicates"):
        text += f"  DUPLICATES {row['duplicates']}"
    if row.get("errors"):
        text += f"  ERROR FRAMES {row['errors']}"
    return text


def print_summary(summaries: list[dict], names: dict) -> None:
    print("\nMedians (least–greatest) of every group")
    for s in summaries:
        head = f"  {names[s['variant']]:<42} {s['scenario']:<10} N={s['clients']:<5}"
        if s["scenario"] == "storm":
            print(
                f"{head} caught up {number(s['all_caught_up_s']['median'], '.1f')} s,"
                f" lost {number(s['lost']['max'])} at most"
            )
            continue
        figures = [
            f"{number(s['deliveries_per_second']['median'])} deliveries/s",
            f"p99 {number(s['p99_ms']['median'], '.0f')} ms",
            f"delivered {number(s['delivery_ratio']['min'], '.1%')} at least",
        ]
        if "cpu_us_per_delivery" in s:
            figures.append(f"CPU {number(s['cpu_us_per_delivery']['median'])} µs")
            ratio = s.get("vs_baseline", {}).get("cpu_us_per_delivery", {})
            if ratio.get("of_medians"):
                figures.append(f"({ratio['of_medians']:.1f}× baseline)")
        print(f"{head} {', '.join(figures)}")


def check_quick(report: dict) -> list[str]:
    """Every variant ran and delivered, with no message twice; the last step
    delivered everything and lost nothing in the storm. Not how fast."""
    problems = []
    names = {v["key"]: v["name"] for v in report["variants"]}
    chat = {
        v["key"]
        for v in report["variants"]
        if v["step"] == report["last_step"]["number"]
    }
    ran = {row["variant"] for row in report["runs"]}
    for key, name in names.items():
        if key not in ran:
            problems.append(f"{name}: did not run")
    for row in report["runs"]:
        where = f"{names[row['variant']]}: {row['scenario']}"
        if row.get("error"):
            problems.append(f"{where}: {row['error']}")
        elif row["scenario"] == "storm":
            if row["all_caught_up_s"] is None:
                problems.append(f"{where}: not every client caught up")
            if row["lost"]:
                problems.append(f"{where}: {row['lost']} messages lost")
        else:
            if not row["received"]:
                problems.append(f"{where}: delivered nothing")
            if row["duplicates"]:
                problems.append(f"{where}: {row['duplicates']} messages arrived twice")
            if row["variant"] in chat and row["delivery_ratio"] < 1:
                problems.append(f"{where}: delivered {row['delivery_ratio']:.1%}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop.bench.run")
    parser.add_argument("--quick", action="store_true", help="the short smoke run (CI)")
    parser.add_argument(
        "--only", help="only the variants whose name contains this text"
    )
    parser.add_argument(
        "--sizes", help="throughput room sizes for every variant, e.g. 100,1000"
    )
    parser.add_argument("--rounds", type=int, help="rounds instead of the plan's")
    parser.add_argument(
        "--scenarios", help=f"only these, comma-separated: {','.join(SCENARIOS)}"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.sizes:
        sizes = tuple(int(n) for n in args.sizes.split(","))
        plan = replace(plan, sizes=sizes, tutorial_sizes=sizes)
    if args.rounds:
        plan = replace(plan, rounds=args.rounds)
    scenarios = tuple(args.scenarios.split(",")) if args.scenarios else SCENARIOS
    # A partial run is for looking into one thing: it writes no notes.
    partial = bool(args.only or args.sizes or args.rounds or args.scenarios)

    server_cores, client_cores, placed = placement()
    if client_cores:
        os.sched_setaffinity(0, client_cores)
    executable = shutil.which("redis-server")
    redis = RedisServer(executable).start() if executable else None
    if redis:
        pin(redis.process.pid, server_cores)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="workshop-bench-") as scratch:
            bench = Bench(plan, Path(scratch), redis, server_cores)
            users = max(
                [
                    *plan.sizes,
                    *plan.tutorial_sizes,
                    plan.profile_clients if plan.breakdowns else 0,
                ]
                + ([plan.steady.clients] if plan.steady else [])
                + ([plan.storm.listeners + plan.storm.senders] if plan.storm else [])
            )
            last_info = bench.prepare_last_step(users)
            settings = last_info["settings"]
            variants = [
                v
                for v in all_variants(settings["REDIS_LAYERS"], settings["REDIS_LAYER"])
                if (redis or not v.redis)
                and (not args.only or args.only in v.name or v.key == BASELINE)
            ]
            print(
                f"Variants: {', '.join(v.name for v in variants)}"
                + ("" if redis else " (redis-server not found: no Redis variants)"),
                flush=True,
            )
            schedule(bench, variants, scenarios)
    finally:
        if redis:
            redis.close()
    report = {
        "quick": args.quick,
        "partial": partial,
        "seconds": round(time.monotonic() - started, 1),
        "placement": placed,
        "machine": machine_and_versions(),
        "plan": {
            **asdict(plan),
            "burst": {
                "clients": BURST_CLIENTS,
                "senders": BURST_SENDERS,
                "messages": BURST_MESSAGES,
            }
            if plan.burst
            else None,
            "rate_limit_lifted": UNLIMITED,
        },
        "last_step": last_info,
        "variants": [v.describe() for v in variants],
        "runs": bench.rows,
        "summary": summarise(bench.rows),
        "breakdowns": bench.breakdowns,
    }
    print_summary(report["summary"], {v.key: v.name for v in variants})
    if args.quick or partial:
        SCRATCH_RESULTS.mkdir(exist_ok=True)
        path = SCRATCH_RESULTS / ("quick.json" if args.quick else "partial.json")
        path.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nFigures in {path.relative_to(ROOT)} ({report['seconds']} s)")
    if args.quick:
        problems = check_quick(report)
        for problem in problems:
            print(f"bench-quick: {problem}")
        print(
            f"bench-quick: {len(variants)} variants; "
            + (
                "every one started and delivered"
                if not problems
                else f"{len(problems)} problems"
            )
            + f" ({report['seconds']} s)"
        )
        return 1 if problems else 0
    if partial:
        return 0
    NOTES_JSON.parent.mkdir(parents=True, exist_ok=True)
    NOTES_JSON.write_text(json.dumps(report, indent=1) + "\n")
    # report.py reads the JSON in a process of its own: the note is made from the
    # figures alone.
    return subprocess.run(
        [sys.executable, "-m", "workshop.bench.report", str(NOTES_JSON)],
        cwd=ROOT / "tools",
    ).returncode


if __name__ == "__main__":
    sys.exit(main())
