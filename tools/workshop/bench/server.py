"""One variant's server process: started on its own core, signalled, killed; and what
it uses, read from outside it (CPU time and memory of the process and its children)."""

import collections
import os
import subprocess
import time
from pathlib import Path

import psutil

from workshop.bench.variants import Variant, python_command, server_command
from workshop.ports import free_port, wait_for_port
from workshop.steps import ROOT


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


class CpuWatch:
    """The server's CPU time, this client's and the wall time from start() to stop():
    a measurement's own stretch, without the room filling or emptying."""

    def __init__(self, pid: int):
        self.pid = pid

    def start(self) -> None:
        self.cpu, self.client = cpu_seconds(self.pid), time.process_time()
        self.at = time.monotonic()

    def stop(self) -> None:
        self.cpu_used = cpu_seconds(self.pid) - self.cpu
        self.client_used = time.process_time() - self.client
        self.wall = time.monotonic() - self.at


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

    def url(self, room: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat/{room}/"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def wait_for_file(path: Path, timeout: float = 120) -> None:
    """Wait for a file the server's probe writes (workshop.bench.probe)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path.name} was not written in {timeout} s")
        time.sleep(0.1)
