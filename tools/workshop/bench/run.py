"""The benchmark: start each variant's server, load it, measure it, stop it; write
the figures; then have report.py write the note.

python -m workshop.bench.run [--quick] [--only TEXT] [--sizes 100,1000] [--rounds N]
                             [--scenarios throughput,burst,steady,storm,slow_readers,...]

One module a measurement: saturation.py (a room at full speed: throughput and burst),
steady.py (a steady offered load), storm.py (the reconnect storm),
slow_readers.py (pages that stop reading), big_room.py (one room of 10,000),
memory_breakdown.py and cpu_breakdown.py; schedule.py says in what order (plan.py, how
much), server.py runs each server, harness.py holds what they share, summary.py sums
the rows up. The figures go to JSON (notes/performance/bench.json; bench-results/ for
a quick or partial run), which report.py, run as a separate process, turns into
notes/performance.md: each measurement's module also writes its own part of the note
(its rows), with what figures.py holds (the run, the targets, how a figure is written).
"""

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import psutil

from workshop.bench.harness import UNLIMITED, Bench
from workshop.bench.plan import (
    BASELINE_MESSAGES,
    BURST_CLIENTS,
    BURST_MESSAGES,
    BURST_SENDERS,
    FULL,
    QUICK,
    SCENARIOS,
    Plan,
)
from workshop.bench.schedule import schedule
from workshop.bench.server import pin, placement
from workshop.bench.summary import check_quick, print_summary, summarise
from workshop.bench.variants import BASELINE, all_variants
from workshop.redis_process import RedisServer
from workshop.steps import ROOT

NOTES_JSON = ROOT / "notes" / "performance" / "bench.json"
SCRATCH_RESULTS = ROOT / "bench-results"


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


def parse_arguments(argv) -> argparse.Namespace:
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
        "--big-room", type=int, help="sockets in the one big room (0: none)"
    )
    parser.add_argument(
        "--scenarios", help=f"only these, comma-separated: {','.join(SCENARIOS)}"
    )
    return parser.parse_args(argv)


def chosen_plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    if args.sizes:
        sizes = tuple(int(n) for n in args.sizes.split(","))
        plan = replace(plan, sizes=sizes, tutorial_sizes=sizes)
    if args.rounds:
        plan = replace(plan, rounds=args.rounds)
    if args.big_room is not None:
        plan = replace(plan, big_room=args.big_room)
    return plan


def measure(plan: Plan, scenarios: tuple[str, ...], only: str | None) -> dict:
    """Every measurement the plan and the scenarios ask for: the report of the run."""
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
            last_info = bench.prepare_last_step(plan.users())
            settings = last_info["settings"]
            variants = [
                v
                for v in all_variants(settings["REDIS_LAYERS"], settings["REDIS_LAYER"])
                if (redis or not v.redis)
                and (not only or only in v.name or v.key == BASELINE)
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
    return {
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
            "baseline_messages": BASELINE_MESSAGES,
        },
        "last_step": last_info,
        "variants": [v.describe() for v in variants],
        "runs": bench.rows,
        "summary": summarise(bench.rows),
        "breakdowns": bench.breakdowns,
    }


def main(argv=None) -> int:
    args = parse_arguments(argv)
    plan = chosen_plan(args)
    scenarios = tuple(args.scenarios.split(",")) if args.scenarios else SCENARIOS
    # A partial run is for looking into one thing: it writes no notes.
    partial = bool(
        args.only
        or args.sizes
        or args.rounds
        or args.scenarios
        or args.big_room is not None
    )
    report = {
        "quick": args.quick,
        "partial": partial,
        **measure(plan, scenarios, args.only),
    }
    variants = report["variants"]
    print_summary(report["summary"], {v["key"]: v["name"] for v in variants})
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
