"""The load client: N sockets in one room, W of them sending, measured at the others.

Each message carries its sender and a monotonic send time, so every receiving
client can tell its latency. Server and client run on the same machine, so their
monotonic clocks agree.
"""

import asyncio
import json
import math
import secrets
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import connect


@dataclass
class RoomResult:
    clients: int
    senders: int
    messages: int  # messages sent in all
    expected: int  # deliveries to clients other than the sender
    received: int
    seconds: float
    duplicates: int = 0  # messages a client received more than once (not counted above)
    latencies: list[float] = field(repr=False, default_factory=list)

    @property
    def ratio(self) -> float:
        return self.received / self.expected if self.expected else 0.0

    @property
    def deliveries_per_second(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else 0.0

    def latency_ms(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
        return ordered[index] * 1000


class Client:
    def __init__(self, index: int, protocol: str, run: str):
        self.index = index
        self.protocol = protocol
        # Messages of this run only: a room's history can hold an earlier run's.
        self.run = run
        self.socket = None
        self.received = 0
        self.duplicates = 0
        self.seen: set[tuple[int, int]] = set()
        self.frames = 0
        self.latencies: list[float] = []
        self.last_frame_at = 0.0

    def frame_to_send(self, number: int) -> str:
        payload = json.dumps(
            {"r": self.run, "s": self.index, "k": number, "t": time.monotonic()}
        )
        if self.protocol == "step5":
            return json.dumps({"type": "message", "text": payload})
        return json.dumps({"message": payload})

    def payloads(self, frame: dict) -> list[str]:
        if self.protocol == "tutorial":
            return [frame["message"]]
        if frame.get("type") == "message":
            return [frame["text"]]
        if frame.get("type") == "history":  # a catch-up after a reconnect
            return [message["text"] for message in frame["messages"]]
        return []  # presence and the like

    async def read(self):
        async for raw in self.socket:
            now = time.monotonic()
            self.frames += 1
            self.last_frame_at = now
            for payload in self.payloads(json.loads(raw)):
                try:
                    message = json.loads(payload)
                except ValueError:
                    continue
                if (
                    not isinstance(message, dict)
                    or message.get("r") != self.run
                    or message.get("s") == self.index
                ):
                    continue
                key = (message["s"], message["k"])
                if key in self.seen:
                    self.duplicates += 1
                    continue
                self.seen.add(key)
                self.received += 1
                self.latencies.append(now - message["t"])


async def open_clients(url: str, count: int, protocol: str, origin: str, cookie: str):
    run = secrets.token_hex(4)
    clients = [Client(index, protocol, run) for index in range(count)]
    headers = {"Cookie": cookie} if cookie else None
    batch = 50  # do not open a thousand handshakes at once

    async def open_one(client):
        client.socket = await connect(
            url,
            origin=origin,
            additional_headers=headers,
            compression=None,
            max_queue=None,
            open_timeout=60,
            ping_interval=None,
        )

    for start in range(0, count, batch):
        await asyncio.gather(*(open_one(c) for c in clients[start : start + batch]))
    return clients


async def settle(clients, quiet: float = 0.5, limit: float = 20.0):
    """Wait until no client has received anything for `quiet` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        latest = max((c.last_frame_at for c in clients), default=0.0)
        if time.monotonic() - latest >= quiet:
            return
        await asyncio.sleep(0.1)


async def run_room(
    url: str,
    clients_count: int,
    senders: int,
    per_sender: int,
    protocol: str,
    origin: str,
    cookie: str = "",
    on_ready=None,
    on_done=None,
    timeout: float = 90.0,
    quiet_after: float = 3.0,
) -> RoomResult:
    """Open the room, let W clients send `per_sender` messages each as fast as they
    can, and wait until every delivery arrived (or nothing has arrived for a while).

    on_ready() is called once everyone is connected and the room is quiet, before
    the first message: the place to read the server's CPU time and memory.
    on_done() is called when the last delivery has arrived (or no more will),
    before any socket closes: leaving is not part of what is measured.
    """
    clients = await open_clients(url, clients_count, protocol, origin, cookie)
    readers = [asyncio.create_task(c.read()) for c in clients]
    try:
        await settle(clients)
        for client in clients:
            client.received, client.duplicates, client.latencies = 0, 0, []
            client.seen.clear()
        if on_ready:
            on_ready()
        expected = senders * per_sender * (clients_count - 1)

        async def send_all(client):
            for number in range(per_sender):
                await client.socket.send(client.frame_to_send(number))

        started = time.monotonic()
        await asyncio.gather(*(send_all(c) for c in clients[:senders]))
        deadline = started + timeout
        last_total, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            total = sum(c.received for c in clients)
            if total >= expected:
                break
            if total != last_total:
                last_total, last_change = total, time.monotonic()
            elif time.monotonic() - last_change > quiet_after:
                break  # nothing more is coming: the rest was dropped
            await asyncio.sleep(0.05)
        if on_done:
            on_done()
        finished = max((c.last_frame_at for c in clients), default=started)
        latencies = [latency for c in clients for latency in c.latencies]
        return RoomResult(
            clients=clients_count,
            senders=senders,
            messages=senders * per_sender,
            expected=expected,
            received=sum(c.received for c in clients),
            seconds=max(finished - started, 1e-6),
            duplicates=sum(c.duplicates for c in clients),
            latencies=latencies,
        )
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(
            *(c.socket.close() for c in clients), return_exceptions=True
        )
