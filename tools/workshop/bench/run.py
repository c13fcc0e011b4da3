"""Start each variant's server, load it, measure it, stop it; then report.

python -m workshop.bench.run [--quick]

Every figure is reported next to its ratio to the baseline measured in the same run,
because absolute numbers say more about the machine than about the code.
"""

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from workshop.accounts import login_cookie, migrate
from workshop.bench.load import run_room
from workshop.ports import free_port, wait_for_port
from workshop.redis_server import RedisServer
from workshop.steps import ROOT, find_step

BASELINE = "baseline (raw websockets)"


@dataclass(frozen=True)
class Variant:
    name: str
    step: int | None  # None: the baseline server
    server: str  # "baseline", "daphne" or "uvicorn"
    layer: str | None  # "in-memory", "redis" or None
    protocol: str  # "tutorial" or "step5"
    env: tuple[tuple[str, str], ...] = ()  # settings the variant's server is given


VARIANTS = [
    Variant(BASELINE, None, "baseline", None, "tutorial"),
    Variant("step 2 sync, Daphne, in-memory", 2, "daphne", "in-memory", "tutorial"),
    Variant("step 2 sync, Uvicorn, in-memory", 2, "uvicorn", "in-memory", "tutorial"),
    Variant("step 3 async, Daphne, in-memory", 3, "daphne", "in-memory", "tutorial"),
    Variant("step 3 async, Uvicorn, in-memory", 3, "uvicorn", "in-memory", "tutorial"),
    Variant("step 3 async, Uvicorn, Redis", 3, "uvicorn", "redis", "tutorial"),
    Variant("step 10, Uvicorn, Redis", 10, "uvicorn", "redis", "step5"),
    Variant(
        "step 10, Uvicorn, Redis pub/sub",
        10,
        "uvicorn",
        "redis",
        "step5",
        (("REDIS_LAYER", "pubsub"),),
    ),
]


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    deliveries: int  # aim for about this many deliveries per measurement
    senders: int
    burst: bool

    def per_sender(self, clients: int) -> int:
        senders = min(self.senders, clients)
        return max(1, math.ceil(self.deliveries / ((clients - 1) * senders)))


FULL = Plan(sizes=(10, 100, 1000), deliveries=10_000, senders=4, burst=True)
QUICK = Plan(sizes=(), deliveries=400, senders=4, burst=True)  # the burst alone
# The burst of the step 5 issue: 5 members of a 10-person room send 40 each at once.
BURST_CLIENTS, BURST_SENDERS, BURST_MESSAGES = 10, 5, 40


def variant_slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


# --- placing processes on cores ------------------------------------------------------


def placement() -> tuple[set[int] | None, set[int] | None, str]:
    """(server cores, client cores, a sentence saying so)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) < 2:
        return None, None, "not pinned: fewer than two cores available to this process"
    server, client = {cores[0]}, set(cores[1:])
    return (
        server,
        client,
        (
            f"server processes (and redis-server) pinned to core {cores[0]},"
            f" load client to core(s) {', '.join(map(str, sorted(client)))}"
        ),
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


# --- one variant ----------------------------------------------------------------------


def server_command(variant: Variant, port: int) -> list[str]:
    if variant.server == "baseline":
        return [sys.executable, "-m", "workshop.bench.baseline", str(port)]
    if variant.server == "daphne":
        return [
            sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
            "-v", "0", "mysite.asgi:application",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "uvicorn", "mysite.asgi:application", "--port", str(port),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip


def measure_variant(
    variant, plan, redis, server_cores, client_cores, scratch
) -> list[dict]:
    step_dir = find_step(variant.step).path if variant.step else ROOT / "tools"
    env = {
        **os.environ,
        "REDIS_URL": redis.url if redis and variant.layer == "redis" else "",
        "PYTHONUNBUFFERED": "1",
        **dict(variant.env),
    }
    cookie = ""
    if variant.protocol == "step5":
        env.update(
            {
                # A database of its own: another variant's rooms would come back
                # as history.
                "SQLITE_PATH": str(
                    Path(scratch) / f"{variant_slug(variant.name)}.sqlite3"
                ),
                # The benchmark measures throughput: lift the per-socket rate limit.
                "CHAT_MAX_MESSAGES_PER_SECOND": "1000000",
                "PRESENCE_HEARTBEAT_SECONDS": "5",
            }
        )
        migrate(step_dir, env)
        cookie = login_cookie(step_dir, env, "bench")
    runs = [
        (f"room{n}", n, min(plan.senders, n), plan.per_sender(n)) for n in plan.sizes
    ]
    if plan.burst:
        runs.append(("burst", BURST_CLIENTS, BURST_SENDERS, BURST_MESSAGES))
    results = []
    for room, clients, senders, per_sender in runs:
        # A fresh server for each measurement: nothing left over from the last room.
        row = {
            "variant": variant.name,
            "scenario": "burst" if room == "burst" else "throughput",
            "clients": clients,
            "senders": senders,
            "messages": senders * per_sender,
            "expected": senders * per_sender * (clients - 1),
        }
        if redis and variant.layer == "redis":
            # The groups of an earlier server (its dead channels included) must not
            # get this one's messages.
            redis.flush_all()
        try:
            row.update(
                measure_once(
                    variant,
                    step_dir,
                    env,
                    cookie,
                    server_cores,
                    room,
                    clients,
                    senders,
                    per_sender,
                )
            )
        except Exception as error:  # a failed measurement is a result, not a crash
            row.update(
                {
                    "received": 0,
                    "delivery_ratio": 0.0,
                    "deliveries_per_second": 0.0,
                    "p50_ms": float("nan"),
                    "p99_ms": float("nan"),
                    "cpu_us_per_delivery": None,
                    "rss_kib_per_idle_connection": float("nan"),
                    "error": f"{type(error).__name__}: {error}",
                }
            )
        results.append(row)
        print(format_row(row), flush=True)
    return results


def measure_once(
    variant, step_dir, env, cookie, server_cores, room, clients, senders, per_sender
):
    port = free_port()
    server = subprocess.Popen(
        server_command(variant, port),
        cwd=step_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_port(port, timeout=60):
            raise RuntimeError("the server did not start")
        time.sleep(0.3)
        pin(server.pid, server_cores)
        marks = {}

        def on_ready():
            marks["cpu"] = cpu_seconds(server.pid)
            marks["rss"] = rss_bytes(server.pid)

        def on_done():
            marks["cpu_used"] = cpu_seconds(server.pid) - marks["cpu"]

        before_rss = rss_bytes(server.pid)
        result = asyncio.run(
            run_room(
                f"ws://127.0.0.1:{port}/ws/chat/{room}/",
                clients,
                senders,
                per_sender,
                variant.protocol,
                f"http://127.0.0.1:{port}",
                cookie,
                on_ready=on_ready,
                on_done=on_done,
                quiet_after=8.0 if variant.protocol == "step5" else 3.0,
            )
        )
        cpu = marks["cpu_used"]
        return {
            "received": result.received,
            "duplicates": result.duplicates,
            "delivery_ratio": result.ratio,
            "deliveries_per_second": result.deliveries_per_second,
            "p50_ms": result.latency_ms(0.50),
            "p99_ms": result.latency_ms(0.99),
            "cpu_us_per_delivery": cpu / result.received * 1e6
            if result.received
            else None,
            "rss_kib_per_idle_connection": (marks["rss"] - before_rss) / clients / 1024,
        }
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# --- report -----------------------------------------------------------------------------


def format_row(row: dict) -> str:
    if row.get("error"):
        return f"  {row['scenario']:<10} N={row['clients']:<5} FAILED: {row['error']}"
    cpu = row["cpu_us_per_delivery"]
    return (
        f"  {row['scenario']:<10} N={row['clients']:<5} {row['deliveries_per_second']:>9.0f} deliveries/s"
        f"  p50 {row['p50_ms']:>7.1f} ms  p99 {row['p99_ms']:>7.1f} ms"
        f"  delivered {row['delivery_ratio']:>7.2%}"
        f"  CPU {cpu if cpu is not None else float('nan'):>6.0f} µs/delivery"
        + (f"  DUPLICATES {row['duplicates']}" if row.get("duplicates") else "")
    )


def add_ratios(rows: list[dict]) -> None:
    baseline = {
        (r["scenario"], r["clients"]): r for r in rows if r["variant"] == BASELINE
    }
    for row in rows:
        base = baseline.get((row["scenario"], row["clients"]))
        row["throughput_vs_baseline"] = (
            row["deliveries_per_second"] / base["deliveries_per_second"]
            if base and base["deliveries_per_second"]
            else None
        )
        row["cpu_vs_baseline"] = (
            row["cpu_us_per_delivery"] / base["cpu_us_per_delivery"]
            if base and base["cpu_us_per_delivery"] and row["cpu_us_per_delivery"]
            else None
        )


def table(rows: list[dict], scenario: str) -> str:
    def x(value):
        return f"{value:.2f}×" if value is not None else "n/a"

    lines = [
        "| variant | N | deliveries/s | vs baseline | p50 ms | p99 ms | delivered | CPU µs/delivery | vs baseline | RSS KiB/idle conn |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row["scenario"] != scenario:
            continue
        cpu = row["cpu_us_per_delivery"]
        lines.append(
            f"| {row['variant']} | {row['clients']} | {row['deliveries_per_second']:,.0f}"
            f" | {x(row['throughput_vs_baseline'])} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f}"
            f" | {row['delivery_ratio']:.1%} ({row['received']:,}/{row['expected']:,})"
            f" | {cpu:,.0f} | {x(row['cpu_vs_baseline'])}"
            f" | {row['rss_kib_per_idle_connection']:.0f} |"
            if cpu is not None
            else f"| {row['variant']} | {row['clients']} | failed: {row.get('error', 'nothing delivered')} | | | | | | | |"
        )
    return "\n".join(lines)


def machine_and_versions() -> dict:
    import importlib.metadata as metadata

    cpu_model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = [
        "Django", "channels", "daphne", "uvicorn", "websockets", "channels-redis", "redis",
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
        "packages": {name: metadata.version(name) for name in packages},
        "redis_server": redis_version,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop.bench.run")
    parser.add_argument(
        "--quick", action="store_true", help="the 30-second smoke run (CI)"
    )
    parser.add_argument(
        "--only", help="only the variants whose name contains this text"
    )
    parser.add_argument(
        "--sizes", help="room sizes instead of the plan's, e.g. 100,1000"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.sizes:
        plan = Plan(
            tuple(int(n) for n in args.sizes.split(",")),
            plan.deliveries,
            plan.senders,
            False,
        )
    # A partial run is for looking into one thing: it prints, and writes no notes.
    partial = bool(args.only or args.sizes)

    server_cores, client_cores, placed = placement()
    if client_cores:
        os.sched_setaffinity(0, client_cores)
    print(f"Placement: {placed}.", flush=True)

    redis = None
    executable = shutil.which("redis-server")
    variants = [
        v
        for v in VARIANTS
        if not args.only or args.only in v.name or v.name == BASELINE
    ]
    if executable:
        redis = RedisServer(executable).start()
        pin(redis.process.pid, server_cores)
    else:
        variants = [v for v in variants if v.layer != "redis"]
        print("redis-server not found: the Redis variants are left out.", flush=True)

    rows = []
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="workshop-bench-") as scratch:
            for variant in variants:
                print(f"\n{variant.name}", flush=True)
                rows.extend(
                    measure_variant(
                        variant,
                        plan,
                        redis,
                        server_cores,
                        client_cores,
                        scratch,
                    )
                )
    finally:
        if redis:
            redis.close()
    add_ratios(rows)
    report = {
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "placement": placed,
        "machine": machine_and_versions(),
        "plan": {
            "sizes": plan.sizes,
            "deliveries": plan.deliveries,
            "senders": plan.senders,
        },
        "rows": rows,
    }
    print("\nThroughput (W clients send at once; measured at every other client)\n")
    print(table(rows, "throughput"))
    print(
        f"\nBurst ({BURST_SENDERS} of {BURST_CLIENTS} send {BURST_MESSAGES} each, at once)\n"
    )
    print(table(rows, "burst"))

    from workshop.bench.report import check_quick, write_notes

    if args.quick:
        folder = ROOT / "bench-results"
        folder.mkdir(exist_ok=True)
        (folder / "quick.json").write_text(json.dumps(report, indent=2))
        problems = check_quick(report, [v.name for v in variants])
        for problem in problems:
            print(f"bench-quick: {problem}")
        print(
            f"bench-quick: {len(variants) - len({p.split(':')[0] for p in problems})}"
            f" of {len(variants)} variants ran and delivered ({report['seconds']} s)"
        )
        return 1 if problems else 0
    if partial:
        return 0
    written = write_notes(report)
    print(
        f"\nWrote {', '.join(str(path.relative_to(ROOT)) for path in written)} ({report['seconds']} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
