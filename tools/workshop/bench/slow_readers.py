"""Pages that stop reading in a busy room: how much does the server's memory grow?

A page that stops reading makes the server wait to write to it, so its consumer stops
taking events from the channel layer, and the room's messages wait there for it. The
last step bounds that wait per socket (CHANNEL_CAPACITY, chat/layers.py) and catches
the page up from the database once it reads again. Three runs in each round, on the
last step's default configuration with a smaller CHANNEL_CAPACITY:

- "reading": every page reads (the growth the messages themselves cost);
- "bounded": some pages stop reading;
- "unbounded": the same, with a CHANNEL_CAPACITY no room reaches: as channels_redis'
  own pub/sub layer, whose queues have no bound.

Then the pages that stopped read again: do they get every message?
"""

import asyncio
import json
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from workshop.bench.figures import Run, delivered, num, spread, times
from workshop.bench.harness import Bench
from workshop.bench.load import (
    CHAT,
    Client,
    collector_paused,
    drop,
    frame_to_send,
    open_clients,
    open_socket,
    settle,
    wait_for_deliveries,
)
from workshop.bench.server import Idle, Server, rss_bytes
from workshop.bench.variants import Variant

CONFIGURATIONS = ("reading", "bounded", "unbounded")
UNBOUNDED = 10**9
# The pages that stop reading have a small receive buffer, as a phone on a bad link:
# the server's writes to them stall soon.
TINY_RECEIVE_BUFFER = 4096


def tcp_buffer_bytes() -> int:
    """What the kernel holds in TCP buffers, all sockets of the machine together:
    a write the server cannot deliver waits there before it waits in the server."""
    try:
        for line in Path("/proc/net/sockstat").read_text().splitlines():
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        pass
    return 0


class PeakRss:
    """The server's greatest resident memory while it runs, and the kernel's TCP
    buffers', sampled every 50 ms."""

    def __init__(self, pid: int):
        self.pid, self.peak = pid, rss_bytes(pid)
        self.peak_tcp = tcp_buffer_bytes()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, rss_bytes(self.pid))
            self.peak_tcp = max(self.peak_tcp, tcp_buffer_bytes())

    def __enter__(self) -> "PeakRss":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))


async def open_stalled(url: str, origin: str, cookie: str):
    """A socket whose client reads one frame at most and then nothing, until told."""
    tiny = socket.socket()
    tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY_RECEIVE_BUFFER)
    tiny.setblocking(False)
    address = urlsplit(url)
    await asyncio.get_running_loop().sock_connect(
        tiny, (address.hostname, address.port)
    )
    return await open_socket(url, origin, cookie, sock=tiny, max_queue=1)


async def wait_for_accounts(clients, messages, since, deadline, quiet_after):
    """Until each client has every message or was told it skipped the rest, the
    deadline passed, or nothing arrived for `quiet_after` seconds."""
    while time.monotonic() < deadline:
        if all(c.received + c.skipped >= messages for c in clients):
            return
        latest = max([since] + [c.last_frame_at for c in clients])
        if time.monotonic() - latest > quiet_after:
            return
        await asyncio.sleep(0.05)


async def run_slow_readers(
    server: Server, plan, stalled_count: int, cookies, quiet_after: float
) -> dict:
    url, origin = server.url("slow"), server.origin
    readers = await open_clients(
        url, plan.readers, CHAT, origin, cookies[: plan.readers]
    )
    stalled = [
        Client(plan.readers + i, CHAT, readers[0].run, cookie)
        for i, cookie in enumerate(cookies[plan.readers : plan.readers + stalled_count])
    ]
    for client in stalled:
        client.socket = await open_stalled(url, origin, client.cookie)
    tasks = [asyncio.create_task(c.read()) for c in readers]
    try:
        await settle(readers, Idle(server.pid))
        for client in readers + stalled:
            client.reset()
        sender = readers[0]
        padding = "x" * plan.text_bytes

        def frame(number: int) -> str:
            # A bigger message than the other measurements send; the client reads
            # its "r", "s", "k" and "t" as in any other.
            text = json.dumps(
                {
                    "r": sender.run,
                    "s": sender.index,
                    "k": number,
                    "p": padding,
                    "t": time.monotonic(),
                }
            )
            return frame_to_send(CHAT, text, f"{sender.run}-slow-{number}")

        before, tcp_before = rss_bytes(server.pid), tcp_buffer_bytes()
        with collector_paused(), PeakRss(server.pid) as peak:
            started = time.monotonic()
            for number in range(plan.messages):
                await sender.socket.send(frame(number))
            expected = plan.messages * (plan.readers - 1)
            await wait_for_deliveries(
                readers, expected, started + 120, quiet_after=quiet_after
            )
            sent_s = time.monotonic() - started
        figures = {
            "received": sum(c.received for c in readers),
            "expected": expected,
            "delivery_ratio": sum(c.received for c in readers) / expected,
            "sent_s": sent_s,
            "rss_growth_mib": (peak.peak - before) / 2**20,
            "tcp_buffers_growth_mib": (peak.peak_tcp - tcp_before) / 2**20,
        }
        if stalled:
            # They read again: the rest comes from the layer, then the database.
            resumed = time.monotonic()
            for client in stalled:
                client.last_frame_at = resumed  # "caught up after": from here
            tasks += [asyncio.create_task(c.read()) for c in stalled]
            await wait_for_accounts(
                stalled, plan.messages, resumed, resumed + 120, quiet_after
            )
            # A page further behind than CHAT_CATCH_UP_LIMIT is told how many
            # messages it skipped: each message either arrives or is counted there.
            owed = plan.messages * len(stalled)
            got = sum(c.received for c in stalled)
            skipped = sum(c.skipped for c in stalled)
            figures["stalled_delivery_ratio"] = got / owed
            figures["stalled_skipped_ratio"] = skipped / owed
            figures["stalled_unaccounted"] = owed - got - skipped
            figures["stalled_caught_up_s"] = (
                max(c.last_frame_at for c in stalled) - resumed
            )
        return figures
    finally:
        for task in tasks:
            task.cancel()
        drop([c.socket for c in readers + stalled])


def measure(bench: Bench, variant: Variant, round_: int) -> None:
    for configuration in CONFIGURATIONS:
        measure_one(bench, variant, round_, configuration)


def measure_one(bench: Bench, variant: Variant, round_: int, configuration: str):
    plan = bench.plan.slow_readers
    stalled_count = 0 if configuration == "reading" else plan.stalled
    row = {
        "variant": variant.key,
        "scenario": "slow_readers",
        "configuration": configuration,
        "round": round_,
        "clients": plan.readers + stalled_count,
        "stalled": stalled_count,
        "messages": plan.messages,
        "text_bytes": plan.text_bytes,
        "capacity": UNBOUNDED if configuration == "unbounded" else plan.capacity,
    }

    def run():
        env = bench.env_for(variant, unlimited=True)
        env["CHANNEL_CAPACITY"] = str(row["capacity"])
        with Server(bench, variant, env) as server:
            figures = asyncio.run(
                run_slow_readers(
                    server,
                    plan,
                    stalled_count,
                    bench.cookies_for(variant, plan.readers + stalled_count),
                    bench.quiet_after(variant),
                )
            )
        if stalled_count:
            figures["rss_growth_mib_per_stalled"] = (
                figures["rss_growth_mib"] / stalled_count
            )
        return figures

    bench.attempt(row, run)


# --- in the note ---------------------------------------------------------------------


def report(run: Run) -> dict | None:
    plan = run.plan.get("slow_readers")
    groups = {
        s["configuration"]: s for s in run.summary if s["scenario"] == "slow_readers"
    }
    if not plan or not groups:
        return None
    rows = []
    reading = groups.get("reading")
    for configuration, meaning in (
        ("reading", "every page reads"),
        (
            "bounded",
            f"{plan['stalled']} stop reading; `CHANNEL_CAPACITY` {plan['capacity']}",
        ),
        ("unbounded", f"{plan['stalled']} stop reading; no bound"),
    ):
        s = groups.get(configuration)
        if not s:
            continue
        growth = s["rss_growth_mib"]["median"]
        base = reading["rss_growth_mib"]["median"] if reading else None
        rows.append(
            {
                "configuration": configuration,
                "meaning": meaning,
                "failed": "; ".join(s["failed"]),
                "rss": spread(s["rss_growth_mib"], ".1f"),
                "vs_reading": times(growth / base if growth and base else None),
                "tcp": spread(s["tcp_buffers_growth_mib"], ".1f"),
                "readers": delivered(s),
                "stalled_got": spread(s["stalled_delivery_ratio"], ".1%"),
                "stalled_skipped": spread(s["stalled_skipped_ratio"], ".1%"),
                "unaccounted": num(s["stalled_unaccounted"]["max"]),
                "caught_up": spread(s["stalled_caught_up_s"], ".1f"),
            }
        )
    return {**plan, "variant": run.name(run.default["key"]), "rows": rows}
