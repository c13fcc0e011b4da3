"""One room of 10,000 sockets on one server process (the last step, its default
configuration): do they all get in, what does a join cost, and how long until the
last of them has one message?

Measured once per run, not in rounds: it is a figure to read, not a target.
"""

import asyncio
import time

from workshop.bench.figures import Run, num, percent
from workshop.bench.harness import Bench
from workshop.bench.load import (
    OPEN_BATCH,
    Client,
    collector_paused,
    drop,
    open_socket,
    settle,
    wait_for_deliveries,
)
from workshop.bench.server import Idle, Server, cpu_seconds, rss_bytes
from workshop.bench.variants import Variant

# Joining 10,000 sockets and telling the room about them takes a while on two cores;
# and since step 17 a socket is open before its join is done, so the room falls quiet
# only when the last of the queued joins is (about nine minutes after the last opened).
SETTLE_LIMIT = 1200.0
DELIVERY_LIMIT = 120.0


async def fill_and_send(url, count, protocol, origin, cookies, idle, marks) -> dict:
    clients = [
        Client(i, protocol, "big", cookies[i] if cookies else "") for i in range(count)
    ]

    async def open_one(client):
        try:
            client.socket = await open_socket(url, origin, client.cookie)
        except Exception as error:  # refused, reset or timed out: counted, not raised
            client.errors.append(type(error).__name__)

    started = time.monotonic()
    for start in range(0, count, OPEN_BATCH):
        await asyncio.gather(
            *(open_one(c) for c in clients[start : start + OPEN_BATCH])
        )
    opened = [c for c in clients if c.socket is not None]
    all_open_s = time.monotonic() - started
    readers = [asyncio.create_task(c.read()) for c in opened]
    try:
        await settle(opened, idle, quiet=1.0, limit=SETTLE_LIMIT)
        marks["settled"] = time.monotonic() - started
        marks["joined_cpu"], marks["joined_rss"] = marks["cpu"](), marks["rss"]()
        for client in opened:
            client.reset()
        with collector_paused():
            sent = time.monotonic()
            await opened[0].socket.send(opened[0].frame(0))
            await wait_for_deliveries(
                opened, len(opened) - 1, sent + DELIVERY_LIMIT, quiet_after=30.0
            )
        latencies = [latency for c in opened for latency in c.latencies]
        return {
            "opened": len(opened),
            "refused": count - len(opened),
            "all_open_s": all_open_s,
            "settled_s": marks["settled"],
            "received": sum(c.received for c in opened),
            "expected": len(opened) - 1,
            "last_arrival_ms": max(latencies) * 1e3 if latencies else None,
            "median_arrival_ms": sorted(latencies)[len(latencies) // 2] * 1e3
            if latencies
            else None,
        }
    finally:
        for reader in readers:
            reader.cancel()
        drop([c.socket for c in opened])


def measure(bench: Bench, variant: Variant, clients: int) -> None:
    row = {
        "variant": variant.key,
        "scenario": "big_room",
        "round": 1,
        "clients": clients,
        "senders": 1,
        "messages": 1,
        "expected": clients - 1,
    }

    def run():
        env = bench.env_for(variant, unlimited=True)
        with Server(bench, variant, env) as server:
            time.sleep(0.3)
            before_cpu, before_rss = cpu_seconds(server.pid), rss_bytes(server.pid)
            marks = {
                "cpu": lambda: cpu_seconds(server.pid),
                "rss": lambda: rss_bytes(server.pid),
            }
            figures = asyncio.run(
                fill_and_send(
                    server.url("big"),
                    clients,
                    variant.protocol,
                    server.origin,
                    bench.cookies_for(variant, clients),
                    Idle(server.pid),
                    marks,
                )
            )
        opened = max(figures["opened"], 1)
        return {
            **figures,
            "delivery_ratio": figures["received"] / max(figures["expected"], 1),
            # Everything the server did from the first handshake until the room
            # was quiet: the joins and the presence they set off.
            "cpu_ms_per_join": (marks["joined_cpu"] - before_cpu) / opened * 1e3,
            "rss_kib_per_idle_connection": (marks["joined_rss"] - before_rss)
            / opened
            / 1024,
        }

    bench.attempt(row, run)


# --- in the note ---------------------------------------------------------------------


def report(run: Run) -> dict | None:
    rows = [r for r in run.data["runs"] if r["scenario"] == "big_room"]
    if not rows:
        return None
    row = rows[0]
    if "error" in row:
        return {"clients": num(row["clients"]), "failed": row["error"]}
    return {
        "clients": num(row["clients"]),
        "variant": run.name(row["variant"]),
        "opened": num(row["opened"]),
        "refused": num(row["refused"]),
        "all_open": num(row["all_open_s"], ".1f"),
        "settled": num(row["settled_s"], ".1f"),
        "join_ms": num(row["cpu_ms_per_join"], ".2f"),
        "rss": num(row["rss_kib_per_idle_connection"]),
        "received": num(row["received"]),
        "expected": num(row["expected"]),
        "delivered": percent(row["delivery_ratio"], ".2%"),
        "median_ms": num(row["median_arrival_ms"]),
        "last_ms": num(row["last_arrival_ms"]),
        "join_at_big": num(
            run.median("throughput", row["variant"], run.big, "cpu_ms_per_join"), ".2f"
        )
        if run.big
        else None,
    }
