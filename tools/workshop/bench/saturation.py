"""A room at full speed (the throughput and burst scenarios): a few members send as
fast as the server takes it, and every other member should get every message.

Measured on a fresh server: deliveries a second, latency, the share delivered, CPU
per delivery, and the memory each idle connection added while the room filled.
"""

import asyncio
import time

from workshop.bench.figures import Run, delivered, num, percent, ratio_cell, spread
from workshop.bench.harness import Bench
from workshop.bench.load import RoomResult, run_room
from workshop.bench.server import CpuWatch, Idle, Server, cpu_seconds, rss_bytes
from workshop.bench.variants import Variant


def room_figures(result: RoomResult, watch: CpuWatch) -> dict:
    return {
        "received": result.received,
        "duplicates": result.duplicates,
        "errors": len(result.errors),
        "delivery_ratio": result.ratio,
        "deliveries_per_second": result.deliveries_per_second,
        "p50_ms": result.latency_ms(0.50),
        "p99_ms": result.latency_ms(0.99),
        "cpu_us_per_delivery": watch.cpu_used / result.received * 1e6
        if result.received
        else None,
        # Shares of one core, from the first send until the last delivery (or the
        # end of the wait): a load client near 100 % measures itself.
        "server_cpu_share": watch.cpu_used / watch.wall,
        "client_cpu_share": watch.client_used / watch.wall,
    }


def full_room(
    bench: Bench,
    variant: Variant,
    room: str,
    clients: int,
    senders: int,
    per_sender: int,
    probe=None,
) -> dict:
    """One room at full speed on a fresh server (run under `probe`, if given)."""
    env = bench.env_for(variant, unlimited=True)
    with Server(bench, variant, env, probe=probe) as server:
        time.sleep(0.3)
        before, before_cpu = rss_bytes(server.pid), cpu_seconds(server.pid)
        watch, filled = CpuWatch(server.pid), {}

        def on_ready():
            filled["rss"] = rss_bytes(server.pid)
            filled["cpu"] = cpu_seconds(server.pid)
            watch.start()

        result = asyncio.run(
            run_room(
                server.url(room),
                clients,
                senders,
                per_sender,
                variant.protocol,
                server.origin,
                bench.cookies_for(variant, clients),
                on_ready=on_ready,
                on_done=watch.stop,
                idle=Idle(server.pid),
                quiet_after=bench.quiet_after(variant),
            )
        )
    return {
        **room_figures(result, watch),
        "rss_kib_per_idle_connection": (filled["rss"] - before) / clients / 1024,
        # From the first handshake until the room is quiet: the join and the
        # presence it sets off.
        "cpu_ms_per_join": (filled["cpu"] - before_cpu) / clients * 1e3,
    }


def measure(
    bench: Bench,
    variant: Variant,
    scenario: str,
    clients: int,
    senders: int,
    per_sender: int,
    round_: int,
) -> None:
    row = {
        "variant": variant.key,
        "scenario": scenario,
        "round": round_,
        "clients": clients,
        "senders": senders,
        "messages": senders * per_sender,
        "expected": senders * per_sender * (clients - 1),
    }

    bench.attempt(
        row,
        lambda: full_room(
            bench, variant, f"{scenario}{round_}", clients, senders, per_sender
        ),
    )


# --- in the note ---------------------------------------------------------------------


def rows(run: Run, scenario: str) -> list[dict]:
    rows = []
    for s in run.summary:
        if s["scenario"] != scenario:
            continue
        vs = s.get("vs_baseline")
        rows.append(
            {
                "variant": run.name(s["variant"]),
                "clients": s["clients"],
                "deliveries": spread(s["deliveries_per_second"]),
                "throughput_ratio": ratio_cell(vs, "deliveries_per_second", ".2f"),
                "p50": spread(s["p50_ms"], ",.0f", "never"),
                "p99": spread(s["p99_ms"], ",.0f", "never"),
                "delivered": delivered(s),
                "cpu": spread(s["cpu_us_per_delivery"]),
                "cpu_ratio": ratio_cell(vs, "cpu_us_per_delivery"),
                "rss": spread(s["rss_kib_per_idle_connection"]),
                "client": percent(s["client_cpu_share"]["median"]),
                "failed": "; ".join(s["failed"]),
            }
        )
    return sorted(rows, key=lambda r: r["clients"])


def capacity(run: Run) -> list[dict]:
    """What one core could deliver at each variant's CPU per delivery: above or below
    the fixed load? (From the peak-throughput runs in a room of the same size.)"""
    steady = run.plan.get("steady")
    found = []
    for s in run.summary:
        if s["scenario"] != "steady":
            continue
        cpu = run.median(
            "throughput", s["variant"], steady["clients"], "cpu_us_per_delivery"
        )
        if cpu:
            found.append(
                {
                    "variant": run.name(s["variant"]),
                    "cpu": num(cpu),
                    "most": num(1e6 / cpu),
                    "enough": 1e6 / cpu >= steady["rate"] * (steady["clients"] - 1),
                }
            )
    return found
