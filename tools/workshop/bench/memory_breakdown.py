"""Memory per idle connection, and what it is made of.

The breakdown is Python's own account (tracemalloc, through the probe): what was
allocated while the connections joined and is still there once they are idle, by
the code that allocated it. One user's room is measured apart: RSS per idle
connection when every socket is the same user's, so that the presence list that
each join sends to the whole room holds one name.
"""

import asyncio
import shutil
import signal
import time

from workshop.bench import breakdown
from workshop.bench.figures import Run, num
from workshop.bench.harness import Bench
from workshop.bench.load import drop, in_room, open_clients, settle
from workshop.bench.server import Idle, Server, rss_bytes, wait_for_file
from workshop.bench.variants import BASELINE, Variant

# Connections that join before the memory is counted: what only the first ones cost
# (imports, caches) is left out.
WARM_UP = 10
# The last step caps the sockets one user may have open: not here, where one user
# opens them all.
ONE_USER_MAY_OPEN_THEM_ALL = {"CHAT_MAX_SOCKETS_PER_USER": "1000000"}


def measure(bench: Bench, variant: Variant, clients: int) -> None:
    """The breakdown of `clients` connections' memory, every socket one user's (so
    that the room's presence list is left out too)."""
    folder = bench.scratch / f"memory-{variant.key}"
    folder.mkdir()
    env = {**bench.env_for(variant), **ONE_USER_MAY_OPEN_THEM_ALL}
    cookies = bench.cookies_for(variant, 1) * (WARM_UP + clients)

    async def join_and_snapshot(server):
        url, origin, idle = server.url("memory"), server.origin, Idle(server.pid)
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

    with Server(bench, variant, env, probe=("memory", str(folder))) as server:
        asyncio.run(join_and_snapshot(server))
    bench.breakdowns.setdefault("memory", {})[variant.key] = breakdown.memory(
        folder / "snapshot.pickle",
        clients,
        variant.step.path if variant.step else None,
    )
    shutil.rmtree(folder)  # the snapshots are large; the figures are kept


def measure_one_user(bench: Bench, variant: Variant, clients: int) -> None:
    """RSS per idle connection when every socket is one user's."""
    env = {**bench.env_for(variant), **ONE_USER_MAY_OPEN_THEM_ALL}
    with Server(bench, variant, env) as server:
        time.sleep(0.3)
        before = rss_bytes(server.pid)

        async def measure_rss(_):
            return rss_bytes(server.pid)

        after = asyncio.run(
            in_room(
                server.url("one-user"),
                clients,
                variant.protocol,
                server.origin,
                bench.cookies_for(variant, 1) * clients,
                measure_rss,
                Idle(server.pid),
            )
        )
    bench.breakdowns["one_user"] = {
        "variant": variant.key,
        "clients": clients,
        "rss_kib_per_idle_connection": (after - before) / clients / 1024,
    }


# --- in the note ---------------------------------------------------------------------


# Whether each part of an idle connection's memory could be done without.
CAN_CUT = {
    "uvicorn": "no: the connection itself (protocol, buffers, handshake headers)",
    "websockets": "no: the connection itself (the WebSocket protocol's state)",
    "event loop": "no: the connection itself (transport, socket)",
    "channels": "no: a consumer instance, its scope, and its dispatch loop's tasks,"
    " for each socket: how Channels works",
    "channels_redis": "not with this layer: a queue and a subscription for each consumer",
    "redis": "not with this layer: its connections to Redis",
    "django": "partly: the session and user objects that `AuthMiddlewareStack` keeps in"
    " each scope",
    "asgiref": "no: Channels' wrappers around each consumer",
}


def report(run: Run) -> dict | None:
    memory = run.data["breakdowns"].get("memory")
    if not memory or not run.default or run.default["key"] not in memory:
        return None
    key, big = run.default["key"], run.big
    total = run.median("throughput", key, big, "rss_kib_per_idle_connection")
    base_total = run.median("throughput", BASELINE, big, "rss_kib_per_idle_connection")
    one = run.data["breakdowns"].get("one_user", {}).get("rss_kib_per_idle_connection")

    def parts(variant):
        found = memory.get(variant)
        if not found:
            return None
        return {
            "traced": num(found["traced_kib_per_connection"], ".1f"),
            "traced_value": found["traced_kib_per_connection"],
            "connections": found["connections"],
            "components": [
                {
                    "what": e["what"],
                    "kib": num(e["amount"], ".1f"),
                    "cut": CAN_CUT.get(e["what"], "the step's own state"),
                }
                for e in found["components"]
                if e["amount"] >= 0.05
            ],
            "sites": [
                {"what": e["what"], "kib": num(e["amount"], ".1f")}
                for e in found["sites"]
                if e["amount"] >= 0.05
            ],
        }

    last = parts(key)
    return {
        "total": num(total),
        "base_total": num(base_total),
        "one_user": num(one),
        "presence": num(total - one if total is not None and one is not None else None),
        "untraced": num(one - last["traced_value"] if one else None, ".1f"),
        "last": last,
        "baseline": parts(BASELINE),
        "tutorial": parts("async-uvicorn"),
        "tutorial_name": run.name("async-uvicorn"),
    }
